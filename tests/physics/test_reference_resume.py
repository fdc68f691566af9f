"""Reference data that never loses work and never writes bad labels (issue 16, the data part).

`label_to_file` / `sample_md_to_file` (what `eqt data label` / `eqt data sample` run) append frames
to ``<output>.partial`` with a resume state in ``<output>.state``: a rerun after SIGKILL or Ctrl-C
continues and ends with the frames of an uninterrupted run (labels identical; MD within the SCF
noise, tolerance below). No labeller returns or writes a NaN/inf label or accepts Z = 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes

pytest.importorskip("tblite.ase", reason="tblite not installed (pip install tblite)")

import eqt.physics.reference as ref  # noqa: E402
from eqt.files import OutputError  # noqa: E402
from eqt.physics.reference import (  # noqa: E402
    LabelError,
    label,
    label_to_file,
    read_structures,
    sample_md,
    sample_md_to_file,
    structure_problem,
)

REPO = Path(__file__).resolve().parents[2]

#: A resumed MD against an uninterrupted one (ethanol, 500 K, GFN2-xTB, accuracy 1): the first SCF
#: after the resume starts from scratch instead of the last wavefunction. Measured: max |ΔF|
#: 3e-5 eV/Å, |ΔE| 2e-6 eV, |Δx| 2e-6 Å over 195 frames (see sample_md_to_file).
TOL_F, TOL_E, TOL_X = 1e-3, 1e-4, 1e-4


def _ethanols(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = molecule("CH3CH2OH")
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        out.append(a)
    return out


def _paths(out: Path) -> tuple[Path, Path]:
    return out.with_name(out.name + ".partial"), out.with_name(out.name + ".state")


def _assert_close_md(full: list, got: list) -> dict[str, float]:
    assert len(got) == len(full)
    d = {"F": max(np.abs(a.get_forces() - b.get_forces()).max() for a, b in zip(full, got)),
         "E": max(abs(a.get_potential_energy() - b.get_potential_energy()) for a, b in zip(full, got)),
         "x": max(np.abs(a.positions - b.positions).max() for a, b in zip(full, got))}
    assert d["F"] < TOL_F and d["E"] < TOL_E and d["x"] < TOL_X, d
    for a in got:
        assert np.isfinite(a.get_forces()).all() and np.isfinite(a.get_potential_energy())
    return d


class _Interrupt:
    """Ctrl-C (KeyboardInterrupt) right after the ``n``-th frame is appended."""

    def __init__(self, monkeypatch, n: int):
        self.n, self.count = n, 0
        orig = ref._ResumableOutput.append

        def append(out, text, progress):
            orig(out, text, progress)
            self.count += 1
            if self.count == self.n:
                raise KeyboardInterrupt

        monkeypatch.setattr(ref._ResumableOutput, "append", append)


class _BadCalc(Calculator):
    """An xTB stand-in that returns a NaN force (as tblite did for Z = 0)."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        forces = np.zeros((len(self.atoms), 3))
        forces[0, 0] = np.nan
        self.results = {"energy": -1.0, "forces": forces}


# --------------------------------------------------------------------------------------------------
# no bad labels
# --------------------------------------------------------------------------------------------------
def test_structure_problem_names_the_atom():
    water = molecule("H2O")
    assert structure_problem(water) is None
    z0 = water.copy()
    z0.numbers[1] = 0
    assert "atom 1 has atomic number 0 ('X')" in structure_problem(z0)
    heavy = water.copy()
    heavy.numbers[0] = 92
    assert "92" in structure_problem(heavy) and "1-86" in structure_problem(heavy)
    assert structure_problem(heavy, "pyscf:PBE/def2-SVP") is None  # left to PySCF's basis sets
    nan = water.copy()
    nan.positions[2, 1] = np.nan
    assert "atom 2 has a non-finite position" in structure_problem(nan)
    close = water.copy()
    close.positions[2] = close.positions[0] + 0.01
    assert "atoms 0 and 2 are 0.0173 Å apart" in structure_problem(close)
    assert "no atoms" in structure_problem(water[:0])
    assert structure_problem(water[:1]) is None  # an isolated atom is a valid reference


def test_label_refuses_bad_frames_before_any_calculation(monkeypatch):
    z0 = [molecule("H2O"), molecule("H2O")]
    z0[1].numbers[0] = 0
    calls = []
    orig = ref._Labeller._compute
    monkeypatch.setattr(ref._Labeller, "_compute", lambda self, atoms: calls.append(1) or orig(self, atoms))
    with pytest.raises(LabelError, match=r"^frame 1 cannot be labelled: atom 0 has atomic number 0") as err:
        label(z0)
    assert err.value.index == 1 and calls == []
    (single,) = label([molecule("H2O")[:1]])  # one atom: finite energy, zero force
    assert np.isfinite(single.get_potential_energy()) and not single.get_forces().any()


def test_nan_from_the_code_is_never_returned_or_written(monkeypatch, tmp_path):
    monkeypatch.setattr(ref, "xtb_calculator", lambda *a, **k: _BadCalc())
    with pytest.raises(LabelError, match=r"frame 0 cannot be labelled: GFN2-xTB returned a non-finite force on atom 0"):
        label([molecule("H2O")])
    out = tmp_path / "l.xyz"
    with pytest.raises(LabelError, match=r"none of the 2 frames could be labelled"):
        label_to_file([molecule("H2O"), molecule("CH4")], out, skip_failed=True)
    assert not out.exists() and not any(tmp_path.iterdir())
    with pytest.raises(LabelError, match=r"MD step 1: GFN2-xTB returned a non-finite force"):
        sample_md(molecule("H2O"), n_frames=2, interval=1, equilibration_steps=0)


def test_sample_md_refuses_pyscf_and_bad_structures():
    water = molecule("H2O")
    with pytest.raises(ValueError, match=r"GFN-xTB only.*label the sampled frames.*--method pyscf:PBE/def2-SVP"):
        sample_md(water, method="pyscf:PBE/def2-SVP", n_frames=1)
    with pytest.raises(ValueError, match=r"at least 2 atoms, got 1"):
        sample_md(water[:1], n_frames=1)
    z0 = water.copy()
    z0.numbers[0] = 0
    with pytest.raises(ValueError, match=r"atomic number 0"):
        sample_md(z0, n_frames=1)


def test_read_structures_one_line_errors(tmp_path):
    good = tmp_path / "good.xyz"
    ase.io.write(good, label(_ethanols(3)), format="extxyz", write_results=False)
    lines = good.read_text().splitlines()
    cases = {"empty.xyz": "", "garbage.xyz": "this is not\nan xyz file\n",
             "truncated.xyz": "\n".join(lines[: len(lines) // 2 + 3]) + "\n"}
    expect = {"empty.xyz": r"empty\.xyz is empty", "garbage.xyz": r"garbage\.xyz: frame 0 cannot be read",
              "truncated.xyz": r"truncated\.xyz: frame 1 cannot be read.*truncated"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=expect[name]) as err:
            read_structures(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="not found"):
        read_structures(tmp_path / "nope.xyz")
    assert len(read_structures(good)) == 3


# --------------------------------------------------------------------------------------------------
# outputs: refused before work, replaced only when complete
# --------------------------------------------------------------------------------------------------
def test_outputs_checked_before_any_calculation(monkeypatch, tmp_path):
    monkeypatch.setattr(ref._Labeller, "_compute", lambda self, atoms: pytest.fail("calculated"))
    monkeypatch.setattr(ref, "_md_frames", lambda *a, **k: pytest.fail("ran MD"))
    (tmp_path / "old.xyz").write_text("precious\n")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "folder").mkdir()
    for out, match in [("old.xyz", r"old\.xyz exists; pass --force"), ("folder", r"folder is a folder"),
                       ("afile/x.xyz", r"afile is a file")]:
        with pytest.raises(OutputError, match=match):
            label_to_file([molecule("H2O")], tmp_path / out)
        with pytest.raises(OutputError, match=match):
            sample_md_to_file(molecule("H2O"), tmp_path / out, n_frames=2)
    assert (tmp_path / "old.xyz").read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder", "old.xyz"]


def test_force_replaces_the_old_output_only_when_complete(monkeypatch, tmp_path):
    out = tmp_path / "l.xyz"
    out.write_text("old labels\n")
    structures = _ethanols(4)
    orig = ref._Labeller._compute

    def fails_on_third(self, atoms):
        if np.allclose(atoms.positions, structures[2].positions):
            raise ref._Unlabelable("SCF did not converge")
        return orig(self, atoms)

    monkeypatch.setattr(ref._Labeller, "_compute", fails_on_third)
    with pytest.raises(LabelError, match=r"in\.xyz: frame 2 cannot be labelled: SCF did not converge \(2 frames labelled so far"):
        label_to_file(structures, out, force=True, source="in.xyz", checkpoint_s=0)
    assert out.read_text() == "old labels\n"  # untouched until the new file is complete
    partial, state = _paths(out)
    assert len(ase.io.read(partial, ":", format="extxyz")) == 2
    # the same job resumed with skip_failed: frames 0, 1 kept, 2 skipped and listed, 3 labelled
    res = label_to_file(structures, out, force=True, skip_failed=True, source="in.xyz")
    assert (res.frames, res.resumed_from, [i for i, _ in res.skipped]) == (3, 2, [2])
    assert res.skipped_path.read_text().splitlines()[1] == "2: SCF did not converge"
    assert not partial.exists() and not state.exists()
    assert len(ase.io.read(out, ":")) == 3


# --------------------------------------------------------------------------------------------------
# resume, in process
# --------------------------------------------------------------------------------------------------
def test_label_resumes_identically_after_interrupt_and_torn_frame(monkeypatch, tmp_path):
    structures = _ethanols(8)
    whole = tmp_path / "whole.xyz"
    label_to_file(structures, whole)
    out = tmp_path / "out.xyz"
    with monkeypatch.context() as m:
        _Interrupt(m, 3)
        with pytest.raises(KeyboardInterrupt):
            label_to_file(structures, out, checkpoint_s=60)  # only the Ctrl-C checkpoint
    partial, state = _paths(out)
    assert json.loads(state.read_text())["progress"]["done"] == 3 and not out.exists()
    with open(partial, "ab") as fh:  # a frame torn by a kill after the checkpoint
        fh.write(b"9\nProperties=species:S:1:pos:R:3 energy=-1.0\nC 0.0 0.0")
    with pytest.raises(OutputError, match=r"other settings \(method: 'GFN2-xTB' -> 'GFN1-xTB'\).*--force"):
        label_to_file(structures, out, "GFN1-xTB")
    with pytest.raises(OutputError, match=r"structures: "):
        label_to_file(structures[:7], out)
    res = label_to_file(structures, out)
    assert (res.frames, res.resumed_from) == (8, 3)
    assert out.read_bytes() == whole.read_bytes()
    assert not partial.exists() and not state.exists()


def test_label_other_settings_start_over_with_force(monkeypatch, tmp_path):
    structures = _ethanols(4)
    out = tmp_path / "out.xyz"
    with monkeypatch.context() as m:
        _Interrupt(m, 2)
        with pytest.raises(KeyboardInterrupt):
            label_to_file(structures, out)
    res = label_to_file(structures, out, "GFN1-xTB", force=True)
    assert (res.frames, res.resumed_from) == (4, 0)
    got = ase.io.read(out, ":")
    np.testing.assert_allclose([a.get_potential_energy() for a in got],
                               [a.get_potential_energy() for a in label(structures, "GFN1-xTB")], atol=1e-6)


def test_sample_resumes_after_interrupt_within_tolerance(monkeypatch, tmp_path):
    kw = dict(n_frames=30, interval=2, equilibration_steps=10, seed=3)
    full = sample_md(molecule("CH3CH2OH"), **kw)
    out = tmp_path / "s.xyz"
    with monkeypatch.context() as m:
        _Interrupt(m, 5)
        with pytest.raises(KeyboardInterrupt):
            sample_md_to_file(molecule("CH3CH2OH"), out, checkpoint_s=60, **kw)
    partial, state = _paths(out)
    saved = json.loads(state.read_text())
    assert saved["progress"]["frames"] == 5 and saved["progress"]["step"] == 20
    assert saved["job"]["seed"] == 3 and saved["job"]["method"] == "GFN2-xTB"
    with pytest.raises(OutputError, match=r"seed: 3 -> 4.*--force"):
        sample_md_to_file(molecule("CH3CH2OH"), out, **{**kw, "seed": 4})
    with pytest.raises(OutputError, match=r"structure: other file content"):
        sample_md_to_file(molecule("CH3CH2OH")[::-1], out, **kw)
    res = sample_md_to_file(molecule("CH3CH2OH"), out, **kw)
    assert (res.frames, res.resumed_from) == (30, 5) and not partial.exists() and not state.exists()
    got = ase.io.read(out, ":")
    d = _assert_close_md(full, got)
    assert d["F"] > 0 or d["x"] > 0  # not bit-identical: the SCF restart (if this fails, tighten the docs)
    # the frames written before the interrupt are those of the uninterrupted run (extxyz rounding only)
    assert max(np.abs(a.get_forces() - b.get_forces()).max() for a, b in zip(full[:5], got[:5])) < 1e-7


def test_sample_killed_during_equilibration_restarts_identically(monkeypatch, tmp_path):
    kw = dict(n_frames=3, interval=1, equilibration_steps=4, seed=1)
    out = tmp_path / "s.xyz"
    partial, state = _paths(out)
    partial.write_bytes(b"")  # what a kill before the first frame leaves
    state.write_text(json.dumps({"format": ref._STATE_FORMAT, "progress": {"frames": 0, "partial_bytes": 0},
                                 "job": {"command": "sample",
                                         "structure": ref._structures_digest([molecule("H2O")]),
                                         **{k: v for k, v in vars(ref._md_params(
                                             "GFN2-xTB", 500.0, 3, 1, 0.5, 4, 0.02, 1, 1.0)).items()}}}))
    res = sample_md_to_file(molecule("H2O"), out, **kw)
    assert res.resumed_from == 0
    full = sample_md(molecule("H2O"), **kw)
    got = ase.io.read(out, ":")
    assert max(np.abs(a.positions - b.positions).max() for a, b in zip(full, got)) < 1e-7


def test_partial_without_state_is_refused(tmp_path):
    out = tmp_path / "s.xyz"
    partial, _ = _paths(out)
    partial.write_text("3\n\nO 0 0 0\n")
    with pytest.raises(OutputError, match=r"s\.xyz\.partial exists but s\.xyz\.state does not.*--force"):
        sample_md_to_file(molecule("H2O"), out, n_frames=1, interval=1, equilibration_steps=0)
    res = sample_md_to_file(molecule("H2O"), out, n_frames=1, interval=1, equilibration_steps=0, force=True)
    assert res.frames == 1 and len(ase.io.read(out, ":")) == 1


# --------------------------------------------------------------------------------------------------
# the command line, killed for real
# --------------------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(OMP_NUM_THREADS="1", EQT_CHECKPOINT_INTERVAL="0", EQT_PROGRESS_INTERVAL="1000")
    return env


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    # SIGINT as a terminal delivers it (a background shell may start children with SIGINT ignored)
    return subprocess.Popen([sys.executable, "-m", "eqt.cli", *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eqt.cli", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=120)


def _wait_for_progress(proc: subprocess.Popen, state: Path, key: str, at_least: int, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before it could be stopped: {proc.stderr.read()}")
        try:
            if json.loads(state.read_text())["progress"][key] >= at_least:
                return
        except (FileNotFoundError, ValueError, KeyError):
            pass
        time.sleep(0.005)
    proc.kill()
    pytest.fail("no progress within the timeout")


SAMPLE = ["--frames", "300", "--interval", "2", "--equilibration", "10", "--seed", "3"]
SAMPLE_KW = dict(n_frames=300, interval=2, equilibration_steps=10, seed=3)


@pytest.mark.slow  # ~10 s: two CLI starts (~3 s each) and 300 frames
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_cli_sample_stopped_then_rerun_matches_uninterrupted(tmp_path, how):
    out = tmp_path / "out.xyz"
    partial, state = _paths(out)
    proc = _start(["data", "sample", "CH3CH2OH", "out.xyz", *SAMPLE], tmp_path)
    _wait_for_progress(proc, state, "frames", 20)
    proc.send_signal(getattr(signal, how))
    _, err = proc.communicate(timeout=60)
    if how == "SIGINT":
        assert proc.returncode == 130, err
        last = [ln for ln in err.splitlines() if ln.startswith("eqt:")]
        assert len(last) == 1 and "interrupted" in last[0] and "rerun the same command to resume" in last[0], err
        assert "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
        with open(partial, "ab") as fh:  # as if the kill tore the frame being written
            fh.write(b"9\nProperties=species:S:1:pos:R:3 energy=-1.0\nC 0.0 0.0")
    done = json.loads(state.read_text())["progress"]["frames"]
    assert 20 <= done < 300 and not out.exists()
    res = _run(["data", "sample", "CH3CH2OH", "out.xyz", *SAMPLE], tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"({done} of them from the interrupted run)" in res.stdout
    assert not partial.exists() and not state.exists()
    _assert_close_md(sample_md(molecule("CH3CH2OH"), **SAMPLE_KW), ase.io.read(out, ":"))


@pytest.mark.slow  # ~10 s: two CLI starts and 400 frames
def test_cli_label_killed_then_rerun_is_identical(tmp_path):
    ase.io.write(tmp_path / "in.xyz", _ethanols(400), format="extxyz")
    out = tmp_path / "out.xyz"
    partial, state = _paths(out)
    proc = _start(["data", "label", "in.xyz", "out.xyz"], tmp_path)
    _wait_for_progress(proc, state, "done", 20)
    proc.kill()
    proc.communicate(timeout=60)
    done = json.loads(state.read_text())["progress"]["done"]
    assert 20 <= done < 400 and not out.exists()
    res = _run(["data", "label", "in.xyz", "out.xyz"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"400 structures labelled with GFN2-xTB ({done} of them from the interrupted run)" in res.stdout
    expected = "".join(ref._frame_text(a) for a in label(read_structures(tmp_path / "in.xyz")))
    assert out.read_text() == expected
    assert not partial.exists() and not state.exists()
