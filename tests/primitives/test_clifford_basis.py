"""Equivariant linear bases derived numerically: counts of the papers, and equivariance in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqt.primitives.clifford import Algebra
from eqt.primitives.clifford_basis import _versor, equivariant_linear_basis, reflection_vectors, versor_matrix

#: <L_a, probe> for the canonical G(3,0,1) Pin basis (probe = arange(1, 257) / 256 as a 16x16 matrix)
FINGERPRINT_PGA = [0.00390625, 0.06640625, 0.33984375, 0.676582346707, 1.229529031045, 1.366696340347, 1.66796875,
                   0.99609375, 1.0]

COUNTS = [  # (p, q, r, subgroup, proper, count) — ../shared/specs/gatr.md §1.5 and §2
    (3, 0, 0, "pin", False, 4),
    (3, 0, 0, "pin", True, 8),
    (3, 0, 1, "pin", False, 9),
    (3, 0, 1, "euclidean", False, 9),
    (3, 0, 1, "euclidean", True, 16),
    (4, 1, 0, "pin", False, 6),
    (4, 1, 0, "euclidean", False, 20),
    (4, 1, 0, "euclidean", True, 40),
]


@pytest.mark.parametrize("p, q, r, subgroup, proper, count", COUNTS)
def test_number_of_equivariant_maps(p, q, r, subgroup, proper, count):
    basis = equivariant_linear_basis(Algebra(p, q, r), subgroup, proper, dtype=torch.float64)
    assert basis.shape == (count, 2 ** (p + q + r), 2 ** (p + q + r))


@pytest.mark.parametrize("p, q, r, subgroup, proper, count", COUNTS)
def test_maps_commute_with_fresh_group_elements(p, q, r, subgroup, proper, count):
    alg = Algebra(p, q, r)
    basis = equivariant_linear_basis(alg, subgroup, proper, dtype=torch.float64)
    rng = np.random.default_rng(123)
    for n_refl in ((2, 4) if proper else (1, 2, 3)):
        rho = versor_matrix(alg, _versor(alg, reflection_vectors(alg, n_refl, subgroup, rng)))
        err = (torch.einsum("ij,ajk->aik", rho, basis) - torch.einsum("aij,jk->aik", basis, rho)).abs().max()
        assert err < 1e-10 * max(1.0, float(rho.abs().max()) ** 2), f"{alg!r}: commutator {err:.2e}"


def test_pga_basis_spans_the_reference_maps():
    """GATr's 9 hand-written G(3,0,1) maps (5 grade projections, 4 'multiply by e0') lie in our span."""
    alg = Algebra(3, 0, 1)
    basis = equivariant_linear_basis(alg, "pin", dtype=torch.float64).reshape(9, -1)
    grades = [[0], [1, 2, 3, 4], [5, 6, 7, 8, 9, 10], [11, 12, 13, 14], [15]]
    e0 = [[(1, 0)], [(5, 2), (6, 3), (7, 4)], [(11, 8), (12, 9), (13, 10)], [(15, 14)]]
    maps = []
    for g in grades:
        m = torch.zeros(16, 16, dtype=torch.float64)
        m[g, g] = 1.0
        maps.append(m)
    for pairs in e0:
        m = torch.zeros(16, 16, dtype=torch.float64)
        for out, inp in pairs:
            m[out, inp] = 1.0
        maps.append(m)
    ref = torch.stack(maps).reshape(9, -1)
    residual = ref - (ref @ basis.T) @ basis  # projection onto our orthonormal span
    assert residual.abs().max() < 1e-10


def test_unknown_subgroup_is_an_error():
    with pytest.raises(ValueError, match="unknown subgroup"):
        equivariant_linear_basis(Algebra(3, 0, 0), "lorentz")


@pytest.mark.parametrize("sig, subgroup, proper", [((3, 0, 0), "pin", False), ((3, 0, 1), "pin", False),
                                                   ((3, 0, 1), "euclidean", True), ((4, 1, 0), "euclidean", False)])
def test_basis_is_canonical(sig, subgroup, proper):
    """Trained weights are coefficients over the basis: other random elements (hence other rounding and
    another eigh rotation of the null space) must give the very same maps."""
    alg = Algebra(*sig)
    a = equivariant_linear_basis(alg, subgroup, proper, dtype=torch.float64)
    b = equivariant_linear_basis(alg, subgroup, proper, n_samples=16, seed=7, dtype=torch.float64)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_pga_basis_fingerprint():
    """Pins the G(3,0,1) basis: a change here silently breaks every saved GATr checkpoint."""
    basis = equivariant_linear_basis(Algebra(3, 0, 1), dtype=torch.float64)  # (9, 16, 16)
    probe = torch.arange(1, 257, dtype=torch.float64).reshape(16, 16) / 256
    fingerprint = (basis * probe).sum(dim=(1, 2))
    expected = torch.tensor(FINGERPRINT_PGA, dtype=torch.float64)
    torch.testing.assert_close(fingerprint, expected, rtol=0, atol=1e-9)
