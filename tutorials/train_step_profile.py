"""Time and profile one training step (energy + forces + stress loss, double backward, AdamW).

A batch of ``--batch-size`` mlearn Si structures (the same ones every run, drawn with
``--seed``), the recipe's architecture unless flags change it, ``--steps`` timed steps after
two warm-up steps; prints the median time per step and the operators that take the most
time (``torch.profiler``), and writes both to ``--out``/train_step_profile.json. Run it on
an idle machine; compare versions of the code by running it in each checkout in turn.

    python tutorials/train_step_profile.py                       # 8 structures, 2 threads
    python tutorials/train_step_profile.py --batch-size 4 --threads 1 --system-malloc
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from ase.io import read
from torch_geometric.data import Batch

from ase_gnnp.config import ModelConfig
from ase_gnnp.data import labelled_graph
from ase_gnnp.model import GNNPModel
from ase_gnnp.train.loss import loss_terms, total_loss
from ase_gnnp.train.recipe import recipe, summarize_data
from ase_gnnp.train.statistics import fit_statistics

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mlearn" / "Si_train.extxyz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="{}", help="JSON changes to the recipe's model")
    parser.add_argument("--system-malloc", action="store_true", help="keep glibc's defaults")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "train_step_profile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.system_malloc:
        from ase_gnnp.perf.allocator import tune_cpu_allocator

        tune_cpu_allocator()
    frames = read(args.data, ":")
    options = recipe(summarize_data(frames))
    config = ModelConfig.from_dict(options["model"] | json.loads(args.model))
    model = GNNPModel(config)
    rng = np.random.default_rng(args.seed)
    chosen = [frames[i] for i in rng.choice(len(frames), args.batch_size, replace=False)]
    graphs = [labelled_graph(a, config.cutoff) for a in chosen]
    fit_statistics(model, graphs)
    batch = Batch.from_data_list(graphs)
    weights = {k: options[f"{k}_weight"] for k in ("energy", "forces", "stress")}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = model(batch, create_graph=True, stress=True)
        total_loss(loss_terms(out, batch), weights).backward()
        optimizer.step()

    for _ in range(2):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    top = [
        {"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:12]
    ]
    report = {
        "atoms": int(batch.num_nodes),
        "edges": int(batch.edge_index.shape[1]),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "tuned_allocator": not args.system_malloc,
        "model": config.to_dict(),
        "ms_per_step_median": 1000 * statistics.median(times),
        "ms_per_step_all": [1000 * t for t in times],
        "top_ops": top,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_step_profile.json").write_text(json.dumps(report, indent=2))
    print(
        f"{args.batch_size} structures ({report['atoms']} atoms, {report['edges']} edges), "
        f"{args.threads} threads: {report['ms_per_step_median']:.0f} ms per training step "
        f"(median of {args.steps})"
    )
    for row in top:
        print(f"  {row['op']:<28}{100 * row['share']:6.1f} %  ({row['calls']} calls)")


if __name__ == "__main__":
    main()
