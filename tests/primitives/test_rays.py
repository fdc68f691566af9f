"""Plücker rays: round trips, the E(3) action against the slow ``Ray`` rep, invariants, parallel rays, gauges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eqt.primitives import rays as R
from eqt.reps.actions import Invariant, Irreps, Position, Rep, Vector
from eqt.reps.groups import E3, SE3, Element
from eqt.reps.rays import Ray
from eqt.testing import assert_equivariant

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand_rays(n: int, seed: int = 0) -> torch.Tensor:
    g = _gen(seed)
    return R.rays_from_points(2 * torch.randn(n, 3, dtype=F64, generator=g), torch.randn(n, 3, dtype=F64, generator=g))


def _rz(gamma: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(gamma), torch.sin(gamma)
    z, o = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2)


def _closest_approach(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Brute force: min over points of two lines, by least squares in numpy."""
    out = []
    for ra, rb in zip(a.numpy(), b.numpy()):
        pa, pb = np.cross(ra[:3], ra[3:]), np.cross(rb[:3], rb[3:])
        st, *_ = np.linalg.lstsq(np.stack([ra[:3], -rb[:3]], 1), pb - pa, rcond=None)
        out.append(np.linalg.norm(pa + st[0] * ra[:3] - pb - st[1] * rb[:3]))
    return torch.tensor(out, dtype=F64)


def _elements(group, n=4, seed=0):
    return group.sample(n, np.random.default_rng(seed))


def _rt(g: Element) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(g.rotation), torch.as_tensor(g.translation)


# ----------------------------------------------------------------------------------------------- embedding


def test_rays_from_points_and_round_trips():
    g = _gen(1)
    x, v = torch.randn(7, 3, dtype=F64, generator=g), 3 * torch.randn(7, 3, dtype=F64, generator=g)
    rays = R.rays_from_points(x, v)
    d, m = R.ray_direction(rays), R.ray_moment(rays)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(7, dtype=F64), rtol=0, atol=1e-14)
    torch.testing.assert_close((d * m).sum(-1), torch.zeros(7, dtype=F64), rtol=0, atol=1e-14)
    foot = R.ray_point(rays)
    torch.testing.assert_close((foot * d).sum(-1), torch.zeros(7, dtype=F64), rtol=0, atol=1e-13)  # closest to 0
    for s in (-2.0, 0.0, 5.0):  # every point of the line gives the same ray and lies on it
        torch.testing.assert_close(R.rays_from_points(x + s * v, v), rays, rtol=0, atol=1e-13)
        torch.testing.assert_close(R.point_ray_distance(x + s * v, rays), torch.zeros(7, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(R.rays_from_points(foot, d), rays, rtol=0, atol=1e-13)
    drift = rays + 1e-3 * torch.randn(7, 6, dtype=F64, generator=g)
    fixed = R.normalize_rays(drift)
    torch.testing.assert_close(R.normalize_rays(fixed), fixed, rtol=0, atol=1e-14)
    torch.testing.assert_close((fixed[:, :3] * fixed[:, 3:]).sum(-1), torch.zeros(7, dtype=F64), rtol=0, atol=1e-14)


def test_rays_from_points_is_e3_equivariant():
    g = _gen(2)
    x, v = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    assert_equivariant(R.rays_from_points, E3(), [(x, Position()), (v, Vector())], Ray(), n_samples=8)


# ----------------------------------------------------------------------------------------------- the action


def test_transform_rays_matches_reference_rep_se3_and_e3():
    rays = _rand_rays(6)
    for g in _elements(E3(), 8) + _elements(SE3(), 2, seed=1):
        rot, t = _rt(g)
        torch.testing.assert_close(R.transform_rays(rot, t, rays), Ray().act(g, rays), rtol=0, atol=1e-12)
        if g.is_improper:  # the moment is a pseudovector: without det R the formula breaks m = x × d
            naive = torch.cat([rays[:, :3] @ rot.T, rays[:, 3:] @ rot.T + torch.linalg.cross(t.expand(6, 3),
                                                                                             rays[:, :3] @ rot.T)], -1)
            assert (naive - Ray().act(g, rays)).abs().max() > 1e-3


def test_reference_rep_is_an_action_and_permutes():
    rays = _rand_rays(4)
    g1, g2 = _elements(E3(), 2, seed=3)
    torch.testing.assert_close(Ray().act(g1, Ray().act(g2, rays)), Ray().act(g1.compose(g2), rays), rtol=0, atol=1e-12)
    perm = Element(permutation=np.array([2, 0, 3, 1]))
    torch.testing.assert_close(Ray().act(perm, rays), rays[[2, 0, 3, 1]])
    assert torch.equal(Ray(atom_axis=None).act(perm, rays), rays)


def test_transform_rays_broadcasts_per_ray_elements():
    rays = _rand_rays(5).reshape(5, 1, 6).expand(5, 3, 6)
    els = _elements(E3(), 3, seed=4)
    rot = torch.stack([_rt(g)[0] for g in els])  # (3, 3, 3)
    t = torch.stack([_rt(g)[1] for g in els])  # (3, 3)
    out = R.transform_rays(rot, t, rays)
    assert out.shape == (5, 3, 6)
    for j, g in enumerate(els):
        torch.testing.assert_close(out[:, j], Ray().act(g, rays[:, j].contiguous()), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------- invariants


def test_e3_invariants():
    a, b = _rand_rays(6, seed=5), _rand_rays(6, seed=6)
    x = torch.randn(6, 3, dtype=F64, generator=_gen(7))
    for fn in (R.ray_angle, R.ray_distance):
        assert_equivariant(fn, E3(), [(a, Ray()), (b, Ray())], Invariant(), n_samples=8)
    assert_equivariant(R.point_ray_distance, E3(), [(x, Position()), (a, Ray())], Invariant(), n_samples=8)


def test_signed_invariants_are_se3_invariant_and_e3_pseudoscalars():
    a, b = _rand_rays(6, seed=8), _rand_rays(6, seed=9)
    ins = [(a, Ray()), (b, Ray())]
    assert_equivariant(R.reciprocal_product, SE3(), ins, Invariant(), n_samples=6)
    assert_equivariant(R.ray_pair_invariants, SE3(), ins, Invariant(), n_samples=6)
    pseudo = Irreps("0o", atom_axis=None)
    assert_equivariant(lambda p, q: R.reciprocal_product(p, q)[:, None], E3(), ins, pseudo, n_samples=8)
    assert_equivariant(lambda p, q: R.ray_distance(p, q, signed=True)[:, None], E3(), ins, pseudo, n_samples=8)


def test_distance_angle_and_point_distance_against_brute_force():
    a, b = _rand_rays(10, seed=10), _rand_rays(10, seed=11)
    torch.testing.assert_close(R.ray_distance(a, b), _closest_approach(a, b), rtol=1e-10, atol=1e-12)
    cos = (a[:, :3] * b[:, :3]).sum(-1)
    torch.testing.assert_close(torch.cos(R.ray_angle(a, b)), cos, rtol=0, atol=1e-14)
    inv = R.ray_pair_invariants(a, b)
    torch.testing.assert_close(inv[:, 0], cos)
    torch.testing.assert_close(inv[:, 2].abs(), R.ray_distance(a, b))
    torch.testing.assert_close(inv[:, 1], inv[:, 2] * torch.sin(R.ray_angle(a, b)))
    x = torch.randn(10, 3, dtype=F64, generator=_gen(12))
    foot = R.ray_point(a) + ((x - R.ray_point(a)) * a[:, :3]).sum(-1, keepdim=True) * a[:, :3]
    torch.testing.assert_close(R.point_ray_distance(x, a), (x - foot).norm(dim=-1), rtol=1e-12, atol=1e-14)


def test_parallel_and_nearly_parallel_rays():
    d = torch.nn.functional.normalize(torch.tensor([[0.3, -0.5, 0.8]], dtype=F64), dim=-1)
    off = torch.linalg.cross(d, torch.tensor([[1.0, 0.0, 0.0]], dtype=F64))
    off = 1.7 * off / off.norm()  # perpendicular offset: distance 1.7
    base = torch.tensor([[0.4, 0.2, -0.3]], dtype=F64)
    a = R.rays_from_points(base, d)
    for sign in (1.0, -1.0):  # parallel and antiparallel, exactly
        b = R.rays_from_points(base + off + 2.5 * d, sign * d)
        torch.testing.assert_close(R.ray_distance(a, b), torch.tensor([1.7], dtype=F64), rtol=1e-13, atol=0)
        assert R.reciprocal_product(a, b).abs().item() < 1e-14
        alpha, tau = R.ray_pair_screw(a, b)
        torch.testing.assert_close(tau, torch.tensor([1.7], dtype=F64), rtol=1e-13, atol=0)
        assert abs(alpha.item() - (0.0 if sign > 0 else math.pi)) < 1e-12
    # tilted in the plane of both lines by sin α: they meet far away, but below the threshold count as parallel
    tilt = off / off.norm()
    for small in (1e-13, 1e-10):
        b = R.rays_from_points(base + off, d + small * tilt)
        torch.testing.assert_close(R.ray_distance(a, b), torch.tensor([1.7], dtype=F64), rtol=1e-8, atol=0)
    # tilted out of the plane, above the threshold: the skew formula agrees with brute force
    side = torch.linalg.cross(d, tilt)
    for small in (1e-6, 1e-3):
        b = R.rays_from_points(base + off, d + small * side)
        torch.testing.assert_close(R.ray_distance(a, b), _closest_approach(a, b), rtol=1e-8, atol=0)
    # gradients are finite at exactly parallel and coincident rays
    for b in (R.rays_from_points(base + off, d), a.clone()):
        aa, bb = a.clone().requires_grad_(), b.clone().requires_grad_()
        (R.ray_distance(aa, bb) + R.ray_angle(aa, bb)).sum().backward()
        assert torch.isfinite(aa.grad).all() and torch.isfinite(bb.grad).all()
    assert R.ray_distance(a, a).item() == 0.0
    # the threshold is a documented keyword: a huge eps makes everything "parallel"
    b = R.rays_from_points(base + off, d + 1e-3 * side)
    assert R.ray_distance(a, b, eps=1e-2).item() != pytest.approx(R.ray_distance(a, b).item(), rel=1e-12)


# ----------------------------------------------------------------------------------------------- cameras


class _Pose(Rep):
    """Camera-to-world poses (..., 4, 4), moved by the rigid motion: ``T -> G T``."""

    def __init__(self) -> None:
        super().__init__(None)

    def _act_spatial(self, g: Element, x: torch.Tensor) -> torch.Tensor:
        gm = torch.eye(4, dtype=x.dtype)
        gm[:3, :3], gm[:3, 3] = torch.as_tensor(g.rotation), torch.as_tensor(g.translation)
        return gm @ x


def _camera(n: int = 2, seed: int = 13):
    k = torch.tensor([[50.0, 0.5, 16.0], [0.0, 45.0, 12.0], [0.0, 0.0, 1.0]], dtype=F64)
    poses = torch.eye(4, dtype=F64).repeat(n, 1, 1)
    for i, g in enumerate(_elements(SE3(), n, seed)):
        poses[i, :3, :3], poses[i, :3, 3] = _rt(g)
    return k, poses


def test_pixels_grid_and_camera_conventions():
    pix = R.pixels_grid(2, 3, dtype=F64)
    torch.testing.assert_close(pix, torch.tensor([[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]], dtype=F64))
    k = torch.tensor([[10.0, 0.0, 2.0], [0.0, 10.0, 1.0], [0.0, 0.0, 1.0]], dtype=F64)
    rays = R.camera_rays(k, torch.eye(4, dtype=F64), torch.tensor([[2.0, 1.0], [12.0, 1.0], [2.0, 11.0]], dtype=F64))
    s = 1 / math.sqrt(2)
    expected = torch.tensor([[0, 0, 1], [s, 0, s], [0, s, s]], dtype=F64)  # principal point, right, down
    torch.testing.assert_close(rays[:, :3], expected)
    torch.testing.assert_close(rays[:, 3:], torch.zeros(3, 3, dtype=F64))


def test_camera_rays_round_trip_and_shapes():
    k, poses = _camera(3)
    pix = R.pixels_grid(4, 5, dtype=F64) * 6.0  # (20, 2)
    rays = R.camera_rays(k, poses, pix)  # K shared, pixels broadcast over cameras
    assert rays.shape == (3, 20, 6)
    torch.testing.assert_close(R.rays_to_pixels(k, poses, rays), pix.expand(3, 20, 2), rtol=0, atol=1e-10)
    centres = poses[:, None, :3, 3].expand(3, 20, 3)
    torch.testing.assert_close(R.point_ray_distance(centres, rays), torch.zeros(3, 20, dtype=F64), rtol=0, atol=1e-12)
    per_cam_k = k.expand(3, 3, 3)
    torch.testing.assert_close(R.camera_rays(per_cam_k, poses, pix.expand(3, 20, 2)), rays)


def test_camera_rays_are_se3_equivariant_in_the_pose():
    k, poses = _camera(2)
    pix = R.pixels_grid(3, 4, dtype=F64) * 8.0
    fn = lambda p: R.camera_rays(k, p, pix)  # noqa: E731
    assert_equivariant(fn, SE3(), [(poses, _Pose())], Ray(atom_axis=None), n_samples=4)


# ----------------------------------------------------------------------------------------------- sections


def _check_frame(frame, foot, rays):
    eye = torch.eye(3, dtype=F64).expand_as(frame)
    torch.testing.assert_close(frame.transpose(-1, -2) @ frame, eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.det(frame), torch.ones(frame.shape[:-2], dtype=F64), rtol=0, atol=1e-12)
    eta = torch.tensor([0.0, 0, 1, 0, 0, 0], dtype=F64).expand_as(rays)
    torch.testing.assert_close(R.transform_rays(frame, foot, eta), rays, rtol=0, atol=1e-12)  # s(x) · η = x


def test_ray_frame_is_a_section_including_near_the_singular_direction():
    rays = _rand_rays(8, seed=14)
    _check_frame(*R.ray_frame(rays), rays)
    poles = torch.tensor([[0, 0, 1.0], [0, 0, -1.0], [1e-9, 0, -1.0], [0, -1e-12, -1.0], [0.3, 0.1, -0.9]], dtype=F64)
    special = R.rays_from_points(torch.tensor([[1.0, 2.0, 3.0]], dtype=F64), poles)
    frame, foot = R.ray_frame(special)
    _check_frame(frame, foot, special)
    torch.testing.assert_close(frame[0], torch.eye(3, dtype=F64))  # identity on the reference ray
    torch.testing.assert_close(frame[1], torch.diag(torch.tensor([-1.0, 1.0, -1.0], dtype=F64)))
    # with a reference axis (camera x-axis): e1 is its component orthogonal to d
    ref = torch.randn(8, 3, dtype=F64, generator=_gen(15))
    frame, foot = R.ray_frame(rays, ref)
    _check_frame(frame, foot, rays)
    assert (frame[:, :, 0] * ref).sum(-1).min() > 0
    torch.testing.assert_close((frame[:, :, 0] * torch.linalg.cross(ref, rays[:, :3])).sum(-1),
                               torch.zeros(8, dtype=F64), rtol=0, atol=1e-12)


def test_twist_lies_in_the_stabiliser():
    rays = _rand_rays(6, seed=16)
    for g in _elements(SE3(), 4, seed=17):
        rot, t = _rt(g)
        gamma, tau = R.ray_twist(rot, t, rays)
        moved = R.transform_rays(rot, t, rays)
        frame, foot = R.ray_frame(rays)
        frame2, foot2 = R.ray_frame(moved)
        torch.testing.assert_close(rot @ frame, frame2 @ _rz(gamma), rtol=0, atol=1e-12)
        torch.testing.assert_close(foot @ rot.T + t, foot2 + tau[:, None] * moved[:, :3], rtol=0, atol=1e-12)
    # a screw along the reference ray is its own twist
    eta = torch.tensor([[0.0, 0, 1, 0, 0, 0]], dtype=F64)
    gamma, tau = R.ray_twist(_rz(torch.tensor(0.7, dtype=F64)), torch.tensor([0.0, 0.0, 2.0], dtype=F64), eta)
    torch.testing.assert_close((gamma.item(), tau.item()), (0.7, 2.0))


def test_pair_frames_give_a_screw_about_the_common_normal():
    a, b = _rand_rays(6, seed=18), _rand_rays(6, seed=19)
    d = a[:2, :3]
    b = torch.cat([b, R.rays_from_points(R.ray_point(a[:2]) + torch.tensor([0.0, 0, 0.5], dtype=F64), -d), a[2:3]])
    a = torch.cat([a, a[:3]])  # plus two (anti)parallel pairs and one coincident pair
    fa, qa, fb, qb = R.ray_pair_frames(a, b)
    _check_frame(fa, qa, a)
    _check_frame(fb, qb, b)
    alpha, tau = R.ray_pair_screw(a, b)
    c, s = torch.cos(alpha), torch.sin(alpha)
    rx = torch.zeros(len(a), 3, 3, dtype=F64)
    rx[:, 0, 0], rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = 1, c, -s, s, c
    torch.testing.assert_close(fa.transpose(-1, -2) @ fb, rx, rtol=0, atol=1e-12)
    rel = ((qb - qa)[:, None, :] @ fa).squeeze(1)
    torch.testing.assert_close(rel, torch.stack([tau, 0 * tau, 0 * tau], -1), rtol=0, atol=1e-12)
    torch.testing.assert_close(alpha, R.ray_angle(a, b))
    torch.testing.assert_close(tau[:6], -R.ray_distance(a[:6], b[:6], signed=True))
    torch.testing.assert_close(tau[6:], R.ray_distance(a[6:], b[6:]))
    screw = lambda p, q: torch.stack(R.ray_pair_screw(p, q), -1)  # noqa: E731
    assert_equivariant(screw, SE3(), [(a[:6], Ray()), (b[:6], Ray())], Invariant(), n_samples=4)


def test_gauge_independence_of_features_in_a_ray_frame():
    a, b = _rand_rays(5, seed=20), _rand_rays(5, seed=21)
    sample = R.ray_point(a) + 1.3 * a[:, :3]  # a point on each ray a (moves with g)
    frame, foot = R.ray_frame(a)
    feats = R.ray_local_invariants(frame, sample, b)
    gamma = torch.rand(5, dtype=F64, generator=_gen(22)) * 2 * math.pi
    turned = frame @ _rz(gamma)  # another gauge: the frame rotated about its ray
    torch.testing.assert_close(R.ray_local_invariants(turned, sample, b), feats, rtol=0, atol=1e-12)
    # meaning: cos α, w, distance from the sample point, position of the closest point along a
    torch.testing.assert_close(feats[:, 0], (a[:, :3] * b[:, :3]).sum(-1))
    torch.testing.assert_close(feats[:, 1], R.reciprocal_product(a, b))
    torch.testing.assert_close(feats[:, 2], R.point_ray_distance(sample, b))
    closest = sample + torch.linalg.cross(b[:, :3], b[:, 3:] - torch.linalg.cross(sample, b[:, :3]))
    torch.testing.assert_close(feats[:, 3], ((closest - sample) * a[:, :3]).sum(-1))
    normal = torch.linalg.cross(a[:, :3], b[:, :3])
    shift = R.ray_azimuth(turned, normal) - R.ray_azimuth(frame, normal) + gamma  # covariant: ψ -> ψ - γ
    torch.testing.assert_close(torch.cos(shift), torch.ones(5, dtype=F64), rtol=0, atol=1e-12)
    # the section is not equivariant (its twist is a rotation about z), the features are SE(3)-invariant
    fn = lambda p, x, q: R.ray_local_invariants(R.ray_frame(p)[0], x, q)  # noqa: E731
    assert_equivariant(fn, SE3(), [(a, Ray()), (sample, Position()), (b, Ray())], Invariant(), n_samples=4)
    # with the (non-equivariant) foot as origin only the H-invariant pair (cos α, w) survives
    fn = lambda p, q: R.ray_local_invariants(*R.ray_frame(p), q)[:, :2]  # noqa: E731
    assert_equivariant(fn, SE3(), [(a, Ray()), (b, Ray())], Invariant(), n_samples=4)


# ----------------------------------------------------------------------------------------------- errors


def test_bad_inputs_raise_one_line_errors():
    rays, k, pose = _rand_rays(3), *_camera(1)
    pix = torch.zeros(4, 2, dtype=F64)
    bad = [
        lambda: R.rays_from_points(torch.zeros(3, 2), torch.ones(3, 3)),
        lambda: R.rays_from_points(torch.zeros(2, 3), torch.tensor([[1.0, 0, 0], [0, 0, 0]])),
        lambda: R.ray_point(torch.zeros(3, 5)),
        lambda: R.ray_point(2 * rays),
        lambda: R.ray_distance(rays, 2 * rays),
        lambda: R.point_ray_distance(torch.zeros(3, 3, dtype=F64), torch.zeros(3, 6, dtype=F64)),
        lambda: R.transform_rays(torch.eye(4), torch.zeros(3), rays),
        lambda: R.camera_rays(torch.eye(4, dtype=F64), pose, pix),
        lambda: R.camera_rays(k, pose[:, :3], pix),
        lambda: R.camera_rays(k, 2 * pose, pix),
        lambda: R.camera_rays(k, pose @ torch.diag(torch.tensor([1.0, 1, -1, 1], dtype=F64)), pix),
        lambda: R.camera_rays(k, pose, torch.zeros(4, 3, dtype=F64)),
        lambda: R.ray_frame(rays, rays[:, :3] * 3),
        lambda: R.ray_twist(-torch.eye(3, dtype=F64), torch.zeros(3, dtype=F64), rays),
        lambda: R.pixels_grid(0, 3),
    ]
    for call in bad:
        with pytest.raises(ValueError) as info:
            call()
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="last axis of 6"):
        Ray().act(Element(rotation=np.eye(3)), torch.zeros(2, 5))
