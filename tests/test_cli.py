"""The ``ase-gnnp`` command line: train, eval, md, info, bench on tiny inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from ase_gnnp import GNNPModel, ModelConfig, save_model
from ase_gnnp.cli import main

TINY = ModelConfig(cutoff=3.5, channels=8, lmax=1, num_layers=2)


@pytest.fixture
def tiny_model_path(tmp_path):
    torch.manual_seed(0)
    model = GNNPModel(TINY)
    with torch.no_grad():
        model.atomic_reference[[14, 32]] = torch.tensor([-4.6, -3.8], dtype=torch.float64)
        model.fitted_elements[[14, 32]] = True
    return save_model(model, tmp_path / "tiny.pt")


@pytest.fixture
def labelled_file(tmp_path):
    """Six labelled 2-atom Si/Ge cells with made-up but consistent labels."""
    rng = np.random.default_rng(0)
    frames = []
    for k in range(6):
        atoms = bulk("Si", "diamond", a=5.43 + 0.02 * k)
        atoms.numbers[1] = 32 if k % 2 else 14
        atoms.rattle(0.05, seed=k)
        atoms.calc = SinglePointCalculator(
            atoms,
            energy=-9.0 + rng.normal(0, 0.1),
            forces=rng.normal(0, 0.3, (2, 3)),
            stress=rng.normal(0, 0.01, 6),
        )
        atoms.info["config_type"] = "even" if k % 2 == 0 else "odd"
        frames.append(atoms)
    path = tmp_path / "tiny.extxyz"
    write(path, frames, format="extxyz")
    return path


def test_eval_json_reports_required_keys(tiny_model_path, labelled_file, capsys):
    assert (
        main(["eval", "--model", str(tiny_model_path), "--data", str(labelled_file), "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    for key in ("energy_mae_per_atom", "force_mae", "stress_mae"):
        assert np.isfinite(out[key]) and out[key] > 0
    assert set(out["per_config_type"]) == {"even", "odd"}
    assert out["n_structures"] == 6


def test_eval_table(tiny_model_path, labelled_file, capsys):
    assert main(["eval", "--model", str(tiny_model_path), "--data", str(labelled_file)]) == 0
    text = capsys.readouterr().out
    assert "ALL" in text and "even" in text and "meV/atom" in text


def test_eval_relative_energies_per_config_type(tiny_model_path, labelled_file, capsys):
    args = ["eval", "--model", str(tiny_model_path), "--data", str(labelled_file)]
    assert main([*args, "--relative-energies", "--json"]) == 0
    rel = json.loads(capsys.readouterr().out)["relative_energy"]
    assert set(rel["per_config_type"]) == {"even", "odd"} and rel["skipped"] == []
    assert rel["n_structures"] == 6 and rel["energy_rel_rmse"] > 0
    assert main([*args, "--relative-energies"]) == 0
    assert "energy relative to each config_type's lowest" in capsys.readouterr().out


def test_eval_missing_key_is_a_clear_error(tiny_model_path, labelled_file, capsys):
    code = main(
        ["eval", "--model", str(tiny_model_path), "--data", str(labelled_file),
         "--energy-key", "dft_energy"]
    )  # fmt: skip
    assert code == 2
    assert "dft_energy" in capsys.readouterr().err


def test_unknown_model_is_a_clear_error(labelled_file, capsys):
    assert main(["eval", "--model", "no-such-model", "--data", str(labelled_file)]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_md_writes_trajectory_and_refuses_to_overwrite(tiny_model_path, tmp_path, capsys):
    traj = tmp_path / "md.traj"
    args = ["md", "--model", str(tiny_model_path), "--steps", "4", "--interval", "1",
            "--traj", str(traj), "--json", "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["natoms"] == 64 and result["atom_steps_per_s"] > 0
    from ase.io import read

    assert len(read(traj, ":")) >= 4
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err


def test_md_nve_on_a_structure_file(tiny_model_path, tmp_path, capsys):
    structure = tmp_path / "si.xyz"
    write(structure, bulk("Si", "diamond", a=5.43, cubic=True))
    args = ["md", "--model", str(tiny_model_path), "--structure", str(structure),
            "--supercell", "1", "1", "2", "--ensemble", "nve", "--steps", "3"]  # fmt: skip
    assert main(args) == 0
    assert "16 atoms" in capsys.readouterr().out


def test_info_lists_model(tiny_model_path, capsys):
    assert main(["info", "--model", str(tiny_model_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"]["config"]["channels"] == 8
    assert info["model"]["elements_fitted"] == ["Si", "Ge"]
    assert "torch" in info["versions"]


def test_bench_json(tiny_model_path, capsys):
    args = ["bench", "--model", str(tiny_model_path), "--sizes", "8", "64", "--steps", "2",
            "--json"]  # fmt: skip
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)["throughput"]
    assert [r["natoms"] for r in rows] == [8, 64]
    assert all(r["atom_steps_per_s"] > 0 for r in rows)


def test_train_from_flags_then_resume_and_eval(labelled_file, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(labelled_file), "--out", str(out), "--epochs", "2",
            "--cutoff", "3.5", "--channels", "4", "--lmax", "1", "--batch-size", "2",
            "--val-fraction", "0.34", "--threads", "1", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    for name in ("model.pt", "checkpoint.pt", "metrics.csv", "learning_curve.png", "config.yaml"):
        assert (out / name).is_file()
    # a used output folder is never silently overwritten
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--no-progress"]) == 0
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    assert main(["eval", "--model", str(out / "model.pt"), "--data", str(labelled_file)]) == 0


def test_train_without_data_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "x")]) == 2
    assert "--data" in capsys.readouterr().err


def test_md_default_trajectory_never_overwrites(tiny_model_path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["md", "--model", str(tiny_model_path), "--steps", "2", "--threads", "1"]
    assert main(args) == 0 and main(args) == 0
    assert (tmp_path / "md.traj").is_file() and (tmp_path / "md-1.traj").is_file()
    assert "md-1.traj" in capsys.readouterr().out


def test_resume_rejects_options_that_would_change_the_run(labelled_file, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(labelled_file), "--out", str(out), "--epochs", "1",
            "--cutoff", "3.5", "--channels", "4", "--lmax", "1", "--threads", "1",
            "--val-fraction", "0.34", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert main(["train", "--out", str(out), "--resume", "--lr", "0.1", "--no-progress"]) == 2
    assert "cannot change" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--channels", "8"]) == 2


def test_train_config_type_weights_flag(labelled_file, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(labelled_file), "--out", str(out), "--epochs", "1",
            "--cutoff", "3.5", "--channels", "4", "--val-fraction", "0.34", "--threads", "1",
            "--no-progress", "--config-type-weights", "odd=3, even=0.5"]  # fmt: skip
    assert main(args) == 0
    saved = (out / "config.yaml").read_text()
    assert "odd: 3.0" in saved and "even: 0.5" in saved
    bad = ["train", "--data", str(labelled_file), "--out", str(tmp_path / "bad"),
           "--config-type-weights", "odd:3"]  # fmt: skip
    with pytest.raises(SystemExit):
        main(bad)
    assert "NAME=WEIGHT" in capsys.readouterr().err


def test_train_selection_flags(labelled_file, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(labelled_file), "--out", str(out), "--epochs", "1",
            "--cutoff", "3.5", "--channels", "4", "--val-fraction", "0.34", "--threads", "1",
            "--no-progress", "--config-types", "odd, even", "--elements", "Si,Ge"]  # fmt: skip
    assert main(args) == 0
    saved = (out / "config.yaml").read_text()
    assert "config_types:\n- odd\n- even" in saved and "elements:\n- Si\n- Ge" in saved


def test_finetune_freezes_equivariant_layers_by_default(tiny_model_path, labelled_file, tmp_path,
                                                        capsys):  # fmt: skip
    out = tmp_path / "tuned"
    args = ["finetune", "--model", str(tiny_model_path), "--data", str(labelled_file), "--out",
            str(out), "--epochs", "1", "--val-fraction", "0.34", "--threads", "1",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert "freeze: equivariant" in (out / "config.yaml").read_text()
    tuned = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    start = torch.load(tiny_model_path, weights_only=True)["state_dict"]
    assert torch.equal(tuned["layers.0.linear_up.weight"], start["layers.0.linear_up.weight"])
    assert not torch.equal(tuned["readout.0.weight"], start["readout.0.weight"])
    assert main([*args[:-1], "--init-from", str(tiny_model_path), "--overwrite"]) == 2
    assert "starts from --model" in capsys.readouterr().err
