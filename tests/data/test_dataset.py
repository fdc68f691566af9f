"""Tests for eqt.data.dataset (splits, atomrefs, AtomsDataset, collate_atoms, make_loader)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule

from eqt.data import AtomicSystems, Frames, read_frames
from eqt.data.dataset import (
    AtomsDataset,
    collate_atoms,
    energy_statistics,
    fit_atomrefs,
    load_splits,
    make_loader,
    save_splits,
    split_indices,
)

REFS = {1: -13.6, 6: -1029.0, 7: -1484.0, 8: -2041.0}  # eV, roughly isolated-atom energies


def _mixture(n_frames=60, noise=1e-3, seed=0) -> Frames:
    rng = np.random.default_rng(seed)
    names = ["H2O", "CH4", "NH3", "CO2", "C2H6"]
    z, pos, energy, forces = [], [], [], []
    for k in range(n_frames):
        a = molecule(names[k % len(names)])
        z.append(a.numbers.astype(np.int64))
        pos.append(a.positions + 0.02 * rng.standard_normal(a.positions.shape))
        energy.append(sum(REFS[int(x)] for x in a.numbers) + noise * rng.standard_normal())
        forces.append(rng.standard_normal((len(a), 3)))
    return Frames(z=z, pos=pos, energy=np.array(energy), forces=forces, source="<mixture>")


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------
def test_split_indices_counts_and_seed():
    s = split_indices(1000, (950, 50, None), seed=1)
    assert [len(s[k]) for k in ("train", "val", "test")] == [950, 50, 0]
    s = split_indices(1000, (900, 50, None), seed=1)
    assert [len(s[k]) for k in ("train", "val", "test")] == [900, 50, 50]
    all_idx = np.concatenate([s["train"], s["val"], s["test"]])
    assert len(np.unique(all_idx)) == 1000 and all_idx.min() == 0 and all_idx.max() == 999
    again = split_indices(1000, (900, 50, None), seed=1)
    other = split_indices(1000, (900, 50, None), seed=2)
    for k in s:
        np.testing.assert_array_equal(s[k], again[k])
        assert s[k].dtype == np.int64
    assert not np.array_equal(s["val"], other["val"])
    f = split_indices(200, (0.8, 0.1, 0.1), seed=0)
    assert [len(f[k]) for k in ("train", "val", "test")] == [160, 20, 20]
    g = split_indices(100, (None, 10, 5), seed=0)
    assert len(g["train"]) == 85


@pytest.mark.parametrize(
    "sizes, match",
    [
        ((950, 100, None), "ask for 1050 frames but there are only 1000"),
        ((None, None, 10), "at most one size may be None"),
        ((1.5, 10, None), "fraction 1.5 is outside"),
        ((-1, 10, None), "negative"),
    ],
)
def test_split_indices_errors(sizes, match):
    with pytest.raises(ValueError, match=match):
        split_indices(1000, sizes, seed=0)


def test_save_load_splits(tmp_path):
    s = split_indices(50, (30, 10, None), seed=3)
    path = tmp_path / "splits.npz"
    save_splits(path, s)
    with np.load(path) as raw:
        assert sorted(raw.files) == ["idx_test", "idx_train", "idx_val"]
    back = load_splits(path)
    for k in s:
        np.testing.assert_array_equal(back[k], s[k])
    with pytest.raises(ValueError, match="splits file not found"):
        load_splits(tmp_path / "none.npz")
    np.savez(tmp_path / "bad.npz", idx_train=np.arange(3))
    with pytest.raises(ValueError, match=r"bad.npz lacks idx_val, idx_test"):
        load_splits(tmp_path / "bad.npz")


# --------------------------------------------------------------------------------------------
# Atom references
# --------------------------------------------------------------------------------------------
def test_fit_atomrefs_recovers_known_refs():
    fr = _mixture()
    refs = fit_atomrefs(fr, max_z=20)
    assert refs.shape == (20,)
    for zz, e in REFS.items():
        assert refs[zz] == pytest.approx(e, abs=5e-3)
    assert np.count_nonzero(refs) == len(REFS)  # absent elements get 0
    mean, std = energy_statistics(fr, refs)
    assert abs(mean) < 1e-3 and std < 5e-3
    mean0, std0 = energy_statistics(fr, None)
    assert mean0 < -300 and std0 > 100


def test_fit_atomrefs_single_molecule_min_norm():
    fr = _mixture(n_frames=10)
    fr = fr.subset(np.arange(0, 10, 5))  # only water: collinear composition
    refs = fit_atomrefs(fr)
    mean, _ = energy_statistics(fr, refs)
    assert abs(mean) < 1e-3  # reproduces the mean energy
    # minimum-norm solution for E = 2 e_H + e_O is proportional to the composition (2, 1)
    assert refs[1] == pytest.approx(2 * refs[8], rel=1e-9)
    with pytest.raises(ValueError, match="outside 0..4"):
        fit_atomrefs(fr, max_z=5)
    with pytest.raises(ValueError, match="has no energies"):
        fit_atomrefs(Frames(z=[np.array([1])], pos=[np.zeros((1, 3))]))


def test_atomrefs_on_rmd17(shared_data):
    fr = read_frames(shared_data / "rmd17" / "ethanol_train.xyz", index="::20")
    refs = fit_atomrefs(fr)
    mean, std = energy_statistics(fr, refs)
    assert abs(mean) < 1e-6
    assert 0.01 < std < 1.0  # thermal fluctuations of ethanol energies, eV


# --------------------------------------------------------------------------------------------
# Dataset and batching
# --------------------------------------------------------------------------------------------
def test_dataset_items():
    fr = _mixture(n_frames=5)
    ds = AtomsDataset(fr)
    assert len(ds) == 5
    item = ds[1]  # CH4
    assert item["z"].dtype == torch.int64 and item["z"].shape == (5,)
    assert item["pos"].shape == (5, 3) and item["pos"].dtype == torch.float32
    assert item["energy"].shape == () and item["forces"].shape == (5, 3)
    assert "cell" not in item and "pbc" not in item
    assert AtomsDataset(fr, dtype=torch.float64)[0]["pos"].dtype == torch.float64
    with pytest.raises(IndexError):
        ds[5]


def test_collate_molecules_of_different_sizes():
    fr = _mixture(n_frames=5)  # 3, 5, 4, 3, 8 atoms
    ds = AtomsDataset(fr, dtype=torch.float64)
    b = collate_atoms([ds[k] for k in range(5)])
    sizes = [3, 5, 4, 3, 8]
    assert b["num_systems"] == 5
    assert b["z"].shape == (23,) and b["pos"].shape == (23, 3) and b["forces"].shape == (23, 3)
    assert b["batch"].tolist() == sum(([k] * n for k, n in enumerate(sizes)), [])
    assert b["energy"].shape == (5,)
    np.testing.assert_allclose(b["energy"].numpy(), fr.energy)
    np.testing.assert_allclose(b["pos"][8:12].numpy(), fr.pos[2])
    assert "cell" not in b
    systems = AtomicSystems(z=b["z"], pos=b["pos"], batch=b["batch"], num_systems=b["num_systems"])
    systems.validate(min_distance=0.5)


def test_collate_mixed_periodic():
    z = [np.array([29, 29]), np.array([1, 1])]
    pos = [np.array([[0.0, 0, 0], [1.8, 1.8, 0]]), np.array([[0.0, 0, 0], [0.74, 0, 0]])]
    fr = Frames(
        z=z, pos=pos, energy=np.array([-7.0, -31.0]),
        cell=[np.eye(3) * 3.6, None], pbc=[np.array([True, True, False]), None],
    )
    ds = AtomsDataset(fr)
    assert ds[0]["cell"].shape == (1, 3, 3) and ds[0]["pbc"].shape == (1, 3)
    b = collate_atoms([ds[0], ds[1]])
    assert b["cell"].shape == (2, 3, 3) and b["pbc"].shape == (2, 3)
    assert b["pbc"].tolist() == [[True, True, False], [False, False, False]]
    assert torch.all(b["cell"][1] == 0) and b["cell"][0, 0, 0] == pytest.approx(3.6)
    assert "forces" not in b
    with pytest.raises(ValueError, match="item 1 has no energy but item 0 has"):
        collate_atoms([ds[0], {"z": ds[1]["z"], "pos": ds[1]["pos"]}])
    with pytest.raises(ValueError, match="empty list"):
        collate_atoms([])


def test_make_loader_seeded():
    fr = _mixture(n_frames=20)
    idx = np.arange(2, 17)

    def energies(seed):
        loader = make_loader(fr, idx, batch_size=4, shuffle=True, seed=seed, dtype=torch.float64)
        return torch.cat([b["energy"] for b in loader]).numpy()

    a, b, c = energies(0), energies(0), energies(1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_allclose(np.sort(a), np.sort(fr.energy[idx]))
    batches = list(make_loader(fr, None, batch_size=8))
    assert [bb["num_systems"] for bb in batches] == [8, 8, 4]
    assert batches[0]["pos"].dtype == torch.float32
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(fr, None, batch_size=0)
