"""The calculator on a CUDA device agrees with the CPU (skipped where no GPU is present)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_bulk, make_cluster

from ase_gnnp import GNNPCalculator, load_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_cuda_matches_cpu(dtype, rtol):
    model = load_model("sige-small")
    cpu = GNNPCalculator(model, dtype=torch.float64)
    gpu = GNNPCalculator(model, device="cuda", dtype=dtype)
    for atoms in (make_bulk(), make_cluster()):
        props = ["energy", "forces"] + (["stress"] if atoms.pbc.all() else [])
        ref = {p: np.asarray(cpu.get_property(p, atoms)) for p in props}
        got = {p: np.asarray(gpu.get_property(p, atoms)) for p in props}
        scale = {"energy": abs(ref["energy"]), "forces": 1.0, "stress": 0.01}
        for p in props:
            np.testing.assert_allclose(got[p], ref[p], rtol=0, atol=rtol * scale[p], err_msg=p)


def test_cuda_batch_evaluate_matches_single_calls():
    gpu = GNNPCalculator("sige-small", device="cuda", dtype=torch.float64)
    frames = [make_bulk(seed) for seed in range(3)]
    batch = gpu.batch_evaluate(frames)
    for atoms, result in zip(frames, batch):
        np.testing.assert_allclose(result["forces"], gpu.get_forces(atoms), atol=1e-10)


def test_cuda_long_range_field_model_matches_cpu():
    """Charges, Ewald (torch-pme) and field response on the GPU agree with the CPU."""
    from ase.build import molecule

    from ase_gnnp import GNNPModel, ModelConfig

    torch.manual_seed(0)
    config = ModelConfig(cutoff=3.5, channels=8, lmax=1, long_range="ewald", field=True)
    model = GNNPModel(config).to(torch.float64)
    cpu = GNNPCalculator(model, dtype=torch.float64)
    gpu = GNNPCalculator(model, device="cuda", dtype=torch.float64)
    water = molecule("H2O")
    water.info["electric_field"] = [0.1, -0.2, 0.3]
    bulk_cell = make_bulk()
    cases = [
        (water, ["energy", "forces", "charges", "dipole", "polarizability",
                 "born_effective_charges"]),
        (bulk_cell, ["energy", "forces", "stress", "charges", "born_effective_charges"]),
    ]  # fmt: skip
    for atoms, props in cases:
        for p in props:
            np.testing.assert_allclose(
                np.asarray(gpu.get_property(p, atoms)),
                np.asarray(cpu.get_property(p, atoms)),
                rtol=1e-8, atol=1e-9, err_msg=p,
            )  # fmt: skip


def test_cuda_roofline_profile_and_peak_memory():
    """The profiler and the memory measurement run on the GPU with its own roofs."""
    from ase_gnnp import ModelConfig
    from ase_gnnp.perf.memory import peak_memory
    from ase_gnnp.perf.roofline import machine_peaks, profile_model

    model = load_model("sige-small", device="cuda")
    peaks = machine_peaks("cuda", torch.float32, matmul_size=2048, stream_bytes=64 * 2**20)
    report = profile_model(model, make_bulk(), peaks, repeats=2)
    assert report["machine"]["device"].startswith("cuda")
    assert report["energy_check"] < 1e-3
    assert all(s["time_s"] > 0 for s in report["stages"])
    config = ModelConfig(cutoff=4.0, channels=8, lmax=1)
    small, large = (peak_memory(config, n, "infer", device="cuda") for n in (64, 512))
    assert 0 < small["peak_bytes"] < large["peak_bytes"]


def test_cuda_mixed_precision_and_edge_chunks():
    ref = GNNPCalculator("sige-small", device="cuda")
    for options in ({"edge_chunk": 100}, {"autocast": "bfloat16"}):
        other = GNNPCalculator("sige-small", device="cuda", **options)
        atoms = make_bulk()
        error = np.abs(other.get_forces(atoms) - ref.get_forces(atoms)).max()
        assert error < (1e-5 if "edge_chunk" in options else 0.05), options
