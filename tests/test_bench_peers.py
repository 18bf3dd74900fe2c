"""tutorials/bench_peers.py: the ase_gnnp worker, input checks and the missing-venv message.

No network and no peer environment: MACE and CHGNet are never run here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import load_tutorial

from ase_gnnp import GNNPCalculator
from ase_gnnp.md import md_throughput

bench = load_tutorial("bench_peers")
worker = load_tutorial("_peer_worker")


def test_gnnp_worker_reports_sane_numbers():
    """The ase_gnnp row in a fresh process of the project's own Python, 64 atoms."""
    result = bench.run_worker(Path(sys.executable), "gnnp", natoms=64, steps=2, threads=1)
    assert "error" not in result, result.get("error")
    assert result["kind"] == "gnnp" and result["natoms"] == 64 and result["timed_steps"] == 2
    assert result["config"]["channels"] == 64 and result["config"]["lmax"] == 1
    assert result["dtype"] == "float32" and result["torch_threads"] == 1
    assert result["atom_steps_per_s"] > 0 and result["wall_s"] > 0
    assert 0 < result["rss_before_md_mb"] <= result["peak_rss_mb"]
    assert result["peak_rss_delta_mb"] >= 0
    assert result["peak_rss_mb"] == pytest.approx(
        result["rss_before_md_mb"] + result["peak_rss_delta_mb"]
    )
    assert "stress" in result["computes"] and result["n_params"] > 0
    assert 50 < result["temperature_K"] < 1000  # the random model did not blow up the cell


def test_peer_protocol_is_md_throughput(small_model):
    """The peers' NVE loop is step for step ase_gnnp.md.md_throughput (same trajectory)."""
    ours = md_throughput(GNNPCalculator(small_model), 64, steps=3, seed=0)
    theirs = worker.nve_throughput(GNNPCalculator(small_model), 64, steps=3, seed=0)
    assert theirs["natoms"] == ours["natoms"] == 64
    assert theirs["temperature_K"] == pytest.approx(ours["temperature_K"], rel=1e-10)
    assert theirs["etot_drift_eV_per_atom"] == pytest.approx(
        ours["etot_drift_eV_per_atom"], rel=1e-8, abs=1e-12
    )


def test_missing_venv_says_how_to_install(tmp_path, capsys):
    venv = tmp_path / "no-venv"
    with pytest.raises(RuntimeError, match="does not exist") as info:
        bench.ensure_peer_venv(venv, ["mace"], install=False)
    message = str(info.value)
    assert "--skip-install" in message and "pip install" in message
    assert "mace-torch" in message and "torch==2.13.0" in message and str(venv) in message
    argv = ["--peers", "mace", "--skip-install", "--venv", str(venv), "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
    assert "pip install" in capsys.readouterr().err
    assert not list(tmp_path.glob("bench_peers*"))  # nothing written


@pytest.mark.parametrize(
    "peers, sizes, steps, threads, match",
    [
        (["nequip"], [64], 2, 1, "unknown peer"),
        (["mace"], [0], 2, 1, "sizes"),
        (["mace"], [-64], 2, 1, "sizes"),
        (["mace"], [100], 2, 1, "8 n"),
        ([], [], 2, 1, "at least one"),
        ([], [64], 0, 1, "steps must be a positive"),
        ([], [64], 2, 0, "threads must be a positive"),
    ],
)
def test_bad_input(peers, sizes, steps, threads, match):
    with pytest.raises(ValueError, match=match):
        bench.check_options(peers, sizes, steps, threads)


def test_worker_bad_input():
    with pytest.raises(ValueError, match="unknown model kind"):
        worker.measure("nequip", 64, 2)
    with pytest.raises(ValueError, match="natoms must be"):
        worker.measure("gnnp", 100, 2)
    with pytest.raises(ValueError, match="steps must be"):
        worker.measure("gnnp", 64, 0)


def test_ratios_and_table():
    def row(kind, natoms, speed, memory):
        return {
            "kind": kind,
            "label": bench.LABELS[kind],
            "natoms": natoms,
            "atom_steps_per_s": speed,
            "s_per_step": natoms / speed,
            "peak_rss_mb": 500.0 + memory,
            "peak_rss_delta_mb": memory,
            "cutoff_A": 5.0,
            "n_params": 1000,
            "computes": "energy, forces, stress",
        }

    results = [row("gnnp", 512, 900.0, 50.0), row("mace", 512, 300.0, 200.0)]
    results.append({"kind": "chgnet", "label": "CHGNet 0.3.0", "natoms": 512, "error": "x\nboom"})
    pairs = bench.ratios(results, ["mace", "chgnet"])
    assert len(pairs) == 1 and pairs[0]["peer"] == "mace"
    assert pairs[0]["throughput_ratio"] == pytest.approx(3.0)
    assert pairs[0]["peak_rss_delta_ratio"] == pytest.approx(0.25)
    table = bench.format_table(results, pairs)
    assert "FAILED: boom" in table and "3.00x" in table


def test_trained_model_row_measures_the_given_checkpoint(small_model, tmp_path):
    """``--model PATH`` measures that model (here a saved small model), in float32."""
    from ase_gnnp.checkpoint import save_model

    (tmp_path / "run").mkdir()
    path = save_model(small_model, tmp_path / "run" / "model.pt")
    result = bench.run_worker(
        Path(sys.executable), "model", natoms=64, steps=2, threads=1, model=path
    )
    assert "error" not in result, result.get("error")
    assert result["kind"] == "model" and result["weights"] == f"trained: {path}"
    assert result["config"] == small_model.config.to_dict() and result["dtype"] == "float32"
    assert result["atom_steps_per_s"] > 0
    assert bench.model_label(path) == "run/model.pt"
    assert bench.model_label("sige-small") == "sige-small"
    with pytest.raises(ValueError, match="'nowhere.pt' is neither an existing checkpoint"):
        bench.run_benchmark([], [64], 2, 1, install=False, model="nowhere.pt")
    with pytest.raises(ValueError, match="only it needs a model path"):
        worker.measure("model", 64, 2)
