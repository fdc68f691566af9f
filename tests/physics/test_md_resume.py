"""Resumable MD: run_md's state file, and `eqt md` killed (SIGKILL) or interrupted (SIGINT) and rerun.

The claim under test: a resumed run ends with the same trajectory as an uninterrupted one. With
the float64 calculator on the CPU it is bit for bit (positions, momenta, log text), which is what
these tests assert: the integrator only sees positions, momenta and the random stream, all of
which the state restores exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.io import Trajectory

import eqt.physics.md as md
from eqt.checkpoint import save_checkpoint
from eqt.cli import main
from eqt.models.et import ET, ETConfig
from eqt.physics.calculator import Calculator
from eqt.physics.md import MDConfig, MDInstabilityError, MDStateMismatch, read_state, run_md

TINY = ETConfig(hidden_channels=16, num_layers=2, num_heads=2, num_rbf=8, cutoff_upper=4.0)
# seed 0 and energy_scale 0.1: H2O stays together for 600 Langevin steps at 300 K (scanned)
CONFIG = MDConfig(steps=150, log_interval=5, temperature_K=300.0, seed=3)
ROOT = Path(__file__).resolve().parents[2]


def tiny_model() -> ET:
    torch.manual_seed(0)
    model = ET(TINY)
    model.energy_scale.fill_(0.1)
    return model


class _Interrupting(Calculator):
    """The tiny model's calculator that raises KeyboardInterrupt on its ``at``-th calculation."""

    def __init__(self, at: int):
        super().__init__(tiny_model())
        self.calls, self.at = 0, at

    def calculate(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        super().calculate(*args, **kwargs)


def _run(folder: Path, calc, config: MDConfig = CONFIG, **kw):
    return run_md(molecule("H2O"), calc, config, trajectory=folder / "md.traj", log=folder / "md.csv",
                  state=folder / "md.state.npz", **kw)


def _same_run(a: Path, b: Path) -> None:
    """Bit-identical log text and trajectory frames (positions, momenta, energy)."""
    assert (a / "md.csv").read_text() == (b / "md.csv").read_text()
    with Trajectory(str(a / "md.traj")) as ta, Trajectory(str(b / "md.traj")) as tb:
        assert len(ta) == len(tb)
        for x, y in zip(ta, tb):
            np.testing.assert_array_equal(x.positions, y.positions)
            np.testing.assert_array_equal(x.get_momenta(), y.get_momenta())
            assert x.get_potential_energy() == y.get_potential_energy()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of CONFIG (with a state file, which is removed at the end)."""
    d = tmp_path_factory.mktemp("ref")
    res = _run(d, Calculator(tiny_model()), state_every=10)
    assert sorted(p.name for p in d.iterdir()) == ["md.csv", "md.traj"]
    return d, res


def test_ctrl_c_saves_state_and_resume_is_bit_identical(tmp_path, reference):
    ref, ref_res = reference
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, _Interrupting(at=70), state_every=1000)  # only the step-0 state, then Ctrl-C's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md.csv.partial", "md.state.npz", "md.traj.partial"]
    saved = read_state(tmp_path / "md.state.npz")
    assert 60 <= saved["step"] < 70 and saved["frames"] == saved["step"] // 5 + 1  # the last completed step
    res = _run(tmp_path, Calculator(tiny_model()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md.csv", "md.traj"]
    _same_run(ref, tmp_path)
    assert res.steps_done == 150
    np.testing.assert_array_equal(res.energies, ref_res.energies)
    np.testing.assert_array_equal(res.temperatures, ref_res.temperatures)
    assert res.drift_eV_per_atom_per_ps == ref_res.drift_eV_per_atom_per_ps


def test_resume_after_a_kill_truncates_the_files(tmp_path, reference, monkeypatch):
    """A kill leaves the files ahead of the last state (written every 20 steps): they are cut back."""
    ref, _ = reference
    real = md._write_state

    def stale_after_40(path, run, snap, *rest):  # as if killed: no state after step 40
        if snap[0] <= 40:
            real(path, run, snap, *rest)

    monkeypatch.setattr(md, "_write_state", stale_after_40)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, _Interrupting(at=95), state_every=20)
    monkeypatch.undo()
    with open(tmp_path / "md.csv.partial", "a") as fh:
        fh.write("95,47.5,-1.0,0.1")  # a row cut by the kill
    assert read_state(tmp_path / "md.state.npz")["step"] == 40
    with Trajectory(str(tmp_path / "md.traj.partial")) as t:
        assert len(t) > 9  # frames beyond the state's 9
    _run(tmp_path, Calculator(tiny_model()), state_every=20)
    _same_run(ref, tmp_path)


def test_other_settings_refuse_to_resume(tmp_path):
    info = {"checkpoint": "sha256:a"}
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, _Interrupting(at=20), run_info=info)
    with pytest.raises(MDStateMismatch, match=r"other settings \(config\.temperature_K: 300\.0 -> 350\.0\)") as err:
        _run(tmp_path, Calculator(tiny_model()), CONFIG.replace(temperature_K=350.0), run_info=info)
    assert err.value.differences == ["config.temperature_K: 300.0 -> 350.0"]
    with pytest.raises(MDStateMismatch, match=r"structure\.formula: 'H2O' -> 'CH4'"):
        run_md(molecule("CH4"), Calculator(tiny_model()), CONFIG, state=tmp_path / "md.state.npz", run_info=info)
    with pytest.raises(MDStateMismatch, match=r"checkpoint: other file content \(sha256 a\.\.\. -> b\.\.\.\)"):
        _run(tmp_path, Calculator(tiny_model()), run_info={"checkpoint": "sha256:b"})
    # the files are untouched by the refusals
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md.csv.partial", "md.state.npz", "md.traj.partial"]
    (tmp_path / "md.state.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"md\.state\.npz is unreadable .* to start the run over"):
        _run(tmp_path, Calculator(tiny_model()))


def test_verlet_resumes_and_instability_removes_the_state(tmp_path):
    config = MDConfig(integrator="verlet", steps=60, log_interval=5, timestep_fs=0.25)
    _run(tmp_path / "ref", Calculator(tiny_model()), config)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", _Interrupting(at=33), config)
    _run(tmp_path / "b", Calculator(tiny_model()), config)
    _same_run(tmp_path / "ref", tmp_path / "b")
    # an instability is not resumable (a rerun would fail the same way): no state, .aborted files
    with pytest.raises(MDInstabilityError, match="step 1: .*max_displacement_per_step"):  # after the step-0 state
        _run(tmp_path / "c", Calculator(tiny_model()), CONFIG.replace(max_displacement_per_step=1e-6))
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["md.csv.aborted", "md.traj.aborted"]


def test_progress_on_stderr(tmp_path, capsys):
    run_md(molecule("H2O"), Calculator(tiny_model()), CONFIG.replace(steps=20), progress=True)
    err = capsys.readouterr().err
    assert "step 20/20" in err and "steps/s" in err and "ns/day" in err and " K" in err


# --- the command line, in a subprocess that is killed ----------------------------------------

ARGS = ["--steps", "300", "--log-interval", "5", "--state-every", "20"]


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("md_cli")
    save_checkpoint(d / "model.pt", tiny_model(), extra={"elements": [1, 6, 8]})
    out = d / "ref"
    assert main(["md", str(d / "model.pt"), "H2O", *ARGS, "--out", str(out)]) == 0
    return d


def _start(model_dir: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EQT_PROGRESS_INTERVAL": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "eqt.cli", "md", str(model_dir / "model.pt"), "H2O", *ARGS,
                             "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_state(proc: subprocess.Popen, state: Path, step: int, timeout: float = 25.0) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()
        if state.exists():
            try:
                saved = read_state(state)
            except ValueError:  # being replaced right now
                saved = None
            if saved is not None and saved["step"] >= step:
                return saved
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no state at step {step} within {timeout} s")


def _rerun(model_dir: Path, out: Path) -> subprocess.CompletedProcess:
    proc = _start(model_dir, out)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_cli_sigkill_then_rerun_continues_to_the_same_trajectory(cli_model):
    out = cli_model / "killed"
    proc = _start(cli_model, out)
    saved = _wait_for_state(proc, out / "md.state.npz", 60)
    time.sleep(0.1)  # usually a few log rows past the state: the rerun cuts them
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not (out / "md.traj").exists() and (out / "md.traj.partial").exists()
    done = _rerun(cli_model, out)
    assert done.returncode == 0, done.stderr
    assert "resuming MD from step" in done.stderr
    assert "step 300/300" in done.stderr and "ns/day" in done.stderr
    assert saved["step"] >= 60
    _same_run(cli_model / "ref", out)
    assert sorted(p.name for p in out.iterdir()) == ["md.csv", "md.png", "md.traj"]


def test_cli_ctrl_c_exits_130_and_rerun_completes(cli_model):
    out = cli_model / "interrupted"
    proc = _start(cli_model, out)
    _wait_for_state(proc, out / "md.state.npz", 40)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "rerun the same command to resume" in stderr
    step = read_state(out / "md.state.npz")["step"]
    assert step >= 40
    done = _rerun(cli_model, out)
    assert done.returncode == 0, done.stderr
    assert f"resuming MD from step {step} of 300" in done.stderr
    _same_run(cli_model / "ref", out)
