"""ase-gnnp bench memory / checkpointing: peak step memory, its scaling, the largest system
that fits a budget, and what per-layer gradient checkpointing saves and costs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ase_gnnp.cli._common import DTYPES, setup_threads

HELPS = {
    "memory": "peak memory of a training / inference step against lmax and depth (fits), "
              "and the largest Si cell that fits a memory budget",
    "checkpointing": "training-step memory saved and time added by per-layer gradient "
                     "checkpointing, at several depths",
}  # fmt: skip
MIB = 2.0**20


def study_paths(out: Path, name: str, force: bool) -> tuple[Path, Path]:
    """``out/name.json`` and ``out/name.png``; FileExistsError if one exists and not
    ``force`` (checked before the study runs)."""
    paths = (Path(out) / f"{name}.json", Path(out) / f"{name}.png")
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(existing)} exist; choose another --out or pass --force")
    Path(out).mkdir(parents=True, exist_ok=True)
    return paths


def add_common_options(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--device", default="cpu", help="cpu (each point measured in a fresh "
                        "process) or cuda")  # fmt: skip
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=Path(name),
                        help=f"folder; writes {name}.json and {name}.png there")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def _architecture_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--cutoff", type=float, default=5.0, help="Å")
    parser.add_argument("--atoms", type=int, default=512, help="about this many Si atoms")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per point")


def add_arguments_memory(parser: argparse.ArgumentParser) -> None:
    _architecture_options(parser)
    parser.add_argument("--lmax", type=int, nargs="+", default=[0, 1, 2, 3],
                        help="lmax values (at --fixed-layers)")  # fmt: skip
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6],
                        help="depths (at --fixed-lmax)")  # fmt: skip
    parser.add_argument("--fixed-lmax", type=int, default=2)
    parser.add_argument("--fixed-layers", type=int, default=2)
    parser.add_argument("--grid", action="store_true", help="every (lmax, layers) pair")
    parser.add_argument("--modes", nargs="+", choices=("train", "infer"),
                        default=["train", "infer"])  # fmt: skip
    parser.add_argument("--edge-chunk", type=int, help="see set_performance_options")
    parser.add_argument("--budget-gb", type=float,
                        help="also the largest cell whose step fits this many GB (10^9 "
                             "bytes), per mode, at the fixed lmax and depth")  # fmt: skip
    parser.add_argument("--sizes", type=int, nargs="+", default=[216, 512, 1000],
                        help="cell sizes of the peak = a + b·N fit for --budget-gb")  # fmt: skip
    parser.add_argument("--verify", action="store_true",
                        help="measure at the predicted largest size")  # fmt: skip
    add_common_options(parser, "memory")


def add_arguments_checkpointing(parser: argparse.ArgumentParser) -> None:
    _architecture_options(parser)
    parser.add_argument("--lmax", type=int, default=2)
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4, 6])
    add_common_options(parser, "checkpointing")


def _options(args: argparse.Namespace) -> dict:
    return {"device": args.device, "dtype": DTYPES[args.dtype], "threads": args.threads,
            "repeats": args.repeats}  # fmt: skip


def run_memory(args: argparse.Namespace) -> int:
    from ase_gnnp.config import ModelConfig
    from ase_gnnp.perf.memory_studies import largest_system, memory_scan, plot_memory

    setup_threads(args.threads)
    paths = study_paths(args.out, "memory", args.force)
    options = {**_options(args), "edge_chunk": args.edge_chunk}
    report = memory_scan(args.lmax, args.layers, args.atoms, args.modes, args.channels,
                         args.fixed_lmax, args.fixed_layers, args.cutoff, grid=args.grid,
                         progress=not args.json, **options)  # fmt: skip
    if args.budget_gb is not None:
        config = ModelConfig(cutoff=args.cutoff, channels=args.channels, lmax=args.fixed_lmax,
                             num_layers=args.fixed_layers)  # fmt: skip
        report["largest_system"] = {
            mode: largest_system(config, args.budget_gb * 1e9, mode, args.sizes,
                                 verify=args.verify, progress=not args.json, **options)
            for mode in args.modes
        }  # fmt: skip
    paths[0].write_text(json.dumps(report, indent=2))
    plot_memory(report, paths[1])
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    s = report["settings"]
    print(f"peak step memory, Si cell, {s['channels']} channels, cutoff {s['cutoff']} Å, "
          f"{args.dtype}, {args.device}, {args.threads} thread(s)")  # fmt: skip
    print(f"{'lmax':>5}{'layers':>7}{'mode':>7}{'atoms':>7}{'edges':>9}{'peak MiB':>11}"
          f"{'baseline MiB':>14}{'step s':>9}")  # fmt: skip
    for r in report["points"]:
        print(f"{r['lmax']:>5}{r['num_layers']:>7}{r['mode']:>7}{r['natoms']:>7}"
              f"{r['num_edges']:>9}{r['peak_bytes'] / MIB:>11.1f}"
              f"{r['baseline_bytes'] / MIB:>14.1f}{r['step_s']:>9.3f}")  # fmt: skip
    for mode in s["modes"]:
        f = report["vs_layers"][mode].get("fit")
        if f:
            print(f"{mode}: {f['slope'] / MIB:.1f} MiB per layer + {f['intercept'] / MIB:.1f} "
                  f"MiB (lmax {s['fixed_lmax']}, from {report['vs_layers'][mode]['fit_from']} "
                  f"layers on; max rel. residual "
                  f"{100 * f['max_rel_residual']:.1f} %)")  # fmt: skip
        f = report["vs_lmax"][mode].get("fit")
        if f:
            print(f"{mode}: {f['prefactor'] / MIB:.2f} MiB × (lmax+1)^{f['exponent']:.2f} "
                  f"({s['fixed_layers']} layers; max rel. residual "
                  f"{100 * f['max_rel_residual']:.1f} %)")  # fmt: skip
    for mode, r in report.get("largest_system", {}).items():
        line = (f"{mode}: {r['bytes_per_atom'] / 1e3:.1f} kB per atom + "
                f"{r['intercept_bytes'] / 1e9:.2f} GB -> at most ~{r['natoms_max']} atoms in "
                f"{args.budget_gb} GB")  # fmt: skip
        v = r.get("verification")
        if v and "peak_total_bytes" in v:
            line += (f"; measured {v['natoms']} atoms: {v['peak_total_bytes'] / 1e9:.2f} GB "
                     f"({'fits' if v['fits'] else 'does NOT fit'}, prediction off by "
                     f"{100 * v['prediction_error']:+.1f} %)")  # fmt: skip
        elif v:
            line += f"; verification at {v['natoms']} atoms failed: {v['error'][:80]}"
        print(line)
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0


def run_checkpointing(args: argparse.Namespace) -> int:
    from ase_gnnp.config import ModelConfig
    from ase_gnnp.perf.memory_studies import checkpointing_study, plot_checkpointing

    setup_threads(args.threads)
    paths = study_paths(args.out, "checkpointing", args.force)
    config = ModelConfig(cutoff=args.cutoff, channels=args.channels, lmax=args.lmax)
    report = checkpointing_study(config, args.atoms, args.depths, progress=not args.json,
                                 **_options(args))  # fmt: skip
    paths[0].write_text(json.dumps(report, indent=2))
    plot_checkpointing(report, paths[1])
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"training step (energy + force loss, backward), {report['natoms']} Si atoms, "
          f"lmax {args.lmax}, {args.channels} channels, {args.dtype}, {args.device}")  # fmt: skip
    print(f"{'layers':>7}{'peak MiB off':>14}{'peak MiB on':>13}{'saved':>9}"
          f"{'step s off':>12}{'step s on':>11}{'time added':>12}")  # fmt: skip
    for r in report["rows"]:
        print(f"{r['num_layers']:>7}{r['peak_bytes_off'] / MIB:>14.1f}"
              f"{r['peak_bytes_on'] / MIB:>13.1f}{r['saved_pct']:>8.1f}%"
              f"{r['step_s_off']:>12.3f}{r['step_s_on']:>11.3f}"
              f"{r['time_added_pct']:>11.1f}%")  # fmt: skip
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0


# bench.py's dispatcher evaluates these fallbacks eagerly (getattr with a default)
HELP = HELPS["memory"]
add_arguments = add_arguments_memory
run = run_memory
