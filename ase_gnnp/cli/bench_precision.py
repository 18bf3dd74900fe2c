"""ase-gnnp bench precision: float64 / float32 / bf16 / fp16 autocast compared on speed,
force and energy error against float64, and NVE energy drift."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ase_gnnp.cli._common import setup_threads
from ase_gnnp.cli.bench_memory import study_paths

HELP = ("mixed precision (fp64, fp32, bf16/fp16 autocast): speed, force error vs fp64, "
        "NVE energy drift")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ase_gnnp.perf.precision import PRECISIONS, TEST_DATA

    parser.add_argument("--model", default="sige-small",
                        help="checkpoint file or shipped model name")  # fmt: skip
    parser.add_argument("--precisions", nargs="+", choices=list(PRECISIONS),
                        default=list(PRECISIONS))  # fmt: skip
    parser.add_argument("--data", type=Path, default=TEST_DATA,
                        help="extxyz of the error frames (default: sige_tersoff_test)")  # fmt: skip
    parser.add_argument("--frames", type=int, default=8, help="error frames (evenly spaced)")
    parser.add_argument("--speed-atoms", type=int, default=512, help="Si cell of the speed test")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--md-atoms", type=int, default=64, help="Si cell of the NVE runs")
    parser.add_argument("--steps", type=int, default=10_000, help="NVE steps per precision")
    parser.add_argument("--temperature", type=float, default=300.0, help="K, initial velocities")
    parser.add_argument("--timestep", type=float, default=1.0, help="fs")
    parser.add_argument("--interval", type=int, default=10, help="record E_tot every N steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=Path("precision"),
                        help="folder; writes precision.json and precision.png there")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    from ase_gnnp.perf.precision import plot_precision, precision_study

    setup_threads(args.threads)
    paths = study_paths(args.out, "precision", args.force)
    report = precision_study(
        args.model, args.precisions, args.data, args.frames, args.speed_atoms, args.warmup,
        args.repeats, args.md_atoms, args.steps, args.temperature, args.timestep,
        args.interval, args.device, args.seed, progress=not args.json,
    )  # fmt: skip
    paths[0].write_text(json.dumps(report, indent=2))
    plot_precision(report, paths[1])
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    s = report["settings"]
    print(f"model {report['model']}, {s['device']}, {s['threads']} thread(s); errors vs fp64 "
          f"on {s['n_frames']} frames; NVE {s['md_steps']} steps of {s['timestep_fs']} fs, "
          f"{s['temperature_K']:.0f} K")  # fmt: skip
    print(f"{'':6}{'atom-steps/s':>14}{'F MAE meV/Å':>13}{'F max meV/Å':>13}"
          f"{'E MAE meV/at':>14}{'drift meV/at/ps':>17}{'max|ΔE| meV/at':>16}")  # fmt: skip
    for name, r in report["precisions"].items():
        if r["status"] != "ok":
            print(f"{name:6}{r['status']}")
            continue
        e, nve = r["errors"], r["nve"]
        print(f"{name:6}{r['speed']['atom_steps_per_s']:>14.0f}{e['force_mae_meV_A']:>13.4f}"
              f"{e['force_max_meV_A']:>13.4f}{e['energy_mae_meV_atom']:>14.4f}"
              f"{nve['drift_meV_per_atom_per_ps']:>17.4f}"
              f"{nve['max_abs_deviation_meV_per_atom']:>16.4f}")  # fmt: skip
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0
