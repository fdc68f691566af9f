"""VGA (G(3,0,0)) embeddings: round trips, rotor sandwiches and O(3)/E(3) covariance via the outermorphism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqt.primitives import vga
from eqt.primitives.clifford import sandwich
from eqt.primitives.rotations import rotation_to_quaternion
from eqt.reps.groups import E3
from eqt.testing import Multivector

RHO = Multivector(3, 0, 0)
TOL = dict(rtol=1e-10, atol=1e-10)


def _elements(n=6):
    return E3().sample(n, np.random.default_rng(0))  # half of them improper


def _randn(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_vector_and_point_round_trips_and_convention():
    x, c = _randn(10, 3), _randn(1, 3, seed=1)
    mv = vga.embed_vector(x)
    assert mv.shape == (10, 8) and torch.equal(mv[:, 1:4], x)
    assert torch.count_nonzero(mv[:, [0, 4, 5, 6, 7]]) == 0
    torch.testing.assert_close(vga.extract_vector(mv), x)
    torch.testing.assert_close(vga.extract_point(vga.embed_point(x)), x)
    torch.testing.assert_close(vga.embed_point(x, c), vga.embed_vector(x - c))
    torch.testing.assert_close(vga.extract_point(vga.embed_point(x, c), c), x, **TOL)
    n = _randn(4, 3, seed=2)
    torch.testing.assert_close(vga.extract_oriented_plane(vga.embed_oriented_plane(n)), n)


def test_rotor_convention_matches_gatr_quaternion_signs():
    r = torch.as_tensor(_elements()[0].rotation)  # proper
    x, y, z, w = rotation_to_quaternion(r)
    rotor = vga.embed_rotation(r)
    torch.testing.assert_close(rotor, torch.stack([w, 0 * w, 0 * w, 0 * w, -z, y, -x, 0 * w]))


@pytest.mark.parametrize("i", range(6))
def test_rotation_versor_rotates_vectors(i):
    r = torch.as_tensor(_elements()[i].rotation)
    v = _randn(7, 3, seed=i)
    moved = sandwich(vga.VGA, vga.embed_rotation(r), vga.embed_vector(v))
    torch.testing.assert_close(moved, vga.embed_vector(v @ r.T), **TOL)


@pytest.mark.parametrize("i", range(6))
def test_points_about_a_comoving_origin_follow_euclidean_motions(i):
    g = _elements()[i]
    r, t = torch.as_tensor(g.rotation), torch.as_tensor(g.translation)
    rho = torch.as_tensor(RHO.matrix(vga.euclidean_vector_action(r, t).numpy()))
    x = _randn(8, 3, seed=i)
    c = x.mean(0, keepdim=True)  # the centroid moves with the points
    moved = vga.embed_point(x, c) @ rho.T
    torch.testing.assert_close(moved, vga.embed_point(x @ r.T + t, c @ r.T + t), **TOL)
    torch.testing.assert_close(vga.extract_point(moved, c @ r.T + t), x @ r.T + t, **TOL)
    n = torch.nn.functional.normalize(_randn(8, 3, seed=10 + i), dim=-1)
    plane = vga.embed_oriented_plane(n) @ rho.T
    torch.testing.assert_close(vga.extract_oriented_plane(plane), n @ r.T, **TOL)
    # the sandwich with embed_rotation is the same action on whole multivectors
    mv = _randn(5, 8, seed=20 + i)
    torch.testing.assert_close(sandwich(vga.VGA, vga.embed_rotation(r), mv), mv @ rho.T, **TOL)


def test_euclidean_vector_action_is_the_rotation():
    g = _elements()[1]
    r = torch.as_tensor(g.rotation)
    torch.testing.assert_close(vga.euclidean_vector_action(r), r)
    torch.testing.assert_close(vga.euclidean_vector_action(r, torch.as_tensor(g.translation)), r)


def test_wrong_shapes_are_errors():
    with pytest.raises(ValueError, match="last axis of 3"):
        vga.embed_vector(torch.randn(4, 2))
    with pytest.raises(ValueError, match="last axis of 3"):
        vga.embed_point(torch.randn(4, 3), torch.randn(4, 4))
    with pytest.raises(ValueError, match="last axis of 8"):
        vga.extract_point(torch.randn(4, 16))
    with pytest.raises(ValueError, match="last axis of 8"):
        vga.extract_oriented_plane(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        vga.embed_rotation(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        vga.euclidean_vector_action(torch.eye(4))
    with pytest.raises(ValueError, match="off the origin"):
        vga.embed_oriented_plane(torch.randn(3), torch.randn(3))
