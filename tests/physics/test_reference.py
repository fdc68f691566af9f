"""Reference labels from tblite's GFN2-xTB: units, forces as gradients, labelling and MD sampling."""

from __future__ import annotations

import ase.build
import numpy as np
import pytest

pytest.importorskip("tblite.ase", reason="tblite not installed (pip install tblite); GFN-xTB reference tests skipped")

from eqt.physics.reference import _openmp_threads, label, sample_md, xtb_calculator  # noqa: E402


def _energy(atoms, calc) -> float:
    return calc.get_potential_energy(atoms)


def test_forces_are_minus_gradient_of_energy():
    atoms = ase.build.molecule("H2O")
    atoms.rattle(0.05, seed=1)
    calc = xtb_calculator("GFN2-xTB", accuracy=0.01)
    h = 1e-4
    with _openmp_threads(1):
        forces = calc.get_forces(atoms.copy())
        fd = np.zeros_like(forces)
        for i in range(len(atoms)):
            for k in range(3):
                plus, minus = atoms.copy(), atoms.copy()
                plus.positions[i, k] += h
                minus.positions[i, k] -= h
                fd[i, k] = -(_energy(plus, calc) - _energy(minus, calc)) / (2 * h)
    assert np.abs(forces).max() > 0.1
    rel = np.linalg.norm(forces - fd) / np.linalg.norm(forces)
    assert rel < 1e-4, rel


def test_water_energy_in_ev():
    (water,) = label([ase.build.molecule("H2O")])
    energy = water.get_potential_energy()
    # GFN2-xTB: -5.0703 Hartree = -137.968 eV
    assert -140.0 < energy < -135.0, energy
    assert energy == pytest.approx(-137.9678, abs=1e-3)


def test_label_returns_labelled_copies():
    structures = [ase.build.molecule("H2O"), ase.build.molecule("CH4")]
    structures[0].rattle(0.02, seed=0)
    before = [a.positions.copy() for a in structures]
    out = label(structures, "GFN2-xTB")
    assert len(out) == 2
    for src, pos, lab in zip(structures, before, out):
        assert lab is not src
        assert src.calc is None and "energy" not in src.info and "forces" not in src.arrays
        np.testing.assert_array_equal(src.positions, pos)
        np.testing.assert_array_equal(lab.positions, pos)
        assert lab.get_potential_energy() == lab.info["energy"]
        np.testing.assert_array_equal(lab.get_forces(), lab.arrays["forces"])
        assert lab.get_forces().shape == (len(src), 3)
    # GFN1-xTB is a different Hamiltonian: different energy for the same water
    (gfn1,) = label(structures[:1], "gfn1-xtb")
    assert abs(gfn1.get_potential_energy() - out[0].get_potential_energy()) > 1.0


def test_sample_md_reproducible_and_labelled():
    ethanol = ase.build.molecule("CH3CH2OH")
    start = ethanol.positions.copy()
    kw = dict(n_frames=20, interval=2, equilibration_steps=10, seed=3)
    frames = sample_md(ethanol, **kw)
    again = sample_md(ethanol, **kw)
    np.testing.assert_array_equal(ethanol.positions, start)
    assert len(frames) == 20
    for a, b in zip(frames, again):
        np.testing.assert_array_equal(a.positions, b.positions)
    other = sample_md(ethanol, **{**kw, "seed": 4, "n_frames": 2})
    assert not np.allclose(other[0].positions, frames[0].positions)
    for a, b in zip(frames[:-1], frames[1:]):
        assert np.abs(a.positions - b.positions).max() > 1e-3
    assert len({id(f) for f in frames}) == 20 and not np.shares_memory(frames[0].positions, frames[1].positions)
    relabelled = label(frames)
    for f, r in zip(frames, relabelled):
        assert f.get_potential_energy() == f.info["energy"]
        np.testing.assert_array_equal(f.get_forces(), f.arrays["forces"])
        assert f.get_potential_energy() == pytest.approx(r.get_potential_energy(), abs=1e-6)
        # forces differ only by SCF convergence noise (MD restarts each SCF from the last step)
        np.testing.assert_allclose(f.get_forces(), r.get_forces(), atol=2e-3)


def test_unknown_method_raises():
    water = ase.build.molecule("H2O")
    with pytest.raises(ValueError, match="GFN3-xTB"):
        label([water], "GFN3-xTB")
    with pytest.raises(ValueError, match="GFN0"):
        sample_md(water, method="GFN0", n_frames=1)
    with pytest.raises(ValueError, match="pyscf:PBE"):
        label([water], "pyscf:PBE")


def test_pyscf_dft_forces_are_minus_energy_gradient():
    pytest.importorskip("pyscf", reason="PySCF labelling needs `pip install pyscf`")
    from ase.build import molecule

    from eqt.physics.reference import label

    water = molecule("H2O")
    (ref,) = label([water], "pyscf:PBE/def2-SVP")
    energy = ref.get_potential_energy()
    assert -2080.0 < energy < -2070.0, f"PBE/def2-SVP water energy {energy} eV is not about -76.3 Hartree"
    h = 1e-3
    plus, minus = water.copy(), water.copy()
    plus.positions[1, 1] += h
    minus.positions[1, 1] -= h
    e_plus, e_minus = (a.get_potential_energy() for a in label([plus, minus], "pyscf:PBE/def2-SVP"))
    fd = -(e_plus - e_minus) / (2 * h)
    assert abs(ref.get_forces()[1, 1] - fd) < 2e-3 * max(abs(fd), 1e-3) + 1e-4, (ref.get_forces()[1, 1], fd)
