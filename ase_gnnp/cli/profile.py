"""ase-gnnp profile: per-layer FLOPs, bytes and time on the machine's roofline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ase_gnnp.cli._common import DTYPES, add_model_options, read_structure, setup_threads

HELP = "roofline profile: per-layer FLOPs, bytes, time, compute- or memory-bound"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument(
        "--structure", default="Si", help="structure file, or a chemical symbol (bulk crystal)"
    )
    parser.add_argument("--supercell", type=int, nargs=3, default=[4, 4, 4], metavar="N")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per stage (median)")
    parser.add_argument("--matmul-size", type=int, default=None,
                        help="largest matrix side of the peak-FLOP/s benchmark "
                             "(default 2048 CPU, 8192 GPU)")  # fmt: skip
    parser.add_argument("--stream-mb", type=int, default=256,
                        help="array size (MiB) of the bandwidth benchmark")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for profile.json and profile.png (roofline plot)")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="overwrite files in --out")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    from ase_gnnp.checkpoint import load_model
    from ase_gnnp.perf.roofline import machine_peaks, plot_roofline, profile_model

    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if (args.matmul_size is not None and args.matmul_size < 1) or args.stream_mb < 1:
        raise ValueError(f"--matmul-size and --stream-mb must be positive, got "
                         f"{args.matmul_size} and {args.stream_mb}")  # fmt: skip
    if min(args.supercell) < 1:
        raise ValueError(f"--supercell needs three positive integers, got {args.supercell}")
    files = []
    if args.out is not None:
        files = [args.out / "profile.json", args.out / "profile.png"]
        existing = [str(f) for f in files if f.exists()]
        if existing and not args.force:
            raise FileExistsError(f"{existing} exist; pass --force to overwrite")
    setup_threads(args.threads)
    device = torch.device(args.device)
    model = load_model(args.model, device=device, dtype=DTYPES.get(args.dtype))
    atoms = read_structure(args.structure) * tuple(args.supercell)
    atoms.rattle(0.01, seed=0)
    peaks = machine_peaks(device, model.dtype, matmul_size=args.matmul_size,
                          stream_bytes=args.stream_mb * 2**20, repeats=args.repeats)  # fmt: skip
    report = profile_model(model, atoms, peaks, repeats=args.repeats)
    report["system"]["model_name"] = str(args.model)
    if files:
        args.out.mkdir(parents=True, exist_ok=True)
        files[0].write_text(json.dumps(report, indent=2))
        plot_roofline(report, files[1])
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(format_report(report))
    if files:
        print(f"wrote {files[0]} and {files[1]}")
    return 0


def format_report(report: dict) -> str:
    """The profile as a text table."""
    m, s = report["machine"], report["system"]
    lines = [
        f"{s.get('model_name', 'model')} on {s['formula']} ({s['atoms']} atoms, {s['edges']} "
        f"edges), {m['device_name']}, {m['dtype']}, {m['threads']} threads",
        f"machine: peak {m['peak_flops'] / 1e9:.1f} GFLOP/s (matrix product), bandwidth "
        f"{m['bandwidth'] / 1e9:.1f} GB/s (copy/triad), ridge {m['ridge']:.2f} FLOP/byte",
        f"{'stage':<24}{'MFLOP':>10}{'MB':>10}{'FLOP/B':>8}{'ms':>9}{'attain ms':>11}"
        f"{'GFLOP/s':>9}  bound",
    ]
    for st in [*report["stages"], {**report["total"], "name": "sum of stages"}]:
        if not st.get("counted", True):
            lines.append(f"{st['name']:<24}{'':>10}{'':>10}{'':>8}{1e3 * st['time_s']:>9.2f}"
                         f"{'':>11}{'':>9}  not counted (vesin, numpy)")  # fmt: skip
            continue
        note = "  (overhead-dominated)" if st["overhead"] else ""
        lines.append(
            f"{st['name']:<24}{st['flops'] / 1e6:>10.2f}{st['bytes'] / 1e6:>10.2f}"
            f"{st['intensity']:>8.2f}{1e3 * st['time_s']:>9.2f}{1e3 * st['attainable_s']:>11.3f}"
            f"{st['achieved_flops'] / 1e9:>9.2f}  {st['bound']}{note}"
        )
    t = report["measured"]
    lines.append(f"whole model call: forward {1e3 * t['forward_s']:.2f} ms, forward + forces "
                 f"+ stress {1e3 * t['forward_backward_s']:.2f} ms")  # fmt: skip
    return "\n".join(lines)
