"""ase-gnnp report: studies that print figures, write JSON and a PNG plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ase_gnnp.cli._common import DTYPES, add_model_options, setup_threads
from ase_gnnp.train.weighting import SCOPES

HELP = ("reports with JSON and PNG output: transfer, mixing (alloy mixing energies), fairness, "
        "sample-efficiency")  # fmt: skip
TEACHERS = ("tersoff", "emt")
MLEARN = Path("../shared/data/mlearn")


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

    transfer = sub.add_parser("transfer", help="train on one system, measure on another "
                              "(zero-shot, reference refit, fine-tuned on N)")  # fmt: skip
    transfer.add_argument("--source", type=Path, default=MLEARN / "Si_train.extxyz",
                          help="source extxyz (default: mlearn Si)")  # fmt: skip
    transfer.add_argument("--target", type=Path, default=MLEARN / "Ge_train.extxyz",
                          help="target extxyz (default: mlearn Ge)")  # fmt: skip
    transfer.add_argument("--model", help="a model trained on the source (then --source is "
                          "its in-domain test set); default: train one")  # fmt: skip
    transfer.add_argument("--n-reference", type=int, default=5,
                          help="target structures for the reference-energy refit")  # fmt: skip
    transfer.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 25, 50],
                          help="fine-tuning set sizes N")  # fmt: skip
    _study_options(transfer, "transfer")

    efficiency = sub.add_parser("sample-efficiency", help="target error against N, fine-tuned "
                                "from a pretrained model and from scratch")  # fmt: skip
    efficiency.add_argument("--model", required=True, help="the pretrained model")
    efficiency.add_argument("--target", type=Path, default=MLEARN / "Ge_train.extxyz",
                            help="target extxyz, absent from the pretraining set "
                                 "(default: mlearn Ge)")  # fmt: skip
    efficiency.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50, 100, 200])
    efficiency.add_argument("--pool-size", type=int, help="target structures kept for "
                            "training (default: the largest size; the rest is the test "
                            "set); equal pool sizes share the split")  # fmt: skip
    efficiency.add_argument("--min-epochs", type=int, default=0, help="at least this many "
                            "passes over each training set (large sets are otherwise "
                            "under-trained by the fixed step budget)")  # fmt: skip
    efficiency.add_argument("--runs", nargs="+", choices=("finetune", "scratch"),
                            default=["finetune", "scratch"], help="train only these kinds "
                            "(to run them side by side; gather with both)")  # fmt: skip
    _study_options(efficiency, "sample_efficiency")

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
    fair.add_argument(
        "--scope",
        choices=SCOPES,
        help="weigh whole structures' losses, the force errors of the rare atoms, how "
        "often structures are drawn (with replacement), or how often they repeat in an "
        "epoch that keeps every structure (then also trains an unweighted same-steps "
        "control) (default: the config's element_weight_scope, else structure)",
    )
    fair.add_argument(
        "--balanced",
        type=Path,
        help="a training set of the same kind without the imbalance: trained unweighted "
        "with every seed, it shows how much of the worst element's error the imbalance "
        "causes (what weighting could hope to remove)",
    )
    fair.add_argument("--max-minutes", type=float, help="per training run")
    fair.add_argument("--out", type=Path, required=True,
                      help="study folder (runs are reused or resumed); writes "
                           "fairness.json and fairness.png there")  # fmt: skip
    fair.add_argument("--threads", type=int, default=0)
    fair.add_argument("--json", action="store_true", help="print the figures as JSON")


def _study_options(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--config", help="YAML of the training options (model included) for "
                        "runs from scratch; default: a small model")  # fmt: skip
    parser.add_argument("--freeze", default="equivariant",
                        help="fine-tuning freeze mode (see ase-gnnp finetune)")  # fmt: skip
    parser.add_argument("--finetune-lr", type=float, default=2e-3)
    parser.add_argument("--steps", type=int, default=300,
                        help="optimizer steps of every fine-tuning or size-N run")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="target split and training seed")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(name),
                        help=f"study folder (runs are reused or resumed); writes {name}.json "
                             f"and {name}.png there")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def _write_study(report: dict, folder: Path, name: str, plot, as_json: bool) -> bool:
    """Write ``folder/name.json`` and ``folder/name.png``; print the JSON if asked (then
    the caller prints nothing else)."""
    (folder / f"{name}.json").write_text(json.dumps(report, indent=2))
    plot(report, folder / f"{name}.png")
    if as_json:
        print(json.dumps(report, indent=2))
    return as_json


def _study_configs(args: argparse.Namespace):
    """Training options for runs from scratch and for fine-tuning."""
    from ase_gnnp.config import ModelConfig
    from ase_gnnp.train import TrainConfig

    small = ModelConfig(cutoff=5.0, channels=32, lmax=1, num_layers=2)
    base = (
        TrainConfig.from_yaml(args.config)
        if args.config
        else TrainConfig(
            model=small, energy_weight=100.0, batch_size=4, scheduler="cosine", patience=10**6
        )
    )
    base = base.updated(threads=args.threads or base.threads)
    return base, base.updated(freeze=args.freeze, lr=args.finetune_lr)


def _check_data(*paths: Path) -> None:
    for path in paths:
        if not Path(path).is_file():
            hint = (
                (
                    " (the default mlearn sets live in ../shared/data/mlearn/ beside the "
                    "repository; pass --source/--target)"
                )
                if MLEARN in Path(path).parents
                else ""
            )
            raise ValueError(f"data file {str(path)!r} does not exist{hint}")


def _transfer(args: argparse.Namespace) -> int:
    from ase_gnnp.workflows.transfer import plot_transfer, transfer_study

    _check_data(args.source, args.target)
    scratch, finetune = _study_configs(args)
    report = transfer_study(args.source, args.target, args.out, model=args.model,
                            source_config=scratch, finetune_config=finetune,
                            n_reference=args.n_reference, sizes=args.sizes, steps=args.steps,
                            seed=args.seed, progress=not args.json)  # fmt: skip
    if _write_study(report, args.out, "transfer", plot_transfer, args.json):
        return 0
    src, tgt = "+".join(report["elements"]["source"]), "+".join(report["elements"]["target"])
    print(f"transfer {src} -> {tgt} (new elements: {', '.join(report['elements']['new']) or 'none'}"
          f"; {report['settings']['n_target_test']} target test structures)")  # fmt: skip
    print(f"  force MAE in domain  {1000 * report['in_domain']['force_mae']:7.1f} meV/Å")
    print(f"  force MAE zero-shot  {1000 * report['zero_shot']['force_mae']:7.1f} meV/Å "
          f"(growth x{report['force_growth']:.2f})")  # fmt: skip
    refit = report["reference_refit"]
    print(f"  energy MAE zero-shot {1000 * report['zero_shot']['energy_mae_per_atom']:7.1f} "
          f"meV/atom raw, {1000 * refit['energy_mae_per_atom']:.1f} after refitting "
          f"{', '.join(refit['references']) or 'no'} reference energies on "
          f"{refit['n_structures']} structures")  # fmt: skip
    for row in report["finetune"]:
        print(f"  fine-tuned on N={row['n']:<4d} force {1000 * row['target']['force_mae']:7.1f} "
              f"meV/Å, energy {1000 * row['target']['energy_mae_per_atom']:6.1f} meV/atom; "
              f"{src} force after: {1000 * row['source']['force_mae']:.1f} meV/Å")  # fmt: skip
    print(f"wrote {args.out / 'transfer.json'} and {args.out / 'transfer.png'}")
    return 0


def _sample_efficiency(args: argparse.Namespace) -> int:
    from ase_gnnp.workflows.sample_efficiency import (
        plot_sample_efficiency,
        sample_efficiency_study,
    )

    _check_data(args.target)
    scratch, finetune = _study_configs(args)
    report = sample_efficiency_study(args.model, args.target, args.out, sizes=args.sizes,
                                     finetune_config=finetune, scratch_config=scratch,
                                     steps=args.steps, seed=args.seed,
                                     pool_size=args.pool_size, kinds=args.runs,
                                     min_epochs=args.min_epochs,
                                     progress=not args.json)  # fmt: skip
    if _write_study(report, args.out, "sample_efficiency", plot_sample_efficiency, args.json):
        return 0
    if report["target_in_source"]:
        print(f"warning: {report['target_in_source']} were in the pretraining data")
    print(f"{'N':>5} {'force MAE meV/Å':>24} {'energy MAE meV/atom':>24}")
    print(f"{'':>5} {'fine-tuned':>11} {'scratch':>12} {'fine-tuned':>11} {'scratch':>12}")
    rows = {label: {r["n"]: r for r in report[label]} for label in ("finetune", "scratch")}

    def cell(label: str, n: int, key: str, width: int) -> str:
        row = rows[label].get(n)
        return f"{1000 * row[key]:{width}.1f}" if row else f"{'-':>{width}}"

    for n in report["sizes"]:
        print(f"{n:5d} {cell('finetune', n, 'force_mae', 11)} {cell('scratch', n, 'force_mae', 12)}"
              f" {cell('finetune', n, 'energy_mae_per_atom', 11)}"
              f" {cell('scratch', n, 'energy_mae_per_atom', 12)}")  # fmt: skip
    for name, label in (("reduction_force", "force"), ("reduction_energy", "energy")):
        if not report[name]:
            continue
        diff = ", ".join(f"{100 * d:+.1f} %" for d in report[f"relative_difference_{label}"])
        print(f"fine-tuned vs scratch {label} error at equal N: {diff}")
        if not report[f"scratch_decreasing_{label}"]:
            print(f"warning: the scratch {label} error does not fall with N (noise or an "
                  f"under-trained large set): reduction factors are not meaningful")  # fmt: skip
        text = ", ".join(
            f"N={r['n']}: x{r['factor']:.1f}{' (extrapolated)' if r['extrapolated'] else ''}"
            if r["factor"] is not None
            else f"N={r['n']}: at least x{r['at_least']:.1f}"
            if r["at_least"] is not None
            else f"N={r['n']}: n/a"
            for r in report[name]
        )
        print(f"data reduction at equal {label} error: {text}")
    print(f"wrote {args.out / 'sample_efficiency.json'} and {args.out / 'sample_efficiency.png'}")
    return 0


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
    from ase_gnnp.workflows.fairness import SCOPE_WORDS, fairness_study, plot_fairness

    small = ModelConfig(cutoff=5.0, channels=16, lmax=1, num_layers=2)
    base = TrainConfig.from_yaml(args.config) if args.config else TrainConfig(model=small)
    changes = {"data": args.data, "threads": args.threads or base.threads}
    if args.scope is not None:
        changes["element_weight_scope"] = args.scope
    if args.max_minutes is not None:
        changes["max_minutes"] = args.max_minutes
    base = base.updated(**changes)
    candidates = [_candidate(c) for c in args.candidates]
    report = fairness_study(base, args.test, args.out, candidates, args.seeds,
                            progress=not args.json, balanced=args.balanced)  # fmt: skip
    if _write_study(report, args.out, "fairness", plot_fairness, args.json):
        return 0
    print(f"chosen on validation: exponent {report['chosen']['exponent']:g}, cap "
          f"{report['chosen']['cap']:g}, {SCOPE_WORDS[report['chosen']['scope']]}")  # fmt: skip
    for label in ("baseline", "weighted", "same_steps", "balanced"):
        if label not in report:
            continue
        r = report[label]
        print(f"  {label:<10} worst element {1000 * r['worst']['mean']:.1f} ± "
              f"{1000 * r['worst']['std']:.1f} meV/Å, all atoms "
              f"{1000 * r['force_mae']['mean']:.1f} ± {1000 * r['force_mae']['std']:.1f}, "
              f"gap {1000 * r['gap']['mean']:.1f}")  # fmt: skip
    print(f"worst-element error reduced by {100 * report['worst_reduction']:.1f} %, "
          f"average error {100 * report['average_change']:+.1f} %; "
          f"{args.out / 'fairness.png'}")  # fmt: skip
    if "same_steps" in report:
        print(f"against the unweighted baseline trained for as many steps "
              f"({report['same_steps']['epochs']} epochs, x{report['steps_factor']:.2f}): "
              f"worst-element error reduced by {100 * report['same_steps_worst_reduction']:.1f} "
              f"%, average error {100 * report['same_steps_average_change']:+.1f} %")  # fmt: skip
    if "balanced" in report:
        print(f"balanced training set (no weighting): worst-element error reduced by "
              f"{100 * report['balanced_worst_reduction']:.1f} %, the share of it the "
              f"imbalance causes")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    from ase_gnnp.workflows.mixing import mixing_energies, plot_mixing

    setup_threads(args.threads)
    if args.report == "fairness":
        return _fairness(args)
    if args.report == "transfer":
        return _transfer(args)
    if args.report == "sample-efficiency":
        return _sample_efficiency(args)
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
