"""Tests of the equivariance harness itself: it must pass good functions and fail bad ones."""

import numpy as np
import pytest
import torch
from e3nn import o3

from eqt.testing import (
    E3,
    O3,
    SE3,
    SO3,
    AtomIndex,
    Cell,
    Element,
    Fixed,
    Invariant,
    Irreps,
    Permutations,
    Position,
    Stress,
    Translations,
    Vector,
    assert_equivariant,
    cube_group,
)


@pytest.fixture
def pos() -> torch.Tensor:
    return torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def centered(pos: torch.Tensor) -> torch.Tensor:
    return pos - pos.mean(0)


def pair_vectors(pos: torch.Tensor) -> torch.Tensor:
    """Per-atom sum over neighbours of exp(-r_ij^2) (r_i - r_j): E(3) x S_n equivariant."""
    rij = pos[:, None, :] - pos[None, :, :]
    w = torch.exp(-(rij**2).sum(-1))
    return (w[..., None] * rij).sum(1)


# ---------------------------------------------------------------- groups


def test_haar_samples() -> None:
    rng = np.random.default_rng(0)
    rs = np.stack([g.rotation for g in SO3().sample(2000, rng)])
    assert np.allclose(rs @ rs.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(rs), 1.0)
    assert np.abs(rs.mean(0)).max() < 0.08  # Haar: E[R] = 0; each entry has std 1/sqrt(3)
    dets = np.array([np.linalg.det(g.rotation) for g in O3().sample(8, rng)])
    assert np.allclose(np.abs(dets), 1.0) and (dets > 0).any() and (dets < 0).any()
    assert [g.is_improper for g in O3().sample(2, rng)] == [False, True]


def test_translation_groups_and_product_conflict() -> None:
    rng = np.random.default_rng(0)
    g = SE3().sample(1, rng)[0]
    assert g.translation.shape == (3,) and not g.is_improper
    assert Translations().sample(1, rng)[0].rotation is None
    with pytest.raises(ValueError):
        (SO3() * O3()).sample(1, rng)


def test_cube_group() -> None:
    els = cube_group().elements()
    assert len(els) == 48
    assert len({tuple(np.round(g.rotation, 6).ravel()) for g in els}) == 48
    for g in els:
        assert np.allclose(g.rotation @ g.rotation.T, np.eye(3))
    assert sum(g.is_improper for g in els) == 24


def test_compose_matches_sequential_action(pos: torch.Tensor) -> None:
    rng = np.random.default_rng(1)
    g, h = (E3() * Permutations(5)).sample(2, rng)
    rep = Position()
    assert torch.allclose(rep.act(g.compose(h), pos), rep.act(g, rep.act(h, pos)))


# ---------------------------------------------------------------- rotations


def test_equivariant_function_passes(pos: torch.Tensor) -> None:
    err = assert_equivariant(centered, E3(), [(pos, Position())], Vector(), n_samples=8)
    assert err < 1e-12


def test_cross_product_is_pseudo_vector() -> None:
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    inputs = [(a, Vector()), (b, Vector())]
    assert_equivariant(torch.linalg.cross, O3(), inputs, Vector(pseudo=True))
    assert_equivariant(torch.linalg.cross, SO3(), inputs, Vector())
    with pytest.raises(AssertionError, match="improper=True"):
        assert_equivariant(torch.linalg.cross, O3(), inputs, Vector())


def test_non_equivariant_functions_fail(pos: torch.Tensor) -> None:
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(lambda p: p + torch.tensor([1.0, 0, 0], dtype=p.dtype), SO3(), [(pos, Vector())], Vector())
    with pytest.raises(AssertionError):
        assert_equivariant(lambda p: p[:, 0], SO3(), [(pos, Position())], Invariant(atom_axis=0))
    with pytest.raises(AssertionError):  # not translation invariant
        assert_equivariant(lambda p: p.norm(dim=-1), Translations(), [(pos, Position())], Invariant(atom_axis=0))


def test_multiple_outputs_and_rank2(pos: torch.Tensor) -> None:
    def fn(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = centered(p)
        return (c**2).sum(), c.T @ c, c[:3]

    err = assert_equivariant(fn, E3(), [(pos, Position())], [Invariant(), Stress(), Cell()])
    assert err < 1e-12


def test_float32(pos: torch.Tensor) -> None:
    err = assert_equivariant(pair_vectors, E3(), [(pos, Position())], Vector(), dtype=torch.float32)
    assert err < 1e-5
    lin = o3.Linear("2x0e+2x1o", "1x0e+3x1o")
    with pytest.raises(ValueError, match="dtype"):
        assert_equivariant(lin, O3(), [(torch.randn(3, 8), Irreps("2x0e+2x1o"))], Irreps("1x0e+3x1o"))


# ---------------------------------------------------------------- e3nn


def test_e3nn_linear_and_spherical_harmonics() -> None:
    torch.manual_seed(0)
    lin = o3.Linear("2x0e+2x1o", "1x0e+3x1o").to(torch.float64)
    x = torch.randn(4, 8, dtype=torch.float64)
    assert assert_equivariant(lin, O3(), [(x, Irreps("2x0e+2x1o"))], Irreps("1x0e+3x1o")) < 1e-12
    assert assert_equivariant(lin, cube_group(), [(x, Irreps("2x0e+2x1o"))], Irreps("1x0e+3x1o")) < 1e-12
    with pytest.raises(AssertionError):  # wrong parity of the output
        assert_equivariant(lin, O3(), [(x, Irreps("2x0e+2x1o"))], Irreps("1x0e+3x1e"))

    def sh(v: torch.Tensor) -> torch.Tensor:
        return o3.spherical_harmonics([0, 1, 2], v, normalize=True)

    v = torch.randn(6, 3, dtype=torch.float64)
    assert assert_equivariant(sh, O3(), [(v, Vector())], Irreps("1x0e+1x1o+1x2e"), n_samples=8) < 1e-12


# ---------------------------------------------------------------- permutations


def test_permutations(pos: torch.Tensor) -> None:
    group = Permutations(5)
    assert group.order == 120 and len(group.elements()) == 120
    calls = []

    def fn(p: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return pair_vectors(p)

    assert_equivariant(fn, group, [(pos, Position())], Vector())
    assert len(calls) == 1 + 120  # every element checked
    with pytest.raises(AssertionError):
        assert_equivariant(lambda p: p.cumsum(0), group, [(pos, Position())], Vector())
    with pytest.raises(ValueError):
        Permutations(8).elements()


def test_product_group(pos: torch.Tensor) -> None:
    assert_equivariant(pair_vectors, O3() * Permutations(5), [(pos, Position())], Vector(), n_samples=6)
    assert_equivariant(pair_vectors, E3() * Permutations(5), [(pos, Position())], Vector(), n_samples=6)
    with pytest.raises(AssertionError):
        assert_equivariant(lambda p: p.cumsum(0), O3() * Permutations(5), [(pos, Vector())], Vector())


def test_within_block_permutations() -> None:
    batch = torch.tensor([0, 0, 0, 1, 1, 2])
    group = Permutations(6, blocks=batch)
    assert group.order == 6 * 2 * 1
    for g in group.elements() + group.sample(10, np.random.default_rng(0)):
        assert torch.equal(batch[torch.as_tensor(g.permutation)], batch)

    def per_molecule_sum(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.zeros(3, x.shape[1], dtype=x.dtype).index_add(0, b, x)

    x = torch.randn(6, 2, dtype=torch.float64)
    inputs = [(x, Invariant(atom_axis=0)), (batch, Fixed())]
    assert_equivariant(per_molecule_sum, group, inputs, Invariant())
    with pytest.raises(AssertionError):  # mixing molecules breaks it
        assert_equivariant(per_molecule_sum, Permutations(6), inputs, Invariant())


def test_atom_index_relabelling() -> None:
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 0, 2], [1, 2, 0, 4, 3, 3, 4]])
    x = torch.randn(5, 4, dtype=torch.float64)
    z = torch.tensor([1, 6, 8, 1, 7])  # integer input: permuted, never cast

    def message_pass(x: torch.Tensor, ei: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        assert z.dtype == torch.int64
        return torch.zeros_like(x).index_add(0, ei[1], x[ei[0]] * z[ei[0], None])

    inputs = [(x, Invariant(atom_axis=0)), (edge_index, AtomIndex()), (z, Invariant(atom_axis=0))]
    assert_equivariant(message_pass, Permutations(5), inputs, Invariant(atom_axis=0))
    with pytest.raises(AssertionError):  # edge_index not relabelled
        inputs[1] = (edge_index, Fixed())
        assert_equivariant(message_pass, Permutations(5), inputs, Invariant(atom_axis=0))


def test_atom_index_act_convention() -> None:
    g = Element(permutation=np.array([2, 0, 1]))  # new[i] = old[perm[i]]
    ei = torch.tensor([[0, 1], [2, 0]])
    # old atom 2 is new atom 0, old 0 -> new 1, old 1 -> new 2
    assert AtomIndex().act(g, ei).tolist() == [[1, 2], [0, 1]]
    assert Invariant(atom_axis=0).act(g, torch.tensor([10, 11, 12])).tolist() == [12, 10, 11]
