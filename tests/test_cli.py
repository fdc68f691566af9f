"""The `eqt` command line end to end on tiny inputs (real GFN2-xTB labels via tblite)."""

from __future__ import annotations

import ase.io
import pytest
import torch
from ase.build import molecule

from eqt.checkpoint import save_checkpoint
from eqt.cli import main
from eqt.models.et import ET, ETConfig

pytest.importorskip("tblite.ase", reason="tblite not installed (pip install tblite)")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = ET(ETConfig(hidden_channels=16, num_layers=2, num_heads=2, num_rbf=8, cutoff_upper=4.0))
    save_checkpoint(d / "model.pt", model, extra={"elements": [1, 6, 8]})
    assert main(["data", "sample", "CH3CH2OH", str(d / "ethanol.xyz"), "--frames", "6", "--interval", "2"]) == 0
    return d


def test_sample_writes_labelled_frames(workdir):
    frames = ase.io.read(workdir / "ethanol.xyz", ":")
    assert len(frames) == 6
    assert all(abs(a.get_potential_energy()) > 100 for a in frames)  # GFN2-xTB ethanol, eV


def test_label_then_test_with_parity_plot(workdir, capsys):
    assert main(["data", "label", str(workdir / "ethanol.xyz"), str(workdir / "relabelled.xyz")]) == 0
    assert main(["test", str(workdir / "model.pt"), str(workdir / "relabelled.xyz"), "--plot",
                 str(workdir / "parity.png")]) == 0
    out = capsys.readouterr().out
    assert "forces (meV/Å)" in out and (workdir / "parity.png").stat().st_size > 1000
    assert main(["test", str(workdir / "model.pt"), str(workdir / "relabelled.xyz"), "--report-units", "kcal/mol"]) == 0
    assert "forces (kcal/mol/Å)" in capsys.readouterr().out


def test_unseen_element_is_a_one_line_error(workdir, capsys):
    atoms = molecule("CH3Cl")
    atoms.calc = None
    atoms.info["energy"] = -1.0
    atoms.arrays["forces"] = torch.zeros(len(atoms), 3).numpy()
    ase.io.write(workdir / "chloro.xyz", atoms, format="extxyz")
    assert main(["test", str(workdir / "model.pt"), str(workdir / "chloro.xyz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Cl" in err and "never saw" in err and "\n" not in err


def test_md_runs_and_reports(workdir, capsys):
    out = workdir / "md"
    assert main(["md", str(workdir / "model.pt"), "H2O", "--steps", "20", "--log-interval", "5", "--out", str(out)]) == 0
    assert (out / "md.traj").exists() and (out / "md.csv").exists()
    assert "mean T" in capsys.readouterr().out


# --- eqt md / eqt test: no overwrites, resumable state, one-line errors, progress (issue 16) ----


@pytest.fixture(scope="module")
def md_inputs(tmp_path_factory):
    """A tiny ET checkpoint (H2O stays together at 300 K), broken checkpoints, broken structures,
    and 40 water frames labelled by the model itself."""
    from ase.build import molecule as build

    from eqt.models.gatr import GATr, GATrConfig
    from eqt.physics.calculator import Calculator

    d = tmp_path_factory.mktemp("md_cli_errors")
    torch.manual_seed(0)
    model = ET(ETConfig(hidden_channels=16, num_layers=2, num_heads=2, num_rbf=8, cutoff_upper=4.0))
    model.energy_scale.fill_(0.1)
    save_checkpoint(d / "model.pt", model, extra={"elements": [1, 6, 8]})
    save_checkpoint(d / "gatr.pt", GATr(GATrConfig()))
    raw = (d / "model.pt").read_bytes()
    (d / "half.pt").write_bytes(raw[: len(raw) // 2])
    (d / "empty.pt").write_bytes(b"")
    for name, text in {"empty.xyz": "", "corrupt.xyz": "3\n\nO 0 0 x\n", "nan.xyz": "2\n\nH 0 0 nan\nH 0 0 0.7\n",
                       "overlap.xyz": "2\n\nH 0 0 0\nH 0 0 0.01\n", "xx.xyz": "2\n\nXx 0 0 0\nH 0 0 0.7\n",
                       "hcl.xyz": "2\n\nCl 0 0 0\nH 0 0 1.3\n"}.items():
        (d / name).write_text(text)
    calc, frames = Calculator(model), []
    for i in range(40):
        atoms = build("H2O")
        atoms.rattle(0.05, seed=i)
        atoms.info["energy"] = calc.get_potential_energy(atoms) + 0.01
        atoms.arrays["forces"] = calc.get_forces(atoms)
        frames.append(atoms)
    ase.io.write(d / "water.xyz", frames, format="extxyz")
    unlabelled = build("H2O")
    ase.io.write(d / "unlabelled.xyz", unlabelled, format="extxyz")
    return d


def _one_line_error(capsys, argv) -> str:
    """Run ``eqt argv``, expect exit 2 with one ``eqt: error:`` line that is not an internal error."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eqt: error: ") and "\n" not in err and "internal error" not in err, err
    return err


def test_md_refuses_existing_outputs_unless_force_and_plots(md_inputs, capsys):
    out = md_inputs / "md_force"
    run = ["md", md_inputs / "model.pt", "H2O", "--steps", "20", "--log-interval", "5", "--out", out]
    assert main([str(a) for a in run]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["md.csv", "md.png", "md.traj"]
    assert (out / "md.png").stat().st_size > 1000
    first = (out / "md.csv").read_text()
    capsys.readouterr()
    err = _one_line_error(capsys, run + ["--seed", "1"])
    assert "md.traj exists; pass --force" in err
    assert (out / "md.csv").read_text() == first  # untouched
    assert main([str(a) for a in run + ["--seed", "1", "--force"]]) == 0
    assert (out / "md.csv").read_text() != first
    assert sorted(p.name for p in out.iterdir()) == ["md.csv", "md.png", "md.traj"]


def test_md_checks_the_out_folder_and_lock_before_the_model(md_inputs, capsys):
    (md_inputs / "a_file").write_text("x")
    # a missing checkpoint: the --out error comes first, before any model is read
    err = _one_line_error(capsys, ["md", md_inputs / "missing.pt", "H2O", "--out", md_inputs / "a_file"])
    assert "--out folder" in err and "a_file is a file, not a folder" in err
    err = _one_line_error(capsys, ["md", md_inputs / "missing.pt", "H2O", "--out", md_inputs / "a_file" / "sub"])
    assert "is a file, not a folder" in err
    import json
    import os
    import socket

    locked = md_inputs / "locked"
    locked.mkdir()
    (locked / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    err = _one_line_error(capsys, ["md", md_inputs / "model.pt", "H2O", "--steps", "5", "--out", locked])
    assert "in use by another eqt md" in err
    assert sorted(p.name for p in locked.iterdir()) == [".lock"]


def test_md_state_of_other_settings_is_refused_or_discarded_with_force(md_inputs, capsys, monkeypatch):
    from eqt.physics.calculator import Calculator

    out = md_inputs / "md_state"
    run = ["md", md_inputs / "model.pt", "H2O", "--steps", "40", "--log-interval", "5", "--state-every", "10",
           "--out", out]
    real, calls = Calculator.calculate, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 25:
            raise KeyboardInterrupt
        real(self, *args, **kwargs)

    monkeypatch.setattr(Calculator, "calculate", interrupted)
    assert main([str(a) for a in run]) == 130
    monkeypatch.undo()
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert (out / "md.state.npz").exists() and (out / "md.traj.partial").exists()
    err = _one_line_error(capsys, run + ["--temperature", "350"])
    assert "other settings (config.temperature_K: 300.0 -> 350.0)" in err and "--force" in err
    assert main([str(a) for a in run + ["--temperature", "350", "--force"]]) == 0
    err = capsys.readouterr().err
    assert "discarding" in err and "resuming" not in err
    assert sorted(p.name for p in out.iterdir()) == ["md.csv", "md.png", "md.traj"]


def test_device_errors_are_one_line(md_inputs, capsys):
    for cmd in (["md", md_inputs / "model.pt", "H2O", "--out", md_inputs / "dev"],
                ["test", md_inputs / "model.pt", md_inputs / "water.xyz"]):
        if not torch.cuda.is_available():
            err = _one_line_error(capsys, cmd + ["--device", "cuda"])
            assert "CUDA is not available on this machine (torch " in err
        err = _one_line_error(capsys, cmd + ["--device", "gpu0"])
        assert "unknown device 'gpu0'" in err
    assert not (md_inputs / "dev").exists()


def test_bad_checkpoints_are_one_line(md_inputs, capsys):
    for cmd in (["md", "{}", "H2O", "--out", md_inputs / "ckpt"], ["test", "{}", md_inputs / "water.xyz"]):
        def run(name):
            return _one_line_error(capsys, [str(a).format(md_inputs / name) for a in cmd])

        assert "empty.pt is empty (0 bytes)" in run("empty.pt")
        assert "half.pt is truncated or corrupt" in run("half.pt")
        err = run("gatr.pt")
        assert "gatr.pt holds a GATr model" in err and "needs an energy model (ET, Equiformer" in err
        assert "checkpoint not found" in run("missing.pt")


def test_bad_numbers(md_inputs, capsys):
    for argv in (["test", md_inputs / "model.pt", md_inputs / "water.xyz", "--batch-size", "0"],
                 ["md", md_inputs / "model.pt", "H2O", "--steps", "0"],
                 ["md", md_inputs / "model.pt", "H2O", "--log-interval", "-5"],
                 ["md", md_inputs / "model.pt", "H2O", "--state-every", "0"]):
        with pytest.raises(SystemExit) as exit_:
            main([str(a) for a in argv])
        assert exit_.value.code == 2
        assert "must be at least 1" in capsys.readouterr().err
    base = ["md", md_inputs / "model.pt", "H2O", "--out", md_inputs / "numbers"]
    assert "--timestep must be > 0, got -1.0" in _one_line_error(capsys, base + ["--timestep", "-1"])
    assert "--temperature must be >= 0, got -5.0" in _one_line_error(capsys, base + ["--temperature", "-5"])
    assert "--seed must be >= 0" in _one_line_error(capsys, base + ["--seed", "-1"])


def test_bad_structures_are_one_line_naming_the_file(md_inputs, capsys):
    def err(name):
        return _one_line_error(capsys, ["md", md_inputs / "model.pt", md_inputs / name, "--out", md_inputs / "st"])

    assert "structure file" in err("empty.xyz") and "empty.xyz is empty" in err("empty.xyz")
    assert "corrupt.xyz cannot be read" in err("corrupt.xyz")
    assert "structure " in err("nan.xyz") and "nan.xyz: non-finite position of atom(s) 0" in err("nan.xyz")
    assert "overlap.xyz: atoms 0 and 1 are 0.01 Å apart" in err("overlap.xyz")
    assert "xx.xyz" in err("xx.xyz") and "Xx" in err("xx.xyz")
    e = err("hcl.xyz")
    assert "hcl.xyz" in e and "not seen in training: Cl (atom 0)" in e
    assert "neither a file nor a molecule name" in err("no_such_file.xyz")


def test_test_data_errors_are_one_line(md_inputs, capsys):
    def err(name):
        return _one_line_error(capsys, ["test", md_inputs / "model.pt", md_inputs / name])

    assert "data file not found" in err("missing.xyz")
    assert "empty.xyz" in err("empty.xyz")
    assert "cannot read" in err("corrupt.xyz") and "corrupt.xyz" in err("corrupt.xyz")
    assert "has no energy" in err("unlabelled.xyz")


def test_test_plot_is_checked_before_evaluating_and_progress(md_inputs, capsys, monkeypatch):
    import eqt.train.evaluate as evaluate_module

    base = ["test", md_inputs / "model.pt", md_inputs / "water.xyz", "--batch-size", "8"]
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *a, **k: pytest.fail("evaluated before the check"))
    (md_inputs / "parity.png").write_bytes(b"old")
    assert "parity.png exists; pass --force" in _one_line_error(capsys, base + ["--plot", md_inputs / "parity.png"])
    (md_inputs / "plain").write_text("x")
    err = _one_line_error(capsys, base + ["--plot", md_inputs / "plain" / "parity.png"])
    assert "plain is a file, not a folder" in err
    monkeypatch.undo()
    monkeypatch.setenv("EQT_PROGRESS_INTERVAL", "0")
    assert main([str(a) for a in base + ["--plot", md_inputs / "parity.png", "--force"]]) == 0
    out, err = capsys.readouterr()
    assert "forces (meV/Å)" in out and (md_inputs / "parity.png").stat().st_size > 1000
    assert "frame 40/40" in err and "frames/s" in err


# --- eqt data sample / label: no bad labels, no overwrites, resumable (issue 16, the data part) ----


@pytest.fixture(scope="module")
def data_inputs(tmp_path_factory):
    """Structure files for `eqt data label`: good, unlabelable (Z = 0, NaN, overlap, no atoms), broken."""
    import numpy as np

    d = tmp_path_factory.mktemp("data_cli")
    z0 = [molecule("H2O"), molecule("H2O"), molecule("CH4")]
    z0[1].numbers[0] = 0
    ase.io.write(d / "z0.xyz", z0, format="extxyz")
    nan = [molecule("H2O"), molecule("H2O")]
    nan[1].positions[2] = np.nan
    ase.io.write(d / "nan.xyz", nan, format="extxyz")
    ase.io.write(d / "water.xyz", molecule("H2O"), format="extxyz")
    texts = {"overlap.xyz": "2\n\nH 0 0 0\nH 0 0 0.01\n", "noatoms.xyz": "3\n\nO 0 0 0\nH 0 0 1\nH 0 1 0\n0\n\n",
             "empty.xyz": "", "garbage.xyz": "this is not\nan xyz file\n",
             "truncated.xyz": "3\n\nO 0 0 0\nH 0 0 1\nH 0 1 0\n3\n\nO 0 0 0\n"}
    for name, text in texts.items():
        (d / name).write_text(text)
    return d


def _data_error(capsys, argv) -> str:
    """``eqt data ...`` must exit 2 with a single ``eqt: error:`` line (no internal error)."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eqt: error: ") and "\n" not in err and "internal error" not in err, err
    return err


def test_data_label_refuses_unlabelable_frames_naming_file_and_frame(data_inputs, tmp_path, capsys):
    out = tmp_path / "l.xyz"
    for name, frame, why in [("z0.xyz", 1, "atom 0 has atomic number 0 ('X')"),
                             ("nan.xyz", 1, "atom 2 has a non-finite position"),
                             ("overlap.xyz", 0, "atoms 0 and 1 are 0.01 Å apart"),
                             ("noatoms.xyz", 1, "it has no atoms")]:
        err = _data_error(capsys, ["data", "label", data_inputs / name, out])
        assert f"{name}: frame {frame} cannot be labelled: {why}" in err and "--skip-failed" in err, err
    assert not any(tmp_path.iterdir())  # refused before any work: not even a .partial


def test_data_label_unreadable_inputs_are_one_line_errors(data_inputs, tmp_path, capsys):
    def err(name):
        return _data_error(capsys, ["data", "label", data_inputs / name, tmp_path / "l.xyz"])

    assert "empty.xyz is empty" in err("empty.xyz")
    assert "garbage.xyz: frame 0 cannot be read" in err("garbage.xyz")
    assert "truncated.xyz: frame 1 cannot be read" in err("truncated.xyz")
    assert "input file not found" in err("missing.xyz")
    assert not any(tmp_path.iterdir())


def test_data_label_skip_failed_writes_the_rest_and_lists_the_skipped(data_inputs, tmp_path, capsys):
    import numpy as np

    out = tmp_path / "l.xyz"
    assert main(["data", "label", str(data_inputs / "z0.xyz"), str(out), "--skip-failed"]) == 0
    captured = capsys.readouterr()
    assert "2 structures labelled with GFN2-xTB" in captured.out
    assert "skipped 1 frame(s) of" in captured.err and "z0.xyz that cannot be labelled: 1 (reasons in" in captured.err
    assert "frame 3/3" in captured.err  # progress
    frames = ase.io.read(out, ":")
    assert [len(a) for a in frames] == [3, 5]
    assert all(np.isfinite(a.get_forces()).all() and np.isfinite(a.get_potential_energy()) for a in frames)
    listed = (tmp_path / "l.xyz.skipped.txt").read_text().splitlines()
    assert listed[1] == "1: atom 0 has atomic number 0 ('X'), not an element"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.xyz", "l.xyz.skipped.txt"]


def test_data_outputs_are_refused_unless_force_before_any_work(data_inputs, tmp_path, capsys, monkeypatch):
    import eqt.physics.reference as ref

    old = tmp_path / "old.xyz"
    old.write_text("labels from PySCF\n")
    (tmp_path / "afile").write_text("x")
    with monkeypatch.context() as m:
        m.setattr(ref, "_md_frames", lambda *a, **k: pytest.fail("MD ran before the output check"))
        m.setattr(ref._Labeller, "_compute", lambda *a, **k: pytest.fail("labelled before the output check"))
        for out, why in [(old, "old.xyz exists; pass --force to overwrite it"), (tmp_path, "is a folder, not a file"),
                         (tmp_path / "afile" / "x.xyz", "afile is a file, not a folder")]:
            assert why in _data_error(capsys, ["data", "label", data_inputs / "water.xyz", out])
            assert why in _data_error(capsys, ["data", "sample", "H2O", out, "--frames", "2"])
    assert old.read_text() == "labels from PySCF\n"
    assert main(["data", "label", str(data_inputs / "water.xyz"), str(old), "--force"]) == 0
    assert ase.io.read(old).get_potential_energy() < -100
    assert main(["data", "sample", "H2O", str(old), "--force", "--frames", "2", "--interval", "1",
                 "--equilibration", "0"]) == 0
    assert len(ase.io.read(old, ":")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "old.xyz"]


def test_data_sample_pyscf_points_to_data_label(tmp_path, capsys):
    err = _data_error(capsys, ["data", "sample", "H2O", tmp_path / "s.xyz", "--method", "pyscf:PBE/def2-SVP"])
    assert "GFN-xTB only" in err and "eqt data label" in err and "--method pyscf:PBE/def2-SVP" in err
    assert "DFTB9" in _data_error(capsys, ["data", "sample", "H2O", tmp_path / "s.xyz", "--method", "DFTB9"])
    assert "--equilibration" in _data_error(capsys, ["data", "sample", "H2O", tmp_path / "s.xyz",
                                                     "--equilibration", "-1"])
    with pytest.raises(SystemExit):
        main(["data", "sample", "H2O", str(tmp_path / "s.xyz"), "--frames", "0"])
    assert not any(tmp_path.iterdir())


def test_data_sample_interrupted_resumes_only_with_the_same_settings(tmp_path, capsys, monkeypatch):
    import eqt.physics.reference as ref

    out = tmp_path / "s.xyz"
    run = ["data", "sample", "H2O", str(out), "--frames", "6", "--interval", "2", "--equilibration", "4", "--seed", "3"]
    orig, calls = ref._ResumableOutput.append, []

    def ctrl_c_after_third(self, text, progress):
        orig(self, text, progress)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(ref._ResumableOutput, "append", ctrl_c_after_third)
        assert main(run) == 130
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("eqt:")]
    assert len(lines) == 1 and "rerun the same command to resume" in lines[0]
    assert not out.exists() and (tmp_path / "s.xyz.partial").exists()
    err = _data_error(capsys, run[:-1] + ["4"])
    assert "s.xyz.partial is an unfinished run with other settings (seed: 3 -> 4)" in err and "--force" in err
    assert main(run) == 0
    captured = capsys.readouterr()
    assert "6 frames labelled with GFN2-xTB (3 of them from the interrupted run)" in captured.out
    assert "resuming" in captured.err and "3 of 6 frames done" in captured.err
    assert len(ase.io.read(out, ":")) == 6 and sorted(p.name for p in tmp_path.iterdir()) == ["s.xyz"]
