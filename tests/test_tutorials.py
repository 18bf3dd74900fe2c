"""The tutorials run (quick modes) and print their figures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_tutorial

from ase_gnnp.checkpoint import shipped_models

ROOT = Path(__file__).resolve().parents[1]
MLEARN_SI = ROOT.parent / "shared" / "data" / "mlearn" / "Si_train.extxyz"


def _run(*args: str) -> str:
    env_cmd = [sys.executable, *args]
    done = subprocess.run(env_cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif("sige-small" not in shipped_models(), reason="sige-small is not shipped")
def test_quickstart(tmp_path):
    out = _run("tutorials/quickstart.py", "--out", str(tmp_path), "--md-steps", "5")
    assert "a0 =" in out and "atom-steps/s" in out
    assert (tmp_path / "quickstart_eos.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.skipif(not MLEARN_SI.is_file(), reason=f"mlearn data not found at {MLEARN_SI}")
def test_mlearn_benchmark_quick(tmp_path):
    out = _run("tutorials/bench_mlearn_si.py", "--quick", "--threads", "1", "--out", str(tmp_path))
    assert "force MAE" in out and "atom-steps/s" in out
    assert (tmp_path / "bench.json").is_file()
    assert (tmp_path / "learning_curve.png").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not MLEARN_SI.is_file(), reason=f"mlearn data not found at {MLEARN_SI}")
def test_dft_benchmark_quick(tmp_path):
    """The plain train command on a held-out fold, scored (MACE needs the peer venv: off)."""
    out = _run(
        "tutorials/bench_dft.py",
        "--quick",
        "--data",
        "si",
        "--threads",
        "1",
        "--peers",
        "--out",
        str(tmp_path),
        "--figures",
        str(tmp_path),
    )
    assert "si ase_gnnp 0.1 min, held_out: E" in out and "training recipe" in out
    report = json.loads((tmp_path / "bench_dft_quick.json").read_text())
    (run,) = report["runs"]
    assert run["code"] == "ase_gnnp" and run["held_out"]["n_structures"] == 4
    assert run["epochs"] >= 1
    assert (tmp_path / "bench_dft_quick.png").stat().st_size > 1000


def test_dft_benchmark_mlearn_figure_from_the_shipped_reports(tmp_path):
    """The four-element figure is drawn from the reports shipped in tutorials/figures."""
    bench_dft = load_tutorial("bench_dft")
    figures = tmp_path / "figures"
    figures.mkdir()
    for name in ("si", "li"):
        shutil.copy(ROOT / "tutorials" / "figures" / f"bench_dft_{name}.json", figures)
    assert bench_dft.plot_mlearn(figures, tmp_path / "mlearn.png") == ["si", "li"]
    assert (tmp_path / "mlearn.png").stat().st_size > 1000
    assert bench_dft.plot_mlearn(tmp_path, tmp_path / "none.png") == []


def test_dft_benchmark_reuses_mace_predictions_until_model_or_structures_change(
    tmp_path, monkeypatch
):
    """Rescoring a finished benchmark reads MACE's saved predictions; a new model or new
    structures make it predict again (the worker is replaced by a counter here)."""
    import os

    from ase.build import bulk

    bench_dft = load_tutorial("bench_dft")
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        frames = bench_dft.read(cmd[3], ":")
        bench_dft.write(cmd[4], frames, format="extxyz")

    monkeypatch.setattr(bench_dft.subprocess, "run", fake_run)
    (tmp_path / "mace_10min").mkdir()
    model = tmp_path / "mace_10min" / "model.model"
    model.write_text("weights")
    frames_file = tmp_path / "test.extxyz"
    frames = [bulk("Si"), bulk("Ge")]
    bench_dft.write_if_changed(frames_file, frames)
    written = frames_file.stat().st_mtime_ns
    bench_dft.write_if_changed(frames_file, frames)
    assert frames_file.stat().st_mtime_ns == written  # same structures: file left alone

    def predict():
        return bench_dft.mace_predictions(sys.executable, model, frames_file, 1)

    assert len(predict()) == 2 and len(calls) == 1
    assert len(predict()) == 2 and len(calls) == 1  # reused
    later = frames_file.stat().st_mtime + 10
    os.utime(model, (later, later))  # a retrained model
    predict()
    assert len(calls) == 2
    bench_dft.write_if_changed(frames_file, frames[:1])  # other structures
    os.utime(frames_file, (later + 10, later + 10))
    assert len(predict()) == 1 and len(calls) == 3


@pytest.mark.slow
def test_sio2_long_range_quick(tmp_path):
    out = _run("tutorials/sio2_long_range.py", "--quick", "--threads", "1", "--out", str(tmp_path))
    assert "mean learned charge" in out and "hybrid / short-range" in out
    report = (tmp_path / "sio2_long_range.json").read_text()
    assert '"hybrid"' in report and '"short_range"' in report


@pytest.mark.slow
@pytest.mark.skipif("water-pbe0" not in shipped_models(), reason="water-pbe0 is not shipped")
def test_water_field_quick(tmp_path):
    out = _run("tutorials/water_field.py", "--quick", "--threads", "1", "--out", str(tmp_path))
    assert "dipole MAE" in out and "slope" in out
    assert (tmp_path / "water_field_dipoles.png").stat().st_size > 1000
    assert (tmp_path / "water_field_quick.json").is_file()


@pytest.mark.slow
@pytest.mark.skipif("sige-small" not in shipped_models(), reason="sige-small is not shipped")
def test_elastic_constants_quick(tmp_path):
    args = ("--quick", "--threads", "1", "--out", str(tmp_path))
    out = _run("tutorials/elastic_constants.py", *args)
    assert "largest deviation from the teacher" in out
    assert (tmp_path / "elastic_sweep_quick.png").stat().st_size > 1000
    assert (tmp_path / "elastic_constants_quick.json").is_file()


@pytest.mark.slow
@pytest.mark.skipif("sige-small" not in shipped_models(), reason="sige-small is not shipped")
def test_phonons_quick(tmp_path):
    pytest.importorskip("phonopy")
    out = _run("tutorials/phonons_si.py", "--quick", "--threads", "1", "--out", str(tmp_path))
    assert "largest deviation from the teacher" in out and "analytic Hessian" in out
    assert (tmp_path / "phonons_si_quick.png").stat().st_size > 1000
    assert (tmp_path / "phonons_si_thermal_quick.png").stat().st_size > 1000
    assert (tmp_path / "phonons_si_quick.json").is_file()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("i-pi") is None, reason="i-pi is not installed")
def test_pimd_quick(tmp_path):
    out = _run("tutorials/pimd_si.py", "--quick", "--out", str(tmp_path))
    assert "potential error" in out and "discretisation error at P=4" in out
    assert (tmp_path / "pimd_si_quick.png").stat().st_size > 1000
    assert (tmp_path / "pimd_si_quick.json").is_file()


@pytest.mark.slow
@pytest.mark.skipif("w-eam" not in shipped_models(), reason="w-eam is not shipped")
def test_peierls_quick(tmp_path):
    out = _run("tutorials/peierls_w.py", "--quick", "--threads", "1", "--out", str(tmp_path))
    assert "model / teacher barrier" in out
    assert (tmp_path / "peierls_w_quick.png").stat().st_size > 1000
    assert (tmp_path / "peierls_w_quick.json").is_file()


@pytest.mark.skipif("w-eam" not in shipped_models(), reason="w-eam is not shipped")
def test_peierls_range_quick(tmp_path):
    out = _run("tutorials/peierls_range.py", "--quick", "--threads", "1", "--out", str(tmp_path))
    rows = json.loads((tmp_path / "peierls_range.json").read_text())
    full, cut = rows["teacher (5.46 Å)"], rows["teacher cut at 4.5 Å"]
    profile = full["profile_meV_per_b"]
    assert len(profile) == 9 and profile[0] == 0 and max(profile) > 30  # the held-out hump
    assert max(cut["profile_meV_per_b"]) < 0.5 * max(profile)  # the 3rd-5th shells matter
    assert full["C11_C12_C44_GPa"] == pytest.approx([523.0, 202.2, 160.9], abs=1.0)
    assert "w-eam" in out and (tmp_path / "peierls_range.png").stat().st_size > 1000


@pytest.mark.slow
def test_uq_quick(tmp_path):
    out = _run("tutorials/uq_si.py", "--quick", "--threads", "1", "--out", str(tmp_path),
               "--runs", str(tmp_path / "runs"))  # fmt: skip
    assert "AUROC" in out and "coverage" in out and "plain si-md300 MD" in out
    assert (tmp_path / "uq_si_quick.png").stat().st_size > 1000
    assert (tmp_path / "uq_si_quick.json").is_file()


@pytest.mark.slow
def test_adaptive_md_quick(tmp_path):
    out = _run("tutorials/adaptive_md_si.py", "--quick", "--out", str(tmp_path),
               "--runs", str(tmp_path / "runs"))  # fmt: skip
    assert "reference calls" in out and "plain" in out and "adaptive" in out
    assert (tmp_path / "adaptive_md_si_quick.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.skipif("cuauni-emt" not in shipped_models(), reason="cuauni-emt is not shipped")
def test_mixing_quick(tmp_path):
    out = _run("tutorials/mixing.py", "--quick", "--threads", "1", "--out", str(tmp_path))
    assert "verdict" in out and "largest deviation" in out
    assert (tmp_path / "mixing_cuau_quick.png").stat().st_size > 1000
    report = json.loads((tmp_path / "mixing_quick.json").read_text())
    assert set(report) == {"sige", "cuau"}
