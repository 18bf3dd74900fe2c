"""Transferability and sample-efficiency studies on small EMT sets (Cu source, Au target)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from ase_gnnp.checkpoint import load_model, save_model
from ase_gnnp.cli import main
from ase_gnnp.config import ModelConfig
from ase_gnnp.data import labelled_graph
from ase_gnnp.model import GNNPModel
from ase_gnnp.train import TrainConfig
from ase_gnnp.train.statistics import predicted_energies, refit_new_references
from ase_gnnp.workflows.sample_efficiency import reduction_factors, sample_efficiency_study
from ase_gnnp.workflows.transfer import refit_references, split_target, transfer_study

TINY = ModelConfig(cutoff=3.5, channels=4, lmax=1, num_layers=2, num_radial=4, radial_hidden=8,
                   readout_hidden=4)  # fmt: skip


def _emt_frames(symbol: str, n: int, seed: int) -> list:
    """Rattled and strained fcc cells of ``symbol`` labelled by EMT."""
    rng = np.random.default_rng(seed)
    a = {"Cu": 3.61, "Au": 4.08}[symbol]
    frames = []
    for _ in range(n):
        atoms = bulk(symbol, "fcc", a=a * rng.uniform(0.97, 1.03), cubic=True)
        atoms.rattle(0.08, seed=int(rng.integers(2**31)))
        atoms.calc = EMT()
        results = {p: atoms.calc.get_property(p, atoms) for p in ("energy", "forces", "stress")}
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["config_type"] = "bulk"
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transfer")
    write(folder / "cu.extxyz", _emt_frames("Cu", 12, 0), format="extxyz")
    write(folder / "au.extxyz", _emt_frames("Au", 10, 1), format="extxyz")
    return folder / "cu.extxyz", folder / "au.extxyz"


def _config(**changes) -> TrainConfig:
    return TrainConfig(epochs=2, batch_size=2, threads=1, model=TINY).updated(**changes)


def test_refit_new_references_fits_what_the_model_misses():
    torch.manual_seed(0)
    model = GNNPModel(TINY).double()
    with torch.no_grad():
        model.atomic_reference[29] = -3.5
        model.fitted_elements[29] = True
    rng = np.random.default_rng(0)
    frames = []
    for k in range(6):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (1, 1, 2)
        atoms.numbers[rng.permutation(8)[: k + 1]] = 79
        atoms.rattle(0.05, seed=k)
        atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((8, 3)))
        frames.append(atoms)
    graphs = [labelled_graph(a, TINY.cutoff, dtype=torch.float64) for a in frames]
    predicted = predicted_energies(model, graphs)  # Au reference still 0
    for atoms, e in zip(frames, predicted):  # labels: the model plus 1.7 eV per Au atom
        n_au = int((atoms.numbers == 79).sum())
        atoms.calc = SinglePointCalculator(atoms, energy=e + 1.7 * n_au, forces=np.zeros((8, 3)))
    graphs = [labelled_graph(a, TINY.cutoff, dtype=torch.float64) for a in frames]
    refs = refit_new_references(model, graphs)
    assert refs[29] == -3.5 and refs[79] == pytest.approx(1.7, abs=1e-9)
    assert bool(model.fitted_elements[79])
    labels = [float(g["ref_energy"].sum()) for g in graphs]
    np.testing.assert_allclose(predicted_energies(model, graphs), labels, atol=1e-9)
    # a second call finds nothing new and changes nothing
    assert refit_new_references(model, graphs) == refs
    # the study's helper works on a copy and names only the new elements
    copy, new = refit_references(GNNPModel(TINY).double(), frames[:2])
    assert set(new) == {"Cu", "Au"} and bool(copy.fitted_elements[79])


def test_split_target_is_nested_and_disjoint():
    frames = _emt_frames("Cu", 7, 3)
    split = split_target(frames, 4, seed=2)
    ids = [id(a) for a in split.pool + split.test]
    assert len(split.pool) == 4 and len(split.test) == 3 and len(set(ids)) == 7
    assert [id(a) for a in split_target(frames, 4, seed=2).pool] == ids[:4]  # reproducible
    with pytest.raises(ValueError, match="cannot draw 7 for fine-tuning"):
        split_target(frames, 7)


def test_reduction_factors():
    sizes = [10, 20, 40, 80, 160]
    scratch = [n**-0.5 for n in sizes]
    tuned = [(10 * n) ** -0.5 for n in sizes]  # what scratch reaches with 10x the data
    rows = reduction_factors(sizes, scratch, tuned)
    # inside the range, then continued up to 4x beyond it (640), then only a bound
    assert [r["factor"] for r in rows] == pytest.approx([10, 10, 10, None, None])
    assert [r["extrapolated"] for r in rows] == [False, True, True, False, False]
    assert [r["at_least"] for r in rows] == [None, 8.0, 4.0, 2.0, 1.0]
    # log-log interpolation between two points of a curve that is no power law overall
    rows = reduction_factors([10, 100, 1000], [1.0, 0.1, 0.09], [0.1**0.5, 0.095, 0.095])
    assert rows[0]["factor"] == pytest.approx(10**0.5) and not rows[0]["extrapolated"]
    assert rows[1]["n_scratch"] == pytest.approx(10 ** (2 + np.log(0.095 / 0.1) / np.log(0.9)))
    # a nearly flat scratch curve: no overflow, no made-up factor, only the bound
    flat = reduction_factors([10, 20, 40], [0.1, 0.0999, 0.0998], [0.01] * 3)
    assert [r["factor"] for r in flat] == [None] * 3
    assert [r["at_least"] for r in flat] == [4.0, 2.0, 1.0]
    # a curve that rises again is read through its running minimum: crossed once
    bumpy = reduction_factors([10, 100, 1000], [1.0, 2.0, 0.5], [0.9, 0.9, 0.9])
    assert bumpy[0]["n_scratch"] == pytest.approx(100 * 10 ** (np.log(0.9) / np.log(0.5)))
    worse = reduction_factors(sizes, scratch, [1.2 * v for v in scratch])
    assert all(r["factor"] < 1 for r in worse[1:])
    with pytest.raises(ValueError, match="one entry per size"):
        reduction_factors([10, 20], [0.1], [0.1, 0.1])
    with pytest.raises(ValueError, match="fine-tuned errors must be finite and positive"):
        reduction_factors([10, 20], [0.2, 0.1], [0.0, 0.1])


def test_refit_skips_new_elements_without_energies():
    model = GNNPModel(TINY).double()
    atoms = bulk("Au", "fcc", a=4.08, cubic=True)
    atoms.calc = SinglePointCalculator(atoms, forces=np.zeros((4, 3)))
    graph = labelled_graph(atoms, TINY.cutoff, dtype=torch.float64)
    assert refit_new_references(model, [graph]) == {}
    assert not bool(model.fitted_elements[79])


def test_train_run_steps_and_requests(sets, tmp_path):
    from ase.io import read

    from ase_gnnp.workflows.runs import train_run

    frames = read(sets[1], ":")
    config = _config(batch_size=4)
    # 5 structures in batches of 4 make 2 steps per epoch: 10 steps are 5 epochs
    train_run(config, frames[:5], tmp_path / "a", steps=10, progress=False)
    assert TrainConfig.from_yaml(tmp_path / "a/config.yaml").epochs == 5
    train_run(config, frames[:5], tmp_path / "m", steps=2, min_epochs=3, progress=False)
    assert TrainConfig.from_yaml(tmp_path / "m/config.yaml").epochs == 3
    with pytest.raises(ValueError, match="other training structures"):
        train_run(config, frames[1:6], tmp_path / "a", steps=10, progress=False)
    with pytest.raises(ValueError, match="other training options"):
        train_run(config, frames[:5], tmp_path / "a", steps=20, progress=False)
    with pytest.raises(ValueError, match="val_data must be unset"):
        train_run(config.updated(val_data="x.extxyz"), frames, tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        train_run(config, frames, tmp_path / "b", steps=0, progress=False)
    # fine-tuning runs remember their starting model
    train_run(config, frames[:2], tmp_path / "c", init_from=tmp_path / "a/model.pt", steps=1,
              progress=False)  # fmt: skip
    other = load_model(tmp_path / "a/model.pt")
    with torch.no_grad():
        other.scale.mul_(2)
    save_model(other, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other starting model"):
        train_run(config, frames[:2], tmp_path / "c", init_from=tmp_path / "other.pt", steps=1,
                  progress=False)  # fmt: skip
    # a killed run (state saved, no run.json) resumes instead of starting afresh
    (tmp_path / "c/run.json").unlink()
    train_run(config, frames[:2], tmp_path / "c", init_from=tmp_path / "a/model.pt", steps=1,
              progress=False)  # fmt: skip
    assert (tmp_path / "c/run.json").is_file()


@pytest.mark.slow
def test_transfer_study_and_cli(sets, tmp_path, capsys):
    source, target = sets
    out = tmp_path / "study"
    kwargs = dict(source_config=_config(), finetune_config=_config(freeze="equivariant"),
                  n_reference=2, sizes=[2, 4], steps=4, progress=False)  # fmt: skip
    report = transfer_study(source, target, out, **kwargs)
    assert report["elements"] == {"source": ["Cu"], "target": ["Au"], "new": ["Au"]}
    assert report["settings"]["n_target_test"] == 6
    assert 0 < report["settings"]["n_source_test"] < 12
    assert report["force_growth"] == pytest.approx(
        report["zero_shot"]["force_mae"] / report["in_domain"]["force_mae"])  # fmt: skip
    assert set(report["reference_refit"]["references"]) == {"Au"}
    assert [r["n"] for r in report["finetune"]] == [2, 4]
    runs = sorted(p.name for p in out.iterdir())
    assert runs == ["finetune_2", "finetune_4", "source"]
    # the source model never saw its in-domain test structures
    from ase.io import read

    trained = read(out / "source/train.extxyz", ":")
    assert len(trained) + report["settings"]["n_source_test"] == 12
    held = {a.positions.tobytes() for a in read(source, ":")} - {
        a.positions.tobytes() for a in trained}  # fmt: skip
    assert len(held) == report["settings"]["n_source_test"]
    # fine-tuning kept the frozen equivariant layers of the source model
    parent, child = load_model(out / "source/model.pt"), load_model(out / "finetune_4/model.pt")
    frozen = [k for k in parent.state_dict() if k.startswith("layers.0.")]
    assert frozen and all(torch.equal(parent.state_dict()[k], child.state_dict()[k])
                          for k in frozen)  # fmt: skip
    assert bool(child.fitted_elements[79]) and not bool(parent.fitted_elements[79])
    # a second call reuses every run
    mtimes = {p: p.stat().st_mtime for p in out.glob("*/model.pt")}
    assert transfer_study(source, target, out, **kwargs) == report
    assert mtimes == {p: p.stat().st_mtime for p in out.glob("*/model.pt")}
    # with a given model, --source is its test set as a whole
    no_source = {k: v for k, v in kwargs.items() if k != "source_config"}
    given = transfer_study(source, target, tmp_path / "given", model=out / "source/model.pt",
                           **no_source)  # fmt: skip
    assert given["settings"]["n_source_test"] == 12 and not (tmp_path / "given/source").exists()
    with pytest.raises(ValueError, match="either a source model or source_config"):
        transfer_study(source, target, tmp_path / "x", model=out / "source/model.pt",
                       **kwargs)  # fmt: skip
    with pytest.raises(ValueError, match="is the training data of"):
        transfer_study(out / "source/train.extxyz", target, tmp_path / "x",
                       model=out / "source/model.pt", **no_source)  # fmt: skip
    with pytest.raises(ValueError, match="source_test_fraction must be in"):
        transfer_study(source, target, out, source_test_fraction=0.0, **kwargs)
    # the command line
    config = tmp_path / "base.yaml"
    _config().to_yaml(config)
    args = ["report", "transfer", "--source", str(source), "--target", str(target),
            "--config", str(config), "--n-reference", "2", "--sizes", "2", "4", "--steps", "4",
            "--out", str(tmp_path / "cli")]  # fmt: skip
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["elements"]["new"] == ["Au"]
    assert json.loads((tmp_path / "cli/transfer.json").read_text()) == printed
    assert (tmp_path / "cli/transfer.png").stat().st_size > 1000
    assert main(args) == 0  # reused runs, the text table
    text = capsys.readouterr().out
    assert "zero-shot" in text and "N=4" in text
    assert main([*args[:3], str(tmp_path / "missing.extxyz"), *args[4:]]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="n_reference must be between 1"):
        transfer_study(source, target, out, **(kwargs | {"n_reference": 9}))


@pytest.mark.slow
def test_sample_efficiency_study_and_cli(sets, tmp_path, capsys):
    source, target = sets
    from ase_gnnp.train import Trainer

    Trainer(_config(data=str(source), out=str(tmp_path / "pre")), progress=False).run()
    pretrained = tmp_path / "pre/model.pt"
    out = tmp_path / "eff"
    ft = _config(freeze="equivariant", lr=1e-3)
    report = sample_efficiency_study(pretrained, target, out, sizes=[2, 4], finetune_config=ft,
                                     scratch_config=_config(), steps=4,
                                     progress=False)  # fmt: skip
    assert report["target_in_source"] == [] and report["elements"] == ["Au"]
    assert [r["n"] for r in report["finetune"]] == [2, 4] == [r["n"] for r in report["scratch"]]
    assert len(report["reduction_force"]) == 2
    assert report["relative_difference_force"] == pytest.approx(
        [f["force_mae"] / s["force_mae"] - 1 for f, s in zip(report["finetune"], report["scratch"])]
    )
    assert isinstance(report["scratch_decreasing_energy"], bool)
    assert report["settings"]["n_test"] == 6
    # a subset of the sizes with the same pool shares the split and reuses the runs
    mtimes = {p: p.stat().st_mtime for p in out.glob("*/model.pt")}
    part = sample_efficiency_study(pretrained, target, out, sizes=[2], finetune_config=ft,
                                   scratch_config=_config(), steps=4, pool_size=4,
                                   progress=False)  # fmt: skip
    assert part["finetune"][0] == report["finetune"][0]
    assert mtimes == {p: p.stat().st_mtime for p in out.glob("*/model.pt")}
    only = sample_efficiency_study(pretrained, target, out, sizes=[2, 4], finetune_config=ft,
                                   scratch_config=_config(), steps=4, kinds=["scratch"],
                                   progress=False)  # fmt: skip
    assert only["finetune"] == [] and only["scratch"] == report["scratch"]
    assert only["reduction_force"] == []
    with pytest.raises(ValueError, match="kinds must be"):
        sample_efficiency_study(pretrained, target, out, sizes=[2], kinds=["both"])
    with pytest.raises(ValueError, match="pool_size 1 is smaller"):
        sample_efficiency_study(pretrained, target, out, sizes=[2], pool_size=1)
    scratch = load_model(out / "scratch_4/model.pt")
    assert scratch.config == load_model(pretrained).config  # the same architecture
    assert TrainConfig.from_yaml(out / "scratch_4/config.yaml").epochs == 2  # 4 steps x 2 / 4
    # a pretrained model that has seen the target is flagged
    model = load_model(pretrained)
    with torch.no_grad():
        model.fitted_elements[79] = True
    save_model(model, tmp_path / "seen.pt")
    seen = sample_efficiency_study(tmp_path / "seen.pt", target, tmp_path / "seen", sizes=[2],
                                   finetune_config=ft, steps=2, progress=False)  # fmt: skip
    assert seen["target_in_source"] == ["Au"]
    config = tmp_path / "base.yaml"
    _config().to_yaml(config)
    args = ["report", "sample-efficiency", "--model", str(pretrained), "--target", str(target),
            "--sizes", "2", "4", "--steps", "4", "--config", str(config),
            "--out", str(out)]  # fmt: skip
    # runs asked with other options are not silently reused
    assert main([*args, "--finetune-lr", "3e-3"]) == 2
    assert "lr: 0.001 there, 0.003 now" in capsys.readouterr().err
    assert main([*args, "--finetune-lr", "1e-3", "--runs", "scratch"]) == 0
    assert "data reduction" not in capsys.readouterr().out
    assert main([*args, "--finetune-lr", "1e-3"]) == 0
    text = capsys.readouterr().out
    assert "data reduction at equal force error" in text
    assert (out / "sample_efficiency.png").stat().st_size > 1000
    assert json.loads((out / "sample_efficiency.json").read_text())["sizes"] == [2, 4]
