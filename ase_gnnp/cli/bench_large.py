"""ase-gnnp bench large: inference memory and time up to 10⁵ atoms; Ewald against PME."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ase_gnnp.cli._common import DTYPES, setup_threads
from ase_gnnp.cli.bench_memory import study_paths

HELP = ("inference (energy, forces, stress) memory and time on Si cells up to 10^5 atoms, "
        "with and without edge chunks; Ewald against PME cost")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="sige-small",
                        help="checkpoint or shipped model (its architecture)")  # fmt: skip
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 32768, 110592],
                        help="numbers of Si atoms (8 n^3)")  # fmt: skip
    parser.add_argument("--edge-chunk", type=int, default=262144)
    parser.add_argument("--unchunked-max", type=int, default=32768,
                        help="largest size also run with all edges at once")  # fmt: skip
    parser.add_argument("--coulomb-sizes", type=int, nargs="*", default=[64, 216, 512, 1000, 1728],
                        help="rock-salt sizes of the Ewald/PME timing (none: skip it)")  # fmt: skip
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("large"),
                        help="folder; writes large.json and large.png there")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    from ase_gnnp.checkpoint import load_model
    from ase_gnnp.perf.large import coulomb_scaling, large_inference, plot_large

    paths = study_paths(args.out, "large", args.force)
    setup_threads(args.threads)
    config = load_model(args.model).config
    report = {"model": str(args.model)}
    report["inference"] = large_inference(
        config, args.sizes, args.edge_chunk, args.unchunked_max, DTYPES[args.dtype],
        args.threads, args.device, progress=not args.json,
    )  # fmt: skip
    if args.coulomb_sizes:
        report["coulomb"] = coulomb_scaling(args.coulomb_sizes, progress=not args.json)
    paths[0].write_text(json.dumps(report, indent=2))
    plot_large(report, paths[1])
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    inf = report["inference"]
    print(f"{args.model} architecture, {inf['dtype']}, {inf['threads']} thread(s), "
          f"edge chunk {inf['edge_chunk']}: energy + forces + stress")  # fmt: skip
    print(f"{'atoms':>8}{'edges':>11}  {'variant':<10}{'peak GB':>9}{'kB/atom':>9}{'step s':>9}")
    for r in sorted(inf["runs"], key=lambda r: (r["natoms"], r["variant"])):
        peak = r["peak_total_bytes"]
        print(f"{r['natoms']:>8}{r['num_edges']:>11}  {r['variant']:<10}{peak / 1e9:>9.2f}"
              f"{peak / r['natoms'] / 1e3:>9.1f}{r['step_s']:>9.2f}")  # fmt: skip
    for variant, fit in inf["fits"].items():
        print(f"{variant}: {fit['slope'] / 1e3:.1f} kB per atom + {fit['intercept'] / 1e9:.2f} GB")
    if "coulomb" in report:
        c = report["coulomb"]
        print(f"{'atoms':>8}  {'method':<6}{'s':>10}")
        for r in c["rows"]:
            print(f"{r['natoms']:>8}  {r['method']:<6}{r['time_s']:>10.4f}")
        exps = ", ".join(f"{m} N^{e:.2f}" for m, e in c["exponent"].items())
        print(f"scaling: {exps}; PME faster from {c['crossover']} atoms; largest energy "
              f"difference {c['max_energy_difference']:.2e} eV/atom")  # fmt: skip
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0
