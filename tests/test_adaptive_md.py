"""Adaptive MD: pauses on large force balls, learns from the reference, resumes after a kill."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator
from ase.io import read, write
from test_uq import tersoff_frames

from ase_gnnp import load_model, save_model
from ase_gnnp.cli import main
from ase_gnnp.teachers import tersoff_sige
from ase_gnnp.uq import calibrate_forces, fit_mahalanobis, uq_statistics
from ase_gnnp.uq.adaptive import AdaptiveMD, ReferenceCalculatorError, reference_calculator

pytestmark = pytest.mark.filterwarnings("ignore:'where' used without 'out':UserWarning")


@pytest.fixture(scope="module")
def frames():
    return tersoff_frames(6, seed=0), tersoff_frames(8, seed=1)


@pytest.fixture
def calibrated(small_model, frames):
    fit_mahalanobis(small_model, frames[0])
    calibrate_forces(small_model, frames[1], alpha=0.1)
    return small_model


def _driver(model, frames, out, r_thr=1e-3, reference=None, **kwargs):
    atoms = bulk("Si", "diamond", a=5.432, cubic=True)
    options = dict(temperature_K=1200.0, calibration_every=2, train_steps=2, cooldown=2,
                   save_every=2, audit_every=3, trajectory_every=2, progress=False)  # fmt: skip
    return AdaptiveMD(model, reference or tersoff_sige(), atoms, frames[0], frames[1], out,
                      r_thr, **(options | kwargs))  # fmt: skip


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_pauses_labels_learns_and_logs(calibrated, frames, tmp_path):
    driver = _driver(calibrated, frames, tmp_path / "run")
    qhat0 = uq_statistics(driver.model).conformal.qhat
    summary = driver.run(7)
    # r_thr far below any ball: an event at every allowed step (0, 2, 4, 6)
    assert summary == summary | {"steps": 7, "events": 4, "train_added": 2, "calibration_added": 2}
    events = [json.loads(line) for line in (tmp_path / "run/events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events] == [0, 2, 4, 6]
    assert [e["destination"] for e in events] == ["train", "calibration"] * 2
    assert all(e["max_radius"] > 1e-3 and e["true_max_error"] > 0 for e in events)
    assert [e["n_train"] for e in events] == [7, 7, 8, 8]
    assert [e["n_calibration"] for e in events] == [8, 9, 9, 10]
    assert uq_statistics(driver.model).conformal.qhat != qhat0  # recalibrated
    assert uq_statistics(driver.model).conformal.n_structures == 10
    added = read(tmp_path / "run/train_added.extxyz", ":")
    assert [a.info["adaptive_md_step"] for a in added] == [0, 4]
    teacher = added[0].copy()
    teacher.calc = tersoff_sige()
    np.testing.assert_allclose(added[0].get_forces(), teacher.get_forces(), atol=1e-6)
    rows = _rows(tmp_path / "run/steps.csv")
    assert [int(r["step"]) for r in rows] == list(range(8))
    assert [int(r["event"]) for r in rows] == [1, 0, 1, 0, 1, 0, 1, 0]
    audited = [r for r in rows if r["audit_max_error"] != "nan"]
    assert [int(r["step"]) for r in audited] == [0, 3, 6]
    assert len(read(tmp_path / "run/trajectory.extxyz", ":")) == 4
    saved = load_model(tmp_path / "run/model.pt")
    assert uq_statistics(saved).conformal.n_structures == 10
    # the caller's model was copied, not trained
    assert uq_statistics(calibrated).conformal.qhat == qhat0


def test_a_killed_run_resumes(calibrated, frames, tmp_path):
    _driver(calibrated, frames, tmp_path / "run", r_thr=1e9).run(4)
    with pytest.raises(ValueError, match="already holds an adaptive-MD run"):
        _driver(calibrated, frames, tmp_path / "run")
    with pytest.raises(ValueError, match="no adaptive-MD run"):
        _driver(calibrated, frames, tmp_path / "other", resume=True)
    # a kill after step 6 was logged but before the state of step 6 was saved
    with open(tmp_path / "run/steps.csv", "a") as fh:
        fh.write("5,5.0,1,1,1,1,0,nan,nan\n6,6.0,1,1,1,1,0,nan,nan\n")
    frame = read(tmp_path / "run/trajectory.extxyz")
    frame.info["step"] = 6
    write(tmp_path / "run/trajectory.extxyz", frame, format="extxyz", append=True)
    resumed = _driver(calibrated, frames, tmp_path / "run", r_thr=1e9, resume=True)
    assert resumed.step == 4
    assert [a.info["step"] for a in read(tmp_path / "run/trajectory.extxyz", ":")] == [0, 2, 4]
    assert resumed.run(6)["steps"] == 6
    rows = _rows(tmp_path / "run/steps.csv")
    assert [int(r["step"]) for r in rows] == list(range(7))


class Failing(Calculator):
    implemented_properties = ["energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        raise RuntimeError("SCF did not converge")


def test_reference_failure_is_a_clear_error(calibrated, frames, tmp_path):
    driver = _driver(calibrated, frames, tmp_path / "run", reference=Failing())
    with pytest.raises(ReferenceCalculatorError, match="Failing failed at MD step 0: .*SCF"):
        driver.run(3)


def test_bad_input(calibrated, frames, tmp_path):
    bare = copy.deepcopy(calibrated)
    bare.uq = None
    with pytest.raises(ValueError, match="needs a calibrated model"):
        _driver(bare, frames, tmp_path / "a")
    with pytest.raises(ValueError, match="r_thr must be a positive"):
        _driver(calibrated, frames, tmp_path / "b", r_thr=0.0)
    with pytest.raises(TypeError, match="reference must be an ASE Calculator"):
        _driver(calibrated, frames, tmp_path / "c", reference="tersoff")
    with pytest.raises(ValueError, match="reference must be one of"):
        reference_calculator("dft")


def test_cli_adaptive_md(calibrated, frames, tmp_path, capsys):
    model = save_model(calibrated, tmp_path / "m.pt")
    train, calib = tmp_path / "train.extxyz", tmp_path / "calib.extxyz"
    write(train, frames[0], format="extxyz")
    write(calib, frames[1], format="extxyz")
    args = ["adaptive-md", "--model", str(model), "--reference", "tersoff", "--structure", "Si",
            "--steps", "3", "--r-thr", "0.001", "--train-data", str(train), "--calibration-data",
            str(calib), "--out", str(tmp_path / "run"), "--train-steps", "1", "--json"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["events"] >= 1
    assert main(args) == 2
    assert "already holds an adaptive-MD run" in capsys.readouterr().err
    args[args.index("--steps") + 1] = "5"
    assert main([*args, "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 5


def test_cli_takes_the_data_the_checkpoint_records(calibrated, frames, tmp_path, capsys):
    train, calib = tmp_path / "train.extxyz", tmp_path / "calib.extxyz"
    write(train, frames[0], format="extxyz")
    write(calib, frames[1], format="extxyz")
    bare = save_model(calibrated, tmp_path / "bare.pt")
    args = ["adaptive-md", "--model", str(bare), "--reference", "tersoff", "--structure", "Si",
            "--steps", "2", "--r-thr", "0.001", "--train-steps", "1", "--json"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "--train-data is needed: the checkpoint records no train data" in err
    records = {"train_config": {"data": str(train), "config_types": ["g0", "g1"]}}
    model = save_model(calibrated, tmp_path / "m.pt", records)
    assert main(["uq", "calibrate", "--model", str(model), "--data", str(calib), "--alpha",
                 "0.1", "--config-types", "g0,g1"]) == 0  # fmt: skip
    capsys.readouterr()
    args[2] = str(model)
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    saved = load_model(tmp_path / "b/model.pt")
    assert saved.metadata["train_config"]["data"] == str(train)  # kept for a resume


def test_learns_with_a_long_range_model(frames, tmp_path):
    """Charges enter the loss of a long-range model (their weight comes from TrainConfig)."""
    import torch

    from ase_gnnp import GNNPModel, ModelConfig

    torch.manual_seed(0)
    model = GNNPModel(ModelConfig(cutoff=3.5, channels=8, lmax=1, num_layers=2,
                                  long_range="ewald")).double()  # fmt: skip
    fit_mahalanobis(model, frames[0])
    calibrate_forces(model, frames[1], alpha=0.1)
    driver = _driver(model, frames, tmp_path / "run", calibration_every=0)
    assert driver.weights["charges"] == 0.0 and driver.weights["forces"] == 1.0
    before = [p.detach().clone() for p in driver.model.parameters()]
    assert driver.run(1)["train_added"] == 1
    assert any(not torch.equal(a, p) for a, p in zip(before, driver.model.parameters()))


def test_resume_drops_events_logged_after_the_saved_state(calibrated, frames, tmp_path):
    _driver(calibrated, frames, tmp_path / "run").run(3)  # events at steps 0 and 2
    path = tmp_path / "run/events.jsonl"
    lines = path.read_text().splitlines()
    phantom = json.loads(lines[-1]) | {"step": 9}
    path.write_text("\n".join([*lines, json.dumps(phantom), '{"step": 1'][: len(lines) + 2]))
    resumed = _driver(calibrated, frames, tmp_path / "run", resume=True)
    assert [e.step for e in resumed.events] == [0, 2]
    assert len(path.read_text().splitlines()) == 2
