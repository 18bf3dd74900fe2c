"""Memory, gradient checkpointing and mixed precision studies (ase_gnnp.perf), measured for
real on tiny models; each CPU memory point runs in a fresh process (a few seconds each)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.checkpoint import checkpoint

from ase_gnnp import ModelConfig, save_model
from ase_gnnp.cli import main
from ase_gnnp.perf.memory import (
    fit_line,
    fit_power_law,
    make_case,
    peak_memory,
    run_step,
    si_supercell,
)
from ase_gnnp.perf.memory_studies import checkpointing_study, largest_system, memory_scan
from ase_gnnp.perf.precision import precision_calculator, precision_study

TINY = ModelConfig(cutoff=4.0, channels=8, lmax=1, num_layers=2)


@pytest.fixture(scope="module")
def measured() -> dict:
    """Four fresh-process measurements shared by the scaling tests, each after one warm-up
    step: the first step's one-time allocations (lazy library initialisation, about 5-10 MB
    here, varying between environments) would otherwise outweigh a tiny model's tensors."""
    return {
        "infer64": peak_memory(TINY, 64, "infer", repeats=1, warmup=1),
        "infer216": peak_memory(TINY, 216, "infer", repeats=0, warmup=1),
        "train216": peak_memory(TINY, 216, "train", repeats=0, warmup=1),
        "infer216_l3": peak_memory(replace(TINY, lmax=3), 216, "infer", repeats=0, warmup=1),
    }


def test_peak_memory_row(measured):
    row = measured["infer64"]
    assert row["natoms"] == 64 and row["mode"] == "infer" and row["num_edges"] > 64
    assert row["peak_total_bytes"] == row["baseline_bytes"] + row["peak_bytes"]
    assert row["peak_bytes"] > 0 and row["baseline_bytes"] > 100 * 2**20  # python + torch
    assert 0 < row["step_s"] < 60 and row["options"]["threads"] == 1


def test_peak_memory_grows_with_atoms_lmax_and_training(measured):
    # 3.4x the atoms; lmax 3 against 1; training keeps the graph of the forces
    assert measured["infer216"]["peak_bytes"] > 2.0 * measured["infer64"]["peak_bytes"]
    assert measured["infer216_l3"]["peak_bytes"] > 1.5 * measured["infer216"]["peak_bytes"]
    assert measured["train216"]["peak_bytes"] > 2.0 * measured["infer216"]["peak_bytes"]


def test_checkpointing_gives_the_same_gradients(monkeypatch):
    model, graph, labels = make_case(replace(TINY, num_layers=3), 16, torch.float64)
    labels["forces"].normal_(generator=torch.Generator().manual_seed(0))
    loss = run_step(model, graph, labels, "train")
    grads = [p.grad.clone() for p in model.parameters()]
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr("ase_gnnp.model.checkpoint", counting)
    model.set_performance_options(gradient_checkpointing=True)
    loss_ck = run_step(model, graph, labels, "train")
    assert len(calls) == 3  # one per layer
    assert torch.allclose(loss_ck, loss, rtol=1e-12, atol=0)
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_checkpointing_saves_memory_at_depth_4():
    config = ModelConfig(cutoff=4.0, channels=16, lmax=2)
    row = checkpointing_study(config, 64, depths=(4,), repeats=0, progress=False)["rows"][0]
    # steady-state steps (the study warms up once): about 18 % saved here, 25 % at 512 atoms
    assert row["num_layers"] == 4 and row["saved_pct"] > 10


def test_fits_recover_synthetic_laws():
    x = np.arange(1, 7)
    line = fit_line(x, 3e6 + 2.5e7 * x)
    assert line["slope"] == pytest.approx(2.5e7) and line["intercept"] == pytest.approx(3e6)
    assert line["max_rel_residual"] < 1e-12
    lmax = np.arange(4)
    power = fit_power_law(lmax + 1, 1.5e6 * (lmax + 1.0) ** 2.7)
    assert power["exponent"] == pytest.approx(2.7) and power["prefactor"] == pytest.approx(1.5e6)
    noisy = fit_power_law(lmax + 1, 1.5e6 * (lmax + 1.0) ** 2.7 * np.array([1, 1.05, 0.95, 1]))
    assert 0.01 < noisy["max_rel_residual"] < 0.1
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([0, 1], [1, 2])


def test_supercell_sizes():
    assert len(si_supercell(512)) == 512 and len(si_supercell(64)) == 64
    assert abs(len(si_supercell(1000)) - 1000) <= 20


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="lmax"):
        memory_scan(lmaxs=(1, 7), layers=(2,), natoms=64, progress=False)
    with pytest.raises(ValueError, match="natoms"):
        peak_memory(TINY, 0, "infer")
    with pytest.raises(ValueError, match="mode"):
        peak_memory(TINY, 64, "eval")
    with pytest.raises(ValueError, match="mode"):
        memory_scan(modes=("train", "predict"), progress=False)
    with pytest.raises(TypeError, match="ModelConfig"):
        peak_memory({"lmax": 1}, 64, "infer")
    with pytest.raises(ValueError, match="threads"):
        peak_memory(TINY, 64, "infer", threads=0)
    with pytest.raises(ValueError, match="budget"):
        largest_system(TINY, 0, "train")
    with pytest.raises(ValueError, match="precisions"):
        precision_study(precisions=("fp8",))


def test_precision_study_on_a_tiny_cell(small_model):
    report = precision_study(small_model, n_frames=2, speed_atoms=8, warmup=0, repeats=1,
                             md_atoms=8, md_steps=20, interval=5, progress=False)  # fmt: skip
    res = report["precisions"]
    assert res["fp64"]["errors"]["force_max_meV_A"] == 0.0
    assert res["fp32"]["errors"]["force_max_meV_A"] < 1.0  # < 1e-3 eV/Å
    assert res["bf16"]["errors"]["force_max_meV_A"] > res["fp32"]["errors"]["force_max_meV_A"]
    assert res["fp16"]["status"] == "ok" or res["fp16"]["status"].startswith("unsupported")
    for name in ("fp64", "fp32", "bf16"):
        nve = res[name]["nve"]
        assert nve["steps"] == 20 and len(nve["time_ps"]) == 5
        assert np.isfinite(nve["drift_meV_per_atom_per_ps"])
        assert res[name]["speed"]["atom_steps_per_s"] > 0
    assert small_model.autocast_dtype is None  # the caller's model is never changed
    calc = precision_calculator(small_model, "bf16")
    assert calc.model.autocast_dtype is torch.bfloat16 and calc.dtype is torch.float32


def test_cli_memory_json_and_no_overwrite(tmp_path, capsys):
    args = ["bench", "memory", "--lmax", "1", "--layers", "2", "--fixed-lmax", "1",
            "--channels", "8", "--cutoff", "4", "--atoms", "64", "--modes", "infer",
            "--repeats", "0", "--out", str(tmp_path), "--json"]  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["points"][0]["natoms"] == 64 and report["points"][0]["peak_bytes"] > 0
    assert (tmp_path / "memory.json").is_file() and (tmp_path / "memory.png").is_file()
    assert main(args) == 2
    assert "exist" in capsys.readouterr().err
    assert main([*args[:3], "7", *args[4:], "--force"]) == 2  # lmax 7
    assert "lmax" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_checkpointing_json(tmp_path, capsys):
    args = ["bench", "checkpointing", "--lmax", "1", "--channels", "8", "--cutoff", "4",
            "--atoms", "64", "--depths", "2", "--repeats", "0", "--out", str(tmp_path),
            "--json"]  # fmt: skip
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows[0]["num_layers"] == 2 and rows[0]["peak_bytes_on"] > 0
    assert (tmp_path / "checkpointing.png").is_file()


def test_cli_precision_json(small_model, tmp_path, capsys):
    path = save_model(small_model, tmp_path / "small.pt")
    args = ["bench", "precision", "--model", str(path), "--precisions", "fp64", "fp32",
            "--frames", "1", "--speed-atoms", "8", "--repeats", "1", "--warmup", "0",
            "--md-atoms", "8", "--steps", "4", "--interval", "2", "--out", str(tmp_path),
            "--json"]  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["precisions"]) == {"fp64", "fp32"}
    assert report["precisions"]["fp32"]["nve"]["steps"] == 4
    assert (tmp_path / "precision.png").is_file()
