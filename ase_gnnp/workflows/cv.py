"""k-fold cross-validation over whole structures, for choosing a training recipe honestly.

Every structure is held out exactly once: the structures are dealt to ``folds`` folds,
stratified by ``info["config_type"]`` (each group is shuffled with the fold seed and the
groups are dealt one after another, so every fold gets its share of every group and the
folds differ in size by at most one). Each candidate recipe trains once per fold and
training seed on the other folds, and is scored on the held-out fold: a small validation
split (21 structures of mlearn Si) ranks recipes by chance, a whole data set held out
fold by fold does not. Figures are reported as mean ± standard deviation over the
(fold, seed) runs.

Runs go seed by seed, fold by fold, every candidate on a fold before the next fold, and
``out/cv.json`` is rewritten after each run, so a study stopped early still compares its
candidates on the same folds.
Runs live in ``out/<candidate>/fold<k>_seed<s>``; a repeated call reuses finished runs,
resumes killed ones (:func:`ase_gnnp.workflows.runs.train_run`) and refuses runs that
were asked with other options or structures. Several runs can go in parallel processes
(``jobs``), each with ``threads`` torch threads.

A budget in minutes can be honoured in two ways: each run trains for that long
(``max_minutes``, what ``ase-gnnp train`` does), which is fair only on an otherwise idle
machine; or (``calibrate_threads``) the budget is converted once per candidate into the
number of epochs that one run with ``calibrate_threads`` threads completes in that time,
measured up front on an idle machine, so that the runs themselves may share the machine
and resume without their schedule depending on its load.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from ase import Atoms

from ase_gnnp.data import config_types
from ase_gnnp.train import TrainConfig

__all__ = [
    "METRICS",
    "CVRun",
    "cross_validate",
    "fold_indices",
    "plot_cv",
    "summarize",
]

#: figures averaged over the runs of a candidate (eV/atom, eV/Å, eV/Å³)
METRICS = (
    "energy_mae_per_atom",
    "energy_rmse_per_atom",
    "force_mae",
    "force_rmse",
    "stress_mae",
    "stress_rmse",
)
RESULT_FILE = "cv_result.json"


def fold_indices(groups: Sequence[str], folds: int, seed: int) -> list[np.ndarray]:
    """Indices of the structures in each of ``folds`` folds, stratified by group.

    Parameters
    ----------
    groups
        One group name per structure (e.g. ``config_type``).
    folds
        Number of folds, at least 2 and at most the number of structures.
    seed
        Seed of the shuffle (``numpy.random.default_rng``).

    Returns
    -------
    list of numpy.ndarray
        Sorted indices per fold; every structure is in exactly one fold.
    """
    groups = [str(g) for g in groups]
    if not isinstance(folds, int) or not 2 <= folds <= len(groups):
        raise ValueError(
            f"folds must be an integer in [2, number of structures = {len(groups)}], got {folds!r}"
        )
    rng = np.random.default_rng(seed)
    order: list[int] = []
    for name in sorted(set(groups)):
        members = np.array([i for i, g in enumerate(groups) if g == name])
        order += rng.permutation(members).tolist()
    return [np.array(sorted(order[k::folds]), dtype=int) for k in range(folds)]


@dataclass(frozen=True)
class CVRun:
    """One training run of a candidate: fold ``fold`` held out, training seed ``seed``."""

    candidate: str
    fold: int
    seed: int
    config: TrainConfig

    @property
    def name(self) -> str:
        return f"fold{self.fold}_seed{self.seed}"


def _candidate_configs(base: TrainConfig, candidates: dict[str, dict]) -> dict[str, TrainConfig]:
    configs = {}
    for name, changes in candidates.items():
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"candidate names must be plain folder names, got {name!r}")
        changes = dict(changes or {})
        model = changes.pop("model", None)
        if isinstance(model, dict):
            changes.update({f"model_{k}": v for k, v in model.items()})
        configs[name] = base.updated(**changes)
    return configs


def _run_one(
    run: CVRun,
    train: list[Atoms],
    test: list[Atoms],
    out: Path,
    threads: int,
    transfer: list[Atoms] | None = None,
) -> dict:
    """Train ``run`` on ``train`` in ``out`` (reused or resumed) and score it on ``test``
    (and on ``transfer``, structures no fold trains on; a finished run that was not scored
    on them yet is scored now)."""
    import torch

    from ase_gnnp.checkpoint import load_model
    from ase_gnnp.evaluate import evaluate_structures
    from ase_gnnp.perf.allocator import tune_cpu_allocator
    from ase_gnnp.workflows.runs import train_run

    def scores(model, frames: list[Atoms]) -> dict:
        metrics = evaluate_structures(model, frames, run.config.keys)
        return {k: v for k, v in metrics.items() if k != "per_element"}

    torch.set_num_threads(threads)
    done = out / RESULT_FILE
    if done.is_file():
        result = json.loads(done.read_text())
        if transfer and "transfer" not in result:
            result["transfer"] = scores(load_model(out / "model.pt"), transfer)
            done.write_text(json.dumps(result, indent=2))
        return result
    tune_cpu_allocator()
    config = run.config.updated(threads=threads)
    path = train_run(config, train, out, hold_out=True, progress=False)
    model = load_model(path)
    state = json.loads((out / "run.json").read_text())
    result = {
        "candidate": run.candidate,
        "fold": run.fold,
        "seed": run.seed,
        "n_train": len(train),
        "n_test": len(test),
        **state,
        "test": scores(model, test),
    }
    if transfer:
        result["transfer"] = scores(model, transfer)
    done.write_text(json.dumps(result, indent=2))
    return result


#: options that set the cost of an epoch: candidates that agree on them share a calibration
COST_OPTIONS = (
    "model",
    "batch_size",
    "val_fraction",
    "val_data",
    "dtype",
    "gradient_checkpointing",
    "element_weight_exponent",
    "element_weight_cap",
    "element_weight_scope",
    "config_types",
    "elements",
    "relative_energy_key",
)
#: epochs of a calibration run; all but the first (warm-up) are timed
CALIBRATION_EPOCHS = 5


def _cost_key(config: TrainConfig) -> str:
    values = {k: v for k, v in config.to_dict().items() if k in COST_OPTIONS}
    values["stress"] = config.stress_weight > 0
    return json.dumps(values, sort_keys=True)


def _calibrated_epochs(
    config: TrainConfig, frames: list[Atoms], minutes: float, threads: int, out: Path, study: Path
) -> int:
    """Epochs that ``config`` completes in ``minutes`` on ``frames`` with ``threads`` threads,
    from the mean time of its epochs after the first (a warm-up). Kept in
    ``out/calibration.json``, and in ``study/calibrations.json`` for every candidate with the
    same cost (:data:`COST_OPTIONS`), so that equally expensive candidates get equal epochs."""
    record = out / "calibration.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        if saved["minutes"] == minutes and saved["threads"] == threads:
            return int(saved["epochs"])
    shared = study / "calibrations.json"
    table = json.loads(shared.read_text()) if shared.is_file() else {}
    key = f"{threads} threads: {_cost_key(config)}"
    if key not in table:
        import torch

        from ase_gnnp.perf.allocator import tune_cpu_allocator
        from ase_gnnp.workflows.runs import train_run

        torch.set_num_threads(threads)
        tune_cpu_allocator()
        scratch = out / "calibration_run"
        config = config.updated(epochs=CALIBRATION_EPOCHS, max_minutes=0.0, threads=threads)
        train_run(config, frames, scratch, hold_out=True, progress=False)
        with open(scratch / "metrics.csv") as fh:
            walls = [float(line.split(",")[-1]) for line in fh.readlines()[1:]]
        table[key] = (walls[-1] - walls[0]) / (len(walls) - 1)
        shared.write_text(json.dumps(table, indent=2))
    per_epoch = table[key]
    epochs = max(1, int(60.0 * minutes / per_epoch))
    out.mkdir(parents=True, exist_ok=True)
    record.write_text(
        json.dumps(
            {
                "minutes": minutes,
                "threads": threads,
                "epochs": epochs,
                "seconds_per_epoch": per_epoch,
            },
            indent=2,
        )
    )
    return epochs


def cross_validate(
    base: TrainConfig,
    frames: Sequence[Atoms],
    candidates: dict[str, dict],
    out: str | Path,
    folds: int = 5,
    seeds: Sequence[int] = (0,),
    fold_seed: int = 0,
    jobs: int = 1,
    threads: int = 1,
    calibrate_threads: int = 0,
    progress: bool = True,
    transfer: Sequence[Atoms] | None = None,
) -> dict:
    """Cross-validate candidate recipes; returns (and writes ``out/cv.json``) the report.

    Parameters
    ----------
    base
        Training options every candidate starts from (its ``data`` and ``out`` are set per
        run; ``max_minutes`` is the budget of each run).
    frames
        The labelled structures (all of them; the folds are drawn here).
    candidates
        Name → option changes (TrainConfig field names, ``model_<name>`` or a ``model``
        mapping for the architecture); ``{"recipe": {}}`` runs ``base`` itself.
    out
        Study folder.
    folds, seeds, fold_seed
        Number of folds, training seeds, and the seed of the fold assignment.
    jobs, threads
        Runs in parallel (processes) and torch threads per run.
    calibrate_threads
        If > 0, replace each candidate's ``max_minutes`` budget by the number of epochs a
        run with this many threads completes in that time, measured once per candidate
        before the runs start (on fold 0's training structures).
    transfer
        Labelled structures outside the training distribution (hotter MD, other
        phases), never trained on: every run is also scored on all of them, so that
        candidates can be compared beyond the data they learn from (``"transfer"`` in
        each run and candidate summary).

    Returns
    -------
    dict
        ``folds``, ``seeds``, ``fold_seed``, ``fold_sizes``, ``runs`` (every run's result)
        and ``candidates`` (:func:`summarize` per candidate, in the order given).
    """
    out = Path(out)
    frames = list(frames)
    transfer = list(transfer) if transfer else None
    parts = fold_indices(config_types(frames), folds, fold_seed)
    configs = _candidate_configs(base, candidates)
    out.mkdir(parents=True, exist_ok=True)
    if calibrate_threads:
        if not base.max_minutes:
            raise ValueError("calibrate_threads converts a max_minutes budget: set max_minutes")
        train0 = [frames[i] for k, p in enumerate(parts) if k != 0 for i in p]
        for name, config in configs.items():
            epochs = _calibrated_epochs(
                config, train0, config.max_minutes, calibrate_threads, out / name, out
            )
            configs[name] = config.updated(epochs=epochs, max_minutes=0.0)
            if progress:
                print(
                    f"{name}: {config.max_minutes:g} min with {calibrate_threads} threads "
                    f"= {epochs} epochs",
                    flush=True,
                )
    # seed, then fold, then candidate: a study stopped early has every candidate on the
    # same folds, so its partial report compares them fairly
    runs = [
        CVRun(name, k, seed, config.updated(seed=seed))
        for seed in seeds
        for k in range(folds)
        for name, config in configs.items()
    ]

    def work(run: CVRun) -> tuple:
        test = [frames[i] for i in parts[run.fold]]
        train = [frames[i] for k, p in enumerate(parts) if k != run.fold for i in p]
        return run, train, test, out / run.candidate / run.name, threads, transfer

    results: list[dict] = []
    start = time.perf_counter()

    def report_now() -> dict:
        return _report(results, runs, configs, base, folds, seeds, fold_seed, parts, len(frames))

    def record(result: dict) -> None:
        results.append(result)
        _report_progress(progress, len(results), len(runs), result, start)
        # written after every run, so that a study stopped early still has its figures
        (out / "cv.json").write_text(json.dumps(report_now(), indent=2))

    if jobs <= 1:
        for run in runs:
            record(_run_one(*work(run)))
    else:
        context = get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=context,
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = [pool.submit(_run_one, *work(run)) for run in runs]
            for future in as_completed(futures):
                record(future.result())
    return report_now()


def _report(
    results: list[dict],
    runs: list[CVRun],
    configs: dict[str, TrainConfig],
    base: TrainConfig,
    folds: int,
    seeds: Sequence[int],
    fold_seed: int,
    parts: list[np.ndarray],
    n_structures: int,
) -> dict:
    """The study's report over the runs finished so far (``complete`` once all are)."""
    order = {(r.candidate, r.seed, r.fold): i for i, r in enumerate(runs)}
    results = sorted(results, key=lambda r: order[(r["candidate"], r["seed"], r["fold"])])
    return {
        "folds": folds,
        "seeds": list(seeds),
        "fold_seed": fold_seed,
        "fold_sizes": [len(p) for p in parts],
        "n_structures": n_structures,
        "complete": len(results) == len(runs),
        "runs_done": len(results),
        "runs_total": len(runs),
        "runs": results,
        "candidates": {
            name: summarize([r for r in results if r["candidate"] == name])
            | {"options": _differences(base, configs[name])}
            for name in configs
            if any(r["candidate"] == name for r in results)
        },
    }


def _exit_with_parent(parent: int, interval: float = 2.0) -> None:
    """Worker initializer: end this process once ``parent`` is gone (a ``kill`` of the
    ``ase-gnnp cv`` process would otherwise leave its trainings running, still writing to
    the run folders that a repeated command resumes)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _differences(base: TrainConfig, config: TrainConfig) -> dict:
    a, b = base.to_dict(), config.to_dict()
    diff = {k: b[k] for k in b if k not in ("model", "seed", "out", "data") and a[k] != b[k]}
    diff.update({f"model_{k}": v for k, v in b["model"].items() if a["model"].get(k) != v})
    return diff


def _report_progress(progress: bool, done: int, total: int, result: dict, start: float) -> None:
    if not progress:
        return
    t = result["test"]
    print(
        f"[{done}/{total}, {(time.perf_counter() - start) / 60:.1f} min] {result['candidate']} "
        f"fold {result['fold']} seed {result['seed']}: F {1000 * t['force_mae']:.1f} meV/Å, "
        f"E {1000 * t['energy_mae_per_atom']:.2f} meV/atom ({result['epochs']} epochs)",
        flush=True,
    )


def summarize(results: Sequence[dict]) -> dict:
    """Mean, standard deviation (``ddof=1``; 0 for one run), min and max of
    :data:`METRICS` over the runs (and over their ``"transfer"`` scores, where runs have
    them), and the same per ``config_type`` for the force MAE."""
    summary: dict = {"n_runs": len(results)}
    for key in METRICS:
        values = [r["test"][key] for r in results if key in r["test"]]
        if values:
            summary[key] = _stats(values)
    groups = sorted({g for r in results for g in r["test"].get("per_config_type", {})})
    summary["per_config_type"] = {
        g: {
            key: _stats(values)
            for key in ("force_mae", "energy_mae_per_atom")
            if (
                values := [
                    r["test"]["per_config_type"][g][key]
                    for r in results
                    if key in r["test"].get("per_config_type", {}).get(g, {})
                ]
            )
        }
        for g in groups
    }
    transfer = {
        key: _stats(values)
        for key in METRICS
        if (values := [r["transfer"][key] for r in results if key in r.get("transfer", {})])
    }
    if transfer:
        summary["transfer"] = transfer
    summary["epochs"] = _stats([r["epochs"] for r in results])
    return summary


def _stats(values: Sequence[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "min": float(arr.min()), "max": float(arr.max())}


def format_report(report: dict) -> str:
    """Table of the candidates: force, energy and stress MAE as mean ± std (and the force
    MAE on the transfer structures, where scored)."""
    transfer = any("transfer" in s for s in report["candidates"].values())
    lines = [
        f"{report['folds']}-fold cross-validation over {report['n_structures']} structures "
        f"(fold seed {report['fold_seed']}), seeds {report['seeds']}; mean ± std over runs",
        f"{'candidate':<24}{'runs':>5}{'F MAE meV/Å':>18}{'E MAE meV/atom':>18}"
        f"{'S MAE meV/Å³':>16}{'epochs':>8}" + (f"{'transfer F MAE':>18}" if transfer else ""),
    ]

    def cell(summary: dict, key: str, width: int) -> str:
        if key not in summary:
            return f"{'-':>{width}}"
        s = summary[key]
        return f"{1000 * s['mean']:>{width - 8}.2f} ± {1000 * s['std']:<5.2f}"

    for name, s in report["candidates"].items():
        lines.append(
            f"{name:<24}{s['n_runs']:>5}{cell(s, 'force_mae', 18)}"
            f"{cell(s, 'energy_mae_per_atom', 18)}{cell(s, 'stress_mae', 16)}"
            f"{s['epochs']['mean']:>8.0f}"
            + (cell(s.get("transfer", {}), "force_mae", 18) if transfer else "")
        )
    return "\n".join(lines)


def plot_cv(report: dict, path: str | Path) -> Path:
    """Bar chart of the candidates' force and energy MAE (mean ± std) to ``path``, and of
    the transfer force MAE where the runs were scored on transfer structures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["candidates"])
    panels = [
        ((), "force_mae", "force MAE (meV/Å)"),
        ((), "energy_mae_per_atom", "energy MAE (meV/atom)"),
    ]
    if any("transfer" in s for s in report["candidates"].values()):
        panels.append((("transfer",), "force_mae", "transfer force MAE (meV/Å)"))
    width = max(3.0 * len(panels), 0.6 * len(panels) * len(names) + 3)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4))
    for ax, (where, key, label) in zip(axes, panels):
        summaries = [report["candidates"][n] for n in names]
        for part in where:
            summaries = [s.get(part, {}) for s in summaries]
        means = [1000 * s.get(key, {}).get("mean", math.nan) for s in summaries]
        stds = [1000 * s.get(key, {}).get("std", 0.0) for s in summaries]
        ax.bar(range(len(names)), means, yerr=stds, capsize=4, color="tab:blue")
        # the run count under each name: a bar of one run has no spread to show
        counts = [report["candidates"][n].get("n_runs", 0) for n in names]
        ticks = [f"{n} ({k} run{'' if k == 1 else 's'})" for n, k in zip(names, counts)]
        ax.set_xticks(range(len(names)), ticks, rotation=30, ha="right")
        ax.set_ylabel(label)
    fig.suptitle(
        f"{report['folds']}-fold CV, {report['n_structures']} structures, seeds "
        f"{report['seeds']} (mean ± std over runs)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(os.fspath(path))
