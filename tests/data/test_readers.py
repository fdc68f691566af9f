"""Tests for eqt.data.readers (read_frames, Frames, write_extxyz)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
import ase.db
import ase.io

from eqt.data.readers import Frames, energy_unit_factor, read_frames, write_extxyz

KCAL = units.kcal / units.mol


# --------------------------------------------------------------------------------------------
# Real data sets (skipped without ../shared/data)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ethanol(shared_data):
    return read_frames(shared_data / "rmd17" / "ethanol_train.xyz")


def test_rmd17_ethanol(ethanol, shared_data):
    assert len(ethanol) == 1000
    assert ethanol.units == "eV"
    assert all(len(z) == 9 for z in ethanol.z)
    assert sorted(ethanol.z[0].tolist()) == [1, 1, 1, 1, 1, 1, 6, 6, 8]
    assert ethanol.energy.shape == (1000,)
    # PBE/def2-SVP total energies of ethanol are about -4209 eV (~ -97,000 kcal/mol)
    assert -4212 < ethanol.energy.min() and ethanol.energy.max() < -4205
    assert ethanol.forces[0].shape == (9, 3)
    np.testing.assert_allclose(ethanol.forces[0][0], [-4.15950961, 0.10729389, 3.61777644])
    assert ethanol.pos[0].dtype == np.float64
    # the 50 Å box is not periodic: dropped
    assert ethanol.cell[0] is None and ethanol.pbc[0] is None
    # partial reads
    part = read_frames(shared_data / "rmd17" / "ethanol_train.xyz", index="::100")
    assert len(part) == 10
    np.testing.assert_allclose(part.energy, ethanol.energy[::100])


def test_rmd17_aspirin_and_acac(shared_data):
    asp = read_frames(shared_data / "rmd17" / "aspirin_train.xyz", index=":300")
    assert len(asp) == 300 and all(len(z) == 21 for z in asp.z)
    assert asp.forces[5].shape == (21, 3)
    assert -17630 < asp.energy.mean() < -17600
    acac = read_frames(shared_data / "acac" / "train_300K.xyz")
    assert len(acac) == 500 and all(len(z) == 15 for z in acac.z)
    assert -9400 < acac.energy.mean() < -9380
    iso = read_frames(shared_data / "acac" / "isolated_atoms.xyz", require_forces=False)
    assert iso.forces is None and all(len(z) == 1 for z in iso.z)
    with pytest.raises(ValueError, match=r"frame 0 of .*isolated_atoms.xyz has no forces"):
        read_frames(shared_data / "acac" / "isolated_atoms.xyz")


def test_ccsd_npz_kcal_to_ev(shared_data):
    path = shared_data / "ccsd" / "ethanol_ccsd_t-train.npz"
    fr = read_frames(path)
    assert fr.units == "kcal/mol"
    raw = np.load(path)
    assert len(fr) == raw["R"].shape[0] == 1000
    assert fr.energy.shape == (1000,)  # E is stored as (F, 1)
    e0 = float(raw["E"].reshape(-1)[0])
    assert fr.energy[0] == pytest.approx(e0 * 0.0433641, rel=1e-5)
    assert fr.energy[0] == pytest.approx(e0 * units.kcal / units.mol, rel=1e-12)
    np.testing.assert_allclose(fr.forces[3], raw["F"][3] * KCAL)
    np.testing.assert_array_equal(fr.z[0], raw["z"])
    # same molecule as rMD17 ethanol, different level of theory: energies within a few eV
    assert -4215 < fr.energy.mean() < -4205
    as_ev = read_frames(path, units="eV", index=":2")
    assert as_ev.energy[0] == pytest.approx(e0)


def test_qm9_db(shared_data):
    path = shared_data / "qm9" / "test_qm9.db"
    fr = read_frames(path, energy_key="energy_U0", require_forces=False, require_energy=True)
    assert len(fr) == 20 and fr.forces is None
    assert fr.units == "Ha"  # from the database metadata
    with ase.db.connect(str(path), use_lock_file=False) as db:
        row = next(db.select(limit=1))
        u0 = float(np.asarray(row.data["energy_U0"]).reshape(-1)[0])
        n0 = row.natoms
    assert fr.energy[0] == pytest.approx(u0 * units.Hartree)
    assert len(fr.z[0]) == n0
    # without a key none of the default energy keys exist: no energies
    plain = read_frames(path, require_forces=False)
    assert plain.energy is None
    with pytest.raises(ValueError, match=r"frame 0 .* of .*test_qm9.db has no energy"):
        read_frames(path, require_forces=False, require_energy=True)


# --------------------------------------------------------------------------------------------
# Synthetic files
# --------------------------------------------------------------------------------------------
def _images(n=3, ref=True, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = molecule("H2O" if k % 2 == 0 else "CH4")
        a.positions += 0.01 * rng.standard_normal(a.positions.shape)
        e, f = -10.0 - k, rng.standard_normal((len(a), 3))
        if ref:
            a.info["REF_energy"] = e
            a.arrays["REF_forces"] = f
        else:
            a.calc = SinglePointCalculator(a, energy=e, forces=f)
        out.append(a)
    return out


def test_ref_keys_extxyz(tmp_path):
    images = _images(4)
    path = tmp_path / "ref.extxyz"
    ase.io.write(path, images, format="extxyz")
    fr = read_frames(path)
    assert len(fr) == 4
    np.testing.assert_allclose(fr.energy, [-10, -11, -12, -13])
    for k, a in enumerate(images):
        np.testing.assert_allclose(fr.forces[k], a.arrays["REF_forces"], atol=1e-7)
        np.testing.assert_allclose(fr.pos[k], a.positions, atol=1e-7)
    assert [len(z) for z in fr.z] == [3, 5, 3, 5]
    # an explicit key, and kcal/mol files
    fr2 = read_frames(path, energy_key="REF_energy", forces_key="REF_forces", units="kcal/mol")
    np.testing.assert_allclose(fr2.energy, fr.energy * KCAL)
    np.testing.assert_allclose(fr2.forces[1], fr.forces[1] * KCAL)
    with pytest.raises(ValueError, match=r"frame 0 of .*ref.extxyz has no forces \(looked for keys nope\)"):
        read_frames(path, forces_key="nope")


def test_periodic_and_stress(tmp_path):
    a = Atoms("Cu2", positions=[[0, 0, 0], [1.8, 1.8, 0]], cell=np.eye(3) * 3.6, pbc=True)
    stress = np.array([0.1, 0.2, 0.3, 0.01, 0.02, 0.03])
    a.calc = SinglePointCalculator(a, energy=-7.0, forces=np.zeros((2, 3)), stress=stress)
    path = tmp_path / "cu.xyz"
    ase.io.write(path, [a], format="extxyz")
    fr = read_frames(path)
    np.testing.assert_allclose(fr.cell[0], np.eye(3) * 3.6)
    assert fr.pbc[0].tolist() == [True, True, True]
    assert fr.stress.shape == (1, 3, 3)
    np.testing.assert_allclose(fr.stress[0], fr.stress[0].T)
    assert fr.stress[0][1, 2] == pytest.approx(0.01)


def test_write_extxyz_roundtrip(tmp_path):
    src = tmp_path / "src.xyz"
    ase.io.write(src, _images(5, ref=False), format="extxyz")
    fr = read_frames(src)
    out = tmp_path / "out.xyz"
    write_extxyz(out, fr)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    back = read_frames(out)
    assert len(back) == len(fr)
    np.testing.assert_allclose(back.energy, fr.energy, rtol=0, atol=1e-10)
    for k in range(len(fr)):
        np.testing.assert_array_equal(back.z[k], fr.z[k])
        np.testing.assert_allclose(back.pos[k], fr.pos[k], atol=1e-7)
        np.testing.assert_allclose(back.forces[k], fr.forces[k], atol=1e-7)
    atoms = fr.to_ase()
    assert atoms[1].get_potential_energy() == pytest.approx(fr.energy[1])


def test_frames_subset():
    fr = Frames(
        z=[np.array([1, 1]), np.array([8])],
        pos=[np.zeros((2, 3)), np.zeros((1, 3))],
        energy=np.array([1.0, 2.0]),
    )
    sub = fr.subset([1])
    assert len(sub) == 1 and sub.energy.tolist() == [2.0] and sub.z[0].tolist() == [8]
    with pytest.raises(ValueError, match="out of bounds"):
        fr.subset([5])


# --------------------------------------------------------------------------------------------
# Error paths
# --------------------------------------------------------------------------------------------
def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_missing_file_and_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"data file not found: .*nothere.xyz") as e:
        read_frames(tmp_path / "nothere.xyz")
    _one_line(e)
    p = tmp_path / "data.csv"
    p.write_text("x")
    with pytest.raises(ValueError, match=r"unknown data file suffix '.csv' for .*data.csv"):
        read_frames(p)
    with pytest.raises(ValueError, match="unknown energy unit 'furlong'"):
        energy_unit_factor("furlong")


@pytest.mark.parametrize("suffix", [".xyz", ".npz", ".db"])
def test_corrupt_file(tmp_path, suffix):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match=re.escape(str(path))) as e:
        read_frames(path)
    msg = _one_line(e)
    assert msg.startswith("cannot read")


def test_frame_without_forces(tmp_path):
    images = _images(3)
    del images[2].arrays["REF_forces"]
    path = tmp_path / "noforce.xyz"
    ase.io.write(path, images, format="extxyz")
    with pytest.raises(ValueError) as e:
        read_frames(path)
    assert _one_line(e) == (
        f"frame 2 of {path} has no forces (looked for keys forces, REF_forces, force)"
    )
    # not required: labelling only some frames is still an error
    with pytest.raises(ValueError, match=r"frame 2 of .* has no forces but frame 0 has"):
        read_frames(path, require_forces=False)
    fr = read_frames(path, index=":2")
    assert len(fr) == 2


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_npz_errors(tmp_path):
    z = np.array([8, 1, 1])
    R = np.random.default_rng(0).standard_normal((4, 3, 3)) * 2
    E = np.arange(4.0).reshape(4, 1)
    F = np.zeros((4, 3, 3))
    p = _npz(tmp_path / "noF.npz", z=z, R=R, E=E)
    with pytest.raises(ValueError, match=r"noF.npz is missing key F \(has z, R, E\)") as e:
        read_frames(p)
    _one_line(e)
    assert read_frames(p, require_forces=False).forces is None
    p = _npz(tmp_path / "noRF.npz", z=z, E=E)
    with pytest.raises(ValueError, match=r"noRF.npz is missing keys R, F"):
        read_frames(p)
    p = _npz(tmp_path / "badz.npz", z=z[:2], R=R, E=E, F=F)
    with pytest.raises(ValueError, match=r"badz.npz: inconsistent atom counts: z has 2 atoms but R has 3"):
        read_frames(p)
    p = _npz(tmp_path / "badF.npz", z=z, R=R, E=E, F=np.zeros((4, 2, 3)))
    with pytest.raises(
        ValueError, match=r"frame 0 of .*badF.npz: forces have shape \(2, 3\) but the frame has 3 atoms"
    ):
        read_frames(p)
    E_nan = E.copy()
    E_nan[2] = np.nan
    p = _npz(tmp_path / "nan.npz", z=z, R=R, E=E_nan, F=F)
    with pytest.raises(ValueError, match=r"frame 2 of .*nan.npz has a non-finite energy"):
        read_frames(p)
    R_nan = R.copy()
    R_nan[1, 2, 0] = np.inf
    p = _npz(tmp_path / "nanR.npz", z=z, R=R_nan, E=E, F=F)
    with pytest.raises(ValueError, match=r"frame 1 of .*nanR.npz has non-finite positions \(atom 2\)"):
        read_frames(p)
    F_nan = F.copy()
    F_nan[3, 0, 1] = np.nan
    p = _npz(tmp_path / "nanF.npz", z=z, R=R, E=E, F=F_nan)
    with pytest.raises(ValueError, match=r"frame 3 of .*nanF.npz has non-finite forces \(atom 0\)"):
        read_frames(p)
    ok = read_frames(_npz(tmp_path / "ok.npz", z=z, R=R, E=E, F=F), index="1:3")
    assert len(ok) == 2 and ok.energy == pytest.approx(np.array([1.0, 2.0]) * KCAL)


def test_db_wrong_forces_shape(tmp_path):
    path = tmp_path / "w.db"
    with ase.db.connect(str(path), use_lock_file=False) as db:
        for k in range(2):
            a = molecule("NH3")
            db.write(a, data={"REF_energy": -1.0 * k, "REF_forces": np.zeros((len(a) - (k == 1), 3))})
    with pytest.raises(ValueError, match=r"frame 1 \(row id 2\) of .*w.db: forces have shape \(3, 3\)"):
        read_frames(path)
    fr = read_frames(path, index="0")
    assert fr.units == "eV" and fr.energy.tolist() == [0.0] and fr.forces[0].shape == (4, 3)
