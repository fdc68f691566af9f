"""Tests for eqt.data.atoms (AtomicSystems, collate, validate_systems)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eqt.data import AtomicSystems, collate, validate_systems

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _ok_inputs():
    z = torch.tensor([8, 1, 1, 6, 1, 1, 1, 1], dtype=torch.int64)
    pos = torch.tensor(
        [
            [0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0],  # water
            [0.0, 0.0, 0.0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63],  # methane
            [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63],
        ],
        dtype=torch.float64,
    )
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    return z, pos, batch


def _raises(match_parts, **kwargs):
    inputs = dict(zip(("z", "pos", "batch"), _ok_inputs()))
    inputs.update(kwargs)
    extra = {k: inputs.pop(k) for k in ("max_z", "min_distance") if k in inputs}
    with pytest.raises(ValueError) as info:
        validate_systems(inputs.pop("z"), inputs.pop("pos"), **inputs, **extra)
    msg = str(info.value)
    assert "\n" not in msg
    for part in match_parts:
        assert part in msg, msg
    return msg


def test_valid_inputs_pass():
    z, pos, batch = _ok_inputs()
    validate_systems(z, pos, batch, max_z=10)
    validate_systems(z[:3], pos[:3])
    validate_systems(z, pos.float(), batch)


def test_pos_shape_and_dtype():
    _, pos, _ = _ok_inputs()
    _raises(["(N, 3)", "(8, 2)"], pos=pos[:, :2])
    _raises(["floating", "int64"], pos=pos.long())


def test_empty():
    _raises(["empty input: no atoms"], z=torch.zeros(0, dtype=torch.int64), pos=torch.zeros(0, 3), batch=None)


def test_z_shape_dtype():
    z, _, _ = _ok_inputs()
    _raises(["z", "int64", "length 8", "(7,)"], z=z[:7])
    _raises(["z", "int32"], z=z.int())
    _raises(["z", "(8, 1)"], z=z[:, None])


def test_nan_position_names_atom():
    _, pos, _ = _ok_inputs()
    pos = pos.clone()
    pos[5, 1] = float("nan")
    pos[6, 0] = float("inf")
    _raises(["non-finite", "atom 5"], pos=pos)


def test_atomic_number_range():
    z, _, _ = _ok_inputs()
    z = z.clone()
    z[3] = 120
    _raises(["atomic number 120 at atom 3 is outside the model's range 1..99"], z=z, max_z=100)
    z[2] = 0
    _raises(["atomic number 0 at atom 2"], z=z)  # z < 1 is rejected even without max_z


def test_batch_errors():
    _, _, batch = _ok_inputs()
    _raises(["batch", "int64", "(7,)"], batch=batch[:7])
    _raises(["batch", "int32"], batch=batch.int())
    unsorted = torch.tensor([0, 0, 1, 1, 0, 1, 1, 1])
    _raises(["not sorted", "atom 4"], batch=unsorted)
    gap = torch.tensor([0, 0, 0, 2, 2, 2, 2, 2])
    _raises(["system 1 has no atoms", "atom 3"], batch=gap)
    late = torch.tensor([1, 1, 1, 2, 2, 2, 2, 2])
    _raises(["system 0 has no atoms", "atom 0"], batch=late)
    neg = torch.tensor([-1, -1, 0, 0, 0, 0, 0, 0])
    _raises(["negative", "-1", "atom 0"], batch=neg)


def test_cell_errors():
    cell = torch.eye(3, dtype=torch.float64).repeat(2, 1, 1) * 10.0
    validate_systems(*_ok_inputs(), cell=cell)
    _raises(["dtype mismatch", "float32"], cell=cell.float())
    _raises(["(B, 3, 3)", "(2, 3, 3)", "(1, 3, 3)"], cell=cell[:1])
    bad = cell.clone()
    bad[1, 2] = bad[1, 0]
    _raises(["system 1", "degenerate"], cell=bad)
    nan_cell = cell.clone()
    nan_cell[1, 0, 0] = float("nan")
    _raises(["non-finite cell", "system 1"], cell=nan_cell)
    _raises(["pbc", "(2, 3)"], cell=cell, pbc=torch.ones(1, 3, dtype=torch.bool))
    _raises(["pbc", "no cell"], pbc=torch.ones(2, 3, dtype=torch.bool))
    # non-periodic rows may be zero
    slab = cell.clone()
    slab[:, 2] = 0.0
    validate_systems(*_ok_inputs(), cell=slab, pbc=torch.tensor([[True, True, False]] * 2))


def test_close_atoms_named():
    _, pos, _ = _ok_inputs()
    pos = pos.clone()
    pos[7] = pos[4] + torch.tensor([0.03, 0.0, 0.04], dtype=torch.float64)
    msg = _raises(["atoms 4 and 7", "system 1", "0.05"], pos=pos)
    assert "min_distance=0.1" in msg
    validate_systems(*(_ok_inputs()[0], pos, _ok_inputs()[2]), min_distance=0.0)  # disabled
    # duplicated atom (distance exactly 0)
    pos2 = _ok_inputs()[1].clone()
    pos2[2] = pos2[0]
    _raises(["atoms 0 and 2", "system 0", "0 apart"], pos=pos2)


def test_close_periodic_image_named():
    z, pos, batch = _ok_inputs()
    cell = torch.eye(3, dtype=torch.float64).repeat(2, 1, 1) * 10.0
    pos = pos.clone()
    pos[5] = torch.tensor([0.02, 5.0, 5.0], dtype=torch.float64)
    pos[6] = torch.tensor([9.99, 5.0, 5.0], dtype=torch.float64)  # 0.03 apart through the boundary
    _raises(["atoms 5 and 6", "system 1", "periodic image", "0.03"], pos=pos, cell=cell)
    # not periodic along x: fine
    pbc = torch.tensor([[True, True, True], [False, True, True]])
    validate_systems(z, pos, batch, cell, pbc)
    # cell smaller than min_distance: atom next to its own image
    _raises(["atom 0", "own periodic image"], z=z[:1], pos=pos[:1], batch=None,
            cell=torch.eye(3, dtype=torch.float64)[None] * 0.05)


def test_from_ase_collate_roundtrip():
    from ase.build import bulk, molecule

    mols = [molecule("H2O"), molecule("CH4"), molecule("C6H6")]
    batch_all = AtomicSystems.from_ase(mols)
    assert batch_all.cell is None and batch_all.pbc is None
    assert batch_all.num_systems == 3 and batch_all.num_atoms == 3 + 5 + 12
    assert batch_all.pos.dtype == torch.float64 and batch_all.z.dtype == torch.int64
    assert torch.equal(batch_all.batch, torch.repeat_interleave(torch.arange(3), torch.tensor([3, 5, 12])))
    singles = [AtomicSystems.from_ase(m) for m in mols]
    coll = collate(singles)
    for name in ("z", "pos", "batch"):
        assert torch.equal(getattr(coll, name), getattr(batch_all, name))
    assert coll.num_systems == 3 and coll.cell is None
    coll.validate(max_z=10)

    # mixed periodic / non-periodic
    si = bulk("Si", "diamond", a=5.43)
    mixed = collate([AtomicSystems.from_ase(si), AtomicSystems.from_ase(mols[:2])])
    assert mixed.num_systems == 3
    assert mixed.cell.shape == (3, 3, 3) and mixed.pbc.shape == (3, 3)
    assert torch.allclose(mixed.cell[0], torch.tensor(si.cell.array))
    assert torch.equal(mixed.pbc, torch.tensor([[True] * 3, [False] * 3, [False] * 3]))
    assert torch.equal(mixed.cell[1:], torch.zeros(2, 3, 3, dtype=torch.float64))
    assert torch.equal(mixed.batch, torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2, 2]))
    mixed.validate()
    direct = AtomicSystems.from_ase([si, *mols[:2]])
    for name in ("z", "pos", "batch", "cell", "pbc"):
        assert torch.equal(getattr(mixed, name), getattr(direct, name))

    f32 = mixed.to(dtype=torch.float32)
    assert f32.pos.dtype == torch.float32 and f32.cell.dtype == torch.float32
    assert f32.z.dtype == torch.int64 and f32.batch.dtype == torch.int64 and f32.pbc.dtype == torch.bool
    with pytest.raises(ValueError, match="floating"):
        mixed.to(dtype=torch.int32)
    with pytest.raises(ValueError, match="dtype"):
        collate([f32, mixed])
    with pytest.raises(ValueError, match="empty"):
        collate([])


@pytest.mark.skipif(not (DATA / "rmd17" / "aspirin_test.xyz").exists(),
                    reason=f"shared data folder not found at {DATA} (rMD17 aspirin frames missing)")
def test_rmd17_aspirin_validates():
    import ase.io

    frames = ase.io.read(DATA / "rmd17" / "aspirin_test.xyz", ":64")
    systems = AtomicSystems.from_ase(frames)
    assert systems.num_systems == 64 and systems.num_atoms == 64 * 21 and systems.cell is None
    systems.validate(max_z=10, min_distance=0.5)
    with pytest.raises(ValueError, match="outside the model's range 1..7"):
        systems.validate(max_z=8)  # aspirin has oxygen (Z = 8)
