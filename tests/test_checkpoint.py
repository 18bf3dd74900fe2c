"""Saving and loading models: round trip, versioning and clear errors for bad files."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import make_bulk, make_cluster

from ase_gnnp import GNNPCalculator, GNNPModel, load_model, save_model
from ase_gnnp.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, shipped_models


def _results(model, frames):
    return GNNPCalculator(model, dtype=torch.float64).batch_evaluate(frames, stress=False)


def test_round_trip_identical_results(small_model, tmp_path):
    path = save_model(small_model, tmp_path / "m.pt", metadata={"note": "test", "epoch": 3})
    assert path.is_file()
    loaded = load_model(path)
    assert isinstance(loaded, GNNPModel)
    assert loaded.config == small_model.config
    assert loaded.dtype == torch.float64
    assert loaded.metadata == {"note": "test", "epoch": 3}
    for key, value in small_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    frames = [make_bulk(), make_cluster()]
    for a, b in zip(_results(small_model, frames), _results(loaded, frames)):
        assert a["energy"] == b["energy"]
        np.testing.assert_array_equal(a["forces"], b["forces"])
        np.testing.assert_array_equal(a["energies"], b["energies"])


def test_round_trip_through_calculator_path(small_model, tmp_path):
    path = save_model(small_model, tmp_path / "m.pt")
    atoms = make_bulk()
    atoms.calc = GNNPCalculator(str(path), dtype=torch.float64)
    ref = make_bulk()
    ref.calc = GNNPCalculator(small_model, dtype=torch.float64)
    assert atoms.get_potential_energy() == ref.get_potential_energy()
    np.testing.assert_array_equal(atoms.get_stress(), ref.get_stress())


def test_load_with_dtype(small_model, tmp_path):
    path = save_model(small_model, tmp_path / "m.pt")
    model32 = load_model(path, dtype=torch.float32)
    assert model32.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model32.parameters())


def test_fitted_statistics_survive(small_model, tmp_path):
    loaded = load_model(save_model(small_model, tmp_path / "m.pt"))
    assert float(loaded.scale) == pytest.approx(0.7)
    assert float(loaded.atomic_reference[14]) == pytest.approx(-4.63)
    assert float(loaded.layers[0].avg_num_neighbors) == pytest.approx(4.0)
    assert bool(loaded.fitted_elements[32])


def test_missing_file_mentions_shipped_models(tmp_path):
    with pytest.raises(ValueError, match="shipped model"):
        load_model(tmp_path / "does-not-exist.pt")
    with pytest.raises(ValueError, match="shipped model"):
        load_model("no-such-model")


def test_saving_into_a_missing_folder_names_it(small_model, tmp_path):
    with pytest.raises(ValueError, match="folder .*nowhere.* does not exist"):
        save_model(small_model, tmp_path / "nowhere" / "model.pt")
    assert not (tmp_path / "nowhere").exists()


def test_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="shipped model"):
        load_model(tmp_path)


CORRUPT = {
    "random bytes": np.random.default_rng(0).bytes(2048),
    "empty file": b"",
    "zip header then garbage": b"PK\x03\x04" + np.random.default_rng(1).bytes(512),
    "pickle header then garbage": b"\x80\x02" + np.random.default_rng(2).bytes(100),
}


@pytest.mark.parametrize("content", list(CORRUPT.values()), ids=list(CORRUPT))
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="corrupt"):
        load_model(path)


def test_truncated_checkpoint(small_model, tmp_path):
    path = save_model(small_model, tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        load_model(path)


# torch.load(weights_only=True) of a file that is not a zip archive falls back to the
# legacy unpickler, which raises KeyError, IndexError or UnicodeDecodeError for some inputs;
# checkpoint.read_checkpoint only converts RuntimeError, EOFError, UnpicklingError,
# BadZipFile and OSError into "corrupt" ValueErrors.


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"hello world\n", id="text hello"),
        pytest.param(b"abc", id="text abc"),
        pytest.param(b"energy: -4.6\nforces: []\n", id="yaml text"),
    ],
)
def test_text_file_is_corrupt(tmp_path, content):
    """A text file renamed to .pt is reported as corrupt."""
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="corrupt"):
        load_model(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_many_random_files_give_value_error(tmp_path):
    """Whatever the bytes, a bad file is a ValueError (never KeyError, IndexError, ...)."""
    path = tmp_path / "r.pt"
    for seed in range(80):
        rng = np.random.default_rng(seed)
        path.write_bytes(rng.bytes(int(rng.integers(1, 3000))))
        with pytest.raises(ValueError, match="corrupt|not an ase_gnnp"):
            load_model(path)


def test_other_version(small_model, tmp_path):
    path = save_model(small_model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == CHECKPOINT_FORMAT
    assert payload["version"] == CHECKPOINT_VERSION
    payload["version"] = 999
    torch.save(payload, path)
    with pytest.raises(ValueError, match="version"):
        load_model(path)


@pytest.mark.parametrize("obj", [{"a": 1}, [1, 2, 3], torch.zeros(3), {"format": "other"}])
def test_foreign_torch_file(tmp_path, obj):
    path = tmp_path / "other.pt"
    torch.save(obj, path)
    with pytest.raises(ValueError, match="not an ase_gnnp model checkpoint"):
        load_model(path)


@pytest.mark.parametrize(
    "option, value, message",
    [("channels", 16, "does not match its model config"), ("bogus", 1, "bogus")],
)
def test_edited_model_config_is_rejected(small_model, tmp_path, option, value, message):
    """A config that no longer fits the weights, or names an unknown option: ValueError."""
    path = save_model(small_model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["model_config"][option] = value
    torch.save(payload, path)
    with pytest.raises(ValueError, match=message):
        load_model(path)


@pytest.mark.skipif(
    "sige-small" not in shipped_models(), reason="shipped model sige-small.pt not present"
)
def test_load_shipped_model():
    model = load_model("sige-small")
    assert isinstance(model, GNNPModel)
    atoms = make_bulk()
    atoms.calc = GNNPCalculator("sige-small")
    energy = atoms.get_potential_energy()
    assert np.isfinite(energy)
    # Tersoff-like cohesive energies: a few eV per atom, negative
    assert -6.0 < energy / len(atoms) < -3.0
    assert np.abs(atoms.get_forces()).max() < 10.0


def test_deep_copied_product_model_round_trips(tmp_path):
    """A deep copy (as the EMA and the calculator make) of a correlation-3 model saves
    and loads: e3nn's code-generation constants stay out of the checkpoint."""
    from dataclasses import replace

    from conftest import SMALL_CONFIG

    torch.manual_seed(0)
    model = GNNPModel(replace(SMALL_CONFIG, correlation=3)).to(torch.float64)
    copied = copy.deepcopy(model)
    assert set(copied.state_dict()) == set(model.state_dict())
    path = tmp_path / "product.pt"
    save_model(copied, path)
    loaded = load_model(path, dtype=torch.float64)
    atoms = make_bulk()
    e_ref = GNNPCalculator(model, dtype=torch.float64).get_potential_energy(atoms)
    assert GNNPCalculator(loaded, dtype=torch.float64).get_potential_energy(atoms) == e_ref
