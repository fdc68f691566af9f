"""Clifford primitives and equivariant maps through the one harness (``eqt.testing``), float64.

The reference action (:class:`eqt.reps.actions.Multivector`) is the outermorphism of the vector
reflections, built from determinants, independent of the Cayley tables.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqt.primitives import clifford as cl
from eqt.primitives.clifford_basis import equivariant_linear_basis
from eqt.reps.groups import metric_reflection
from eqt.testing import Invariant, Multivector, Pin, assert_equivariant

ALGEBRAS = [(3, 0, 0), (3, 0, 1), (4, 1, 0), (2, 0, 0)]


def _mv(alg, *shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, alg.dim, dtype=torch.float64, generator=g)


@pytest.mark.parametrize("sig", ALGEBRAS)
def test_sandwich_matches_the_outermorphism_reference(sig):
    alg, group = cl.Algebra(*sig), Pin(*sig)
    rng = np.random.default_rng(0)
    rep = Multivector(*sig)
    vec_idx = [alg.blade_index((i,)) for i in range(alg.n)]
    x = _mv(alg, 5)
    for count in (1, 2, 3):
        m, versor = np.eye(alg.n), torch.zeros(alg.dim, dtype=torch.float64)
        versor[0] = 1.0
        for _ in range(count):
            v = group._vector(rng)
            m = m @ metric_reflection(v, group.metric)  # V = v1 v2 ...: the last factor acts first
            mv = torch.zeros(alg.dim, dtype=torch.float64)
            mv[vec_idx] = torch.as_tensor(v)
            versor = cl.geometric_product(alg, versor, mv)
        fast = cl.sandwich(alg, versor, x)
        ref = x @ torch.as_tensor(rep.matrix(m)).T
        assert (fast - ref).abs().max() < 1e-10 * ref.abs().max(), f"{alg!r}, {count} reflections"


@pytest.mark.parametrize("sig", ALGEBRAS)
def test_products_are_equivariant(sig):
    alg, group, rep = cl.Algebra(*sig), Pin(*sig), Multivector(*sig)
    x, y = _mv(alg, 4, seed=1), _mv(alg, 4, seed=2)
    for fn in (cl.geometric_product, cl.outer_product, cl.left_contraction):
        err = assert_equivariant(lambda a, b: fn(alg, a, b), group, [(x, rep), (y, rep)], [rep], n_samples=4)
        assert err < 1e-10
    assert_equivariant(lambda a, b: cl.inner_product(alg, a, b), group, [(x, rep), (y, rep)], [Invariant()])
    assert_equivariant(lambda a: cl.squared_norm(alg, a, absolute=True), group, [(x, rep)], [Invariant()])


def test_pga_join_is_equivariant_with_a_reference():
    alg, group, rep = cl.Algebra(3, 0, 1), Pin(3, 0, 1), Multivector(3, 0, 1)
    x, y, ref = _mv(alg, 4, seed=3), _mv(alg, 4, seed=4), _mv(alg, 4, seed=5)
    assert_equivariant(lambda a, b, c: cl.join(alg, a, b, c), group, [(x, rep), (y, rep), (ref, rep)], [rep])


@pytest.mark.parametrize("sig, subgroup, proper", [((3, 0, 0), "pin", False), ((3, 0, 1), "pin", False),
                                                   ((4, 1, 0), "euclidean", False), ((4, 1, 0), "euclidean", True)])
def test_derived_linear_maps_are_equivariant(sig, subgroup, proper):
    alg, rep = cl.Algebra(*sig), Multivector(*sig)
    basis = equivariant_linear_basis(alg, subgroup, proper, dtype=torch.float64)
    x = _mv(alg, 6, seed=6)
    group = Pin(*sig, subgroup=subgroup, proper=proper)
    err = assert_equivariant(lambda a: torch.einsum("kij,nj->nki", basis, a), group, [(x, rep)], [rep], n_samples=6)
    assert err < 1e-10


def test_non_equivariant_map_fails():
    """The harness can fail: a map outside the basis (e.g. swapping e1 and e0 coefficients) is caught."""
    alg, rep = cl.Algebra(3, 0, 1), Multivector(3, 0, 1)
    swap = torch.eye(16, dtype=torch.float64)[[0, 2, 1] + list(range(3, 16))]
    with pytest.raises(AssertionError):
        assert_equivariant(lambda a: a @ swap.T, Pin(3, 0, 1), [(_mv(alg, 3), rep)], [rep])
