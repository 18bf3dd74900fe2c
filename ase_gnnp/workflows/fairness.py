"""Fair element weighting study: worst-element error with and without inverse-frequency
weights, settings chosen on the validation split, repeated over training seeds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase.io import read

from ase_gnnp.checkpoint import load_model
from ase_gnnp.evaluate import evaluate_structures
from ase_gnnp.train import TrainConfig, Trainer
from ase_gnnp.train.weighting import raw_element_weights
from ase_gnnp.workflows.runs import check_same_options, fingerprint

__all__ = ["SCOPE_WORDS", "fairness_study", "group_figures", "plot_fairness"]

#: How the study's text and plot name each element weight scope.
SCOPE_WORDS = {"structure": "per structure", "atom": "per atom",
               "sampling": "as drawing probabilities",
               "repeat": "as repeats per epoch"}  # fmt: skip


def group_figures(per_element: dict) -> dict:
    """Worst, best and mean-over-elements force MAE (eV/Å) and the worst − best gap."""
    mae = {e: m["force_mae"] for e, m in per_element.items()}
    worst, best = max(mae, key=mae.get), min(mae, key=mae.get)
    return {"worst_element": worst, "worst": mae[worst], "best_element": best,
            "best": mae[best], "gap": mae[worst] - mae[best],
            "mean_over_elements": float(np.mean(list(mae.values())))}  # fmt: skip


def _train(config: TrainConfig, test_frames, progress: bool) -> dict:
    """One training run (reused if its result file exists): validation and test figures."""
    out = Path(config.out)
    check_same_options(config, out, fine_tuning=False)
    paths = [config.data] if isinstance(config.data, str) else list(config.data)
    request = {"data_sha256": [fingerprint(p) for p in paths]}
    saved = out / "request.json"
    if saved.is_file() and json.loads(saved.read_text()) != request:
        raise ValueError(f"{out} holds a run on other training data; choose another study "
                         f"folder or remove that run")  # fmt: skip
    done = out / "fairness_run.json"
    if done.is_file():
        return json.loads(done.read_text())
    resume = (out / "checkpoint.pt").is_file()
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(request))
    trainer = (
        Trainer.resume(out, progress=progress) if resume else Trainer(config, progress=progress)
    )
    trainer.run()
    model = load_model(out / "model.pt")
    val = model.metadata["val_metrics"]
    test = evaluate_structures(model, test_frames)
    result = {
        "exponent": config.element_weight_exponent,
        "cap": config.element_weight_cap,
        "scope": config.element_weight_scope,
        "seed": config.seed,
        "val_per_element": val["per_element"],
        "val": group_figures(val["per_element"]),
        "test_per_element": test["per_element"],
        "test": group_figures(test["per_element"]) | {"force_mae": test["force_mae"]},
    }
    done.write_text(json.dumps(result, indent=2))
    return result


def fairness_study(
    base: TrainConfig,
    test: str | Path,
    out: str | Path,
    candidates: Sequence[tuple[float, float]] = ((0.5, 10.0), (1.0, 10.0)),
    seeds: Sequence[int] = (0, 1, 2),
    progress: bool = True,
    balanced: str | Path | None = None,
) -> dict:
    """Train without and with element weighting and compare per-element test errors.

    Each candidate ``(exponent, cap)`` is trained once (seed ``seeds[0]``); the one with
    the smallest worst-element force error on the validation split is chosen (the test
    split plays no part), then both the unweighted baseline and the chosen weighting are
    trained with every seed and evaluated on ``test``. The weights act as
    ``base.element_weight_scope`` says (per structure; per atom: runs named ``atom_...``;
    as drawing probabilities: ``sampling_...``; the unweighted baseline is the same run
    for all). Runs live in
    ``out/<name>/`` and
    are reused or resumed, so a killed study continues; a run asked with other options or
    other training data is a ``ValueError``, never silently reused.

    ``balanced``, an optional training set of the same kind without the imbalance
    (e.g. ``data/emt_fair_balanced.extxyz``), is trained unweighted with every seed
    (runs ``balanced_seed<s>``): the reference that says how much of the worst element's
    error the imbalance causes at all, i.e. what any weighting could hope to remove.

    With scope ``"repeat"`` the weighted runs' epochs are ``mean(w)`` times longer
    (:func:`ase_gnnp.train.weighting.repeat_counts`), so they take that many more
    optimiser steps; the unweighted baseline is then also trained for ``round(epochs *
    mean(w))`` epochs with every seed (runs ``p0_cap<c>_epochs<E>_seed<s>``), the
    same-steps control that says how much of the change the extra steps alone give.

    Returns
    -------
    dict
        ``candidates`` (validation figures), ``chosen``, and for ``baseline`` and
        ``weighted`` (and ``balanced`` if given): per-seed test figures and their mean ±
        std (worst-element MAE, mean over elements, overall force MAE, gap);
        ``worst_reduction`` and ``average_change`` (relative, from the seed means), and
        with ``balanced`` its ``balanced_worst_reduction`` against the baseline; with
        scope ``"repeat"`` ``same_steps`` (the control's figures), ``steps_factor``
        (``mean(w)``) and ``same_steps_worst_reduction`` and
        ``same_steps_average_change`` (weighted against the control).
    """
    out = Path(out)
    if balanced is not None and not Path(balanced).is_file():
        raise ValueError(f"balanced training set {str(balanced)!r} is not a file")
    test_frames = read(test, ":")

    def run(exponent: float, cap: float, seed: int, data=None, epochs=None) -> dict:
        scope = base.element_weight_scope if exponent > 0 else "structure"
        prefix = "" if scope == "structure" else f"{scope}_"
        name = prefix + f"p{exponent:g}_cap{cap:g}_seed{seed}"
        changes = {"element_weight_exponent": exponent, "element_weight_cap": cap,
                   "element_weight_scope": scope}  # fmt: skip
        if data is not None:
            name, changes = f"balanced_seed{seed}", {**changes, "data": str(data)}
        if epochs is not None:
            name = f"p{exponent:g}_cap{cap:g}_epochs{epochs}_seed{seed}"
            changes["epochs"] = epochs
        config = base.updated(out=str(out / name), seed=seed, **changes)
        return _train(config, test_frames, progress)

    tried = [run(p, c, seeds[0]) for p, c in candidates]
    chosen = min(tried, key=lambda r: r["val"]["worst"])
    report = {"candidates": [{k: r[k] for k in ("exponent", "cap", "val")} for r in tried],
              "chosen": {"exponent": chosen["exponent"], "cap": chosen["cap"],
                         "scope": base.element_weight_scope}}  # fmt: skip
    plan = [("baseline", 0.0, base.element_weight_cap, None, None),
            ("weighted", chosen["exponent"], chosen["cap"], None, None)]  # fmt: skip
    if balanced is not None:
        plan.append(("balanced", 0.0, base.element_weight_cap, balanced, None))
    if base.element_weight_scope == "repeat" and chosen["exponent"] > 0:
        paths = [base.data] if isinstance(base.data, str) else list(base.data)
        frames = [a for path in paths for a in read(path, ":")]
        factor = float(raw_element_weights(frames, chosen["exponent"], chosen["cap"]).mean())
        report["steps_factor"] = factor
        plan.append(("same_steps", 0.0, base.element_weight_cap, None,
                     round(base.epochs * factor)))  # fmt: skip
    for label, p, c, data, epochs in plan:
        runs = [run(p, c, s, data, epochs) for s in seeds]
        summary = {}
        for key in ("worst", "mean_over_elements", "force_mae", "gap"):
            values = np.array([r["test"][key] for r in runs])
            summary[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1))
                            if len(values) > 1 else 0.0}  # fmt: skip
        report[label] = {"runs": [r["test"] | {"seed": r["seed"], "per_element": {
            e: m["force_mae"] for e, m in r["test_per_element"].items()}} for r in runs],
            **summary}  # fmt: skip
        if epochs is not None:
            report[label]["epochs"] = epochs
    b, w = report["baseline"], report["weighted"]
    report["worst_reduction"] = 1 - w["worst"]["mean"] / b["worst"]["mean"]
    report["average_change"] = w["force_mae"]["mean"] / b["force_mae"]["mean"] - 1
    if balanced is not None:
        report["balanced_data"] = str(balanced)
        report["balanced_worst_reduction"] = (
            1 - report["balanced"]["worst"]["mean"] / b["worst"]["mean"]
        )
    if "same_steps" in report:
        ss = report["same_steps"]
        report["same_steps_worst_reduction"] = 1 - w["worst"]["mean"] / ss["worst"]["mean"]
        report["same_steps_average_change"] = w["force_mae"]["mean"] / ss["force_mae"]["mean"] - 1
    return report


def plot_fairness(report: dict, path: str | Path) -> Path:
    """Per-element test force MAE (mean ± std over seeds), baseline against weighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    elements = sorted(report["baseline"]["runs"][0]["per_element"])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = np.arange(len(elements))
    labels = [k for k in ("baseline", "weighted", "same_steps", "balanced") if k in report]
    width = 0.8 / len(labels)
    scope = SCOPE_WORDS[report["chosen"].get("scope", "structure")]
    texts = {"baseline": "no weighting",
             "weighted": f"weighted {scope} (exponent {report['chosen']['exponent']:g}, "
                         f"cap {report['chosen']['cap']:g})",
             "balanced": "no weighting, balanced training set (reference)"}  # fmt: skip
    if "same_steps" in report:
        texts["same_steps"] = (f"no weighting, {report['same_steps']['epochs']} epochs "
                               f"(the weighted runs' steps)")  # fmt: skip
    for k, label in enumerate(labels):
        values = np.array([[r["per_element"][e] for e in elements]
                           for r in report[label]["runs"]])  # fmt: skip
        std = values.std(axis=0, ddof=1) if len(values) > 1 else None
        ax.bar(x + width * (k - (len(labels) - 1) / 2), 1000 * values.mean(axis=0), width,
               yerr=None if std is None else 1000 * std, capsize=3,
               label=texts[label])  # fmt: skip
    ax.set_xticks(x, elements)
    ax.set_ylabel("test force MAE (meV/Å), mean ± std over seeds")
    title = (f"weighting: worst-element error {-100 * report['worst_reduction']:+.0f} %, "
             f"average {100 * report['average_change']:+.1f} %")  # fmt: skip
    if "balanced" in report:
        title += f"\nbalanced data: worst {-100 * report['balanced_worst_reduction']:+.0f} %"
    if "same_steps" in report:
        title += (f"\nagainst as many unweighted steps: worst "
                  f"{-100 * report['same_steps_worst_reduction']:+.0f} %, average "
                  f"{100 * report['same_steps_average_change']:+.1f} %")  # fmt: skip
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
