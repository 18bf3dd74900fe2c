"""Fair element weighting study: choice on validation, seeds, reuse of runs, report CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from ase_gnnp.cli import main
from ase_gnnp.config import ModelConfig
from ase_gnnp.train import TrainConfig
from ase_gnnp.workflows.fairness import fairness_study, group_figures


def _frames(n_common: int, n_rare: int, seed: int) -> list:
    """fcc Cu-Ni cells (common) and Cu-Au cells (rare), labelled by EMT."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_common + n_rare):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.numbers[int(rng.integers(4))] = 79 if k >= n_common else 28
        atoms.rattle(0.05, seed=int(rng.integers(2**31)))
        atoms.calc = EMT()
        results = {p: atoms.calc.get_property(p, atoms) for p in ("energy", "forces", "stress")}
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["config_type"] = "rare" if k >= n_common else "common"
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fair")
    write(folder / "train.extxyz", _frames(14, 4, 0), format="extxyz")
    write(folder / "test.extxyz", _frames(4, 4, 1), format="extxyz")
    return folder / "train.extxyz", folder / "test.extxyz"


def test_group_figures():
    table = {"Cu": {"force_mae": 0.02}, "Au": {"force_mae": 0.05}, "Ni": {"force_mae": 0.03}}
    g = group_figures(table)
    assert (g["worst_element"], g["best_element"]) == ("Au", "Cu")
    assert g["gap"] == pytest.approx(0.03) and g["mean_over_elements"] == pytest.approx(0.1 / 3)


def test_fairness_study_and_cli(files, tmp_path, capsys):
    train, test = files
    base = TrainConfig(data=str(train), epochs=2, batch_size=4, val_fraction=0.25, threads=1,
                       model=ModelConfig(cutoff=3.5, channels=4, lmax=1, num_layers=1))  # fmt: skip
    report = fairness_study(base, test, tmp_path / "study", [(1.0, 10.0), (2.0, 3.0)],
                            seeds=[0, 1], progress=False)  # fmt: skip
    assert len(report["candidates"]) == 2
    best = min(report["candidates"], key=lambda c: c["val"]["worst"])
    assert report["chosen"] == {"exponent": best["exponent"], "cap": best["cap"],
                                "scope": "structure"}  # fmt: skip
    for label in ("baseline", "weighted"):
        assert [r["seed"] for r in report[label]["runs"]] == [0, 1]
        assert set(report[label]["runs"][0]["per_element"]) == {"Cu", "Ni", "Au"}
    b, w = report["baseline"], report["weighted"]
    assert report["worst_reduction"] == pytest.approx(1 - w["worst"]["mean"] / b["worst"]["mean"])
    runs = sorted(p.name for p in (tmp_path / "study").iterdir())
    assert runs == ["p0_cap10_seed0", "p0_cap10_seed1", "p1_cap10_seed0", "p2_cap3_seed0",
                    *[f"p{best['exponent']:g}_cap{best['cap']:g}_seed1"]]  # fmt: skip
    # a second call reuses every finished run
    mtimes = {p: p.stat().st_mtime for p in (tmp_path / "study").glob("*/model.pt")}
    assert fairness_study(base, test, tmp_path / "study", [(1.0, 10.0), (2.0, 3.0)],
                          seeds=[0, 1], progress=False) == report  # fmt: skip
    assert mtimes == {p: p.stat().st_mtime for p in (tmp_path / "study").glob("*/model.pt")}
    # runs asked with other options or data are not reused
    with pytest.raises(ValueError, match="other training options"):
        fairness_study(base.updated(lr=1e-3), test, tmp_path / "study", [(1.0, 10.0)],
                       seeds=[0], progress=False)  # fmt: skip
    other = tmp_path / "other.extxyz"
    write(other, _frames(14, 4, 5), format="extxyz")
    with pytest.raises(ValueError, match="other training data"):
        fairness_study(base.updated(data=str(other)), test, tmp_path / "study", [(1.0, 10.0)],
                       seeds=[0], progress=False)  # fmt: skip
    # the command line on the same folder: reused runs, JSON and PNG written
    config = tmp_path / "base.yaml"
    base.to_yaml(config)
    args = ["report", "fairness", "--data", str(train), "--test", str(test), "--config",
            str(config), "--candidates", "1:10", "2:3", "--seeds", "0", "1", "--out",
            str(tmp_path / "study"), "--json"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == report
    assert (tmp_path / "study/fairness.png").stat().st_size > 1000
    assert main([*args[:-1], "--candidates", "one"]) == 2
    assert "EXPONENT:CAP" in capsys.readouterr().err
    # per-atom weights: their own runs, the same unweighted baseline (reused)
    assert main([*args[:-1], "--candidates", "1:10", "--seeds", "0", "--scope", "atom"]) == 0
    assert "per atom" in capsys.readouterr().out
    assert (tmp_path / "study/atom_p1_cap10_seed0/model.pt").is_file()
    assert (tmp_path / "study/p0_cap10_seed0/model.pt").stat().st_mtime == mtimes[
        tmp_path / "study/p0_cap10_seed0/model.pt"
    ]
    atom = json.loads((tmp_path / "study/fairness.json").read_text())
    assert atom["chosen"]["scope"] == "atom"
    assert atom["baseline"]["runs"][0] == report["baseline"]["runs"][0]
    assert atom["weighted"]["runs"][0] != report["weighted"]["runs"][0]
    # weights as drawing probabilities: their own runs, the same baseline again
    assert main([*args[:-1], "--candidates", "1:10", "--seeds", "0", "--scope", "sampling"]) == 0
    assert "as drawing probabilities" in capsys.readouterr().out
    assert (tmp_path / "study/sampling_p1_cap10_seed0/model.pt").is_file()
    drawn = json.loads((tmp_path / "study/fairness.json").read_text())
    assert drawn["chosen"]["scope"] == "sampling"
    assert drawn["baseline"]["runs"][0] == report["baseline"]["runs"][0]
    assert drawn["weighted"]["runs"][0] not in (report["weighted"]["runs"][0],
                                                atom["weighted"]["runs"][0])  # fmt: skip
    # a balanced training set as the reference: unweighted runs of their own, every seed
    balanced = tmp_path / "balanced.extxyz"
    write(balanced, _frames(9, 9, 7), format="extxyz")
    missing = ["--candidates", "1:10", "--balanced", str(tmp_path / "none.xyz")]
    assert main([*args[:-1], *missing]) == 2
    assert "balanced training set" in capsys.readouterr().err
    assert main([*args[:-1], "--candidates", "1:10", "--balanced", str(balanced)]) == 0
    assert "balanced training set (no weighting)" in capsys.readouterr().out
    ref = json.loads((tmp_path / "study/fairness.json").read_text())
    assert [r["seed"] for r in ref["balanced"]["runs"]] == [0, 1]
    assert (tmp_path / "study/balanced_seed1/model.pt").is_file()
    assert ref["balanced_worst_reduction"] == pytest.approx(
        1 - ref["balanced"]["worst"]["mean"] / ref["baseline"]["worst"]["mean"]
    )
    assert ref["balanced"]["runs"][0] != ref["baseline"]["runs"][0]


def test_repeat_scope_study_trains_a_same_steps_control(files, tmp_path, capsys):
    train, test = files
    base = TrainConfig(data=str(train), epochs=2, batch_size=4, val_fraction=0.25, threads=1,
                       element_weight_scope="repeat", scheduler="cosine",
                       model=ModelConfig(cutoff=3.5, channels=4, lmax=1, num_layers=1))  # fmt: skip
    report = fairness_study(base, test, tmp_path / "study", [(1.0, 10.0)], seeds=[0, 1],
                            progress=False)  # fmt: skip
    # Cu is everywhere, Ni in 14 of 18 structures, Au in 4: the Cu-Ni cells repeat 18/14
    # times per epoch on average, the Cu-Au ones 18/4, so the epoch is twice as long
    assert report["steps_factor"] == pytest.approx((14 * 18 / 14 + 4 * 18 / 4) / 18)
    assert report["same_steps"]["epochs"] == 4
    runs = sorted(p.name for p in (tmp_path / "study").iterdir())
    assert runs == ["p0_cap10_epochs4_seed0", "p0_cap10_epochs4_seed1", "p0_cap10_seed0",
                    "p0_cap10_seed1", "repeat_p1_cap10_seed0", "repeat_p1_cap10_seed1"]  # fmt: skip
    control = yaml.safe_load((tmp_path / "study/p0_cap10_epochs4_seed0/config.yaml").read_text())
    assert (control["epochs"], control["element_weight_exponent"]) == (4, 0.0)
    w, ss = report["weighted"], report["same_steps"]
    assert ss["runs"][0] != report["baseline"]["runs"][0]
    assert report["same_steps_worst_reduction"] == pytest.approx(
        1 - w["worst"]["mean"] / ss["worst"]["mean"]
    )
    assert report["same_steps_average_change"] == pytest.approx(
        w["force_mae"]["mean"] / ss["force_mae"]["mean"] - 1
    )
    # the command line reuses the runs and names the control
    config = tmp_path / "base.yaml"
    base.to_yaml(config)
    assert main(["report", "fairness", "--data", str(train), "--test", str(test), "--config",
                 str(config), "--candidates", "1:10", "--seeds", "0", "1", "--out",
                 str(tmp_path / "study")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "as repeats per epoch" in out and "as many steps (4 epochs, x2.00)" in out
    assert (tmp_path / "study/fairness.png").stat().st_size > 1000
