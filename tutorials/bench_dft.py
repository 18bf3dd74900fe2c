"""Accuracy on real DFT data: the plain ``ase-gnnp train`` recipe against MACE, side by side.

Data (``../shared/data``, training splits only: the official test splits are held by the
team lead and never read here): the four mlearn elements (Zuo et al., J. Phys. Chem. A 124,
731 (2020); PBE) and 3BPA (Kovács et al., J. Chem. Theory Comput. 17, 7696 (2021);
ωB97X/6-31G(d)). Each set is split into 5 folds over whole structures, stratified by
``config_type`` (:func:`ase_gnnp.workflows.cv.fold_indices`, fold seed 0); ``--fold``
(default 0) is held out and scored, the rest trains. For 3BPA, the 300 K set is split and
the mixed-temperature set (300, 600 and 1200 K MD, never trained on) measures transfer.

For every budget in ``--minutes``, on the same machine with the same threads, one after the
other (nothing else may run meanwhile: training is timed):

- ase_gnnp: the plain command, ``ase-gnnp train --data train.extxyz --max-minutes M
  --threads T`` (the default recipe, :mod:`ase_gnnp.train.recipe`);
- MACE, as the issue that asked for this benchmark runs it: ``mace_run_train --model=MACE
  --hidden_irreps='64x0e+64x1o' --max_L=1 --correlation=3 --r_max=5.0 --batch_size=4
  --E0s=average --default_dtype=float32 --valid_fraction=0.1 --seed=1 --swa``, with
  ``--max_num_epochs`` set to the epochs that fit in M minutes (measured by a 3-epoch run
  first, which is not counted) in the peer environment of ``bench_peers.py``.

Both models then predict the held-out structures, scored by the same code: energy MAE/RMSE
per atom, force MAE/RMSE per component, stress MAE per Voigt component, overall and per
``config_type``. Results: ``--figures``/bench_dft_<set>.json and .png (error against
training minutes, both codes), and for the mlearn elements run so far one figure of all
of them, bench_dft_mlearn.png; runs in ``--out`` are reused when finished, and so are
MACE's predictions while its model and the structures are unchanged.

    python tutorials/bench_dft.py --data si --minutes 5 20      # ~50 min, idle machine
    python tutorials/bench_dft.py --data 3bpa --minutes 30
    python tutorials/bench_dft.py --data si ge mo li 3bpa --peers none   # ase_gnnp only
    python tutorials/bench_dft.py --quick --out /tmp/q --figures /tmp/q   # smoke test
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import DEFAULT_VENV, ensure_peer_venv  # noqa: E402

from ase_gnnp.workflows.cv import fold_indices  # noqa: E402

#: name -> (training file, transfer file or None)
DATASETS = {
    "si": (SHARED / "mlearn" / "Si_train.extxyz", None),
    "ge": (SHARED / "mlearn" / "Ge_train.extxyz", None),
    "mo": (SHARED / "mlearn" / "Mo_train.extxyz", None),
    "li": (SHARED / "mlearn" / "Li_train.extxyz", None),
    "3bpa": (SHARED / "3bpa" / "train_300K.xyz", SHARED / "3bpa" / "train_mixedT.xyz"),
}
MACE_ARGS = [
    "--model=MACE",
    "--hidden_irreps=64x0e+64x1o",
    "--max_L=1",
    "--correlation=3",
    "--r_max=5.0",
    "--batch_size=4",
    "--E0s=average",
    "--default_dtype=float32",
    "--valid_fraction=0.1",
    "--seed=1",
    "--swa",
]


# ---------------------------------------------------------------- data and scores
def labelled_copy(atoms):
    """A copy with the labels also under REF_* keys (what MACE reads)."""
    copy = atoms.copy()
    copy.calc = SinglePointCalculator(copy, **atoms.calc.results)
    copy.info["REF_energy"] = atoms.get_potential_energy()
    copy.arrays["REF_forces"] = atoms.get_forces()
    if "stress" in atoms.calc.results:
        copy.info["REF_stress"] = atoms.get_stress(voigt=False)
    return copy


def score(reference: list, predicted: list) -> dict:
    """Errors of ``predicted`` against ``reference`` (same order): energy per atom (eV),
    forces per component (eV/Å), stress per Voigt component (eV/Å³); overall and per
    ``config_type``."""

    def table(pairs) -> dict:
        e = np.array(
            [(p.get_potential_energy() - r.get_potential_energy()) / len(r) for r, p in pairs]
        )
        f = np.concatenate([(p.get_forces() - r.get_forces()).ravel() for r, p in pairs])
        out = {
            "n_structures": len(pairs),
            "energy_mae_per_atom": float(np.abs(e).mean()),
            "energy_rmse_per_atom": float(np.sqrt((e**2).mean())),
            "force_mae": float(np.abs(f).mean()),
            "force_rmse": float(np.sqrt((f**2).mean())),
        }
        stressed = [
            (r, p) for r, p in pairs if "stress" in r.calc.results and "stress" in p.calc.results
        ]
        if stressed:
            s = np.concatenate([p.get_stress() - r.get_stress() for r, p in stressed])
            out["stress_mae"] = float(np.abs(s).mean())
        return out

    pairs = list(zip(reference, predicted))
    result = table(pairs)
    groups = sorted({str(r.info.get("config_type", "all")) for r in reference})
    if len(groups) > 1:
        result["per_config_type"] = {
            g: table([(r, p) for r, p in pairs if str(r.info.get("config_type", "all")) == g])
            for g in groups
        }
    return result


def gnnp_predictions(model_path: Path, frames: list, threads: int) -> list:
    import torch

    from ase_gnnp import GNNPCalculator

    torch.set_num_threads(threads)
    calc = GNNPCalculator(str(model_path))
    out = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = calc
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if atoms.pbc.all():
            results["stress"] = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    return out


# ---------------------------------------------------------------- the two codes
def train_gnnp(train: Path, out: Path, minutes: float, threads: int) -> dict:
    """The plain command; reused when ``out/model.pt`` and ``out/bench_run.json`` exist."""
    done = out / "bench_run.json"
    if done.is_file():
        return {**json.loads(done.read_text()), "epochs": _epochs_trained(out)}
    command = [
        "ase-gnnp",
        "train",
        "--data",
        str(train),
        "--out",
        str(out),
        "--max-minutes",
        str(minutes),
        "--threads",
        str(threads),
        "--no-progress",
    ]
    if (out / "checkpoint.pt").is_file():
        command = ["ase-gnnp", "train", "--resume", "--out", str(out), "--no-progress"]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    result = {"command": " ".join(command), "wall_s": time.perf_counter() - start}
    done.write_text(json.dumps(result, indent=2))
    return {**result, "epochs": _epochs_trained(out)}


def _epochs_trained(out: Path) -> int:
    """Epochs of the run in ``out`` (rows of its ``metrics.csv``)."""
    with open(out / "metrics.csv") as fh:
        return sum(1 for _ in fh) - 1


def _mace_env(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("PYTHONPATH", None)
    return env


def _mace_run(python: Path, train: Path, work: Path, epochs: int, threads: int) -> float:
    command = [
        str(python.with_name("mace_run_train")),
        *MACE_ARGS,
        "--name=mace",
        f"--train_file={train}",
        f"--work_dir={work}",
        f"--max_num_epochs={epochs}",
        "--energy_key=REF_energy",
        "--forces_key=REF_forces",
        "--stress_key=REF_stress",
        "--device=cpu",
    ]
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(work / "stdout.log", "w") as log:
        subprocess.run(command, check=True, env=_mace_env(threads), stdout=log, stderr=log)
    return time.perf_counter() - start


def train_mace(python: Path, train: Path, out: Path, minutes: float, threads: int) -> dict:
    """MACE for the epochs that fit in ``minutes``; reused when finished."""
    done = out / "bench_run.json"
    if done.is_file():
        return json.loads(done.read_text())
    calibration = out.parent / "mace_calibration.json"
    if calibration.is_file():
        per_epoch = json.loads(calibration.read_text())["seconds_per_epoch"]
    else:  # one run of 1 and one of 3 epochs: their difference is two epochs
        one = _mace_run(python, train, out.parent / "mace_cal1", 1, threads)
        three = _mace_run(python, train, out.parent / "mace_cal3", 3, threads)
        per_epoch = (three - one) / 2.0
        calibration.write_text(json.dumps({"seconds_per_epoch": per_epoch, "threads": threads}))
    epochs = max(4, int(60.0 * minutes / per_epoch))
    wall = _mace_run(python, train, out, epochs, threads)
    model = out / "mace_stagetwo.model"
    if not model.is_file():
        model = out / "mace.model"
    result = {
        "epochs": epochs,
        "seconds_per_epoch": per_epoch,
        "wall_s": wall,
        "model": str(model),
        "arguments": MACE_ARGS,
    }
    done.write_text(json.dumps(result, indent=2))
    return result


def write_if_changed(path: Path, frames: list) -> None:
    """Write ``frames`` as extended XYZ unless ``path`` already holds exactly that text,
    so that its modification time says when the structures last changed."""
    buffer = io.StringIO()
    write(buffer, frames, format="extxyz")
    text = buffer.getvalue()
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def mace_predictions(python: Path, model: Path, frames_file: Path, threads: int) -> list:
    """MACE's predictions for the structures in ``frames_file``; reused while the saved
    predictions are newer than both the model and the structures."""
    out = frames_file.with_name(frames_file.stem + f"_mace_{model.parent.name}.extxyz")
    inputs = max(model.stat().st_mtime, frames_file.stat().st_mtime)
    if out.is_file() and out.stat().st_mtime > inputs:
        return read(out, ":")
    worker = Path(__file__).resolve().with_name("_mace_predict.py")
    subprocess.run(
        [
            str(python),
            str(worker),
            str(model),
            str(frames_file),
            str(out),
            "--threads",
            str(threads),
        ],
        check=True,
        env=_mace_env(threads),
    )
    return read(out, ":")


# ---------------------------------------------------------------- one data set
def bench(name: str, args) -> dict:
    data, transfer = DATASETS[name]
    if not data.is_file():
        raise SystemExit(f"{data} not found: the shared data sit next to the checkout")
    frames = [labelled_copy(a) for a in read(data, ":")]
    parts = fold_indices([str(a.info.get("config_type", "all")) for a in frames], args.folds, 0)
    test = [frames[i] for i in parts[args.fold]]
    train = [frames[i] for k, p in enumerate(parts) if k != args.fold for i in p]
    if args.quick:
        train, test = train[:12], test[:4]
    work = args.out / name
    work.mkdir(parents=True, exist_ok=True)
    train_file, test_file = work / "train.extxyz", work / "test.extxyz"
    write_if_changed(train_file, train)
    write_if_changed(test_file, test)
    sets = {"held_out": (test_file, test)}
    if transfer is not None:
        far = [labelled_copy(a) for a in read(transfer, ":")][: 8 if args.quick else None]
        write_if_changed(work / "transfer.extxyz", far)
        sets["transfer"] = (work / "transfer.extxyz", far)
    report = {
        "data": str(data),
        "transfer": str(transfer) if transfer else None,
        "n_train": len(train),
        "n_test": len(test),
        "fold": args.fold,
        "folds": args.folds,
        "threads": args.threads,
        "runs": [],
    }
    python = None
    if "mace" in args.peers:
        python = ensure_peer_venv(args.venv, ["mace"], install=not args.skip_install)
    for minutes in args.minutes:
        run = work / f"gnnp_{minutes:g}min"
        info = train_gnnp(train_file, run, minutes, args.threads)
        row = {"code": "ase_gnnp", "minutes": minutes, **info}
        for key, (_, ref) in sets.items():
            row[key] = score(ref, gnnp_predictions(run / "model.pt", ref, args.threads))
        report["runs"].append(row)
        _print_row(name, row)
        if python is not None:
            run = work / f"mace_{minutes:g}min"
            info = train_mace(python, train_file, run, minutes, args.threads)
            row = {"code": "MACE", "minutes": minutes, **info}
            for key, (path, ref) in sets.items():
                row[key] = score(
                    ref, mace_predictions(python, Path(info["model"]), path, args.threads)
                )
            report["runs"].append(row)
            _print_row(name, row)
    stem = "bench_dft_quick" if args.quick else f"bench_dft_{name}"
    args.figures.mkdir(parents=True, exist_ok=True)
    (args.figures / f"{stem}.json").write_text(json.dumps(report, indent=2))
    plot(report, name, args.figures / f"{stem}.png")
    return report


def _print_row(name: str, row: dict) -> None:
    for key in ("held_out", "transfer"):
        if key in row:
            s = row[key]
            stress = f", S {1000 * s['stress_mae']:.2f} meV/Å³" if "stress_mae" in s else ""
            print(
                f"{name} {row['code']} {row['minutes']:g} min, {key}: "
                f"E {1000 * s['energy_mae_per_atom']:.2f} meV/atom, "
                f"F {1000 * s['force_mae']:.1f} meV/Å (RMSE {1000 * s['force_rmse']:.1f})"
                f"{stress}",
                flush=True,
            )


#: axis labels of the scores plotted (reports hold eV units; plots show meV)
METRIC_LABELS = {
    "force_mae": "force MAE (meV/Å)",
    "energy_mae_per_atom": "energy MAE (meV/atom)",
    "stress_mae": "stress MAE (meV/Å³)",
}


def plot(report: dict, name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("held_out", "transfer") if any(k in r for r in report["runs"])]
    fig, axes = plt.subplots(len(keys), 2, figsize=(9, 3.6 * len(keys)), squeeze=False)
    for i, key in enumerate(keys):
        for j, metric in enumerate(("force_mae", "energy_mae_per_atom")):
            label = METRIC_LABELS[metric]
            ax = axes[i, j]
            for code, marker in (("ase_gnnp", "o-"), ("MACE", "s--")):
                rows = sorted(
                    (r for r in report["runs"] if r["code"] == code and key in r),
                    key=lambda r: r["minutes"],
                )
                if rows:
                    ax.plot(
                        [r["minutes"] for r in rows],
                        [1000 * r[key][metric] for r in rows],
                        marker,
                        label=code,
                    )
            ax.set_xlabel(f"training time (min, {report['threads']} threads)")
            ax.set_ylabel(label)
            ax.set_title(f"{name}: {key.replace('_', '-')}")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: the mlearn elements among DATASETS
MLEARN = tuple(name for name, (data, _) in DATASETS.items() if data.parent.name == "mlearn")


def plot_mlearn(figures: Path, path: Path) -> list[str]:
    """One figure of the four mlearn elements: held-out force, energy and stress MAE of
    both codes at the longest budget both ran, from the ``bench_dft_<el>.json`` reports in
    ``figures``; returns the elements plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, held_out = {}, set()
    for name in MLEARN:
        path_json = figures / f"bench_dft_{name}.json"
        if not path_json.is_file():
            continue
        report = json.loads(path_json.read_text())
        runs = report["runs"]
        common = {r["minutes"] for r in runs if r["code"] == "MACE"}
        common &= {r["minutes"] for r in runs if r["code"] == "ase_gnnp"}
        if common:
            minutes = max(common)
            rows[name] = {r["code"]: r["held_out"] for r in runs if r["minutes"] == minutes}
            rows[name]["minutes"] = minutes
            held_out.add(f"fold {report['fold']} of {report['folds']}")
    if not rows:
        return []
    fig, axes = plt.subplots(1, len(METRIC_LABELS), figsize=(12, 4))
    x = np.arange(len(rows))
    for ax, (metric, label) in zip(axes, METRIC_LABELS.items()):
        for shift, code in ((-0.2, "ase_gnnp"), (0.2, "MACE")):
            values = [1000 * r[code][metric] for r in rows.values()]
            bars = ax.bar(x + shift, values, 0.4, label=code if ax is axes[0] else None)
            ax.bar_label(bars, [f"{v:.3g}" for v in values], fontsize=7)
        ax.set_xticks(x, [n.capitalize() for n in rows])
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.margins(y=0.15)
    budgets = sorted({r["minutes"] for r in rows.values()})
    fig.suptitle(
        f"mlearn, held-out {', '.join(sorted(held_out))}, "
        f"{'/'.join(f'{m:g}' for m in budgets)} min of "
        "training each, same machine and threads"
    )
    fig.legend(loc="upper right")
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return list(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", nargs="+", choices=sorted(DATASETS), default=["si"], help="data sets to run"
    )
    parser.add_argument(
        "--minutes", type=float, nargs="+", default=[20.0], help="training budgets (minutes)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each code")
    parser.add_argument("--folds", type=int, default=5, help="folds over whole structures")
    parser.add_argument("--fold", type=int, default=0, help="the fold held out and scored")
    parser.add_argument("--peers", nargs="*", default=["mace"], choices=["mace"])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--skip-install", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_dft")
    parser.add_argument("--figures", type=Path, default=ROOT / "tutorials" / "figures")
    parser.add_argument("--quick", action="store_true", help="12 structures, 0.1 minutes")
    args = parser.parse_args()
    if args.quick:
        args.minutes = [0.1]
    for name in args.data:
        bench(name, args)
    if not args.quick and set(args.data) & set(MLEARN):
        plot_mlearn(args.figures, args.figures / "bench_dft_mlearn.png")


if __name__ == "__main__":
    main()
