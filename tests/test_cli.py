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
