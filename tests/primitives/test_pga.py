"""PGA embeddings: round trips, GATr's conventions, and E(3) covariance through the Pin bridge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqt.primitives import pga
from eqt.primitives.clifford import sandwich
from eqt.reps.groups import E3
from eqt.testing import Multivector

RHO = Multivector(3, 0, 1)


def _elements(n=6):
    return E3().sample(n, np.random.default_rng(0))  # half of them improper


def test_point_round_trip_and_convention():
    x = torch.randn(10, 3, dtype=torch.float64)
    mv = pga.embed_point(x)
    torch.testing.assert_close(pga.extract_point(mv), x)
    assert mv[0, 14] == 1 and mv[0, 13] == -x[0, 0] and mv[0, 12] == x[0, 1] and mv[0, 11] == -x[0, 2]


def test_translation_versor_moves_points():
    x, t = torch.randn(7, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    moved = sandwich(pga.PGA, pga.embed_translation(t), pga.embed_point(x))
    torch.testing.assert_close(pga.extract_point(moved), x + t, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("i", range(6))
def test_points_and_planes_follow_euclidean_motions(i):
    g = _elements()[i]
    r, t = torch.as_tensor(g.rotation), torch.as_tensor(g.translation)
    rho = torch.as_tensor(RHO.matrix(pga.euclidean_vector_action(r, t).numpy()))
    x = torch.randn(8, 3, dtype=torch.float64)
    moved = pga.embed_point(x) @ rho.T
    torch.testing.assert_close(pga.extract_point(moved), x @ r.T + t, rtol=1e-10, atol=1e-10)
    assert torch.allclose(moved[:, 14], torch.full((8,), float(torch.det(r)), dtype=torch.float64))
    n = torch.nn.functional.normalize(torch.randn(8, 3, dtype=torch.float64), dim=-1)
    plane = pga.embed_oriented_plane(n, x) @ rho.T
    torch.testing.assert_close(pga.extract_oriented_plane(plane), n @ r.T, rtol=1e-10, atol=1e-10)


def test_wrong_shapes_are_errors():
    with pytest.raises(ValueError, match="last axis of 3"):
        pga.embed_point(torch.randn(4, 2))
    with pytest.raises(ValueError, match="16"):
        pga.extract_point(torch.randn(4, 8))


def test_quaternion_to_rotor_uses_gatr_signs():
    q = torch.nn.functional.normalize(torch.randn(4, dtype=torch.float64), dim=0)
    rotor = pga.quaternion_to_rotor(q)
    expected = torch.zeros(16, dtype=torch.float64)
    expected[0], expected[8], expected[9], expected[10] = q[3], -q[2], q[1], -q[0]
    torch.testing.assert_close(rotor, expected)


@pytest.mark.parametrize("i", range(6))
def test_rotation_versor_rotates_points(i):
    r = torch.as_tensor(_elements()[i].rotation)  # improper ones give odd versors
    x = torch.randn(7, 3, dtype=torch.float64)
    versor = pga.embed_rotation(r)
    moved = sandwich(pga.PGA, versor, pga.embed_point(x))
    torch.testing.assert_close(pga.extract_point(moved), x @ r.T, rtol=1e-10, atol=1e-10)
    rho = torch.as_tensor(RHO.matrix(pga.euclidean_vector_action(r, torch.zeros(3, dtype=torch.float64)).numpy()))
    mv = torch.randn(5, 16, dtype=torch.float64)
    torch.testing.assert_close(sandwich(pga.PGA, versor, mv), mv @ rho.T, rtol=1e-10, atol=1e-10)


def test_rotation_and_translation_versors_compose_to_the_motion():
    g = _elements()[2]
    r, t = torch.as_tensor(g.rotation), torch.as_tensor(g.translation)
    x = torch.randn(7, 3, dtype=torch.float64)
    moved = sandwich(pga.PGA, pga.embed_translation(t), sandwich(pga.PGA, pga.embed_rotation(r), pga.embed_point(x)))
    torch.testing.assert_close(pga.extract_point(moved), x @ r.T + t, rtol=1e-10, atol=1e-10)


def test_rotation_shape_errors():
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        pga.embed_rotation(torch.randn(4, 3))
    with pytest.raises(ValueError, match="last axis of 4"):
        pga.quaternion_to_rotor(torch.randn(3))
