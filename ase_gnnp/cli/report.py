"""ase-gnnp report: studies that print figures, write JSON and a PNG plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ase_gnnp.cli._common import DTYPES, add_model_options, setup_threads

HELP = "reports with JSON and PNG output: mixing (alloy mixing energies), fairness"
TEACHERS = ("tersoff", "emt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="report", required=True)
    mixing = sub.add_parser("mixing", help="mixing energies of a binary alloy with convex hull "
                            "and verdict (ordering or phase separation)")  # fmt: skip
    add_model_options(mixing)
    mixing.add_argument("--teacher", choices=TEACHERS, help="a teacher instead of a model")
    mixing.add_argument("--elements", nargs=2, required=True, metavar=("A", "B"),
                        help="the alloy A_x B_(1-x)")  # fmt: skip
    mixing.add_argument("--lattice", choices=("fcc", "bcc", "diamond"), default="fcc")
    mixing.add_argument("--x", type=float, nargs="+",
                        default=[0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875],
                        help="compositions (fraction of A)")  # fmt: skip
    mixing.add_argument(
        "--supercell",
        type=int,
        nargs=3,
        default=[2, 2, 2],
        metavar=("NA", "NB", "NC"),
        help="of the conventional cubic cell",
    )
    mixing.add_argument("--samples", type=int, default=3, help="random occupations per x")
    mixing.add_argument("--fmax", type=float, default=0.01, help="relaxation threshold, eV/Å")
    mixing.add_argument("--seed", type=int, default=0)
    mixing.add_argument(
        "--out",
        type=Path,
        default=Path("mixing"),
        help="writes OUT.json and OUT.png (never over existing files)",
    )
    mixing.add_argument("--json", action="store_true", help="print the figures as JSON")

    fair = sub.add_parser("fairness", help="per-element errors with and without inverse "
                          "element-frequency weights, over several training seeds")  # fmt: skip
    fair.add_argument("--data", required=True, help="(imbalanced) training extxyz")
    fair.add_argument("--test", required=True, help="held-out extxyz (balanced)")
    fair.add_argument("--config", help="YAML of the base training options (model included)")
    fair.add_argument(
        "--candidates",
        nargs="+",
        default=["0.5:10", "1:10"],
        metavar="EXPONENT:CAP",
        help="weightings tried on the validation split",
    )
    fair.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    fair.add_argument("--max-minutes", type=float, help="per training run")
    fair.add_argument("--out", type=Path, required=True,
                      help="study folder (runs are reused or resumed); writes "
                           "fairness.json and fairness.png there")  # fmt: skip
    fair.add_argument("--threads", type=int, default=0)
    fair.add_argument("--json", action="store_true", help="print the figures as JSON")


def _calculator(args: argparse.Namespace):
    if args.teacher == "tersoff":
        from ase_gnnp.teachers import tersoff_sige

        return tersoff_sige()
    if args.teacher == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    from ase_gnnp.calculator import GNNPCalculator

    return GNNPCalculator(args.model, device=args.device, dtype=DTYPES[args.dtype or "float64"])


def _candidate(text: str) -> tuple[float, float]:
    exponent, _, cap = text.partition(":")
    try:
        return float(exponent), float(cap or 10.0)
    except ValueError:
        raise ValueError(f"--candidates takes EXPONENT:CAP, e.g. 1:10, got {text!r}") from None


def _fairness(args: argparse.Namespace) -> int:
    from ase_gnnp.config import ModelConfig
    from ase_gnnp.train import TrainConfig
    from ase_gnnp.workflows.fairness import fairness_study, plot_fairness

    small = ModelConfig(cutoff=5.0, channels=16, lmax=1, num_layers=2)
    base = TrainConfig.from_yaml(args.config) if args.config else TrainConfig(model=small)
    changes = {"data": args.data, "threads": args.threads or base.threads}
    if args.max_minutes is not None:
        changes["max_minutes"] = args.max_minutes
    base = base.updated(**changes)
    candidates = [_candidate(c) for c in args.candidates]
    report = fairness_study(base, args.test, args.out, candidates, args.seeds,
                            progress=not args.json)  # fmt: skip
    (args.out / "fairness.json").write_text(json.dumps(report, indent=2))
    plot_fairness(report, args.out / "fairness.png")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"chosen on validation: exponent {report['chosen']['exponent']:g}, cap "
          f"{report['chosen']['cap']:g}")  # fmt: skip
    for label in ("baseline", "weighted"):
        r = report[label]
        print(f"  {label:<9} worst element {1000 * r['worst']['mean']:.1f} ± "
              f"{1000 * r['worst']['std']:.1f} meV/Å, all atoms "
              f"{1000 * r['force_mae']['mean']:.1f} ± {1000 * r['force_mae']['std']:.1f}, "
              f"gap {1000 * r['gap']['mean']:.1f}")  # fmt: skip
    print(f"worst-element error reduced by {100 * report['worst_reduction']:.1f} %, "
          f"average error {100 * report['average_change']:+.1f} %; "
          f"{args.out / 'fairness.png'}")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    from ase_gnnp.workflows.mixing import mixing_energies, plot_mixing

    setup_threads(args.threads)
    if args.report == "fairness":
        return _fairness(args)
    paths = [args.out.with_suffix(".json"), args.out.with_suffix(".png")]
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise FileExistsError(f"{', '.join(existing)} exist; choose another --out")
    a, b = args.elements
    result = mixing_energies(_calculator(args), a, b, args.lattice, args.x, args.supercell,
                             args.samples, args.fmax, seed=args.seed,
                             progress=not args.json)  # fmt: skip
    label = args.teacher or args.model
    figures = {"source": label, **result.to_dict()}
    paths[0].write_text(json.dumps(figures, indent=2))
    plot_mixing({label: result}, paths[1])
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    xs, mean = result.mean_curve()
    print(f"{a}_x {b}_(1-x), {args.lattice}, {result.natoms} atoms, {args.samples} samples "
          f"per x, relaxed to {args.fmax} eV/Å ({label})")  # fmt: skip
    for x, e in zip(xs, mean):
        print(f"  x = {x:.3f}: {1000 * e:+8.2f} meV/atom")
    print(f"verdict: {result.verdict}; hull at x = {result.x[result.hull].round(3).tolist()}")
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0
