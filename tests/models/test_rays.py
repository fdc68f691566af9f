"""The reconstruction model: SE(3) invariance of the occupancy in float64 (including the neighbour choice and
the camera front end), gauge independence, the baseline's lack of it, checkpoints, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eqt.checkpoint import load_model, save_checkpoint
from eqt.data.scenes import SceneConfig, apply_se3, sample_scenes
from eqt.models.rays import RayModelConfig, RayOccupancyModel, camera_inputs
from eqt.primitives.rays import ray_frame, rays_from_points
from eqt.testing import SE3, Invariant, Position, Ray, assert_equivariant

DT = torch.float64
SMALL = dict(scalars=8, vectors=3, heads=2, head_scalars=4, head_vectors=2, point_channels=6, point_blocks=1,
             hidden=8, transformer_hidden=16, transformer_blocks=1, transformer_heads=2)


def _model(variant="equivariant", **kw):
    torch.manual_seed(0)
    model = RayOccupancyModel(RayModelConfig(variant=variant, **{**SMALL, **kw}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.double().eval()


def _inputs(b=2, v=3, p=12, q=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = 3 * torch.randn(b, v, 3, generator=g, dtype=DT)
    dirs = -o.unsqueeze(2) + 0.6 * torch.randn(b, v, p, 3, generator=g, dtype=DT)
    rays = rays_from_points(o.unsqueeze(2).expand(b, v, p, 3), dirs)
    depth = 1 + 3 * torch.rand(b, v, p, generator=g, dtype=DT)
    mask = torch.rand(b, v, p, generator=g) < 0.6
    colour = torch.rand(b, v, p, 3, generator=g, dtype=DT)
    points = torch.randn(b, q, 3, generator=g, dtype=DT)
    return rays, o, depth, mask, colour, points


def _reps():
    ray, pos = Ray(atom_axis=None), Position(atom_axis=None)
    return [ray, pos, Invariant(), Invariant(), Invariant(), pos]


@pytest.mark.parametrize("rays_per_view", [1, 3])
def test_equivariant_model_is_se3_invariant(rays_per_view):
    model = _model(rays_per_view=rays_per_view, ray_blocks=2)
    args = _inputs()
    err = assert_equivariant(model, SE3(), list(zip(args, _reps())), Invariant(), n_samples=4)
    assert err <= 1e-10
    assert model(*args).std() > 1e-3  # not trivially constant


def test_equivariant_model_is_gauge_independent_and_the_baseline_is_not_invariant():
    model = _model()
    args = _inputs()
    frames = ray_frame(args[0])[0]
    gamma = 2 * math.pi * torch.rand(frames.shape[:-2], dtype=DT, generator=torch.Generator().manual_seed(3))
    c, s = torch.cos(gamma), torch.sin(gamma)
    rz = torch.zeros(*gamma.shape, 3, 3, dtype=DT)
    rz[..., 0, 0], rz[..., 0, 1], rz[..., 1, 0], rz[..., 1, 1], rz[..., 2, 2] = c, -s, s, c, 1.0
    y = model(*args)
    assert (model(*args, frames=frames @ rz) - y).abs().max() <= 1e-12
    baseline = _model("transformer")
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(baseline, SE3(), list(zip(args, _reps())), Invariant(), n_samples=2)


def test_scenes_and_cameras_moved_together_give_the_same_occupancy():
    """The whole front end: scenes -> camera_inputs -> model, against eqt.data.scenes.apply_se3 (float64)."""
    cfg = SceneConfig(n_views=3, height=6, width=6, n_points=10)
    sample = sample_scenes(2, cfg, seed=1)
    model = _model(rays_per_view=2)
    rng = np.random.default_rng(0)

    def occupancy(s):
        keys = ("intrinsics", "cam_to_world", "depth", "mask", "colour")
        inputs = camera_inputs(*(torch.as_tensor(s[k]) for k in keys), (cfg.height, cfg.width))
        return model(**inputs, points=torch.as_tensor(s["points"]))

    y = occupancy(sample)
    q, _ = np.linalg.qr(rng.standard_normal((2, 3, 3)))
    q *= np.sign(np.linalg.det(q))[:, None, None]
    moved = apply_se3(sample, q, 2 * rng.standard_normal((2, 3)))
    assert (occupancy(moved) - y).abs().max().item() <= 1e-10 * max(1.0, y.abs().max().item())


def test_transformer_sees_the_same_rays_and_checkpoints_round_trip(tmp_path):
    args = _inputs()
    for variant in ("equivariant", "transformer"):
        model = _model(variant)
        y = model(*args)
        assert y.shape == (2, 5) and torch.isfinite(y).all()
        save_checkpoint(tmp_path / f"{variant}.pt", model)
        again = load_model(tmp_path / f"{variant}.pt").double()
        assert torch.equal(again(*args), y)


def test_scale_at_initialisation():
    torch.manual_seed(0)
    args = [a.float() if a.is_floating_point() else a for a in _inputs(b=4, q=64)]
    y = RayOccupancyModel(RayModelConfig())(*args)
    assert 0.01 < y.std().item() < 10.0


def test_bad_inputs_raise_one_line_errors():
    model = _model()
    rays, o, depth, mask, colour, points = _inputs()
    with pytest.raises(ValueError, match="empty views"):
        model(rays[:, :0], o[:, :0], depth[:, :0], mask[:, :0], colour[:, :0], points)
    with pytest.raises(ValueError, match="empty views"):
        model(rays[:, :, :0], o, depth[:, :, :0], mask[:, :, :0], colour[:, :, :0], points)
    zero = rays.clone()
    zero[0, 1, 2, :3] = 0.0
    with pytest.raises(ValueError, match="zero-length direction"):
        model(zero, o, depth, mask, colour, points)
    skew = rays.clone()
    skew[0, 0, 0, 3:] += 0.2 * skew[0, 0, 0, :3]
    with pytest.raises(ValueError, match=r"not rays: d·m"):
        model(skew, o, depth, mask, colour, points)
    with pytest.raises(ValueError, match="origins are not on"):
        model(rays, o + 1.0, depth, mask, colour, points)
    with pytest.raises(ValueError, match="mask must be bool"):
        model(rays, o, depth, mask.double(), colour, points)
    with pytest.raises(ValueError, match="out of range"):
        model(rays, o, depth, mask, colour, points, torch.full((2, 5, 3), 99))
    with pytest.raises(ValueError, match="unknown ray model variant"):
        RayModelConfig(variant="nerf")
    # cameras
    cfg = SceneConfig(n_views=2, height=4, width=4, n_points=4)
    s = sample_scenes(1, cfg, seed=0)
    cams = [torch.as_tensor(s[k]) for k in ("intrinsics", "cam_to_world", "depth", "mask", "colour")]
    bad_pose = cams[1].clone()
    bad_pose[0, 1, :3, :3] *= 1.5  # not a rotation
    with pytest.raises(ValueError, match="degenerate camera pose"):
        camera_inputs(cams[0], bad_pose, *cams[2:], (4, 4))
    flat_pose = cams[1].clone()
    flat_pose[0, 0, :3, 2] = 0.0  # a singular rotation
    with pytest.raises(ValueError, match="degenerate camera pose"):
        camera_inputs(cams[0], flat_pose, *cams[2:], (4, 4))
    nan_pose = cams[1].clone()
    nan_pose[0, 0, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="degenerate camera"):
        camera_inputs(cams[0], nan_pose, *cams[2:], (4, 4))
    singular_k = cams[0].clone()
    singular_k[0, 0, 0, 0] = 0.0
    with pytest.raises(ValueError, match="degenerate camera intrinsics"):
        camera_inputs(singular_k, *cams[1:], (4, 4))
    with pytest.raises(ValueError, match="empty views"):
        camera_inputs(cams[0][:, :0], cams[1][:, :0], *(c[:, :0] for c in cams[2:]), (4, 4))
    with pytest.raises(ValueError, match="images must be"):
        camera_inputs(*cams, (4, 5))
