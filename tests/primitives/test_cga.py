"""CGA (G(4,1,0)) embeddings: null basis, round trips, versor sandwiches and E(3) covariance via the outermorphism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqt.primitives import cga
from eqt.primitives.clifford import inner_product, sandwich, squared_norm
from eqt.reps.groups import E3, Pin, metric_reflection
from eqt.testing import Multivector

RHO = Multivector(4, 1, 0)
METRIC = np.array([1.0, 1.0, 1.0, 1.0, -1.0])
TOL = dict(rtol=1e-10, atol=1e-10)


def _elements(n=6):
    return E3().sample(n, np.random.default_rng(0))  # half of them improper


def _randn(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _vector(coeffs):
    mv = torch.zeros(32, dtype=torch.float64)
    mv[1:6] = torch.as_tensor(coeffs, dtype=torch.float64)
    return mv


def _rho(r, t):
    return torch.as_tensor(RHO.matrix(cga.euclidean_vector_action(r, t).numpy()))


def test_null_basis():
    e_inf, e_o = _vector(cga.E_INF), _vector(cga.E_ORIGIN)
    assert inner_product(cga.CGA, e_inf, e_inf).item() == 0
    assert inner_product(cga.CGA, e_o, e_o).item() == 0
    assert inner_product(cga.CGA, e_inf, e_o).item() == -1
    torch.testing.assert_close(e_inf, _vector([0, 0, 0, 1, 1]))
    torch.testing.assert_close(e_o, _vector([0, 0, 0, -0.5, 0.5]))
    torch.testing.assert_close(cga.embed_point(torch.zeros(3, dtype=torch.float64)), e_o)


def test_points_are_null_with_unit_weight_and_round_trip():
    x = _randn(10, 3)
    p = cga.embed_point(x)
    e_inf = _vector(cga.E_INF)
    torch.testing.assert_close(squared_norm(cga.CGA, p), torch.zeros(10, 1, dtype=torch.float64), **TOL)
    torch.testing.assert_close(-inner_product(cga.CGA, p, e_inf), torch.ones(10, 1, dtype=torch.float64))
    torch.testing.assert_close(p, x[:, 0:1] * _vector([1, 0, 0, 0, 0]) + x[:, 1:2] * _vector([0, 1, 0, 0, 0])
                               + x[:, 2:3] * _vector([0, 0, 1, 0, 0]) + _vector(cga.E_ORIGIN)
                               + 0.5 * (x * x).sum(-1, keepdim=True) * e_inf)
    torch.testing.assert_close(cga.extract_point(p), x, **TOL)
    torch.testing.assert_close(cga.extract_point(-2.5 * p), x, **TOL)  # scale-invariant, sign kept


def test_inner_product_is_minus_half_squared_distance():
    x, y = _randn(9, 3), _randn(9, 3, seed=1)
    p, q = cga.embed_point(x), cga.embed_point(y)
    d2 = ((x - y) ** 2).sum(-1)
    torch.testing.assert_close(inner_product(cga.CGA, p, q)[:, 0], -0.5 * d2, **TOL)
    torch.testing.assert_close(cga.point_distance_squared(p, q), d2, **TOL)
    torch.testing.assert_close(cga.point_distance_squared(3.0 * p, -0.5 * q), d2, **TOL)
    assert cga.point_distance_squared(p[:, None], q[None]).shape == (9, 9)


def test_translation_versor_moves_points():
    x, t = _randn(7, 3), _randn(3, seed=1)
    moved = sandwich(cga.CGA, cga.embed_translation(t), cga.embed_point(x))
    torch.testing.assert_close(moved, cga.embed_point(x + t), **TOL)
    mv = _randn(5, 32, seed=2)  # on whole multivectors it is the outermorphism of the translation
    torch.testing.assert_close(sandwich(cga.CGA, cga.embed_translation(t), mv),
                               mv @ _rho(torch.eye(3, dtype=torch.float64), t).T, **TOL)


@pytest.mark.parametrize("i", range(6))
def test_rotation_versor_acts_as_the_outermorphism(i):
    r = torch.as_tensor(_elements()[i].rotation)
    x = _randn(7, 3, seed=i)
    moved = sandwich(cga.CGA, cga.embed_rotation(r), cga.embed_point(x))
    torch.testing.assert_close(moved, cga.embed_point(x @ r.T), **TOL)
    mv = _randn(5, 32, seed=10 + i)
    torch.testing.assert_close(sandwich(cga.CGA, cga.embed_rotation(r), mv),
                               mv @ _rho(r, torch.zeros(3, dtype=torch.float64)).T, **TOL)


@pytest.mark.parametrize("i", range(6))
def test_objects_follow_euclidean_motions(i):
    g = _elements()[i]
    r, t = torch.as_tensor(g.rotation), torch.as_tensor(g.translation)
    m = cga.euclidean_vector_action(r, t)
    metric = torch.diag(torch.as_tensor(METRIC))
    torch.testing.assert_close(m.T @ metric @ m, metric, **TOL)
    rho = _rho(r, t)
    x = _randn(8, 3, seed=i)
    moved = cga.embed_point(x) @ rho.T
    torch.testing.assert_close(moved, cga.embed_point(x @ r.T + t), **TOL)  # no det R sign, unlike PGA
    torch.testing.assert_close(cga.extract_point(moved), x @ r.T + t, **TOL)
    n = torch.nn.functional.normalize(_randn(8, 3, seed=10 + i), dim=-1)
    plane = cga.embed_oriented_plane(n, x) @ rho.T
    torch.testing.assert_close(plane, cga.embed_oriented_plane(n @ r.T, x @ r.T + t), **TOL)
    torch.testing.assert_close(cga.extract_oriented_plane(plane), n @ r.T, **TOL)
    v = _randn(8, 3, seed=20 + i)
    direction = cga.embed_vector(v) @ rho.T
    torch.testing.assert_close(direction, cga.embed_vector(v @ r.T), **TOL)  # translation-invariant
    torch.testing.assert_close(cga.extract_vector(direction), v @ r.T, **TOL)
    # the versors compose to the same action
    versor = cga.embed_translation(t) if i % 2 else cga.embed_rotation(r)
    expected = _rho(torch.eye(3, dtype=torch.float64), t) if i % 2 else _rho(r, torch.zeros(3, dtype=torch.float64))
    mv = _randn(4, 32, seed=30 + i)
    torch.testing.assert_close(sandwich(cga.CGA, versor, mv), mv @ expected.T, **TOL)


def test_euclidean_vector_action_in_the_null_basis():
    g = _elements()[3]
    r, t = torch.as_tensor(g.rotation), torch.as_tensor(g.translation)
    m = cga.euclidean_vector_action(r, t)
    e_o, e_inf = torch.tensor(cga.E_ORIGIN, dtype=torch.float64), torch.tensor(cga.E_INF, dtype=torch.float64)
    t5 = torch.cat([t, torch.zeros(2, dtype=torch.float64)])
    torch.testing.assert_close(m @ e_o, t5 + e_o + 0.5 * (t @ t) * e_inf, **TOL)
    torch.testing.assert_close(m @ e_inf, e_inf, **TOL)
    for k in range(3):
        rv = r[:, k]
        column = torch.cat([rv, torch.zeros(2, dtype=torch.float64)]) + (rv @ t) * e_inf
        torch.testing.assert_close(m[:, k], column, **TOL)
    batched = cga.euclidean_vector_action(r.expand(2, 3, 3), t)
    torch.testing.assert_close(batched, m.expand(2, 5, 5))


def test_point_on_plane_has_zero_inner_product():
    n = torch.nn.functional.normalize(_randn(6, 3), dim=-1)
    pos, x = _randn(6, 3, seed=1), _randn(6, 3, seed=2)
    plane = cga.embed_oriented_plane(n, pos)
    torch.testing.assert_close(inner_product(cga.CGA, cga.embed_point(x), plane)[:, 0],
                               ((x - pos) * n).sum(-1), **TOL)


def test_metric_reflection_in_a_plane_vector_is_the_mirror():
    """Pin(4,1,0)'s Euclidean reflection in ``n + d e_inf`` is exactly (sign +1) the mirror ``n.x = d``."""
    rng = np.random.default_rng(5)
    for _ in range(4):
        n = rng.standard_normal(3)
        n /= np.linalg.norm(n)
        d = rng.standard_normal()
        mirror = torch.as_tensor(np.eye(3) - 2 * np.outer(n, n))
        expected = cga.euclidean_vector_action(mirror, torch.as_tensor(2 * d * n)).numpy()
        v = np.concatenate([n, [d, d]])  # n + d e_inf
        np.testing.assert_allclose(metric_reflection(v, METRIC), expected, rtol=0, atol=1e-12)


def test_pin_euclidean_elements_are_euclidean_motions():
    """Products of such reflections: recover R and t from the matrix and compare."""
    e_o = np.array(cga.E_ORIGIN)
    for g in Pin(4, 1, 0, subgroup="euclidean").sample(8, np.random.default_rng(6)):
        m = g.vector_action
        r, t = m[:3, :3], (m @ e_o)[:3]
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-10)
        expected = cga.euclidean_vector_action(torch.as_tensor(r), torch.as_tensor(t)).numpy()
        np.testing.assert_allclose(m, expected, rtol=0, atol=1e-10)


def test_wrong_shapes_are_errors():
    with pytest.raises(ValueError, match="last axis of 3"):
        cga.embed_point(torch.randn(4, 2))
    with pytest.raises(ValueError, match="last axis of 3"):
        cga.embed_oriented_plane(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match="last axis of 3"):
        cga.embed_translation(torch.randn(4))
    with pytest.raises(ValueError, match="last axis of 32"):
        cga.extract_point(torch.randn(4, 16))
    with pytest.raises(ValueError, match="last axis of 32"):
        cga.point_distance_squared(torch.randn(4, 32), torch.randn(4, 16))
    with pytest.raises(ValueError, match="last axis of 32"):
        cga.extract_vector(torch.randn(3))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        cga.euclidean_vector_action(torch.eye(4), torch.zeros(3))
