"""Ray-space layers: SE(3) equivariance in float64 through ``assert_equivariant`` with a reference action
on ray fields (the twist of the canonical section), gauge independence (features do not depend on
the choice of e1 in each ray's frame beyond their type), set symmetries, initial scale, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eqt.layers.rays import (
    RayToPointAttention,
    RayToPointConv,
    RayToRayAttention,
    RayToRayConv,
    SO2Gate,
    SO2LayerNorm,
    SO2Linear,
    SO2MLP,
    SO2Rep,
    check_rays,
    gauge_transform,
    lift,
    point_ray_features,
    project,
    ray_neighbours,
    ray_pair_features,
    set_pair_features,
)
from eqt.primitives.rays import ray_frame, rays_from_points
from eqt.testing import SE3, Fixed, Invariant, Position, Ray, RayField, Vector, assert_equivariant

DT = torch.float64
REP = SO2Rep("6x0+3x1")


def _perturb(module, scale=0.3, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module.double().eval()


def _rays(*lead, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(*lead, 3, generator=g, dtype=DT)
    d = torch.randn(*lead, 3, generator=g, dtype=DT)
    rays = rays_from_points(o, d)
    t = torch.randn(*lead, 1, generator=g, dtype=DT)
    anchors = o + t * rays[..., :3]  # a point on each ray
    return rays, anchors


def _rz(gamma):
    c, s = torch.cos(gamma), torch.sin(gamma)
    z, o = torch.zeros_like(gamma), torch.ones_like(gamma)
    return torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2)


# ----------------------------------------------------------------------------------------------- the rep


def test_so2_rep_layout_and_parsing():
    rep = SO2Rep("4x0+2x1+1x2")
    assert rep.mults == (4, 2, 1) and rep.kmax == 2 and rep.dim == 4 + 4 + 2
    assert SO2Rep("2x1+4x0+1x2") == rep and str(rep) == "4x0+2x1+1x2" and SO2Rep((0, 3)).dim == 6
    x = rep.randn(5, dtype=DT)
    blocks = rep.split(x)
    assert [tuple(b.shape) for b in blocks] == [(5, 4), (5, 2, 2), (5, 1, 2)]
    assert torch.equal(SO2Rep.join(blocks), x)
    for bad in ("4x0+y", "", "3", (-1,), (1.5,)):
        with pytest.raises(ValueError, match="SO2Rep"):
            SO2Rep(bad)
    with pytest.raises(ValueError, match="last axis of 10"):
        rep.split(torch.zeros(3, 9))


def test_gauge_law_lift_and_project():
    rep = SO2Rep("2x0+3x1+2x2")
    g = torch.Generator().manual_seed(0)
    x = rep.randn(7, dtype=DT, generator=g)
    a, b = torch.rand(7, generator=g, dtype=DT) * 6, torch.rand(7, generator=g, dtype=DT) * 6
    # a group action of the gauge group: rotating by a then b = rotating by a + b
    assert torch.allclose(gauge_transform(rep, gauge_transform(rep, x, a), b), gauge_transform(rep, x, a + b),
                          atol=1e-13)
    rays, _ = _rays(7)
    frames = ray_frame(rays)[0]
    z = SO2Rep((0, 3)).split(torch.randn(7, 6, generator=g, dtype=DT))[1]
    v = lift(z, frames)  # (7, 3, 3) world vectors orthogonal to d
    assert torch.allclose(torch.einsum("ni,nim->nm", rays[:, :3], v), torch.zeros(7, 3, dtype=DT), atol=1e-14)
    back, along = project(v, frames)
    assert torch.allclose(back, z, atol=1e-14) and along.abs().max() < 1e-14
    # the lift is gauge-free: type-1 features in the rotated frames lift to the same vectors
    vec_rep = SO2Rep((0, 3))
    z_rot = vec_rep.split(gauge_transform(vec_rep, SO2Rep.join([torch.zeros(7, 0, dtype=DT), z]), a))[1]
    assert torch.allclose(lift(z_rot, frames @ _rz(a)), v, atol=1e-13)


def test_reference_ray_field_action_is_the_twist():
    """The test's reference action agrees with ray_twist and is a group action (h(g2 g1, x) = h(g2, g1 x) h(g1, x))."""
    from eqt.primitives.rays import ray_twist
    from eqt.reps.groups import SE3 as SE3Group

    rays, _ = _rays(5)
    g1, g2 = SE3Group().sample(2, np.random.default_rng(3))
    field = RayField(SO2Rep((0, 1)), rays)
    x = torch.tensor([[1.0, 0.0]] * 5, dtype=DT)
    y = field.act(g1, x)
    gamma, _ = ray_twist(torch.tensor(g1.rotation), torch.tensor(g1.translation), rays)
    assert torch.allclose(y, torch.stack([torch.cos(gamma), torch.sin(gamma)], -1), atol=1e-12)
    moved = Ray(atom_axis=None).act(g1, rays)
    assert torch.allclose(RayField(SO2Rep((0, 1)), moved).act(g2, y), field.act(g2.compose(g1), x), atol=1e-12)


# ----------------------------------------------------------------------------------------------- per-ray layers


@pytest.mark.parametrize("make", [lambda r: SO2Linear(r, SO2Rep("3x0+2x1+2x2")),
                                  lambda r: SO2Gate(SO2Rep("2x0+1x1+2x2")), lambda r: SO2LayerNorm(r),
                                  lambda r: SO2MLP(r)],
                         ids=["linear", "gate", "layernorm", "mlp"])
def test_pointwise_layers_are_gauge_covariant(make):
    rep = SO2Rep("5x0+3x1+2x2")
    layer = _perturb(make(rep))
    x = layer.rep_in.randn(4, 6, dtype=DT)
    gamma = torch.rand(4, 6, dtype=DT) * 2 * math.pi
    y = layer(x)
    assert torch.allclose(layer(gauge_transform(layer.rep_in, x, gamma)), gauge_transform(layer.rep_out, y, gamma),
                          atol=1e-12)
    assert y.shape == (4, 6, layer.rep_out.dim)
    rays, _ = _rays(4, 6)
    err = assert_equivariant(layer, SE3(), [(x, RayField(layer.rep_in, rays))], RayField(layer.rep_out, rays))
    assert err <= 1e-10


def test_linear_maps_missing_frequencies_to_zero_and_keeps_scale():
    lin = SO2Linear("4x0+2x1", "3x0+2x1+1x2").double()
    y = lin(SO2Rep("4x0+2x1").randn(8, dtype=DT))
    assert torch.equal(lin.rep_out.split(y)[2], torch.zeros(8, 1, 2, dtype=DT))
    torch.manual_seed(0)
    big = SO2Linear("64x0+64x1", "64x0+64x1")
    assert 0.8 < big(SO2Rep("64x0+64x1").randn(4096)).std().item() < 1.2


# ----------------------------------------------------------------------------------------------- ray -> ray

RAY_LAYERS = [lambda: RayToRayConv(REP, "4x0+2x1", channels=5, vectors=3, hidden=8),
              lambda: RayToRayAttention(REP, "4x0+2x1", heads=2, head_scalars=3, head_vectors=2, hidden=8)]


@pytest.mark.parametrize("make", RAY_LAYERS, ids=["conv", "attention"])
def test_ray_to_ray_layers_are_se3_equivariant(make):
    layer = _perturb(make())
    rays, anchors = _rays(2, 5)
    x = REP.randn(2, 5, dtype=DT, generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([[True] * 5, [True, False, True, True, False]])
    err = assert_equivariant(lambda x_, r, a: layer(x_, r, a, mask=mask), SE3(),
                             [(x, RayField(REP, rays)), (rays, Ray(atom_axis=None)),
                              (anchors, Position(atom_axis=None))], RayField(layer.rep_out, rays), n_samples=4)
    assert err <= 1e-10


@pytest.mark.parametrize("make", RAY_LAYERS, ids=["conv", "attention"])
def test_ray_to_ray_layers_are_gauge_independent_and_permute(make):
    layer = _perturb(make())
    rays, anchors = _rays(2, 5)
    x = REP.randn(2, 5, dtype=DT, generator=torch.Generator().manual_seed(2))
    frames = ray_frame(rays)[0]
    gamma = torch.rand(2, 5, dtype=DT, generator=torch.Generator().manual_seed(4)) * 2 * math.pi
    y = layer(x, rays, anchors, frames)
    y_rot = layer(gauge_transform(REP, x, gamma), rays, anchors, frames @ _rz(gamma))
    assert (y_rot - gauge_transform(layer.rep_out, y, gamma)).abs().max() <= 1e-12
    # a different point on each ray as its frame origin changes nothing (Plücker coordinates and
    # the anchors are the only inputs); permuting the rays permutes the outputs
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.allclose(layer(x[:, perm], rays[:, perm], anchors[:, perm]), y[:, perm], atol=1e-12)
    # masked rays do not influence the others
    mask = torch.tensor([True, True, True, False, True]).expand(2, 5)
    x2 = x.clone()
    x2[:, 3] += 5.0
    a = layer(x, rays, anchors, mask=mask)
    b = layer(x2, rays, anchors, mask=mask)
    assert torch.allclose(a[:, mask[0]], b[:, mask[0]], atol=1e-12)


def test_ray_to_ray_attention_scale_at_init():
    torch.manual_seed(0)
    layer = RayToRayAttention(SO2Rep("32x0+8x1"), heads=4, head_scalars=8, head_vectors=2)
    rays, anchors = _rays(64, 8)
    y = layer(SO2Rep("32x0+8x1").randn(64, 8), rays.float(), anchors.float())
    assert 0.2 < y.std().item() < 5.0


# ----------------------------------------------------------------------------------------------- ray -> point


POINT_LAYERS = [lambda: RayToPointConv(REP, scalars=4, vectors=3, hidden=8),
                lambda: RayToPointAttention(REP, scalars=4, vectors=4, heads=2, key_channels=3, hidden=8)]


@pytest.mark.parametrize("make", POINT_LAYERS, ids=["conv", "attention"])
@pytest.mark.parametrize("with_neighbours", [False, True], ids=["all-rays", "neighbours"])
def test_ray_to_point_layers_are_se3_equivariant(make, with_neighbours):
    layer = _perturb(make())
    rays, anchors = _rays(2, 7)
    x = REP.randn(2, 7, dtype=DT, generator=torch.Generator().manual_seed(5))
    points = torch.randn(2, 3, 3, dtype=DT, generator=torch.Generator().manual_seed(6))
    nb = torch.tensor([[[0, 1, 2], [3, 4, 6], [6, 5, 0]], [[1, 1, 2], [0, 4, 5], [2, 3, 6]]])
    inputs = [(x, RayField(REP, rays)), (rays, Ray(atom_axis=None)), (anchors, Position(atom_axis=None)),
              (points, Position(atom_axis=None))]
    if with_neighbours:
        inputs.append((nb, Fixed()))
    err = assert_equivariant(lambda x_, r, a, p, *n: layer(x_, r, a, None, p, *n), SE3(), inputs,
                             [Invariant(), Vector(spatial_axis=-2, atom_axis=None)], n_samples=4)
    assert err <= 1e-10


@pytest.mark.parametrize("make", POINT_LAYERS, ids=["conv", "attention"])
def test_ray_to_point_layers_are_gauge_independent_set_functions(make):
    layer = _perturb(make())
    rays, anchors = _rays(2, 7)
    x = REP.randn(2, 7, dtype=DT, generator=torch.Generator().manual_seed(5))
    points = torch.randn(2, 3, 3, dtype=DT, generator=torch.Generator().manual_seed(6))
    gamma = torch.rand(2, 7, dtype=DT, generator=torch.Generator().manual_seed(4)) * 2 * math.pi
    s, v = layer(x, rays, anchors, None, points)
    s2, v2 = layer(gauge_transform(REP, x, gamma), rays, anchors, ray_frame(rays)[0] @ _rz(gamma), points)
    assert (s2 - s).abs().max() <= 1e-12 and (v2 - v).abs().max() <= 1e-12
    # the order of a point's rays does not matter; repeated neighbours equal all rays once each
    nb = torch.arange(7).expand(2, 3, 7)
    s3, v3 = layer(x, rays, anchors, None, points, nb.flip(-1).contiguous())
    assert torch.allclose(s3, s, atol=1e-12) and torch.allclose(v3, v, atol=1e-12)
    mask = torch.ones(2, 3, 7, dtype=torch.bool)
    mask[..., 2] = False
    s4, _ = layer(x, rays, anchors, None, points, nb, mask)
    s5, _ = layer(x, rays, anchors, None, points, nb[..., [0, 1, 3, 4, 5, 6]].contiguous())
    assert torch.allclose(s4, s5, atol=1e-12)


def test_ray_to_point_attention_with_point_queries():
    layer = _perturb(RayToPointAttention(REP, scalars=4, vectors=2, heads=2, key_channels=2, query_scalars=3))
    rays, anchors = _rays(1, 6)
    x = REP.randn(1, 6, dtype=DT)
    points = torch.randn(1, 4, 3, dtype=DT)
    q = torch.randn(1, 4, 3, dtype=DT)
    ray, pos = Ray(atom_axis=None), Position(atom_axis=None)
    err = assert_equivariant(lambda x_, r, a, p, q_: layer(x_, r, a, None, p, point_scalars=q_), SE3(),
                             [(x, RayField(REP, rays)), (rays, ray), (anchors, pos), (points, pos), (q, Invariant())],
                             [Invariant(), Vector(spatial_axis=-2, atom_axis=None)])
    assert err <= 1e-10
    with pytest.raises(ValueError, match="point_scalars"):
        layer(x, rays, anchors, None, points)


# ----------------------------------------------------------------------------------------------- geometry


def test_invariants_and_neighbours_are_se3_invariant():
    rays, anchors = _rays(4, 6)
    points = torch.randn(4, 6, 3, dtype=DT)
    ray, pos = Ray(atom_axis=None), Position(atom_axis=None)
    err = assert_equivariant(ray_pair_features, SE3(), [(rays, ray), (anchors, pos), (rays.flip(0), ray),
                                                        (anchors.flip(0), pos)], Invariant())
    assert err <= 1e-10
    # the set version (Gram matrices) equals the per-pair formula, with finite gradients at x = y
    r, a = rays.clone().requires_grad_(), anchors.clone().requires_grad_()
    fast = set_pair_features(r, a)
    slow = ray_pair_features(rays[:, :, None], anchors[:, :, None], rays[:, None], anchors[:, None])
    assert torch.allclose(fast, slow, atol=1e-12)
    fast.sum().backward()
    assert torch.isfinite(r.grad).all() and torch.isfinite(a.grad).all()
    err = assert_equivariant(point_ray_features, SE3(), [(points, pos), (rays, ray), (anchors, pos)], Invariant())
    assert err <= 1e-10
    # nearest rays per view: the brute-force choice, unchanged by rigid motions
    views, _ = _rays(2, 3, 40, seed=8)
    pts = torch.randn(2, 5, 3, dtype=DT)
    nb = ray_neighbours(pts, views, 3, chunk=2)
    dist = (torch.linalg.cross(pts[:, :, None, None], views[:, None, ..., :3], dim=-1)
            - views[:, None, ..., 3:]).norm(dim=-1)  # (2, 5, 3, 40)
    brute = dist.argsort(-1)[..., :3] + 40 * torch.arange(3).view(1, 1, 3, 1)
    assert torch.equal(nb, brute.flatten(-2))
    assert assert_equivariant(lambda p, r: ray_neighbours(p, r, 3).double(), SE3(),
                              [(pts, Position(atom_axis=None)), (views, Ray(atom_axis=None))], Invariant()) == 0.0


# ----------------------------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_one_line_errors():
    rays, anchors = _rays(1, 4)
    x = REP.randn(1, 4, dtype=DT)
    conv = RayToRayConv(REP).double()
    point = RayToPointAttention(REP, scalars=4, vectors=4, heads=2).double()
    zero = rays.clone()
    zero[0, 1, :3] = 0.0
    with pytest.raises(ValueError, match="zero-length direction"):
        conv(x, zero, anchors)
    skew = rays.clone()
    skew[0, 2, 3:] += 0.1 * skew[0, 2, :3]  # a moment with a component along d
    with pytest.raises(ValueError, match=r"not rays: d·m"):
        conv(x, skew, anchors)
    with pytest.raises(ValueError, match="NaN"):
        check_rays(torch.full((2, 6), float("nan")))
    with pytest.raises(ValueError, match="anchors are not on"):
        conv(x, rays, anchors + 0.5)
    with pytest.raises(ValueError, match="orthonormal"):
        conv(x, rays, anchors, torch.eye(3, dtype=DT).expand(1, 4, 3, 3))
    with pytest.raises(ValueError, match="empty neighbourhood"):
        conv(x, rays, anchors, mask=torch.zeros(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="frequencies 0 and 1"):
        RayToRayAttention(SO2Rep("2x0+1x1+1x2"))
    pts = torch.zeros(1, 2, 3, dtype=DT)
    with pytest.raises(ValueError, match="no rays"):
        point(x[:, :0], rays[:, :0], anchors[:, :0], None, pts)
    with pytest.raises(ValueError, match="empty neighbourhoods"):
        point(x, rays, anchors, None, pts, torch.zeros(1, 2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        point(x, rays, anchors, None, pts, torch.full((1, 2, 3), 4))
    with pytest.raises(ValueError, match="empty neighbourhood"):
        point(x, rays, anchors, None, pts, None, torch.zeros(1, 2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiples of heads"):
        RayToPointAttention(REP, scalars=5, vectors=4, heads=2)
    with pytest.raises(ValueError, match="k must be in"):
        ray_neighbours(pts, rays.unsqueeze(1), 9)
    with pytest.raises(ValueError, match="at least one view"):
        ray_neighbours(pts, rays[:, :0].unsqueeze(1), 1)
