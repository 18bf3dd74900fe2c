"""ase-gnnp cv: k-fold cross-validation of training recipes over whole structures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ase_gnnp.cli import train

HELP = (
    "cross-validate the training recipe (or candidate recipes) over whole structures: "
    "k folds stratified by config_type, several seeds, mean ± std; runs resume"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="training seeds (default 0)"
    )
    parser.add_argument(
        "--fold-seed", type=int, default=0, help="seed of the fold assignment (default 0)"
    )
    parser.add_argument(
        "--candidates",
        help="YAML mapping candidate name -> training options it changes (TrainConfig "
        "fields; 'model:' for the architecture); default: the recipe alone, as 'recipe'",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs in parallel processes (default 1)"
    )
    parser.add_argument(
        "--run-threads", type=int, default=1, help="torch threads per run (default 1)"
    )
    parser.add_argument(
        "--calibrate-threads",
        type=int,
        default=0,
        help="turn the --max-minutes budget into the epochs a run with this many threads "
        "completes in that time, measured once per candidate before the runs (on an idle "
        "machine); the runs then need not have the machine to themselves",
    )
    parser.add_argument(
        "--transfer",
        help="extxyz file of labelled structures outside the training distribution (e.g. "
        "hotter MD), never trained on: every run is also scored on them",
    )
    parser.add_argument("--study", default="cv", help="study folder (default ./cv)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    train.add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import yaml

    from ase_gnnp.train.config import read_frames
    from ase_gnnp.workflows.cv import cross_validate, format_report, plot_cv

    args.init_from = None
    base = train.config_from_args(args, announce=not args.json)
    candidates = {"recipe": {}}
    if args.candidates:
        candidates = yaml.safe_load(Path(args.candidates).read_text())
        if not isinstance(candidates, dict) or not candidates:
            raise ValueError(
                f"{args.candidates} must map candidate names to option changes, got "
                f"{type(candidates).__name__}"
            )
    if args.jobs < 1 or args.run_threads < 1:
        raise ValueError(
            f"--jobs and --run-threads must be >= 1, got {args.jobs}, {args.run_threads}"
        )
    frames = read_frames(base)
    transfer = read_frames(base, args.transfer) if args.transfer else None
    report = cross_validate(
        base,
        frames,
        candidates,
        args.study,
        folds=args.folds,
        seeds=args.seeds,
        fold_seed=args.fold_seed,
        jobs=args.jobs,
        threads=args.run_threads,
        calibrate_threads=args.calibrate_threads,
        progress=not args.json,
        transfer=transfer,
    )
    png = plot_cv(report, Path(args.study) / "cv.png")
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))
    else:
        print(format_report(report))
        print(f"saved {Path(args.study) / 'cv.json'} and {png}")
    return 0
