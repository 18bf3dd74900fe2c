"""Scale-out of path-integral MD through i-PI: 1, 2 and 4 clients sharing the beads.

i-PI hands the beads of each step to whichever of its socket clients is free, so N
``ase-gnnp ipi`` clients compute up to N beads at once. This script runs the same PIMD
(diamond Si, the shipped model ``sige-small``, NVT with PILE-L at 100 K, 8 beads, a few
warm-up steps and then the timed ones) with 1, 2 and 4 clients of 1 torch thread each,
and a reference of 1 client with 2 threads. It reports the wall time per step (from the
arrival of i-PI's properties lines after the warm-up, so launching and connecting are not
counted), the speed-up over 1 client, the ideal speed-ups (beads: P / ceil(P / N); and
that capped by the cores), and checks that every run with the same threads per client
gives the same trajectory bit for bit (final bead positions from i-PI's RESTART and all
properties, written with ``floatformat='%.16e'``).

Threads: clients × threads beyond the free cores slow every client down (NOTES: a
GNN forward+backward oversubscribed ran 30-100× slower), so each client gets 1 thread;
4 clients on a 2-core machine measure the oversubscribed case on purpose. i-PI itself
is a further process (mostly waiting on its sockets). The clients inherit the
environment: with other jobs on the cores, ``OMP_WAIT_POLICY=PASSIVE`` stops the threads
of a multi-threaded client from spinning while they wait for each other (measured here
under load: 1 client × 2 threads 1.43 → 0.20 s/step).

    python tutorials/ipi_clients.py                        # 64 atoms, 8 beads, 1/2/4 clients
    python tutorials/ipi_clients.py --clients 1 2 --supercell 3 --steps 10
    python tutorials/ipi_clients.py --quick                # 8 atoms, 2 beads, 3 steps (CI)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import uuid
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

from ase_gnnp.integrations.ipi import (  # noqa: E402
    read_properties,
    read_restart_positions,
    run_with_clients,
    write_pimd_input,
)

ROOT = Path(__file__).resolve().parents[1]


def supercell_for(atoms: int | None, supercell: int | None) -> int:
    """Repeats n of the 8-atom cubic diamond cell (8 n³ atoms) from --atoms or --supercell."""
    if atoms is not None:
        n = round((atoms / 8) ** (1 / 3))
        if atoms < 8 or 8 * n**3 != atoms:
            raise ValueError(f"--atoms must be 8 n³ (8, 64, 216, 512, ...), got {atoms}")
        return n
    if supercell is None or supercell < 1:
        raise ValueError(f"--supercell must be a positive integer, got {supercell}")
    return supercell


def ideal_speedup(beads: int, clients: int, cores: int | None = None) -> float:
    """Speed-up over 1 client if beads were the only limit (the slowest client computes
    ceil(P/N) beads per step), capped by ``cores`` when given."""
    bound = beads / math.ceil(beads / clients)
    return float(min(bound, cores)) if cores else float(bound)


def run_one(args, clients: int, threads: int, repeat: int, atoms) -> dict:
    """One i-PI run; its timing, client statistics and final state."""
    folder = args.work / f"clients{clients}_threads{threads}_r{repeat}"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"ipi_clients_{uuid.uuid4().hex[:8]}"
    xml = write_pimd_input(
        folder / "input.xml",
        atoms,
        nbeads=args.beads,
        temperature=args.temperature,
        steps=args.warmup + args.steps,
        unix=name,
        seed=args.seed,
        floatformat="%.16e",
    )
    run = run_with_clients(
        xml,
        clients,
        unix=name,
        threads=threads,
        source=("--model", args.model),
        timeout=args.timeout,
    )
    per_step = run.seconds_per_step(args.warmup)
    ipi_cpu, client_cpu = run.cpu_per_step(args.warmup)
    return {
        "clients": clients,
        "threads": threads,
        "repeat": repeat,
        "seconds_per_step": per_step,
        "wall_seconds": run.seconds,
        "evaluations": run.evaluations,
        "ipi_cpu_per_step": ipi_cpu,
        "clients_cpu_per_step": client_cpu,
        "positions": read_restart_positions(folder / "RESTART"),
        "properties": read_properties(folder / "sim.out"),
    }


def same_trajectory(a: dict, b: dict) -> tuple[bool, float]:
    """Whether two runs agree bit for bit (final beads and all properties), and the
    largest difference of the final bead positions (Å)."""
    diff = float(np.abs(a["positions"] - b["positions"]).max())
    props = a["properties"].keys() == b["properties"].keys() and all(
        np.array_equal(a["properties"][k], b["properties"][k]) for k in a["properties"]
    )
    return bool(diff == 0.0 and props), diff


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sige-small")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--atoms", type=int, help="atoms, 8 n³ (default 64)")
    size.add_argument("--supercell", type=int, help="n: n×n×n cubic 8-atom cells (default 2)")
    parser.add_argument("--beads", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=5, help="steps before the timing starts")
    parser.add_argument(
        "--clients",
        type=int,
        nargs="+",
        default=None,
        help="client counts (default 1 2 4; --quick: 1 2)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per client")
    parser.add_argument(
        "--reference-threads",
        type=int,
        default=2,
        help="also 1 client with this many threads (0: no reference run)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs of each setting, interleaved; the median is reported",
    )
    parser.add_argument("--temperature", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=31415)
    parser.add_argument("--timeout", type=float, default=1800.0, help="s per run")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output stem: writes STEM.json and STEM.png (default tutorials/figures/ipi_clients)",
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="i-PI run folders (default runs/ipi_clients)"
    )
    parser.add_argument("--quick", action="store_true", help="8 atoms, 2 beads, 1+3 steps")
    args = parser.parse_args()
    if args.quick:
        args.supercell, args.atoms = 1, None
        args.beads, args.steps, args.warmup = 2, 3, 1
        args.clients = args.clients or [1, 2]
    args.clients = args.clients or [1, 2, 4]
    n = supercell_for(args.atoms, 2 if args.supercell is None else args.supercell)
    for label, value, low in (
        ("--beads", args.beads, 1),
        ("--steps", args.steps, 1),
        ("--warmup", args.warmup, 0),
        ("--threads", args.threads, 1),
        ("--reference-threads", args.reference_threads, 0),
        ("--repeats", args.repeats, 1),
    ):
        if value < low:
            raise ValueError(f"{label} must be >= {low}, got {value}")
    if min(args.clients) < 1:
        raise ValueError(f"--clients must be positive, got {args.clients}")
    if 1 not in args.clients:
        raise ValueError("--clients must include 1: speed-ups are relative to 1 client")
    args.clients = sorted(set(args.clients))
    tag = "ipi_clients_quick" if args.quick else "ipi_clients"
    args.work = args.work or ROOT / "runs" / tag
    stem = args.out or (
        ROOT / "runs" / tag / "ipi_clients"
        if args.quick
        else ROOT / "tutorials" / "figures" / "ipi_clients"
    )
    stem = stem.with_suffix("") if stem.suffix in (".json", ".png") else stem
    stem.parent.mkdir(parents=True, exist_ok=True)

    atoms = bulk("Si", "diamond", a=5.431, cubic=True) * (n, n, n)
    cores = os.cpu_count() or 1
    settings = [(c, args.threads) for c in args.clients]
    if args.reference_threads and (1, args.reference_threads) not in settings:
        settings.append((1, args.reference_threads))
    load_before = os.getloadavg()
    print(
        f"diamond Si, {len(atoms)} atoms, {args.beads} beads, {args.warmup} + {args.steps} "
        f"steps, model {args.model}; {cores} cores, load average {load_before[0]:.2f}"
    )
    for clients, threads in settings:
        if clients * threads > cores:
            print(f"note: {clients} clients × {threads} threads > {cores} cores: oversubscribed")

    runs: list[dict] = []
    for repeat in range(args.repeats):  # interleaved: a changing background load hits all
        for clients, threads in settings:
            run = run_one(args, clients, threads, repeat, atoms)
            print(
                f"  {clients} clients × {threads} threads (run {repeat + 1}): "
                f"{run['seconds_per_step']:.3f} s/step"
            )
            runs.append(run)
    load_after = os.getloadavg()

    base = runs[0]  # 1 client, args.threads, first repeat
    rows = []
    for clients, threads in settings:
        mine = [r for r in runs if (r["clients"], r["threads"]) == (clients, threads)]
        checks = [same_trajectory(r, base) for r in mine]
        rows.append(
            {
                "clients": clients,
                "threads_per_client": threads,
                "total_threads": clients * threads,
                "seconds_per_step": statistics.median(r["seconds_per_step"] for r in mine),
                "seconds_per_step_runs": [r["seconds_per_step"] for r in mine],
                "wall_seconds_runs": [r["wall_seconds"] for r in mine],
                "evaluations_per_client": mine[0]["evaluations"],
                # CPU seconds per step (timed window) of i-PI and of all clients together
                "ipi_cpu_per_step": statistics.median(r["ipi_cpu_per_step"] for r in mine),
                "clients_cpu_per_step": statistics.median(r["clients_cpu_per_step"] for r in mine),
                "ideal_speedup_beads": ideal_speedup(args.beads, clients),
                "ideal_speedup_cores": ideal_speedup(args.beads, clients, cores)
                if threads == 1
                else float(min(threads, cores)),
                "identical_to_1_client": all(ok for ok, _ in checks),
                "max_position_difference_A": max(d for _, d in checks),
                "oversubscribed": clients * threads > cores,
            }
        )
    one = rows[0]["seconds_per_step"]
    for row in rows:
        row["speedup"] = one / row["seconds_per_step"]
        row["efficiency"] = row["speedup"] / row["clients"]
        # cores kept busy by i-PI and the clients: 2 on an idle 2-core machine at best
        cpu = row["ipi_cpu_per_step"] + row["clients_cpu_per_step"]
        row["cores_used"] = cpu / row["seconds_per_step"]

    print(
        f"\n{'clients':>7} {'thr/cl':>6} {'s/step':>8} {'speed-up':>8} {'ideal':>6} "
        f"{'cores':>6} {'effic.':>6} {'evals/client':>16} {'CPU/step':>8} {'i-PI':>6} "
        f"{'used':>5}  identical"
    )
    for row in rows:
        evals = "/".join(map(str, row["evaluations_per_client"]))
        same = (
            "yes"
            if row["identical_to_1_client"]
            else (f"no ({row['max_position_difference_A']:.1e} Å)")
        )
        print(
            f"{row['clients']:>7} {row['threads_per_client']:>6} "
            f"{row['seconds_per_step']:>8.3f} {row['speedup']:>8.2f} "
            f"{row['ideal_speedup_beads']:>6.2f} {row['ideal_speedup_cores']:>6.2f} "
            f"{row['efficiency']:>6.2f} {evals:>16} {row['clients_cpu_per_step']:>8.3f} "
            f"{row['ipi_cpu_per_step']:>6.3f} {row['cores_used']:>5.2f}  {same}"
        )
    print(
        "(speed-up: s/step of 1 client with "
        f"{args.threads} thread(s) / s/step; ideal: beads P/ceil(P/N); cores: also ≤ "
        f"{cores}; CPU/step: CPU s per step of all clients, i-PI: of i-PI; used: cores kept "
        "busy by both, CPU/step / s/step)"
    )

    same_threads = [r for r in rows if r["threads_per_client"] == args.threads]
    identical = all(r["identical_to_1_client"] for r in same_threads)
    print(
        f"trajectories with {args.threads} thread(s) per client identical across client "
        f"counts: {identical}"
    )
    report = {
        "system": f"diamond Si {n}x{n}x{n} cubic cells",
        "atoms": len(atoms),
        "model": args.model,
        "beads": args.beads,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "temperature_K": args.temperature,
        "seed": args.seed,
        "repeats": args.repeats,
        "cores": cores,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_1min_before_after": [load_before[0], load_after[0]],
        "identical_across_clients": identical,
        "rows": rows,
        "command": " ".join(["python", "tutorials/ipi_clients.py", *sys.argv[1:]]),
    }
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))

    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(10, 4))
    main_rows = [r for r in rows if r["threads_per_client"] == args.threads]
    ref_rows = [r for r in rows if r["threads_per_client"] != args.threads]
    xs = [r["clients"] for r in main_rows]
    ax_t.plot(
        xs, [r["seconds_per_step"] for r in main_rows], "o-", label=f"{args.threads} thread/client"
    )
    ax_s.plot(xs, [r["speedup"] for r in main_rows], "o-", label="measured")
    grid = np.arange(1, max(xs) + 1)
    ax_s.plot(
        grid,
        [ideal_speedup(args.beads, c) for c in grid],
        "--",
        color="0.5",
        label=f"ideal ({args.beads} beads)",
    )
    ax_s.plot(
        grid,
        [ideal_speedup(args.beads, c, cores) for c in grid],
        ":",
        color="C3",
        label=f"ideal, ≤ {cores} cores",
    )
    for r in ref_rows:
        label = f"1 client × {r['threads_per_client']} threads"
        ax_t.plot([r["clients"]], [r["seconds_per_step"]], "s", color="C2", label=label)
        ax_s.plot([r["clients"]], [r["speedup"]], "s", color="C2", label=label)
    ax_t.set(xlabel="clients", ylabel="wall time per step (s)", xticks=xs)
    spread = [r["seconds_per_step"] for r in rows]
    if max(spread) > 10 * min(spread):
        ax_t.set_yscale("log")
    ax_s.set(xlabel="clients", ylabel="speed-up over 1 client", xticks=xs)
    for ax in (ax_t, ax_s):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"i-PI PIMD, {len(atoms)} Si atoms, {args.beads} beads, {args.model}; "
        f"{cores} cores, load {load_before[0]:.1f} at start"
    )
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    print(f"saved {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
