"""Data-parallel training under torchrun: 2 ranks reproduce single-process training.

One ``torchrun --nproc_per_node 2 --standalone -m ase_gnnp.cli train`` run (gloo, 1 thread
per rank) on a tiny EMT data set of unequal-size structures, with structure weights, a
non-periodic cluster without stress and an epoch whose last global batch is smaller than
the number of ranks; the same command in one process is the reference.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from ase_gnnp import GNNPModel, load_model
from ase_gnnp.cli import main
from ase_gnnp.train import TrainConfig, distributed

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="needs torch.distributed with gloo",
)

# 15 structures, 5 held out: 10 training structures in global batches of 3, 3, 3, 1
FLAGS = [
    "--epochs", "2", "--batch-size", "3", "--lr", "0.01", "--val-fraction", "0.25",
    "--seed", "3", "--dtype", "float64", "--scheduler", "cosine", "--ema-decay", "0.5",
    "--config-type-weights", "cluster=3,strained=2", "--no-progress", "--recipe", "none",
    "--cutoff", "3.5", "--channels", "8", "--lmax", "1", "--num-layers", "2",
    "--num-radial", "6", "--radial-hidden", "16", "--readout-hidden", "8",
]  # fmt: skip

# records every write-like file operation of ranks other than 0, printed at exit
AUDIT = textwrap.dedent(
    """
    import atexit, json, os, sys

    writes = []
    if os.environ.get("RANK", "0") != "0":
        WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
        EVENTS = ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir",
                  "shutil.copyfile", "shutil.move", "os.truncate")

        def hook(event, args):
            if event == "open":
                path, mode, flags = (tuple(args) + (None, None))[:3]
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & WRITE_FLAGS
                )
                if writing and isinstance(path, (str, bytes, os.PathLike)):
                    writes.append(os.path.abspath(os.fsdecode(path)))
            elif event in EVENTS:
                writes.append(os.path.abspath(os.fsdecode(args[0])))

        sys.addaudithook(hook)
        atexit.register(lambda: print("RANK-WRITES " + json.dumps(writes), flush=True))

    from ase_gnnp.cli import main

    sys.exit(main())
    """
)


def _frames() -> list:
    """Cu/Au fcc cells of 2, 4 and 8 atoms (stress) and three 4-atom clusters (no stress)."""
    rng = np.random.default_rng(7)
    frames = []
    for k in range(15):
        if k >= 12:
            atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
            atoms.center(vacuum=5.0)
            atoms.pbc = False
            kind = "cluster"
        else:
            a = 3.61 + 0.05 * rng.uniform()
            cubic = bulk("Cu", "fcc", a=a, cubic=True)
            atoms = (cubic, cubic * (2, 1, 1), bulk("Cu", "fcc", a=a, orthorhombic=True))[k % 3]
            kind = "strained" if k % 2 else "rattled"
            strain = np.eye(3) + 0.02 * rng.uniform(-1.0, 1.0, size=(3, 3))
            atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.numbers[rng.random(len(atoms)) < 0.4] = 79
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if atoms.pbc.all():
            results["stress"] = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["config_type"] = kind
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same training run in one process and under torchrun with 2 ranks."""
    root = tmp_path_factory.mktemp("ddp")
    data = root / "data.extxyz"
    frames = _frames()
    assert sorted({len(a) for a in frames}) == [2, 4, 8]
    write(data, frames, format="extxyz")
    single, double = root / "single", root / "double"
    flags = ["--data", str(data), *FLAGS]
    torch.manual_seed(0)
    assert main(["train", "--out", str(single), "--threads", "1", *flags]) == 0

    script = root / "audited_cli.py"
    script.write_text(AUDIT)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script), "train", "--out", str(double), *flags,
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return {"root": root, "single": single, "double": double, "stdout": proc.stdout}


def _metrics(out) -> list[dict]:
    with open(out / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_two_ranks_match_one_process(runs):
    a = torch.load(runs["single"] / "checkpoint.pt", weights_only=True)
    b = torch.load(runs["double"] / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert a["ema"]["num_updates"] == b["ema"]["num_updates"] == 8  # 4 global batches x 2
    # training moved the weights: the comparison below is not between two untouched models
    config = TrainConfig.from_yaml(runs["double"] / "config.yaml")
    torch.manual_seed(config.seed)
    initial = GNNPModel(config.model).to(torch.float64)  # the trainer's initial weights
    moved = max(
        float((b["model"][k] - p.detach()).abs().max()) for k, p in initial.named_parameters()
    )
    assert moved > 1e-3
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-9, atol=1e-11, msg=key)
    for key, value in a["ema"]["shadow"].items():
        torch.testing.assert_close(b["ema"]["shadow"][key], value, rtol=1e-9, atol=1e-11)
    rows_a, rows_b = _metrics(runs["single"]), _metrics(runs["double"])
    assert len(rows_a) == len(rows_b) == 2
    for ra, rb in zip(rows_a, rows_b):
        for column in ("lr", "train_loss", "val_loss", "val_energy_mae_per_atom",
                       "val_force_mae", "val_stress_mae"):  # fmt: skip
            assert float(rb[column]) == pytest.approx(float(ra[column]), rel=1e-9), column
    # the summary printed by rank 0 names the same best epoch and validation metrics
    text = "\n".join(x for x in runs["stdout"].splitlines() if not x.startswith("RANK-WRITES"))
    summary = json.loads(text[text.index("{") : text.rindex("}") + 1])
    best = load_model(runs["single"] / "model.pt").metadata
    assert summary["epoch"] == best["epoch"]
    for key, value in best["val_metrics"].items():
        if isinstance(value, float):
            assert summary["val_metrics"][key] == pytest.approx(value, rel=1e-9), key


@pytest.mark.slow
def test_only_rank_zero_writes(runs):
    stdout = runs["stdout"]
    reports = [line for line in stdout.splitlines() if line.startswith("RANK-WRITES ")]
    assert len(reports) == 1, stdout[-3000:]  # rank 1 reported; rank 0 is not audited
    writes = json.loads(reports[0][len("RANK-WRITES ") :])
    root = str(runs["root"].resolve())
    assert [w for w in writes if w.startswith(root)] == []
    assert stdout.count("best model:") == 1  # rank 1 prints no summary either
    names = sorted(p.name for p in runs["double"].iterdir())
    assert names == ["checkpoint.pt", "config.yaml", "learning_curve.png", "metrics.csv",
                     "model.pt"]  # fmt: skip


def test_launch_info_reads_torchrun_environment():
    info = distributed.launch_info({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"})
    assert (info.world_size, info.rank, info.local_rank, info.launched) == (4, 2, 0, True)
    assert distributed.launch_info({}) == distributed.LaunchInfo(1, 0, 0)
    assert distributed.launch_info({"WORLD_SIZE": "1", "RANK": "3"}) == distributed.LaunchInfo()
    with pytest.raises(ValueError, match="RANK is not set"):
        distributed.launch_info({"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer"):
        distributed.launch_info({"WORLD_SIZE": "two", "RANK": "0"})
    with pytest.raises(ValueError, match=r"RANK must be in \[0, WORLD_SIZE=2\)"):
        distributed.launch_info({"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE must be >= 1"):
        distributed.launch_info({"WORLD_SIZE": "0"})
    # no process group: single-process answers
    assert distributed.world_size() == 1 and distributed.rank() == 0
    assert distributed.is_main_process()
    assert distributed.rank_zero_only(lambda: 5)() == 5
    assert distributed.default_backend("cpu") == "gloo"


def test_shard_splits_a_batch_into_contiguous_near_equal_parts():
    batch = [5, 1, 7, 3, 9]
    parts = [distributed.shard(batch, 2, r) for r in range(2)]
    assert parts == [[5, 1, 7], [3, 9]]
    assert [distributed.shard([4], 2, r) for r in range(2)] == [[4], []]
    assert sum((distributed.shard(batch, 3, r) for r in range(3)), []) == batch
    with pytest.raises(ValueError, match="index 2 of 2"):
        distributed.shard(batch, 2, 2)


@pytest.mark.parametrize("normalization", ["labels", "weights"])
def test_loss_shares_add_up_to_the_global_batch_loss(normalization):
    """Scaled per-share losses sum to the loss of the whole batch (unequal sizes, structure
    and atom weights)."""
    from torch_geometric.data import Batch

    from ase_gnnp.config import ModelConfig
    from ase_gnnp.data import labelled_graph
    from ase_gnnp.model import GNNPModel
    from ase_gnnp.train.loss import loss_terms, total_loss
    from ase_gnnp.train.trainer import LOSS_TERMS, loss_denominators

    torch.manual_seed(0)
    model = GNNPModel(ModelConfig(cutoff=3.5, channels=4, lmax=1, num_layers=1)).double()
    graphs = [labelled_graph(a, 3.5, dtype=torch.float64, weight=1.0 + k,
                             atom_weight=np.linspace(0.5, 2.0 + k, len(a)))
              for k, a in enumerate(_frames()[9:14])]  # fmt: skip
    weights = {name: 1.0 + k for k, name in enumerate(LOSS_TERMS)}
    table = loss_denominators(graphs, normalization)

    def loss(part, scale=None):
        data = Batch.from_data_list([graphs[i] for i in part])
        terms = loss_terms(model(data, stress=True), data, normalization)
        if scale is None:
            return total_loss(terms, weights)
        share = table[part].sum(0) / table.sum(0)
        return sum(weights[n] * v * float(share[LOSS_TERMS.index(n)]) for n, v in terms.items())

    whole = loss(range(5))
    split = loss([0, 1, 2], scale=True) + loss([3, 4], scale=True)
    torch.testing.assert_close(split, whole, rtol=1e-12, atol=0.0)
    naive = (loss([0, 1, 2]) + loss([3, 4])) / 2  # plain mean of the shares' losses differs
    assert abs(float((naive - whole).detach())) > 1e-6 * abs(float(whole.detach()))
