"""Accuracy of eqt's ET against torchmd-net 3.1.0's ET: same recipe, same split, same time budget.

Both codes train TorchMD-NET's ``ET-MD17`` recipe (eqt: ``configs/et-md17.yaml``; torchmd-net: a YAML
equal to its ``examples/ET-MD17.yaml`` with the ``Custom`` data set) on the same train/val indices of
the same frames, concurrently by default (one subprocess each, ``OMP_NUM_THREADS=1``), each for the
same wall-clock budget: both stop through Lightning's own ``max_time`` timer (``torchmd-train`` has no
time-limit option, so it is run through its ``main()`` with ``lightning.pytorch.Trainer`` given
``max_time``; nothing else of it is changed). Each code keeps its checkpoint of lowest validation loss
(torchmd-net: the one its own ``ModelCheckpoint`` ranks best, read from its ``metrics.csv``), and both
are then scored by the same :func:`eqt.train.evaluate.evaluate` on the held-out test file(s) (the
torchmd-net checkpoint is converted by :func:`eqt.models.et.from_torchmdnet`, checked against the
torchmd-net model itself on a few test frames).

Tasks (data from ``../shared/data``):

- ``ethanol``, ``aspirin``: rMD17 ``<mol>_train.xyz``, 950 train / 50 val (seeded split, seed 1),
  test = the whole ``<mol>_test.xyz``;
- ``acac``: ``acac/train_300K.xyz``, 450 train / 50 val; tests ``test_MD_300K`` and ``test_MD_600K``.

    python benchmarks/bench_et_accuracy.py --task ethanol --minutes 20 --out benchmarks/results/accuracy
    python benchmarks/bench_et_accuracy.py --task ethanol --epochs 105 --out benchmarks/results/accuracy-105ep
    python benchmarks/bench_et_accuracy.py --task all --minutes 60
    python benchmarks/bench_et_accuracy.py --task acac --only eqt

``--epochs N`` trains both for exactly N epochs instead (no time limit): equal epochs, not equal
time. Energy errors are reported raw (what a user sees) and with the mean error over the test set
removed ("offset-removed": the error left once a constant energy offset is subtracted), with the
mean error itself ("bias").

Prints a markdown table (energy MAE in meV, force-component MAE in meV/Å) and writes
``<out>/accuracy.json``. Run directories: ``<out>/eqt-<task>`` and ``<out>/torchmd-net-<task>``
(deleted at the start of a run of that task, so nothing is resumed).
Needs ``torchmd-net`` (``pip install -c constraints.txt -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from common import DATA_ROOT as DATA  # noqa: E402  (benchmarks/common.py)
sys.path.insert(0, str(ROOT))

TASKS = {
    "ethanol": {"train": "rmd17/ethanol_train.xyz", "n_train": 950, "n_val": 50,
                "tests": {"ethanol_test": "rmd17/ethanol_test.xyz"}},
    "aspirin": {"train": "rmd17/aspirin_train.xyz", "n_train": 950, "n_val": 50,
                "tests": {"aspirin_test": "rmd17/aspirin_test.xyz"}},
    "acac": {"train": "acac/train_300K.xyz", "n_train": 450, "n_val": 50,
             "tests": {"test_MD_300K": "acac/test_MD_300K.xyz", "test_MD_600K": "acac/test_MD_600K.xyz"}},
}
SEED = 1
EQT_TRAIN_KEY, TMDNET_TRAIN_KEY = "train_loss_epoch", "train_total_mse_loss"  # epoch-end training rows
CODES = ("eqt", "torchmd-net")

# torchmd-net's examples/ET-MD17.yaml, with the data, split and bookkeeping keys filled in below.
TMDNET_RECIPE = {
    "model": "equivariant-transformer", "embedding_dimension": 128, "num_layers": 6, "num_heads": 8,
    "num_rbf": 32, "rbf_type": "expnorm", "trainable_rbf": False, "activation": "silu",
    "attn_activation": "silu", "distance_influence": "both", "neighbor_embedding": True,
    "cutoff_lower": 0.0, "cutoff_upper": 5.0, "max_num_neighbors": 32, "max_z": 100, "vector_cutoff": True,
    "aggr": "add", "atom_filter": -1, "output_model": "Scalar", "reduce_op": "add", "prior_model": None,
    "derivative": True, "standardize": True, "precision": 32,
    "y_weight": 0.2, "neg_dy_weight": 0.8, "ema_alpha_y": 0.05, "ema_alpha_neg_dy": 1.0, "train_loss": "mse_loss",
    "lr": 1.0e-3, "lr_warmup_steps": 1000, "lr_factor": 0.8, "lr_patience": 30, "lr_min": 1.0e-7,
    "weight_decay": 0.0, "batch_size": 8, "inference_batch_size": 64, "num_epochs": 3000,
    "early_stopping_patience": 300, "seed": SEED, "num_nodes": 1, "redirect": False,
    # Deviations from the example file, none of which changes the training itself:
    # save_interval 10 -> 1: under a time budget the best epoch must be checkpointed whenever it happens
    #   (eqt keeps its best epoch too); test_interval 10 -> -1: the split has no test part (the test
    #   files are scored afterwards); num_workers 6 -> 0: 2 shared cores, data preloaded (eqt uses 0).
    "save_interval": 1, "test_interval": -1, "num_workers": 0,
}

# Runs torchmd-net's own `torchmd-train` main() with Lightning's max_time added to the fit Trainer.
TMDNET_WRAPPER = r"""
import sys
import lightning.pytorch as pl
from torchmdnet.scripts import train as T
_MAX_TIME = sys.argv[2]
_Trainer = pl.Trainer
class _TimedTrainer(_Trainer):
    def __init__(self, *args, **kwargs):
        if "max_epochs" in kwargs:  # the fit trainer (the final test trainer has no max_epochs)
            kwargs["max_time"] = _MAX_TIME
        super().__init__(*args, **kwargs)
pl.Trainer = _TimedTrainer
sys.argv = ["torchmd-train", "--conf", sys.argv[1]]
T.main()
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def max_time_str(seconds: float) -> str:
    s = max(1, int(round(seconds)))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d:02d}:{h:02d}:{m:02d}:{s:02d}"


def worker_env(accelerator: str) -> dict:
    env = dict(os.environ)
    if accelerator == "cpu":  # torchmd-train picks its accelerator itself ("auto"): hide any GPU
        env["CUDA_VISIBLE_DEVICES"] = ""
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def tail(path: Path, n: int = 40) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    lines = path.read_text(errors="replace").replace("\r", "\n").splitlines()
    return "\n".join(line for line in lines[-n:])


def read_csv_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def epochs_done(path: Path, train_epoch_key: str) -> tuple[int, int]:
    """(epochs trained, the last one possibly cut by the timer; optimizer steps) from a Lightning metrics.csv.

    Read from the epoch-end training rows (Lightning logs them at ``step = global_step - 1``), not from
    the validation rows, which also include the extra validation that eqt's ``train`` runs after fitting.
    """
    rows = [r for r in read_csv_rows(path) if r.get(train_epoch_key) not in (None, "") and r.get("epoch")]
    epochs = {int(float(r["epoch"])) for r in rows}
    steps = max((int(float(r["step"])) + 1 for r in rows), default=0)
    return len(epochs), steps


# --------------------------------------------------------------------------------------------
# eqt worker (a subprocess of this script)
# --------------------------------------------------------------------------------------------
def eqt_worker(spec_path: Path) -> None:
    import torch

    from eqt.train.config import load_config
    from eqt.train.run import train

    torch.set_num_threads(1)
    spec = json.loads(spec_path.read_text())
    overrides = [f"{k}={json.dumps(v)}" for k, v in spec["overrides"].items()]
    config = load_config(ROOT / "configs" / "et-md17.yaml", overrides)
    t0 = time.time()
    res = train(config)
    out = {"model_path": str(res["model_path"]), "val": {k: float(v) for k, v in res["val"].items()},
           "wall_s": time.time() - t0, "config": config.to_dict()}
    Path(spec["result"]).write_text(json.dumps(out, indent=1))


# --------------------------------------------------------------------------------------------
# Preparation
# --------------------------------------------------------------------------------------------
def write_custom_dataset(frames, folder: Path) -> dict:
    """torchmd-net ``Custom`` files: one molecule, so one file of each kind (float32 as its loader keeps)."""
    import numpy as np

    z0 = frames.z[0]
    if any(len(z) != len(z0) or not np.array_equal(z, z0) for z in frames.z):
        raise ValueError(f"{frames.source}: frames differ in atoms; one Custom file per molecule is needed")
    folder.mkdir(parents=True, exist_ok=True)
    files = {"coord_files": folder / "coords.npy", "embed_files": folder / "embed.npy",
             "energy_files": folder / "energy.npy", "force_files": folder / "forces.npy"}
    np.save(files["coord_files"], np.stack(frames.pos).astype(np.float32))
    np.save(files["embed_files"], np.asarray(z0, dtype=np.int64))
    np.save(files["energy_files"], np.asarray(frames.energy, dtype=np.float32).reshape(-1, 1))
    np.save(files["force_files"], np.stack(frames.forces).astype(np.float32))
    return {k: str(v) for k, v in files.items()}


def prepare(task: str, out: Path, only: str | None, epochs: int | None = None) -> dict:
    import numpy as np
    import yaml

    from eqt.data.dataset import save_splits, split_indices
    from eqt.data.readers import read_frames

    t = TASKS[task]
    train_file = DATA / t["train"]
    for f in [train_file, *(DATA / p for p in t["tests"].values())]:
        if not f.is_file():
            sys.exit(f"data file not found: {f} (see ../shared/data/README.md)")
    frames = read_frames(str(train_file))
    splits = split_indices(len(frames), (t["n_train"], t["n_val"], 0), SEED)
    dirs = {"eqt": out / f"eqt-{task}", "torchmd-net": out / f"torchmd-net-{task}"}
    for code, d in dirs.items():
        if only in (None, code) and d.exists():
            shutil.rmtree(d)
    out.mkdir(parents=True, exist_ok=True)
    split_path = out / f"splits-{task}.npz"
    save_splits(split_path, splits)
    prep = {"task": task, "train_file": str(train_file), "frames": frames, "splits": splits, "dirs": dirs,
            "split_path": split_path}

    if only in (None, "eqt"):
        d = dirs["eqt"]
        d.mkdir(parents=True)
        shutil.copy(split_path, d / "splits.npz")  # train() uses an existing out_dir/splits.npz as is
        prep["eqt_spec"] = d.parent / f"eqt-{task}.spec.json"
        prep["eqt_result"] = d.parent / f"eqt-{task}.result.json"
        prep["eqt_spec"].write_text(json.dumps({"result": str(prep["eqt_result"]), "overrides": {
            "data": str(train_file), "train_size": t["n_train"], "val_size": t["n_val"], "test_size": 0,
            "seed": SEED, "out_dir": str(d), "progress_bar": False, "devices": 1,
            "precision": "float32", **({"max_epochs": epochs} if epochs else {})}}))
    if only in (None, "torchmd-net"):
        d = dirs["torchmd-net"]
        files = write_custom_dataset(frames, d / "data")
        conf = dict(TMDNET_RECIPE, dataset="Custom", dataset_root=str(d / "data"), dataset_arg=None, **files,
                    splits=str(split_path), train_size=t["n_train"], val_size=t["n_val"], test_size=0,
                    log_dir=str(d / "logs"), ngpus=1, **({"num_epochs": epochs} if epochs else {}))
        prep["tmdnet_conf"] = d / "ET-MD17.yaml"
        prep["tmdnet_conf"].write_text(yaml.safe_dump(conf, sort_keys=True))
        assert np.array_equal(np.load(split_path)["idx_train"], splits["train"])
    return prep


# --------------------------------------------------------------------------------------------
# Training (both codes concurrently, one subprocess each)
# --------------------------------------------------------------------------------------------
def progress(prep: dict) -> str:
    parts = []
    if "eqt_spec" in prep:
        n, step = epochs_done(prep["dirs"]["eqt"] / "logs" / "version_0" / "metrics.csv", EQT_TRAIN_KEY)
        parts.append(f"eqt {n} epochs / {step} steps")
    if "tmdnet_conf" in prep:
        n, step = epochs_done(prep["dirs"]["torchmd-net"] / "logs" / "metrics.csv", TMDNET_TRAIN_KEY)
        parts.append(f"torchmd-net {n} epochs / {step} steps")
    return "; ".join(parts) + " (as flushed to metrics.csv)"


def run_training(prep: dict, seconds: float, grace: float, accelerator: str) -> dict:
    env, procs = worker_env(accelerator), {}
    max_time = max_time_str(seconds)
    logs = {}
    if "eqt_spec" in prep:
        logs["eqt"] = prep["dirs"]["eqt"].parent / f"eqt-{prep['task']}.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--eqt-worker", str(prep["eqt_spec"])]
        spec = json.loads(prep["eqt_spec"].read_text())
        spec["overrides"].update(max_time=max_time, accelerator=accelerator)
        prep["eqt_spec"].write_text(json.dumps(spec))
        procs["eqt"] = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=logs["eqt"].open("w"), stderr=subprocess.STDOUT)
    if "tmdnet_conf" in prep:
        logs["torchmd-net"] = prep["dirs"]["torchmd-net"].parent / f"torchmd-net-{prep['task']}.log"
        cmd = [sys.executable, "-c", TMDNET_WRAPPER, str(prep["tmdnet_conf"]), max_time]
        procs["torchmd-net"] = subprocess.Popen(cmd, env=env, cwd=prep["dirs"]["torchmd-net"],
                                                stdout=logs["torchmd-net"].open("w"), stderr=subprocess.STDOUT)
    log(f"{prep['task']}: training {' and '.join(procs)} for max_time={max_time} each (pids "
        f"{', '.join(f'{k} {p.pid}' for k, p in procs.items())}); logs: {', '.join(str(v) for v in logs.values())}")
    t0, deadline, last = time.time(), time.time() + seconds + grace, time.time()
    status = {}
    while len(status) < len(procs):
        time.sleep(2)
        for code, p in procs.items():
            if code not in status and p.poll() is not None:
                status[code] = {"rc": p.returncode, "wall_s": time.time() - t0}
                log(f"{prep['task']}: {code} finished (exit {p.returncode}) after {time.time() - t0:.0f} s")
        if time.time() > deadline:
            for code, p in procs.items():
                if code not in status:
                    p.terminate()
                    try:
                        p.wait(30)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                    status[code] = {"rc": None, "wall_s": time.time() - t0, "killed": True}
                    log(f"{prep['task']}: {code} still running {grace:.0f} s past its budget: terminated")
        if time.time() - last > 60:
            last = time.time()
            log(f"{prep['task']}: {time.time() - t0:.0f} s: {progress(prep)}")
    for code, st in status.items():
        st["log"] = str(logs[code])
    return status


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
def best_tmdnet_checkpoint(log_dir: Path) -> tuple[Path, dict]:
    """The checkpoint of lowest ``val_total_mse_loss`` (full precision, from metrics.csv)."""
    ckpts = {}
    for p in log_dir.glob("epoch=*-val_loss=*.ckpt"):
        m = re.match(r"epoch=(\d+)-val_loss=([-+0-9.eE]+?)(-|\.ckpt$)", p.name)
        if m:
            ckpts[int(m.group(1))] = (p, float(m.group(2)))
    if not ckpts:
        raise RuntimeError(f"torchmd-net saved no epoch=...-val_loss=... checkpoint in {log_dir}")
    val = {}
    for r in read_csv_rows(log_dir / "metrics.csv"):
        if r.get("val_total_mse_loss") not in (None, "") and r.get("epoch"):
            val[int(float(r["epoch"]))] = float(r["val_total_mse_loss"])
    ranked = sorted(ckpts, key=lambda e: (val.get(e, ckpts[e][1]), -e))
    e = ranked[0]
    return ckpts[e][0], {"epoch": e, "val_total_mse_loss": val.get(e, ckpts[e][1]), "n_checkpoints": len(ckpts)}


def conversion_check(ckpt: Path, model, frames, n: int = 8) -> dict:
    """Max |difference| of energies and forces between torchmd-net's model and its eqt conversion."""
    import torch
    from torchmdnet.models.model import load_model as tmd_load

    from eqt.physics.potential import Potential

    sub = frames.subset(list(range(min(n, len(frames)))))
    z = torch.cat([torch.as_tensor(x, dtype=torch.long) for x in sub.z])
    pos = torch.cat([torch.as_tensor(x, dtype=torch.float32) for x in sub.pos])
    batch = torch.repeat_interleave(torch.arange(len(sub)), torch.as_tensor(sub.num_atoms))
    tm = tmd_load(str(ckpt), derivative=True).float().eval()
    y, neg_dy = tm(z, pos, batch=batch)
    out = Potential(model.float().eval())(z, pos, batch, num_systems=len(sub), forces=True)
    return {"max_abs_dE_eV": float((y.reshape(-1) - out["energy"]).abs().max().detach()),
            "max_abs_dF_eV_per_A": float((neg_dy - out["forces"]).abs().max().detach())}


def evaluate_task(prep: dict, status: dict, eval_dtype: str, t: dict) -> dict:
    import torch

    from eqt.checkpoint import load_model
    from eqt.data.readers import read_frames
    from eqt.models.et import from_torchmdnet
    from eqt.train.evaluate import evaluate

    dtype = {"float32": torch.float32, "float64": torch.float64}[eval_dtype]
    tests = {name: read_frames(str(DATA / path)) for name, path in t["tests"].items()}
    val_frames = prep["frames"].subset(prep["splits"]["val"])
    res = {}
    models = {}
    if "eqt" in status:
        eqt_res = json.loads(Path(prep["eqt_result"]).read_text())
        n, steps = epochs_done(prep["dirs"]["eqt"] / "logs" / "version_0" / "metrics.csv", EQT_TRAIN_KEY)
        models["eqt"] = load_model(eqt_res["model_path"])
        res["eqt"] = {"model_path": eqt_res["model_path"], "epochs": n, "steps": steps,
                      "train_wall_s": status["eqt"]["wall_s"], "val_loss_best": eqt_res["val"].get("val_loss")}
    if "torchmd-net" in status:
        log_dir = prep["dirs"]["torchmd-net"] / "logs"
        ckpt, info = best_tmdnet_checkpoint(log_dir)
        n, steps = epochs_done(log_dir / "metrics.csv", TMDNET_TRAIN_KEY)
        log(f"{prep['task']}: torchmd-net best checkpoint {ckpt.name} (val_total_mse_loss "
            f"{info['val_total_mse_loss']:.6g}); converting with from_torchmdnet")
        models["torchmd-net"] = from_torchmdnet(ckpt)
        check = conversion_check(ckpt, models["torchmd-net"], next(iter(tests.values())))
        log(f"{prep['task']}: conversion check on 8 test frames: max |dE| {check['max_abs_dE_eV']:.2e} eV, "
            f"max |dF| {check['max_abs_dF_eV_per_A']:.2e} eV/Å")
        res["torchmd-net"] = {"checkpoint": str(ckpt), **info, "epochs": n, "steps": steps,
                              "train_wall_s": status["torchmd-net"]["wall_s"], "conversion_check": check}
    for code, model in models.items():
        r = evaluate(model, val_frames, batch_size=64, dtype=dtype)
        res[code]["val_split"] = {"energy_mae": float(r["energy_mae"]), "forces_mae": float(r["forces_mae"])}
        res[code]["test"] = {}
        for name, frames in tests.items():
            r = evaluate(model, frames, batch_size=64, dtype=dtype)
            keys = ("energy_mae", "energy_rmse", "forces_mae", "forces_rmse")
            d = 1e3 * (r["energy_pred"] - r["energy_ref"])  # meV
            res[code]["test"][name] = {"n_frames": int(r["n_frames"]), **{k: float(r[k]) for k in keys},
                                       "energy_bias": float(d.mean()),
                                       "energy_mae_offset_removed": float(abs(d - d.mean()).mean())}
            log(f"{prep['task']}: {code} on {name} ({r['n_frames']} frames): energy MAE {r['energy_mae']:.2f} meV, "
                f"force MAE {r['forces_mae']:.2f} meV/Å")
    return res


def table(results: dict) -> str:
    def num(code_res, test, key):
        if code_res is None:
            return "—"
        return f"{code_res['test'][test][key]:.2f}"

    def energy(code_res, test):
        if code_res is None:
            return "—"
        t = code_res["test"][test]
        return f"{t['energy_mae']:.2f} / {t['energy_mae_offset_removed']:.2f} ({t['energy_bias']:+.1f})"

    lines = ["| task | test set | eqt E MAE raw / offset-removed (bias) | eqt F MAE | torchmd-net E MAE raw / "
             "offset-removed (bias) | torchmd-net F MAE | epochs (optimizer steps), eqt / torchmd-net |",
             "|---|---|---|---|---|---|---|"]
    for task, r in results.items():
        e, tm = r["codes"].get("eqt"), r["codes"].get("torchmd-net")
        ep = " / ".join(f"{c['epochs']} ({c['steps']} steps)" if c else "—" for c in (e, tm))
        for test in TASKS[task]["tests"]:
            lines.append(f"| {task} | {test} | {energy(e, test)} | {num(e, test, 'forces_mae')} | "
                         f"{energy(tm, test)} | {num(tm, test, 'forces_mae')} | {ep} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=[*TASKS, "all"], default="ethanol")
    p.add_argument("--minutes", type=float, default=20.0, help="training wall-clock budget of each code")
    p.add_argument("--epochs", type=int, default=None,
                   help="train each code for exactly this many epochs instead (equal epochs, no time limit)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "accuracy")
    p.add_argument("--only", choices=CODES, help="train and score one code only")
    p.add_argument("--grace-minutes", type=float, default=None,
                   help="how long past its budget a training may run (final validation, saving) before it is "
                        "terminated and counted as failed (default: max(5, budget/4))")
    p.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu",
                   help="where both trainings run (one device each; the evaluation runs on the CPU)")
    p.add_argument("--eval-dtype", choices=["float32", "float64"], default="float32",
                   help="dtype of the test evaluation (both models were trained in float32)")
    p.add_argument("--eval-threads", type=int, default=1, help="torch threads for the test evaluation")
    p.add_argument("--eqt-worker", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.eqt_worker:
        eqt_worker(a.eqt_worker)
        return

    import torch

    torch.set_num_threads(a.eval_threads)
    if a.only in (None, "torchmd-net"):
        try:
            import torchmdnet  # noqa: F401
        except ImportError:
            sys.exit("torchmd-net is not installed (pip install -c constraints.txt -e '.[bench]'), or use --only eqt")
    out = a.out.resolve()
    seconds = 60.0 * a.minutes if a.epochs is None else 6 * 86400.0  # --epochs: the epoch count stops both
    grace = 60.0 * (a.grace_minutes if a.grace_minutes is not None else max(5.0, a.minutes / 4))
    tasks = list(TASKS) if a.task == "all" else [a.task]
    json_path = out / "accuracy.json"
    results: dict = {}
    meta = {"minutes": None if a.epochs else a.minutes, "epochs": a.epochs, "accelerator": a.accelerator, "only": a.only, "eval_dtype": a.eval_dtype,
            "seed": SEED,
            "host": platform.node(), "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads_per_training": 1, "grace_s": grace, "concurrent": a.only is None}
    try:
        import importlib.metadata as md

        meta["torchmd-net"] = md.version("torchmd-net")
    except Exception:  # noqa: BLE001
        pass
    for task in tasks:
        log(f"{task}: preparing data, split {TASKS[task]['n_train']}/{TASKS[task]['n_val']} (seed {SEED})")
        prep = prepare(task, out, a.only, a.epochs)
        status = run_training(prep, seconds, grace, a.accelerator)
        failed = {c: s for c, s in status.items() if s["rc"] != 0}
        if not failed and "eqt" in status and not Path(prep["eqt_result"]).is_file():
            failed["eqt"] = {**status["eqt"], "error": "no result file"}
        if failed:
            for code, s in failed.items():
                why = "terminated past its budget" if s.get("killed") else s.get("error", f"exit {s['rc']}")
                print(f"\n{code} failed on {task} ({why}); tail of {s['log']}:\n{tail(Path(s['log']))}", file=sys.stderr)
            sys.exit(1)
        codes = evaluate_task(prep, status, a.eval_dtype, TASKS[task])
        results[task] = {"train_file": prep["train_file"], "n_train": int(len(prep["splits"]["train"])),
                         "n_val": int(len(prep["splits"]["val"])), "splits": str(prep["split_path"]),
                         "tests": {k: str(DATA / v) for k, v in TASKS[task]["tests"].items()}, "codes": codes}
        json_path.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print()
    budget = f"{a.epochs} epochs" if a.epochs else f"{a.minutes:g} min"
    print(f"ET-MD17 recipe, {budget} of training each"
          f"{' (concurrently, 1 thread each)' if a.only is None else ''}, best-validation checkpoint, "
          f"evaluated by eqt.train.evaluate ({a.eval_dtype}); energy MAE in meV, force-component MAE in meV/Å.")
    print()
    print(table(results))
    print(f"\nwrote {json_path}")


if __name__ == "__main__":
    main()
