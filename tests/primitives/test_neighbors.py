"""Tests for eqt.primitives.neighbors (radius_graph, edge_vectors)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

import eqt.primitives.neighbors as nb
from eqt.primitives.neighbors import edge_vectors, radius_graph

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

try:
    import vesin  # noqa: F401

    HAVE_VESIN = True
except ImportError:  # pragma: no cover
    HAVE_VESIN = False

BACKENDS = ["torch", pytest.param("vesin", marks=pytest.mark.skipif(not HAVE_VESIN, reason="vesin not installed"))]


# ----------------------------------------------------------------------------------------------
# Independent brute-force reference (numpy, explicit loops over atoms and image shifts)
# ----------------------------------------------------------------------------------------------
def brute_force(pos, cutoff, batch=None, cell=None, pbc=None, nmax=3, self_loops=False):
    """Sorted list of (i, j, S0, S1, S2) with |pos[j] - pos[i] + S @ cell[b]| < cutoff."""
    pos = np.asarray(pos, dtype=np.float64)
    n = len(pos)
    batch = np.zeros(n, dtype=np.int64) if batch is None else np.asarray(batch)
    edges = []
    for i in range(n):
        b = batch[i]
        if cell is not None:
            c = np.asarray(cell, dtype=np.float64)[b]
            p = np.ones(3, bool) if pbc is None else np.asarray(pbc)[b]
        else:
            c = np.zeros((3, 3))
            p = np.zeros(3, bool)
        ranges = [range(-nmax, nmax + 1) if p[k] else range(0, 1) for k in range(3)]
        for j in range(n):
            if batch[j] != b:
                continue
            for s in itertools.product(*ranges):
                if i == j and s == (0, 0, 0):
                    if self_loops:
                        edges.append((i, j, 0, 0, 0))
                    continue
                r = pos[j] - pos[i] + np.asarray(s, dtype=np.float64) @ c
                if np.sqrt((r * r).sum()) < cutoff:
                    edges.append((i, j) + tuple(int(x) for x in s))
    edges.sort()
    if edges and cell is not None:
        # The reference range must not have been the limiting factor.
        assert max(abs(e[k]) for e in edges for k in (2, 3, 4)) < nmax
    return edges


def as_tuples(edge_index, shifts):
    """Our output as a list of (i, j, S0, S1, S2) in output order."""
    j, i = edge_index.tolist()
    s = shifts.round().long().tolist()
    return [(a, b, *c) for a, b, c in zip(i, j, s)]


def check(pos, cutoff, batch=None, cell=None, pbc=None, backend="torch", nmax=3, self_loops=False):
    ei, sh = radius_graph(pos, cutoff, batch, cell, pbc, self_loops=self_loops, backend=backend)
    assert ei.dtype == torch.int64 and ei.shape[0] == 2
    assert sh.dtype == pos.dtype and sh.shape == (ei.shape[1], 3)
    assert torch.equal(sh, sh.round())
    got = as_tuples(ei, sh)
    ref = brute_force(pos.numpy(), cutoff, None if batch is None else batch.numpy(),
                      None if cell is None else cell.numpy(), None if pbc is None else pbc.numpy(),
                      nmax=nmax, self_loops=self_loops)
    assert got == ref  # same set AND sorted by (i, j, S)
    # edge vectors reproduce the distances
    vec = edge_vectors(pos, ei, sh if cell is not None else None, cell, batch)
    d = vec.norm(dim=1)
    assert bool((d < cutoff).all())
    return ei, sh


def random_molecule(n, gen, scale=1.0):
    # roughly molecular density, minimum separation not enforced (not needed here)
    return torch.rand(n, 3, generator=gen, dtype=torch.float64) * scale * n ** (1 / 3) * 1.5


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_nonperiodic_single(backend):
    gen = torch.Generator().manual_seed(0)
    pos = random_molecule(30, gen)
    ei, _ = check(pos, 3.0, backend=backend)
    assert ei.shape[1] > 0
    assert not bool((ei[0] == ei[1]).any())


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_molecules(backend):
    gen = torch.Generator().manual_seed(1)
    sizes = [5, 12, 1, 9, 21]
    pos = torch.cat([random_molecule(n, gen) for n in sizes])
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    ei, _ = check(pos, 2.5, batch, backend=backend)
    assert torch.equal(batch[ei[0]], batch[ei[1]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_triclinic_periodic_unwrapped_positions(backend):
    gen = torch.Generator().manual_seed(2)
    cell = torch.tensor([[4.0, 0.0, 0.0], [1.2, 3.8, 0.0], [-0.9, 0.7, 4.3]], dtype=torch.float64)
    frac = torch.rand(7, 3, generator=gen, dtype=torch.float64) * 3.0 - 1.0  # outside [0, 1) too
    pos = frac @ cell
    check(pos, 3.5, cell=cell[None], backend=backend, nmax=5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_small_cell_many_images(backend):
    gen = torch.Generator().manual_seed(3)
    cell = torch.tensor([[1.3, 0.0, 0.0], [0.4, 1.2, 0.0], [0.3, -0.2, 1.1]], dtype=torch.float64)
    pos = torch.rand(3, 3, generator=gen, dtype=torch.float64) @ cell
    ei, sh = check(pos, 3.1, cell=cell[None], backend=backend, nmax=6)
    assert sh.abs().max() >= 3  # really needed many images
    assert bool((ei[0] == ei[1]).any())  # images of the atom itself are included


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_pbc_slab_and_batch(backend):
    gen = torch.Generator().manual_seed(4)
    cell = torch.tensor(
        [
            [[3.0, 0.0, 0.0], [0.5, 2.8, 0.0], [0.0, 0.0, 0.0]],  # slab, zero c vector
            [[3.5, 0.0, 0.0], [0.0, 3.2, 0.0], [0.0, 0.0, 3.9]],  # bulk
            [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # molecule
        ],
        dtype=torch.float64,
    )
    pbc = torch.tensor([[True, True, False], [True, True, True], [False, False, False]])
    pos = torch.cat(
        [
            torch.rand(4, 3, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 3.0, 5.0], dtype=torch.float64),
            torch.rand(5, 3, generator=gen, dtype=torch.float64) * 3.5,
            random_molecule(6, gen),
        ]
    )
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor([4, 5, 6]))
    ei, sh = check(pos, 3.2, batch, cell, pbc, backend=backend, nmax=4)
    assert bool((sh[batch[ei[1]] == 0][:, 2] == 0).all())  # slab: no shift along c
    assert bool((sh[batch[ei[1]] == 1][:, 2] != 0).any())
    assert bool((sh[batch[ei[1]] == 2] == 0).all())


def _ase_edges(atoms, cutoff):
    from ase.neighborlist import neighbor_list

    i, j, s = neighbor_list("ijS", atoms, cutoff)
    return sorted((int(a), int(b), *map(int, c)) for a, b, c in zip(i, j, s))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ase_bulk_silicon(backend):
    from ase.build import bulk

    prim = bulk("Si", "diamond", a=5.43)  # 2 atoms, cutoff larger than the cell heights
    sup = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 2)
    sup.rattle(0.05, seed=7)
    for atoms in (prim, sup):
        pos = torch.tensor(atoms.positions)
        cell = torch.tensor(atoms.cell.array)[None]
        ei, sh = radius_graph(pos, 5.0, cell=cell, backend=backend)
        assert as_tuples(ei, sh) == _ase_edges(atoms, 5.0)
        vec = edge_vectors(pos, ei, sh, cell)
        from ase.neighborlist import neighbor_list

        assert np.allclose(np.sort(vec.norm(dim=1).numpy()), np.sort(neighbor_list("d", atoms, 5.0)))
    # prim: 4 nearest + 12 second + 12 third neighbours per atom within 5 A
    ei, _ = radius_graph(torch.tensor(prim.positions), 5.0, cell=torch.tensor(prim.cell.array), backend=backend)
    assert ei.shape[1] == 2 * 28


@pytest.mark.skipif(not HAVE_VESIN, reason="vesin not installed")
@pytest.mark.parametrize("self_loops", [False, True])
def test_backends_identical_mixed_batch(self_loops):
    from ase.build import bulk, molecule

    systems = [bulk("Cu", "fcc", a=3.6) * (2, 2, 2), molecule("C6H6"), bulk("NaCl", "rocksalt", a=5.64), molecule("CH4")]
    systems[0].rattle(0.05, seed=1)
    pos = torch.cat([torch.tensor(a.positions) for a in systems])
    batch = torch.repeat_interleave(torch.arange(len(systems)), torch.tensor([len(a) for a in systems]))
    cell = torch.stack([torch.tensor(a.cell.array) for a in systems])
    pbc = torch.stack([torch.tensor(a.pbc) for a in systems])
    a = radius_graph(pos, 4.5, batch, cell, pbc, self_loops=self_loops, backend="torch")
    b = radius_graph(pos, 4.5, batch, cell, pbc, self_loops=self_loops, backend="vesin")
    c = radius_graph(pos, 4.5, batch, cell, pbc, self_loops=self_loops, backend="auto")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
    va = edge_vectors(pos, a[0], a[1], cell, batch)
    assert bool((va.norm(dim=1) < 4.5).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_loops(backend):
    gen = torch.Generator().manual_seed(5)
    pos = random_molecule(10, gen)
    batch = torch.tensor([0] * 4 + [1] * 6)
    ei0, _ = radius_graph(pos, 2.0, batch, backend=backend)
    ei1, sh1 = radius_graph(pos, 2.0, batch, self_loops=True, backend=backend)
    assert ei1.shape[1] == ei0.shape[1] + 10
    loops = ei1[0] == ei1[1]
    assert torch.equal(ei1[0, loops], torch.arange(10))
    assert bool((sh1[loops] == 0).all())
    check(pos, 2.0, batch, backend=backend, self_loops=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_coincident_atoms_are_edges(backend):
    pos = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0]], dtype=torch.float64)
    ei, _ = radius_graph(pos, 1.0, backend=backend)
    assert as_tuples(ei, torch.zeros(ei.shape[1], 3)) == [(i, j, 0, 0, 0) for i in range(3) for j in range(3) if i != j]


def test_torch_chunked_and_loop_paths(monkeypatch):
    """Exercise the row/image chunking and the per-system fallback of the torch backend."""
    gen = torch.Generator().manual_seed(6)
    sizes = [17, 9, 23]
    pos = torch.cat([random_molecule(n, gen) for n in sizes])
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    cell = torch.tensor([[2.9, 0.0, 0.0], [0.0, 3.1, 0.0], [0.3, 0.0, 3.3]], dtype=torch.float64)
    pbc = torch.tensor([[False] * 3, [True] * 3, [False] * 3])
    cells = torch.stack([torch.zeros(3, 3, dtype=torch.float64), cell, torch.zeros(3, 3, dtype=torch.float64)])
    ref = radius_graph(pos, 3.0, batch, cells, pbc, backend="torch")
    monkeypatch.setattr(nb, "_CHUNK_ELEMENTS", 50)
    monkeypatch.setattr(nb, "_PADDED_MAX_ELEMENTS", 10)
    got = radius_graph(pos, 3.0, batch, cells, pbc, backend="torch")
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])
    check(pos, 3.0, batch, cells, pbc, backend="torch", nmax=4)


def test_large_molecule_auto_and_float32():
    gen = torch.Generator().manual_seed(8)
    pos = random_molecule(300, gen).float()
    ei_t, sh_t = radius_graph(pos, 3.0, backend="torch")
    ei_a, sh_a = radius_graph(pos, 3.0, backend="auto")
    assert torch.equal(ei_t, ei_a) and torch.equal(sh_t, sh_a)
    assert sh_t.dtype == torch.float32
    d = edge_vectors(pos, ei_t).norm(dim=1)
    assert bool((d < 3.0 + 1e-5).all())


def test_no_autograd_and_empty():
    pos = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    ei, sh = radius_graph(pos, 10.0)
    assert not sh.requires_grad and ei.shape[1] == 20
    ei, sh = radius_graph(torch.zeros(0, 3), 1.0)
    assert ei.shape == (2, 0) and sh.shape == (0, 3)


def test_errors():
    pos = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="sorted"):
        radius_graph(pos, 1.0, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="cutoff"):
        radius_graph(pos, 0.0)
    with pytest.raises(ValueError, match="backend"):
        radius_graph(pos, 1.0, backend="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="degenerate"):
        radius_graph(pos, 1.0, cell=torch.tensor([[[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]]], dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        radius_graph(pos[:, :2], 1.0)


def test_edge_vectors_gradcheck():
    gen = torch.Generator().manual_seed(9)
    cell = torch.tensor(
        [[[3.0, 0.1, 0.0], [0.2, 2.9, 0.0], [0.1, 0.0, 3.2]], [[3.4, 0.0, 0.0], [0.0, 3.1, 0.3], [0.0, 0.0, 2.8]]],
        dtype=torch.float64,
    )
    pos = torch.rand(8, 3, generator=gen, dtype=torch.float64) * 3
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    ei, sh = radius_graph(pos, 3.5, batch, cell)
    assert ei.shape[1] > 0
    pos.requires_grad_(True)
    cell.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p, c: edge_vectors(p, ei, sh, c, batch), (pos, cell))
    # non-periodic
    assert torch.autograd.gradcheck(lambda p: edge_vectors(p, ei), (pos,))
    # a shared (3, 3) cell gives the same as a per-system cell
    v1 = edge_vectors(pos, ei, sh, cell[0])
    v2 = edge_vectors(pos, ei, sh, cell[0].expand(2, 3, 3), batch)
    assert torch.allclose(v1, v2)


@pytest.mark.skipif(not (DATA / "rmd17" / "aspirin_test.xyz").exists(),
                    reason=f"shared data folder not found at {DATA} (rMD17 aspirin frames missing)")
@pytest.mark.parametrize("backend", BACKENDS)
def test_rmd17_aspirin_frames(backend):
    import ase.io

    frames = ase.io.read(DATA / "rmd17" / "aspirin_test.xyz", ":16")
    pos = torch.cat([torch.tensor(a.positions) for a in frames])
    batch = torch.repeat_interleave(torch.arange(len(frames)), torch.tensor([len(a) for a in frames]))
    ei, sh = radius_graph(pos, 5.0, batch, backend=backend)
    ref = []
    for b, a in enumerate(frames):
        ref += [(i + 21 * b, j + 21 * b, *s) for (i, j, *s) in _ase_edges(a, 5.0)]
    assert as_tuples(ei, sh) == sorted(ref)
    # 21 atoms: every atom has neighbours, none has all 20 others within 2 A
    deg = torch.bincount(ei[1], minlength=pos.shape[0])
    assert bool((deg > 0).all())
