"""Shared rotation helpers: quaternion <-> matrix (Shepperd's method) and the rotors of G(3,0,0), G(3,0,1), G(4,1,0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eqt.primitives import rotations
from eqt.primitives.clifford import Algebra, sandwich
from eqt.reps.groups import O3, SO3
from eqt.testing import Multivector


def _proper(n=16):
    return torch.as_tensor(np.stack([g.rotation for g in SO3().sample(n, np.random.default_rng(1))]))


def _half_turns():
    """Rotations by π (trace -1) and near π, where the trace branch alone would fail."""
    gen = torch.Generator().manual_seed(2)
    axes = torch.nn.functional.normalize(torch.randn(6, 3, dtype=torch.float64, generator=gen), dim=-1)
    axes = torch.cat([torch.eye(3, dtype=torch.float64), axes])
    out = []
    for angle in (math.pi, math.pi - 1e-7, 1e-9):
        w = torch.full((len(axes), 1), math.cos(angle / 2), dtype=torch.float64)
        q = torch.cat([math.sin(angle / 2) * axes, w], -1)
        out.append(rotations.quaternion_to_rotation(q))
    return torch.cat(out + [torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))[None]])


def test_quaternion_round_trip_and_sign():
    r = torch.cat([_proper(), _half_turns(), torch.eye(3, dtype=torch.float64)[None]])
    q = rotations.rotation_to_quaternion(r)
    assert q.shape == (len(r), 4)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(len(r), dtype=torch.float64), rtol=0, atol=1e-12)
    assert bool((q[:, 3] >= 0).all())
    torch.testing.assert_close(rotations.quaternion_to_rotation(q), r, rtol=0, atol=1e-10)


def test_quaternion_convention_is_hamilton_right_handed():
    angle = 0.3
    q = torch.tensor([0.0, 0.0, math.sin(angle / 2), math.cos(angle / 2)], dtype=torch.float64)
    rz = torch.tensor([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]],
                      dtype=torch.float64)
    torch.testing.assert_close(rotations.quaternion_to_rotation(q), rz)
    torch.testing.assert_close(rotations.rotation_to_quaternion(rz), q)


def test_batch_shapes():
    r = _proper(6).reshape(2, 3, 3, 3)
    assert rotations.rotation_to_quaternion(r).shape == (2, 3, 4)
    assert rotations.orthogonal_versor(Algebra(4, 1, 0), r).shape == (2, 3, 32)


@pytest.mark.parametrize("sig", [(3, 0, 0), (3, 0, 1), (4, 1, 0)])
def test_versor_sandwich_is_the_outermorphism(sig):
    """For O(3) (mixed proper and improper), the sandwich is the outermorphism of R ⊕ identity."""
    alg, rho = Algebra(*sig), Multivector(*sig)
    rs = torch.as_tensor(np.stack([g.rotation for g in O3().sample(4, np.random.default_rng(3))]))
    versors = rotations.orthogonal_versor(alg, rs)
    x = torch.randn(5, 1, alg.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    out = sandwich(alg, versors, x)  # (5, 4, dim)
    for k, r in enumerate(rs):
        m = np.eye(alg.n)
        m[alg.r:alg.r + 3, alg.r:alg.r + 3] = r.numpy()
        expected = x[:, 0] @ torch.as_tensor(rho.matrix(m)).T
        torch.testing.assert_close(out[:, k], expected, rtol=1e-10, atol=1e-10)


def test_errors():
    with pytest.raises(ValueError, match="improper"):
        rotations.rotation_to_quaternion(-torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        rotations.rotation_to_quaternion(torch.eye(2))
    with pytest.raises(ValueError, match="last axis of 4"):
        rotations.quaternion_to_rotation(torch.randn(5, 3))
    with pytest.raises(ValueError, match="fewer than 3"):
        rotations.quaternion_to_rotor(Algebra(2, 0, 0), torch.randn(4))
