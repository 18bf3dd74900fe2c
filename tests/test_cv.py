"""Cross-validation over whole structures and the default training recipe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read
from conftest import TINY_MODEL

from ase_gnnp.cli import main
from ase_gnnp.train import TrainConfig
from ase_gnnp.train.recipe import DEFAULT_MINUTES, describe, recipe, summarize_data
from ase_gnnp.workflows.cv import cross_validate, fold_indices, summarize


def test_folds_hold_every_structure_once_and_every_group_in_its_share():
    groups = ["a"] * 10 + ["b"] * 7 + ["c"] * 2
    folds = fold_indices(groups, 3, seed=4)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(groups)))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    for name, size in (("a", 10), ("b", 7)):
        counts = [sum(groups[i] == name for i in f) for f in folds]
        assert max(counts) - min(counts) <= 1 and sum(counts) == size
    assert [f.tolist() for f in fold_indices(groups, 3, seed=4)] == [f.tolist() for f in folds]
    assert [f.tolist() for f in fold_indices(groups, 3, seed=5)] != [f.tolist() for f in folds]
    with pytest.raises(ValueError, match="folds must be an integer in \\[2, number"):
        fold_indices(groups, 1, seed=0)
    with pytest.raises(ValueError, match="folds must be"):
        fold_indices(groups[:3], 4, seed=0)


def test_summary_is_mean_and_sample_std_over_runs():
    runs = [
        {"test": {"force_mae": 0.1, "per_config_type": {"x": {"force_mae": 0.2}}}, "epochs": 4},
        {"test": {"force_mae": 0.3, "per_config_type": {"x": {"force_mae": 0.4}}}, "epochs": 6},
    ]
    s = summarize(runs)
    assert s["force_mae"]["mean"] == pytest.approx(0.2)
    assert s["force_mae"]["std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert s["per_config_type"]["x"]["force_mae"]["mean"] == pytest.approx(0.3)
    assert s["epochs"]["mean"] == 5 and "energy_mae_per_atom" not in s


def test_cross_validation_trains_each_fold_and_reuses_finished_runs(tiny_dataset, tmp_path):
    frames = read(tiny_dataset, ":")
    base = TrainConfig(
        epochs=1, batch_size=4, threads=1, val_fraction=0.0, scheduler="cosine", model=TINY_MODEL
    )
    candidates = {"plain": {}, "wide": {"model": {"channels": 6}, "lr": 1e-3}}
    report = cross_validate(
        base, frames, candidates, tmp_path / "study", folds=2, seeds=[0, 1], progress=False
    )
    assert report["fold_sizes"] == [8, 8] and len(report["runs"]) == 8
    wide = report["candidates"]["wide"]
    assert wide["n_runs"] == 4 and wide["options"] == {"lr": 1e-3, "model_channels": 6}
    for run in report["runs"]:
        assert run["n_train"] == 8 and run["n_test"] == 8
        assert run["test"]["n_structures"] == 8
    saved = json.loads((tmp_path / "study" / "cv.json").read_text())
    assert saved["candidates"]["plain"]["force_mae"] == report["candidates"]["plain"]["force_mae"]
    # a repeated call reuses every run; other options for a run's folder are refused
    marker = tmp_path / "study" / "plain" / "fold0_seed0" / "cv_result.json"
    before = marker.stat().st_mtime_ns
    again = cross_validate(
        base, frames, candidates, tmp_path / "study", folds=2, seeds=[0, 1], progress=False
    )
    assert marker.stat().st_mtime_ns == before
    assert again["candidates"]["plain"] == report["candidates"]["plain"]
    marker.unlink()
    with pytest.raises(ValueError, match="other training options"):
        cross_validate(
            base.updated(lr=0.1),
            frames,
            {"plain": {}},
            tmp_path / "study",
            folds=2,
            seeds=[0],
            progress=False,
        )


def test_every_run_is_scored_on_transfer_structures_finished_runs_too(tiny_dataset, tmp_path):
    from ase_gnnp import load_model
    from ase_gnnp.evaluate import evaluate_structures
    from ase_gnnp.teachers import tersoff_sige

    frames = read(tiny_dataset, ":")
    hot = []
    for k, atoms in enumerate(a.copy() for a in frames[:5]):  # further from the data
        atoms.rattle(0.15, seed=100 + k)
        atoms.calc = tersoff_sige()
        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        atoms.calc = SinglePointCalculator(atoms, **labels, stress=atoms.get_stress())
        hot.append(atoms)
    base = TrainConfig(
        epochs=1, batch_size=4, threads=1, val_fraction=0.0, scheduler="cosine", model=TINY_MODEL
    )
    study = tmp_path / "study"
    plain = cross_validate(base, frames, {"a": {}}, study, folds=2, seeds=[0], progress=False)
    assert all("transfer" not in r for r in plain["runs"])
    assert "transfer" not in plain["candidates"]["a"]
    model_file = study / "a" / "fold1_seed0" / "model.pt"
    before = model_file.stat().st_mtime_ns
    report = cross_validate(
        base, frames, {"a": {}}, study, folds=2, seeds=[0], progress=False, transfer=hot
    )
    assert model_file.stat().st_mtime_ns == before  # scored, not trained again
    for run in report["runs"]:
        assert run["transfer"]["n_structures"] == 5
        assert run["test"] == next(r["test"] for r in plain["runs"] if r["fold"] == run["fold"])
    model = load_model(model_file)
    direct = evaluate_structures(model, hot, base.keys)
    (run1,) = [r for r in report["runs"] if r["fold"] == 1]
    assert run1["transfer"]["force_mae"] == pytest.approx(direct["force_mae"], rel=1e-6)
    values = [r["transfer"]["force_mae"] for r in report["runs"]]
    summary = report["candidates"]["a"]["transfer"]["force_mae"]
    assert summary["mean"] == pytest.approx(np.mean(values))
    assert summary["std"] == pytest.approx(np.std(values, ddof=1))
    saved = json.loads((study / "a" / "fold0_seed0" / "cv_result.json").read_text())
    assert saved["transfer"]["n_structures"] == 5


def test_a_study_stopped_early_reports_every_candidate_on_the_same_folds(
    tiny_dataset, tmp_path, monkeypatch
):
    import ase_gnnp.workflows.cv as cv

    frames = read(tiny_dataset, ":")
    base = TrainConfig(
        epochs=1, batch_size=4, threads=1, val_fraction=0.0, scheduler="cosine", model=TINY_MODEL
    )
    real, calls = cv._run_one, []

    def stop_after_three(*args):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(args[0])
        return real(*args)

    def study() -> dict:
        candidates = {"a": {}, "b": {"lr": 1e-3}}
        return cross_validate(
            base, frames, candidates, tmp_path / "s", folds=2, seeds=[0, 1], progress=False
        )

    monkeypatch.setattr(cv, "_run_one", stop_after_three)
    with pytest.raises(KeyboardInterrupt):
        study()
    assert [(r.seed, r.fold, r.candidate) for r in calls] == [(0, 0, "a"), (0, 0, "b"), (0, 1, "a")]
    partial = json.loads((tmp_path / "s" / "cv.json").read_text())
    assert not partial["complete"] and (partial["runs_done"], partial["runs_total"]) == (3, 8)
    assert partial["candidates"]["a"]["n_runs"] == 2 and partial["candidates"]["b"]["n_runs"] == 1
    monkeypatch.setattr(cv, "_run_one", real)
    done = study()
    assert done["complete"] and done["runs_done"] == 8
    # the report lists the runs in the order they were asked, whichever finished first
    assert [(r["seed"], r["fold"], r["candidate"]) for r in done["runs"][:3]] == [
        (0, 0, "a"),
        (0, 0, "b"),
        (0, 1, "a"),
    ]


def test_calibrated_budget_turns_minutes_into_epochs(tiny_dataset, tmp_path):
    frames = read(tiny_dataset, ":")
    base = TrainConfig(
        batch_size=4,
        threads=1,
        val_fraction=0.0,
        scheduler="cosine",
        max_minutes=0.05,
        model=TINY_MODEL,
    )
    report = cross_validate(
        base,
        frames,
        {"plain": {}, "same_cost": {"lr": 1e-3}},
        tmp_path / "s",
        folds=2,
        seeds=[0],
        calibrate_threads=1,
        progress=False,
    )
    calibration = json.loads((tmp_path / "s" / "plain" / "calibration.json").read_text())
    expected = max(1, int(3.0 / calibration["seconds_per_epoch"]))
    assert calibration["epochs"] == expected
    assert {r["epochs"] for r in report["runs"]} == {expected}
    # a candidate of the same cost shares the measurement: one calibration run only
    assert not (tmp_path / "s" / "same_cost" / "calibration_run").exists()
    shared = json.loads((tmp_path / "s" / "same_cost" / "calibration.json").read_text())
    assert shared == calibration
    with pytest.raises(ValueError, match="set max_minutes"):
        cross_validate(
            base.updated(max_minutes=0.0),
            frames,
            {"p": {}},
            tmp_path / "t",
            folds=2,
            calibrate_threads=1,
            progress=False,
        )


def test_recipe_depends_on_the_labels_and_budget_only(tiny_dataset):
    frames = read(tiny_dataset, ":")
    summary = summarize_data(frames)
    assert summary.n_structures == 16 and summary.elements == ("Ge", "Si")
    assert summary.labels == ("energy", "forces", "stress") and summary.periodic == 1.0
    options = recipe(summary, 7.0)
    assert options["max_minutes"] == 7.0 and options["stress_weight"] > 0
    for a in frames:
        a.calc.results.pop("stress")
    unstressed = summarize_data(frames)
    assert "stress" not in unstressed.labels
    assert recipe(unstressed)["stress_weight"] == 0.0
    assert recipe(unstressed)["max_minutes"] == DEFAULT_MINUTES
    text = describe(TrainConfig.from_dict(recipe(unstressed)), unstressed)
    assert "no stress" in text and "16 structures" in text and "20 minutes" in text
    with pytest.raises(ValueError, match="budget in minutes"):
        recipe(summary, 0.0)


def test_recipe_weighs_forces_first_where_energies_spread_little(tiny_dataset):
    from dataclasses import replace

    from ase_gnnp.train.recipe import ENERGY_WEIGHT, LOW_ENERGY_SPREAD

    summary = summarize_data(read(tiny_dataset, ":"))
    solid = replace(summary, energy_spread=0.3)  # phases and defects: 300 meV/atom
    molecule = replace(summary, energy_spread=0.006)  # one molecule's conformations
    assert recipe(solid)["energy_weight"] == ENERGY_WEIGHT
    low = recipe(molecule)["energy_weight"]
    assert low < ENERGY_WEIGHT and recipe(molecule)["forces_weight"] == 1.0
    edge = replace(summary, energy_spread=LOW_ENERGY_SPREAD)
    assert recipe(edge)["energy_weight"] == ENERGY_WEIGHT
    text = describe(TrainConfig.from_dict(recipe(molecule)), molecule)
    assert f"energy {low:g} / forces 1" in text and "forces first" in text
    assert "forces first" not in describe(TrainConfig.from_dict(recipe(solid)), solid)
    assert "config types balanced" not in text
    balanced = TrainConfig.from_dict(recipe(solid) | {"config_type_balance": 0.5})
    assert "config types balanced (exponent 0.5)" in describe(balanced, solid)


def test_plain_train_command_trains_the_recipe_and_says_so(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--data",
            str(tiny_dataset),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--max-minutes",
            "1",
            "--channels",
            "4",
            "--lmax",
            "1",
            "--last-lmax",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "training recipe:" in printed and "budget: 1 minutes" in printed
    saved = TrainConfig.from_yaml(out / "config.yaml", saved=True)
    expected = recipe(summarize_data(read(tiny_dataset, ":")), 1.0)
    assert saved.scheduler == expected["scheduler"] and saved.lr == expected["lr"]
    assert saved.model.correlation == expected["model"]["correlation"]
    assert saved.model.channels == 4  # a flag overrides the recipe


def test_cv_command_reports_mean_and_std(tiny_dataset, tmp_path, capsys):
    candidates = tmp_path / "c.yaml"
    candidates.write_text("a: {}\nb: {lr: 0.001}\n")
    code = main(
        [
            "cv",
            "--data",
            str(tiny_dataset),
            "--folds",
            "2",
            "--epochs",
            "1",
            "--channels",
            "4",
            "--lmax",
            "1",
            "--last-lmax",
            "1",
            "--correlation",
            "1",
            "--candidates",
            str(candidates),
            "--study",
            str(tmp_path / "cv"),
            "--transfer",
            str(tiny_dataset),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert (tmp_path / "cv" / "cv.png").is_file()
    assert report["candidates"]["a"]["transfer"]["force_mae"]["mean"] > 0.0
    assert set(report["candidates"]) == {"a", "b"} and report["folds"] == 2
    assert report["candidates"]["b"]["options"] == {"lr": 0.001}
    assert report["candidates"]["a"]["force_mae"]["std"] >= 0.0


def test_cv_plot_names_the_runs_behind_each_bar_and_adds_a_transfer_panel(tmp_path, monkeypatch):
    import matplotlib.figure

    from ase_gnnp.workflows.cv import plot_cv

    stats = {"mean": 0.05, "std": 0.001}
    report = {
        "folds": 3,
        "n_structures": 30,
        "seeds": [0],
        "candidates": {
            "one": {"n_runs": 1, "force_mae": stats, "energy_mae_per_atom": stats},
            "three": {
                "n_runs": 3,
                "force_mae": stats,
                "energy_mae_per_atom": stats,
                "transfer": {"force_mae": stats},
            },
        },
    }
    saved = []
    original = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(
        matplotlib.figure.Figure,
        "savefig",
        lambda fig, *a, **k: (saved.append(fig), original(fig, *a, **k))[1],
    )
    path = plot_cv(report, tmp_path / "cv.png")
    assert path.is_file() and len(saved) == 1
    axes = saved[0].axes
    assert [ax.get_ylabel() for ax in axes][-1] == "transfer force MAE (meV/Å)"
    ticks = [t.get_text() for t in axes[0].get_xticklabels()]
    assert ticks == ["one (1 run)", "three (3 runs)"]


_ORPHAN_PARENT = """
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
import os
from ase_gnnp.workflows.cv import _exit_with_parent

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(), 0.1))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 600)
    time.sleep(600)
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left for its new parent to reap does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\tZ" not in status.split("State:")[1].split("\n")[0]


def test_cv_workers_end_when_the_cv_process_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    os.kill(worker, 0)  # alive while its parent is
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        if not _running(worker):
            break
        time.sleep(0.1)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail(f"worker {worker} outlived the killed cv process")
