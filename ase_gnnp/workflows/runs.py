"""Training runs that a study can repeat: reused when finished, resumed when killed, and
refused when asked with other options, structures or starting model."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from ase import Atoms
from ase.io import write

from ase_gnnp.train import TrainConfig, Trainer

__all__ = ["check_same_options", "fingerprint", "train_run"]


def fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train_run(
    config: TrainConfig,
    frames: Sequence[Atoms],
    out: str | Path,
    init_from: str | Path | None = None,
    steps: int | None = None,
    hold_out: bool = False,
    min_epochs: int = 0,
    progress: bool = True,
) -> Path:
    """Train (or fine-tune from ``init_from``) on ``frames``; reuse a finished run in
    ``out`` and resume a killed one. Returns the path of the best model.

    A run in ``out`` is reused or resumed only for the same request: the same training
    options (:func:`check_same_options`), the same structures and the same starting
    model (their SHA-256 are kept in ``out/request.json``); anything else is a
    ``ValueError``, never a silently mixed study.

    With ``steps``, the run lasts ``ceil(steps / ceil(N / batch_size))`` epochs, so runs
    on sets of different sizes ``N`` get (at least, and nearly exactly) the same number of
    optimizer steps; ``min_epochs`` raises that for large sets, which a fixed step budget
    would leave under-trained. With ``hold_out`` the trainer holds out ``config.val_fraction`` of
    ``frames`` to select the best weights; without it the training set itself does (a
    few structures leave nothing to hold out).
    """
    out = Path(out)
    if config.val_data:
        raise ValueError(
            f"the study chooses the validation data; val_data must be unset, got "
            f"{config.val_data!r}"
        )
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    data = out / "train.extxyz"
    changes = {"data": str(data), "out": str(out)}
    if steps is not None:
        batches = math.ceil(len(frames) / config.batch_size)
        changes["epochs"] = max(1, math.ceil(steps / batches), min_epochs)
    if not hold_out:
        changes["val_data"] = str(data)
    config = config.updated(**changes)
    buffer = io.StringIO()
    write(buffer, list(frames), format="extxyz")
    text = buffer.getvalue()
    request = {
        "frames_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "init_from": None if init_from is None else str(Path(init_from).resolve()),
        "init_sha256": None if init_from is None else fingerprint(init_from),
    }
    check_same_options(config, out, init_from is not None)
    saved = out / "request.json"
    if saved.is_file():
        old = json.loads(saved.read_text())
        diff = [k for k in ("frames_sha256", "init_sha256") if old.get(k) != request[k]]
        if diff:
            what = {"frames_sha256": "training structures", "init_sha256": "starting model"}
            raise ValueError(
                f"{out} holds a run with other {' and '.join(what[k] for k in diff)}; choose "
                f"another study folder or remove that run"
            )
    elif (out / "checkpoint.pt").is_file():
        raise ValueError(f"{out} holds a run without its request.json; remove that run")
    if (out / "run.json").is_file():
        return out / "model.pt"
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "checkpoint.pt").is_file():  # (re)write the data of a run not started
        partial = data.with_suffix(".partial")
        partial.write_text(text)
        os.replace(partial, data)
        saved.write_text(json.dumps(request, indent=2))
        init = None if init_from is None else str(init_from)
        trainer = Trainer(config, init_from=init, progress=progress)
    else:
        trainer = Trainer.resume(out, progress=progress)
    result = trainer.run()
    (out / "run.json").write_text(
        json.dumps({k: result[k] for k in ("stop_reason", "epochs", "wall_s")})
    )
    return out / "model.pt"


#: options that may differ between a run in a study folder and a repeated request
_FREE_OPTIONS = ("threads", "out", "data", "val_data")


def check_same_options(config: TrainConfig, out: Path, fine_tuning: bool) -> None:
    """A run already in ``out`` is reused or resumed only if it was asked with the same
    options (a fine-tuning run takes its architecture from the pretrained model)."""
    saved = out / "config.yaml"
    if not saved.is_file():
        return
    ignore = set(_FREE_OPTIONS) | ({"model"} if fine_tuning else set())
    old = {
        k: v
        for k, v in TrainConfig.from_yaml(saved, saved=True).to_dict().items()
        if k not in ignore
    }
    new = {k: v for k, v in config.to_dict().items() if k not in ignore}
    diff = sorted(k for k in new if old.get(k) != new[k])
    if diff:
        details = ", ".join(f"{k}: {old.get(k)!r} there, {new[k]!r} now" for k in diff)
        raise ValueError(
            f"{out} holds a run with other training options ({details}); choose another "
            f"study folder or remove that run"
        )
