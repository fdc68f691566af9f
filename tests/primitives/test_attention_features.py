"""Multivector query/key features: the dot product is the invariant score (inner product, distances)."""

from __future__ import annotations

import pytest
import torch

from eqt.primitives.attention import distance_feature_count, multivector_qk_features
from eqt.primitives.clifford import Algebra, inner_product
from eqt.testing import Multivector, Pin, assert_equivariant


@pytest.mark.parametrize("sig", [(3, 0, 0), (3, 0, 1), (4, 1, 0)])
def test_dot_product_is_the_inner_product(sig):
    alg = Algebra(*sig)
    q, k = torch.randn(2, 5, 3, alg.dim, dtype=torch.float64).unbind(0)
    qf, kf = multivector_qk_features(alg, q, k)
    assert qf.shape == (5, 3 * distance_feature_count(alg))
    torch.testing.assert_close((qf * kf).sum(-1), inner_product(alg, q, k).squeeze(-1).sum(-1))


def _pga_point(x):
    mv = torch.zeros(*x.shape[:-1], 16, dtype=x.dtype)
    mv[..., 14], mv[..., 13], mv[..., 12], mv[..., 11] = 1.0, -x[..., 0], x[..., 1], -x[..., 2]
    return mv


def test_distance_features_score_minus_weighted_squared_distance():
    alg = Algebra(3, 0, 1)
    x, y = torch.randn(2, 7, 3, dtype=torch.float64).unbind(0)
    w = torch.rand(7, 1, dtype=torch.float64) + 0.5
    scale = 3.0 * torch.rand(7, 1, 1, dtype=torch.float64) + 0.5  # homogeneous weights drop out
    qf, kf = multivector_qk_features(alg, scale * _pga_point(x)[:, None], _pga_point(y)[:, None], w, eps=0.0)
    assert qf.shape[-1] == distance_feature_count(alg, True) == 7 + 5
    torch.testing.assert_close((qf * kf).sum(-1), -w[:, 0] * ((x - y) ** 2).sum(-1))


def test_conformal_points_score_minus_half_squared_distance():
    alg = Algebra(4, 1, 0)  # e1..e4 square +1, e5 squares -1: e_inf = e4 + e5, e_o = (e5 - e4) / 2
    x, y = torch.randn(2, 6, 3, dtype=torch.float64).unbind(0)

    def point(p):
        mv = torch.zeros(*p.shape[:-1], 32, dtype=p.dtype)
        sq = 0.5 * (p * p).sum(-1)
        mv[..., 1:4] = p
        mv[..., 4] = sq - 0.5  # e4: ½|x|² e_inf - e_o
        mv[..., 5] = sq + 0.5  # e5
        return mv[..., None, :]

    qf, kf = multivector_qk_features(alg, point(x), point(y))
    torch.testing.assert_close((qf * kf).sum(-1), -0.5 * ((x - y) ** 2).sum(-1))


def test_distance_score_is_pin_invariant():
    alg = Algebra(3, 0, 1)
    q, k = torch.randn(2, 4, 2, 16, dtype=torch.float64).unbind(0)
    w = torch.rand(2, dtype=torch.float64) + 0.1

    def score(a, b):
        qf, kf = multivector_qk_features(alg, a, b, w)
        return (qf * kf).sum(-1)

    from eqt.testing import Invariant

    assert assert_equivariant(score, Pin(3, 0, 1), [(q, Multivector(3, 0, 1)), (k, Multivector(3, 0, 1))],
                              [Invariant()]) < 1e-10


def test_distance_features_need_a_projective_algebra():
    with pytest.raises(ValueError, match="projective"):
        multivector_qk_features(Algebra(4, 1, 0), torch.zeros(1, 32), torch.zeros(1, 32), torch.ones(1))
