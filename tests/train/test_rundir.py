"""The run directory of ``eqt train``: nothing is lost or corrupted, whatever happens to the run.

A rerun resumes only the same run (fingerprint), a failed start writes nothing, configs are
type-checked, one process per directory (lock), the learning curve survives interruptions, progress
goes to stderr without Lightning's noise, paths in a config file are relative to it, and a real
``eqt train`` killed with SIGKILL or Ctrl-C resumes to the result of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning", reason="training needs the 'train' extra: pip install eqt[train]")

import lightning as L  # noqa: E402

from eqt.files import OutputError  # noqa: E402
from eqt.train.config import TrainConfig, load_config  # noqa: E402
from eqt.train.curves import read_curve  # noqa: E402
from eqt.train.run import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = {"hidden_channels": 16, "num_layers": 2, "num_heads": 2, "num_rbf": 8, "cutoff_upper": 4.0}


def _small(src: Path, dst: Path, n: int = 48) -> Path:
    import ase.io

    ase.io.write(dst, ase.io.read(src, f":{n}"), format="extxyz")
    return dst


@pytest.fixture(scope="module")
def ethanol(shared_data, tmp_path_factory):
    return _small(shared_data / "rmd17" / "ethanol_train.xyz", tmp_path_factory.mktemp("data") / "ethanol48.xyz")


@pytest.fixture(scope="module")
def aspirin(shared_data, tmp_path_factory):
    return _small(shared_data / "rmd17" / "aspirin_train.xyz", tmp_path_factory.mktemp("data") / "aspirin48.xyz")


def _values(data, out, **kw) -> dict:
    base = dict(data=str(data), train_size=32, val_size=8, test_size=None, seed=3, model=dict(TINY), batch_size=8,
                inference_batch_size=16, max_epochs=3, lr=1e-3, lr_warmup_steps=5, ema_decay=0.9,
                checkpoint_every_n_steps=1000, out_dir=str(out), progress_bar=False, log_every_n_steps=1,
                loss_ema_alpha_energy=0.05)
    return {**base, **kw}


def _config(data, out, **kw) -> TrainConfig:
    return TrainConfig(**_values(data, out, **kw))


class CrashAtEpochEnd(L.Callback):
    """A kill after ``epoch``'s row of metrics.csv is written but before its checkpoint is saved
    (non-checkpoint callbacks run first at an epoch end): the worst moment for the curve."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated kill")


def _assert_same_curve(rows, reference, epochs: int):
    assert [int(r["epoch"]) for r in rows] == list(range(epochs)), "each epoch exactly once"
    assert [int(r["epoch"]) for r in reference] == list(range(epochs))
    for r, ref in zip(rows, reference):
        assert r.keys() == ref.keys()
        for k in r:
            assert r[k] == pytest.approx(ref[k], rel=1e-6), (int(r["epoch"]), k)


def _assert_png(path: Path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1024, path


# ---------------------------------------------------------------------------------------------
# 1. the fingerprint: a rerun resumes only the same run
# ---------------------------------------------------------------------------------------------
def test_rerun_with_other_data_or_lr_is_refused_and_max_epochs_may_grow(ethanol, aspirin, tmp_path):
    out = tmp_path / "run"
    train(_config(ethanol, out, max_epochs=1))
    before = {p: (out / p).read_bytes() for p in ("config.yaml", "splits.npz", "fingerprint.json", "metrics.csv")}
    with pytest.raises(OutputError, match=r"holds a different run \(data_digest: .*delete .* to start fresh"):
        train(_config(aspirin, out, max_epochs=1))
    with pytest.raises(OutputError, match=r"lr: 0\.001 -> 0\.01"):
        train(_config(ethanol, out, max_epochs=1, lr=1e-2))
    with pytest.raises(OutputError, match=r"model\.hidden_channels: 16 -> 32"):
        train(_config(ethanol, out, max_epochs=1, model={**TINY, "hidden_channels": 32}))
    assert {p: (out / p).read_bytes() for p in before} == before, "a refused rerun must not touch the run"
    assert not (out / ".lock").exists()
    # the model's defaults spelled out, the data file moved, max_epochs raised: the same run, resumed
    moved = tmp_path / "moved.xyz"
    moved.write_bytes(Path(ethanol).read_bytes())
    train(_config(moved, out, max_epochs=2, model={**TINY, "activation": "silu"}))
    assert [int(r["epoch"]) for r in read_curve(out / "metrics.csv")] == [0, 1]
    assert load_config(out / "config.yaml").max_epochs == 2, "config.yaml says what the run now uses"
    assert (out / "splits.npz").read_bytes() == before["splits.npz"]


def test_checkpoints_without_fingerprint_are_not_resumed(ethanol, tmp_path):
    out = tmp_path / "old"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"from an older eqt")
    with pytest.raises(OutputError, match="no fingerprint.json"):
        train(_config(ethanol, out))


# ---------------------------------------------------------------------------------------------
# 2. and 9. a failed start writes nothing
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"model": {**TINY, "cutoff_upper": -1.0}}, "cutoff_upper"),
    ({"model": {**TINY, "hidden_chanels": 8}}, "hidden_chanels"),
    ({"train_size": 100}, "ask for 108 frames but there are only 48"),
    ({"val_size": 0.01}, "val_size 0.01 leaves no val frames of the 48"),
    ({"energy_key": "nope"}, "nope"),
    ({"data": "/nonexistent/x.xyz"}, "x.xyz"),
], ids=["bad-cutoff", "model-key", "too-large", "empty-val", "energy-key", "no-data"])
def test_a_failed_start_writes_nothing(ethanol, tmp_path, change, message):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        train(TrainConfig(**{**_values(ethanol, out), **change}))
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_accelerator_without_gpu_is_a_one_line_error(ethanol, tmp_path):
    for accelerator in ("gpu", "cuda"):
        with pytest.raises(ValueError, match=f"accelerator='{accelerator}'"):
            train(_config(ethanol, tmp_path / "run", accelerator=accelerator))
    assert not (tmp_path / "run").exists()


def test_output_folder_shadowed_by_a_file_or_not_writable(ethanol, tmp_path):
    (tmp_path / "somefile").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        train(_config(ethanol, tmp_path / "somefile" / "x"))
    with pytest.raises(OutputError, match="is a file"):
        train(_config(ethanol, tmp_path / "somefile"))
    if Path("/proc/self").is_dir():  # a read-only file system (root too)
        with pytest.raises(OutputError, match="not writable"):
            train(_config(ethanol, Path("/proc/eqt-train-run")))
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "ro"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(OutputError, match="not writable"):
                train(_config(ethanol, locked / "run"))
        finally:
            locked.chmod(0o700)


def test_cli_errors_are_one_line(ethanol, tmp_path, capsys):
    from eqt.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(_values(ethanol, tmp_path / "run")))
    for extra in (["--set", "lr=fast"], ["--set", "model.cutoff_upper=-1"], ["--out", str(config / "x")]):
        assert main(["train", str(config), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("eqt: error: ") and "internal error" not in err[0], err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# 3. every config key is type- and range-checked
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, key", [
    ("lr=fast", "lr"), ("lr=true", "lr"), ("seed=abc", "seed"), ("seed=-1", "seed"), ("max_time=abc", "max_time"),
    ("max_time=00:00:61", "max_time"), ("max_time=10:00:00:00", "max_time"), ("batch_size=0", "batch_size"),
    ("batch_size=2.5", "batch_size"), ("train_size=-5", "train_size"), ("val_size=0", "val_size"),
    ("test_size=1.5", "test_size"), ("devices=foo", "devices"), ("accelerator=tpu", "accelerator"),
    ("precision=bf16", "precision"), ("standardize=1", "standardize"), ("model=3", "model"),
    ("max_epochs=0", "max_epochs"), ("ema_decay=1", "ema_decay"), ("lr_factor=2", "lr_factor"),
    ("energy_key=3", "energy_key"), ("out_dir=", "out_dir"), ("progress_bar=maybe", "progress_bar"),
])
def test_config_values_are_checked_with_the_key_named(override, key):
    with pytest.raises(ValueError, match=rf"^{key} must be"):
        load_config(None, ["data=x.xyz", override])


def test_config_accepts_ints_for_floats_and_lightning_durations():
    c = load_config(None, ["lr=1", "max_time=00:12:00:00", "devices=0,1", "devices=auto", "test_size=null"])
    assert isinstance(c.lr, float) and c.lr == 1.0 and c.max_time == "00:12:00:00" and c.devices == "auto"


# ---------------------------------------------------------------------------------------------
# 8. paths: relative to the config file, or to the working directory on the command line
# ---------------------------------------------------------------------------------------------
def test_paths_in_a_config_file_are_relative_to_it(tmp_path, monkeypatch):
    (tmp_path / "project" / "configs").mkdir(parents=True)
    config = tmp_path / "project" / "configs" / "c.yaml"
    config.write_text("data: ../data/frames.xyz\nout_dir: runs/a\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    c = load_config(config)
    assert Path(c.data) == tmp_path / "project" / "data" / "frames.xyz"
    assert Path(c.out_dir) == tmp_path / "project" / "configs" / "runs" / "a"
    c = load_config(Path("..") / "project" / "configs" / "c.yaml", ["data=mine.xyz", "out_dir=out/b"])
    assert Path(c.data) == elsewhere / "mine.xyz" and Path(c.out_dir) == elsewhere / "out" / "b"
    c = load_config(config, [f"data={tmp_path / 'abs.xyz'}"])
    assert Path(c.data) == tmp_path / "abs.xyz"
    assert Path(load_config(None).out_dir) == elsewhere / "runs" / "et", "the default is relative to the cwd"


@pytest.mark.parametrize("name", ["et-md17.yaml", "equiformer-md17.yaml"])
def test_shipped_configs_find_the_data_from_any_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = load_config(ROOT / "configs" / name)
    assert Path(c.data) == ROOT.parent / "shared" / "data" / "rmd17" / "aspirin_train.xyz"
    assert Path(c.out_dir).parent == ROOT / "runs"


# ---------------------------------------------------------------------------------------------
# 4. the lock
# ---------------------------------------------------------------------------------------------
def _write_lock(folder: Path, pid: int):
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def test_a_live_lock_stops_a_second_run_and_a_stale_one_is_taken_over(ethanol, tmp_path):
    out = tmp_path / "run"
    _write_lock(out, os.getpid())  # a live process holds the run
    with pytest.raises(OutputError, match=r"in use by another eqt train \(pid %d" % os.getpid()):
        train(_config(ethanol, out, max_epochs=1))
    assert not (out / "fingerprint.json").exists() and not (out / "splits.npz").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(out, dead.pid)  # its process is gone: stale
    res = train(_config(ethanol, out, max_epochs=1))
    assert res["model_path"].exists() and not (out / ".lock").exists()


# ---------------------------------------------------------------------------------------------
# 5. and 7. the learning curve survives interruptions
# ---------------------------------------------------------------------------------------------
def test_learning_curve_is_whole_after_two_kills(ethanol, tmp_path):
    full = tmp_path / "full"
    train(_config(ethanol, full, max_epochs=5))
    out = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(_config(ethanol, out, max_epochs=5), callbacks=[CrashAtEpochEnd(1)])
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(_config(ethanol, out, max_epochs=5), callbacks=[CrashAtEpochEnd(3)])
    assert [int(r["epoch"]) for r in read_curve(out / "metrics.csv")] == [0, 1, 2, 3], "rows of the killed epoch"
    train(_config(ethanol, out, max_epochs=5))
    _assert_same_curve(read_curve(out / "metrics.csv"), read_curve(full / "metrics.csv"), 5)
    _assert_png(out / "learning_curve.png")
    _assert_png(full / "learning_curve.png")


# ---------------------------------------------------------------------------------------------
# 6. and 10. a real `eqt train`: quiet stdout, progress on stderr, SIGKILL and Ctrl-C
# ---------------------------------------------------------------------------------------------
EPOCHS = 16
NOISE = ("GPU available", "TPU available", "LOCAL_RANK", "Tip", "litmodels", "Restoring", "Restored",
         "PossibleUserWarning", "Warning", "Traceback", "it/s")


def _cli(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "eqt.cli", "train", str(config), "--out", str(out)]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _cli_config(ethanol, tmp_path) -> Path:
    values = _values(ethanol, "unused", max_epochs=EPOCHS, progress_bar=True)
    values.pop("out_dir")
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(values))
    return path


def _start_and_stop(cmd: list[str], out: Path, sig: int) -> tuple[int, str, str]:
    """Start ``cmd``, send ``sig`` once a checkpoint of epoch >= 1 exists; returns (status, stdout, stderr)."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last, deadline = out / "checkpoints" / "last.ckpt", time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if torch.load(last, map_location="cpu", weights_only=False)["epoch"] >= 1:
                break
        except (OSError, EOFError, RuntimeError, KeyError):
            pass
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped:\n" + proc.communicate()[1]
    os.kill(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr


def _reference(ethanol, tmp_path):
    res = train(_config(ethanol, tmp_path / "reference", max_epochs=EPOCHS))
    return res["val"], read_curve(tmp_path / "reference" / "metrics.csv")


def _final_val(out: Path) -> dict:
    from eqt.checkpoint import load_checkpoint

    return load_checkpoint(out / "model.pt")["extra"]["val"]


@pytest.mark.slow
def test_sigkilled_eqt_train_resumes_to_the_uninterrupted_result(ethanol, tmp_path):
    """SIGKILL after an epoch-end checkpoint (only those exist: checkpoint_every_n_steps is large),
    then the same command again: the stale lock is taken over, and the final validation metrics
    equal an uninterrupted run's to rel 1e-6 (float32; the data order depends on (seed, epoch) only),
    with every epoch of the learning curve exactly once. stdout holds only eqt's result lines."""
    config, out = _cli_config(ethanol, tmp_path), tmp_path / "run"
    status, _, _ = _start_and_stop(_cli(config, out), out, signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert (out / ".lock").exists(), "a SIGKILLed run leaves its lock behind"
    done = subprocess.run(_cli(config, out), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    val, curve = _reference(ethanol, tmp_path)
    for key in ("val_energy_mae", "val_forces_mae", "val_loss"):
        assert _final_val(out)[key] == pytest.approx(val[key], rel=1e-6), key
    _assert_same_curve(read_curve(out / "metrics.csv"), curve, EPOCHS)
    _assert_png(out / "learning_curve.png")
    assert not (out / ".lock").exists()
    # 6. Lightning says nothing; eqt's progress is on stderr, its results on stdout
    assert done.stdout.splitlines()[0].startswith("model: ") and len(done.stdout.splitlines()) <= 3, done.stdout
    assert "training: resuming from" in done.stderr and "training: epoch" in done.stderr
    for text in NOISE:
        assert text not in done.stdout + done.stderr, text


@pytest.mark.slow
def test_ctrl_c_exits_130_with_a_resume_hint_and_the_rerun_completes(ethanol, tmp_path):
    config, out = _cli_config(ethanol, tmp_path), tmp_path / "run"
    status, stdout, stderr = _start_and_stop(_cli(config, out), out, signal.SIGINT)
    assert status == 130, stderr
    eqt_lines = [line for line in stderr.splitlines() if not line.startswith("training: ")]
    assert eqt_lines == ["eqt: interrupted; what was written so far is kept; rerun the same command to resume "
                         "from the last checkpoint"], stderr
    assert stdout == ""
    assert not (out / ".lock").exists(), "Ctrl-C releases the lock"
    done = subprocess.run(_cli(config, out), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [int(r["epoch"]) for r in read_curve(out / "metrics.csv")] == list(range(EPOCHS))


def test_ctrl_c_message_is_one_line(ethanol, tmp_path):
    """The message of an interrupted ``eqt train`` (in-process: KeyboardInterrupt from a callback)."""
    from eqt.cli import main

    class CtrlC(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                raise KeyboardInterrupt

    import eqt.train.run as run

    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(_values(ethanol, tmp_path / "run")))
    original = run.train
    try:
        run.train = lambda cfg: original(cfg, callbacks=[CtrlC()])
        code = main(["train", str(config)])
    finally:
        run.train = original
    assert code == 130
    assert not (tmp_path / "run" / ".lock").exists()


def test_a_moved_run_directory_resumes_as_in_place(ethanol, tmp_path):
    """Lightning forgets the best score of a checkpoint folder that moved (and keeps a path into the
    old folder); eqt's run directory may move: resuming it equals resuming in place."""
    import shutil
    import warnings

    train(_config(ethanol, tmp_path / "here", max_epochs=2))
    shutil.move(tmp_path / "here", tmp_path / "moved")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Lightning's "dirpath has changed" is gone
        moved = train(_config(ethanol, tmp_path / "moved", max_epochs=4))
    train(_config(ethanol, tmp_path / "in_place", max_epochs=2))
    in_place = train(_config(ethanol, tmp_path / "in_place", max_epochs=4))
    for key in ("val_energy_mae", "val_forces_mae", "val_loss"):
        assert moved["val"][key] == pytest.approx(in_place["val"][key], rel=1e-6), key
    best = torch.load(tmp_path / "moved" / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
    paths = [v.get("best_model_path", "") for v in best.values() if isinstance(v, dict)]
    assert paths and all(str(tmp_path / "moved") in p for p in paths if p), paths
