"""ase-gnnp uq: fit Mahalanobis statistics, calibrate conformal force balls, evaluate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ase_gnnp.cli._common import DTYPES, add_key_options, add_model_options, setup_threads

HELP = "uncertainty: fit latent Mahalanobis statistics, calibrate force balls, evaluate them"


def add_selection(parser: argparse.ArgumentParser) -> None:
    """``--config-types``, ``--elements`` and the label-key options (``--forces-key``...)."""
    add_key_options(parser)
    parser.add_argument(
        "--config-types",
        default="",
        help="use only structures of these config types, e.g. md300,md600",
    )
    parser.add_argument(
        "--elements", default="", help="only structures made of these elements alone, e.g. Si"
    )


def selection(args: argparse.Namespace) -> dict[str, list[str]]:
    """``--config-types`` and ``--elements`` as lists."""

    def names(text: str) -> list[str]:
        return [t.strip() for t in text.split(",") if t.strip()]

    return {"config_types": names(args.config_types), "elements": names(args.elements)}


def data_keys(args: argparse.Namespace) -> dict[str, str]:
    """The label keys given on the command line (``--forces-key`` ...), by label name."""
    from ase_gnnp.data import LABELS

    given = {name: getattr(args, f"{name}_key", None) for name in LABELS}
    return {name: key for name, key in given.items() if key is not None}


def read_data(path: str | list[str], chosen: dict, require=("forces",)) -> list:
    """Frames of ``path`` (one extxyz file or several) selected by ``chosen``
    (``config_types``, ``elements``, ``keys``), their labels moved to calculator results
    (so the default keys read them)."""
    from ase_gnnp.data import DataKeys, read_structures, select_frames, with_calculator_labels

    keys = DataKeys(**(chosen.get("keys") or {}))
    paths = [path] if isinstance(path, str) else list(path)
    frames = [a for p in paths for a in read_structures(p, keys, require=require)]
    frames = select_frames(frames, chosen.get("config_types") or [],
                           chosen.get("elements") or [], " + ".join(paths))  # fmt: skip
    return with_calculator_labels(frames, keys)


def read_selected(path: str, args: argparse.Namespace, require=("forces",)) -> list:
    return read_data(path, selection(args) | {"keys": data_keys(args)}, require)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="uq_command", required=True)
    fit = sub.add_parser("fit", help="fit per-element latent Mahalanobis statistics on the "
                         "model's training data and store them in the checkpoint")  # fmt: skip
    cal = sub.add_parser("calibrate", help="split-conformal calibration of force balls on "
                         "held-out labelled structures; stores q̂ in the checkpoint")  # fmt: skip
    ev = sub.add_parser("evaluate", help="coverage, ball sizes, score-error correlation and "
                        "out-of-distribution AUROC on labelled structures")  # fmt: skip
    for p in (fit, cal, ev):
        add_model_options(p, default=None)
        add_selection(p)
        p.add_argument("--batch-size", type=int, default=8)
    for p in (fit, cal):
        p.add_argument("--output", help="write the model here (default: update --model in "
                       "place; required for a shipped model)")  # fmt: skip
        p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    fit.add_argument("--data", required=True, help="the model's training data (extxyz)")
    cal.add_argument(
        "--data",
        required=True,
        help="held-out labelled extxyz, never trained on (split by structure)",
    )
    cal.add_argument(
        "--alpha",
        type=float,
        default=0.01,
        help="miscoverage: balls hold the true force with probability 1-alpha",
    )
    cal.add_argument("--score", choices=("mahalanobis", "constant"), default="mahalanobis",
                     help="difficulty score (constant: plain split conformal)")  # fmt: skip
    ev.add_argument("--data", required=True, help="held-out labelled extxyz (in distribution)")
    ev.add_argument("--ood", help="labelled extxyz of shifted structures, scored per config_type")
    ev.add_argument("--json", action="store_true", help="print figures as JSON")


def _output(args: argparse.Namespace) -> Path:
    from ase_gnnp.checkpoint import MODELS_DIR, resolve_model_path

    source = resolve_model_path(args.model)
    if args.output is None:
        if source.resolve().parent == MODELS_DIR:
            raise ValueError(f"{args.model!r} is a shipped model; give --output for the new file")
        return source
    out = Path(args.output)
    if out.exists() and out.resolve() != source.resolve() and not args.overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it")
    return out


def run(args: argparse.Namespace) -> int:
    from ase_gnnp.checkpoint import load_model, save_model

    setup_threads(args.threads)
    model = load_model(args.model, device=args.device, dtype=DTYPES.get(args.dtype))
    if args.uq_command == "evaluate":
        return _evaluate(model, args)
    out = _output(args)
    if args.uq_command == "fit":
        from ase_gnnp.uq import fit_mahalanobis, uq_statistics

        if uq_statistics(model).conformal is not None:
            print("note: the model's conformal calibration is dropped (it belongs to the old "
                  "statistics); run ase-gnnp uq calibrate again")  # fmt: skip
        stats = fit_mahalanobis(model, read_selected(args.data, args, require=()),
                                args.batch_size)  # fmt: skip
        shrink = ", ".join(f"{s:.3g}" for s in stats.shrinkage)
        print(f"Mahalanobis statistics of {stats.num_features} latent features for Z = "
              f"{stats.numbers.tolist()} ({stats.counts.tolist()} atoms; shrinkage {shrink}; "
              f"median training distance {stats.train_median:.3f})")  # fmt: skip
    else:
        from ase_gnnp.uq import calibrate_forces

        frames = read_selected(args.data, args)
        c = calibrate_forces(model, frames, args.alpha, args.score, batch_size=args.batch_size)
        c.source = {"data": args.data, **selection(args), "keys": data_keys(args)}
        print(f"conformal q̂ = {c.qhat:.5g} ({c.score} score, alpha {c.alpha:g}) from "
              f"{c.n_atoms} atoms in {c.n_structures} structures")  # fmt: skip
    save_model(model, out, getattr(model, "metadata", {}))
    print(f"wrote {out}")
    return 0


def _evaluate(model, args: argparse.Namespace) -> int:
    ood = read_data(args.ood, {"keys": data_keys(args)}) if args.ood else None
    from ase_gnnp.data import config_types
    from ase_gnnp.uq.report import uq_report

    groups = {}
    for atoms, group in zip(ood or [], config_types(ood or [])):
        groups.setdefault(group, []).append(atoms)
    report = uq_report(model, read_selected(args.data, args), dict(sorted(groups.items())))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"model {args.model}" + (f", {report['score']} score, alpha {report['alpha']:g}"
                                   if "alpha" in report else ", not calibrated"))  # fmt: skip
    rows = [("in distribution", report["in_distribution"])]
    rows += list(report["shifted"].items())
    print(f"{'set':<16}{'n':>5}{'F MAE':>9}{'coverage [95% CI]':>25}{'R/MAE':>7}"
          f"{'Spearman':>9}{'AUROC max/mean':>16}")  # fmt: skip
    for name, r in rows:
        cov = r.get("coverage")
        cov_text = f"{cov['coverage']:.4f} [{cov['low']:.3f}, {cov['high']:.3f}]" if cov else "-"
        ratio = f"{r['mean_radius_over_mae']:.2f}" if cov else "-"
        au = f"{r['auroc_max']:.3f}/{r['auroc_mean']:.3f}" if "auroc_max" in r else "-"
        print(f"{name:<16}{r['n_structures']:>5}{r['force_mae']:>9.4f}{cov_text:>25}{ratio:>7}"
              f"{r['spearman']:>9.3f}{au:>16}")  # fmt: skip
    return 0
