"""Operation counting, machine peaks, the roofline profile and the run-time performance
options of the model (gradient checkpointing, edge chunks, mixed precision)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import make_bulk, make_cluster

from ase_gnnp import GNNPModel, ModelConfig, save_model
from ase_gnnp.cli import main
from ase_gnnp.graph import atoms_to_batch
from ase_gnnp.perf.counting import OpCounter
from ase_gnnp.perf.roofline import machine_peaks, plot_roofline, profile_model

TINY_PEAKS = {"peak_flops": 1e10, "bandwidth": 1e9, "ridge": 10.0, "device": "cpu",
              "device_name": "cpu", "dtype": "float64", "threads": 1}  # fmt: skip


@pytest.fixture
def tiny_model_path(tmp_path):
    torch.manual_seed(0)
    model = GNNPModel(ModelConfig(cutoff=3.5, channels=8, lmax=1, num_layers=2))
    with torch.no_grad():
        model.atomic_reference[14] = -4.6
        model.fitted_elements[14] = True
    return save_model(model, tmp_path / "tiny.pt")


# ---------------------------------------------------------------- counting
def test_counter_matmul_elementwise_scatter_and_views():
    a, b = torch.randn(30, 20, dtype=torch.float64), torch.randn(20, 10, dtype=torch.float64)
    with OpCounter() as mm:
        a @ b
    assert mm.flops == mm.matmul_flops == 2 * 30 * 20 * 10
    assert mm.bytes == 8 * (30 * 20 + 20 * 10 + 30 * 10)
    with OpCounter() as ew:
        torch.sin(a)
    assert (ew.flops, ew.matmul_flops, ew.bytes) == (600, 0, 2 * 8 * 600)
    index = torch.randint(0, 5, (30,))
    with OpCounter() as sc:
        torch.zeros(5, 20, dtype=torch.float64).index_add(0, index, a)
    assert sc.flops == 600  # one addition per source element; the zeros cost no FLOPs
    with OpCounter() as views:
        a.T.reshape(-1)[:5].unsqueeze(0)
    assert views.flops == 0 and views.kernels == 1  # only the copy of reshape(a.T) works


def test_counter_sees_the_backward_pass():
    x = torch.randn(50, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 3, dtype=torch.float64)
    y = (x @ w).pow(2).sum()
    with OpCounter() as count:
        torch.autograd.grad(y, x)
    assert count.matmul_flops == 2 * 50 * 3 * 3  # grad through x @ w is one product
    assert count.flops > count.matmul_flops


def test_machine_peaks_are_measured():
    peaks = machine_peaks("cpu", torch.float32, matmul_size=256, stream_bytes=8 * 2**20,
                          repeats=2)  # fmt: skip
    assert peaks["peak_flops"] > 1e8 and peaks["bandwidth"] > 1e8
    assert peaks["ridge"] == pytest.approx(peaks["peak_flops"] / peaks["bandwidth"])
    assert peaks["peak_flops"] == max(peaks["gemm_flops"].values())
    with pytest.raises(ValueError, match="repeats"):
        machine_peaks("cpu", repeats=0)


# ---------------------------------------------------------------- profile
@pytest.mark.parametrize("make", [make_bulk, make_cluster])
def test_profile_reproduces_the_model_energy_and_places_every_stage(small_model, make, tmp_path):
    report = profile_model(small_model, make(), TINY_PEAKS, repeats=1)
    # the stage-by-stage forward is the model's forward
    energy = float(small_model(atoms_to_batch([make()], small_model.cutoff, torch.float64),
                               forces=False)["energy"].detach().sum())  # fmt: skip
    assert report["energy_check"] < 1e-10 * max(1.0, abs(energy))
    names = [s["name"] for s in report["stages"]]
    for k in (1, 2):
        for stage in ("radial MLP", "tensor product", "scatter", "node update"):
            assert f"{stage} [{k}]" in names
    assert names[0] == "graph (vesin)" and names[-1] == "backward"
    for s in report["stages"]:
        if not s["counted"]:
            continue
        assert s["flops"] > 0 and s["bytes"] > 0 and s["time_s"] > 0
        assert s["attainable_s"] == pytest.approx(max(s["flops"] / 1e10, s["bytes"] / 1e9))
        assert s["bound"] == ("compute" if s["flops"] / s["bytes"] >= 10.0 else "memory")
    tp = next(s for s in report["stages"] if s["name"] == "radial MLP [1]")
    assert tp["matmul_flops"] > 0  # the radial MLP is matrix products
    # the backward pass costs more than the forward's arithmetic
    forward = sum(s["flops"] for s in report["stages"][:-1])
    assert report["stages"][-1]["flops"] > forward
    assert plot_roofline(report, tmp_path / "roof.png").stat().st_size > 10_000


def test_profile_of_a_long_range_model_has_its_ewald_stage():
    config = ModelConfig(cutoff=3.5, channels=8, lmax=1, num_layers=2, long_range="ewald")
    torch.manual_seed(0)
    model = GNNPModel(config).to(torch.float64).eval()
    report = profile_model(model, make_bulk(), TINY_PEAKS, repeats=1)
    names = [s["name"] for s in report["stages"]]
    assert "charges" in names and "Ewald" in names
    assert report["energy_check"] < 1e-9


def test_profile_cli_json_and_files(tiny_model_path, tmp_path, capsys):
    args = ["profile", "--model", str(tiny_model_path), "--structure", "Si", "--supercell",
            "1", "1", "1", "--repeats", "1", "--threads", "1", "--out", str(tmp_path),
            "--matmul-size", "256", "--stream-mb", "8"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["system"]["atoms"] == 8 and report["machine"]["peak_flops"] > 0
    assert (tmp_path / "profile.png").is_file() and (tmp_path / "profile.json").is_file()
    assert main(args) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert "tensor product [1]" in capsys.readouterr().out
    assert main(["profile", "--model", str(tiny_model_path), "--repeats", "0"]) == 2


# ---------------------------------------------------------------- performance options
def _all_outputs(model, atoms, create_graph=False):
    data = atoms_to_batch([atoms], model.cutoff, model.dtype)
    return model(data, forces=True, stress=True, create_graph=create_graph)


@pytest.mark.parametrize(
    "options",
    [{"gradient_checkpointing": True}, {"edge_chunk": 17},
     {"gradient_checkpointing": True, "edge_chunk": 50}],
)  # fmt: skip
def test_checkpointing_and_edge_chunks_change_nothing(small_model, options):
    atoms = make_bulk()
    ref = _all_outputs(small_model, atoms)
    other = copy.deepcopy(small_model).set_performance_options(**options)
    out = _all_outputs(other, atoms)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(out[key], ref[key], rtol=1e-12, atol=1e-12)


def test_checkpointing_keeps_force_training_gradients(small_model):
    """Force training differentiates twice: the parameter gradients must be unchanged."""
    atoms = make_bulk()
    grads = []
    for options in ({}, {"gradient_checkpointing": True, "edge_chunk": 40}):
        model = copy.deepcopy(small_model).set_performance_options(**options)
        out = _all_outputs(model, atoms, create_graph=True)
        loss = out["energy"].sum() ** 2 + (out["forces"] ** 2).sum() + out["stress"].sum()
        grads.append(torch.autograd.grad(loss, [p for p in model.parameters()]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert any(float(g.abs().max()) > 0 for g in grads[0])


@pytest.mark.parametrize("correlation", [1, 3])  # 3: the product basis under autocast too
def test_mixed_precision_keeps_outputs_in_model_dtype(correlation):
    torch.manual_seed(0)
    model = GNNPModel(ModelConfig(cutoff=3.5, channels=8, lmax=1, correlation=correlation))
    model.eval()
    atoms = make_bulk()
    ref = _all_outputs(model, atoms)
    model.set_performance_options(autocast_dtype=torch.bfloat16)
    out = _all_outputs(model, atoms)
    # energies are summed in float64 whatever the precision (GNNPModel.site_energies)
    assert out["energy"].dtype == torch.float64 and out["forces"].dtype == torch.float32
    error = float((out["forces"] - ref["forces"]).abs().max())
    scale = float(ref["forces"].abs().max())
    assert 0 < error < 0.1 * scale  # bf16 differs, but only by its rounding
    model.set_performance_options(autocast_dtype=None)
    torch.testing.assert_close(_all_outputs(model, atoms)["forces"], ref["forces"])


def test_bad_performance_options(small_model):
    with pytest.raises(ValueError, match="edge_chunk"):
        small_model.set_performance_options(edge_chunk=0)
    with pytest.raises(ValueError, match="autocast_dtype"):
        small_model.set_performance_options(autocast_dtype=torch.float64)
    with pytest.raises(TypeError, match="gradient_checkpointing"):
        small_model.set_performance_options(gradient_checkpointing="yes")
