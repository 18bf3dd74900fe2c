"""Large-system inference (edge chunks), Ewald against PME, and compiled inference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk

from ase_gnnp import GNNPCalculator, GNNPModel, ModelConfig
from ase_gnnp.cli import main
from ase_gnnp.graph import atoms_to_batch
from ase_gnnp.longrange import Coulomb
from ase_gnnp.perf.large import coulomb_scaling, large_inference

TINY = ModelConfig(cutoff=3.5, channels=8, lmax=1, num_layers=2)


def test_large_inference_chunked_and_unchunked():
    report = large_inference(TINY, sizes=(64, 216), edge_chunk=500, unchunked_max=64,
                             progress=False)  # fmt: skip
    variants = sorted((r["natoms"], r["variant"]) for r in report["runs"])
    assert variants == [(64, "all edges"), (64, "chunked"), (216, "chunked")]
    assert all(r["peak_bytes"] > 0 and r["step_s"] > 0 for r in report["runs"])
    assert report["largest"]["natoms"] == 216
    assert report["fits"]["chunked"]["slope"] > 0  # memory grows with atoms
    with pytest.raises(ValueError, match="edge_chunk"):
        large_inference(TINY, sizes=(64,), edge_chunk=0)
    with pytest.raises(ValueError, match="sizes"):
        large_inference(TINY, sizes=())


def test_ewald_and_pme_agree_and_are_timed():
    report = coulomb_scaling(sizes=(64, 216), repeats=1, progress=False)
    assert {(r["natoms"], r["method"]) for r in report["rows"]} == {
        (64, "ewald"), (64, "pme"), (216, "ewald"), (216, "pme")}  # fmt: skip
    # both sum the same lattice to the package's accuracy
    assert report["max_energy_difference"] < 1e-4
    # rock salt: the Madelung energy per ion pair is about -1.7476 e²/(a/2) → negative
    assert all(r["energy_per_atom"] < -3.0 for r in report["rows"])
    with pytest.raises(ValueError, match="methods"):
        coulomb_scaling(sizes=(64,), methods=("p3m",))


def test_coulomb_method_can_be_switched():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    pos = torch.tensor(atoms.positions)
    cell = torch.tensor(atoms.cell.array)
    q = torch.tensor(np.where(atoms.numbers == 11, 1.0, -1.0))
    pbc = torch.ones(3, dtype=torch.bool)
    term = Coulomb(2.0, method="ewald")
    ewald = float(term.bare_energies(q, pos, cell, pbc).sum())
    term.set_method("pme")
    assert term.method == "pme" and not term._calculators
    assert float(term.bare_energies(q, pos, cell, pbc).sum()) == pytest.approx(ewald, rel=1e-5)
    with pytest.raises(ValueError, match="method"):
        term.set_method("p3m")


def test_bench_large_cli_json(tmp_path, capsys):
    args = ["bench", "large", "--sizes", "64", "--unchunked-max", "0", "--edge-chunk", "300",
            "--coulomb-sizes", "64", "--out", str(tmp_path), "--json"]  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inference"]["runs"][0]["variant"] == "chunked"
    assert (tmp_path / "large.png").is_file()
    assert main(args) == 2  # outputs exist: refused without --force


@pytest.mark.slow
def test_compiled_inference_matches_eager():
    """torch.compile (inference only) gives the eager energy, forces and stress."""
    torch.manual_seed(0)
    model = GNNPModel(TINY).to(torch.float64)
    with torch.no_grad():
        model.atomic_reference[14] = -4.6
        model.fitted_elements[14] = True
    atoms = bulk("Si", cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=0)
    eager = GNNPCalculator(model)
    compiled = GNNPCalculator(model, compile=True)
    assert compiled.model is not model and not model.compile_inference  # a copy is changed
    for seed in (0, 1):  # a second structure reuses the compiled graph
        atoms.rattle(0.02, seed=seed)
        for calc in (eager, compiled):
            calc.calculate(atoms, ["energy", "forces", "stress"])
        ref, out = eager.results, compiled.results
        assert out["energy"] == pytest.approx(ref["energy"], abs=1e-10)
        np.testing.assert_allclose(out["forces"], ref["forces"], atol=1e-10)
        np.testing.assert_allclose(out["stress"], ref["stress"], atol=1e-12)
    assert compiled.model._compiled.fn is not None  # the compiled path was taken
    compiled.model.double()  # new tensors: the compiled twin is dropped
    assert compiled.model._compiled.fn is None


def test_bench_md_with_performance_options(capsys):
    args = ["bench", "--model", "sige-small", "--sizes", "8", "--steps", "2", "--threads", "1",
            "--edge-chunk", "40", "--autocast", "bfloat16", "--json"]  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["edge_chunk"] == 40 and report["autocast"] == "bfloat16"
    assert report["throughput"][0]["atom_steps_per_s"] > 0


def test_allocator_tuning():
    from ase_gnnp.perf.allocator import tune_cpu_allocator

    assert tune_cpu_allocator() is True  # glibc on Linux: every setting accepted
    with pytest.raises(ValueError, match="mmap_threshold"):
        tune_cpu_allocator(mmap_threshold=-1)
    with pytest.raises(ValueError, match="top_pad"):
        tune_cpu_allocator(top_pad=2**40)


def test_compile_and_edge_chunk_exclude_each_other():
    with pytest.raises(ValueError, match="exclude each other"):
        GNNPModel(TINY).set_performance_options(compile_inference=True, edge_chunk=100)
    with pytest.raises(TypeError, match="compile"):
        GNNPCalculator(GNNPModel(TINY), compile="no")


def test_autocast_needs_a_float32_model():
    model = GNNPModel(TINY).double().set_performance_options(autocast_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="float32"):
        model(atoms_to_batch([bulk("Si", cubic=True)], TINY.cutoff, torch.float64))


def test_compiled_inference_refuses_several_cpu_threads():
    model = GNNPModel(TINY).eval().set_performance_options(compile_inference=True)
    data = atoms_to_batch([bulk("Si", cubic=True)], TINY.cutoff)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(ValueError, match="one torch thread"):
            model(data, forces=True)
    finally:
        torch.set_num_threads(previous)
