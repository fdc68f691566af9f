"""Tests of the procedural multi-view scenes: exact ray casting, SDFs, SE(3) consistency, files."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from eqt.data import scenes
from eqt.data.scenes import (
    KINDS,
    SceneConfig,
    apply_se3,
    cast_rays,
    generate,
    load,
    look_at,
    occupancy,
    pinhole_intrinsics,
    primitive_sdf,
    render,
    sample_scenes,
    scene_rays,
    scene_sdf,
)
from eqt.data.store import split_seed
from eqt.primitives.rotations import haar_rotations
from eqt.primitives.rays import camera_rays, pixels_grid, transform_rays

SMALL = SceneConfig(n_views=3, height=12, width=10, n_points=256)
TINY = SceneConfig(n_views=2, height=6, width=5, n_points=32)


def _scene(kinds, params, rotation=None, translation=None):
    """One scene (P, ...) from lists; identity poses by default."""
    p = len(kinds)
    return {
        "prim_kind": np.array([KINDS.index(k) for k in kinds]),
        "prim_params": np.array(params, dtype=np.float64).reshape(p, 3),
        "prim_rotation": np.broadcast_to(np.eye(3), (p, 3, 3)).copy() if rotation is None else rotation,
        "prim_translation": np.zeros((p, 3)) if translation is None else translation,
        "prim_albedo": np.full((p, 3), 0.5),
    }


def _one_of_each(seed=0):
    rng = np.random.default_rng(seed)
    params = [(0.35, 0, 0), (0.2, 0.3, 0.25), (0.25, 0.35, 0), (0.4, 0.1, 0)]
    return _scene(KINDS, params, haar_rotations(rng, 4), rng.uniform(-0.5, 0.5, (4, 3)))


def _random_rays(rng, n, radius=3.0):
    """Rays from a sphere of ``radius`` towards random points of the unit ball."""
    o = rng.standard_normal((n, 3))
    o *= radius / np.linalg.norm(o, axis=1, keepdims=True)
    target = rng.uniform(-0.8, 0.8, (n, 3))
    d = target - o
    return o, d / np.linalg.norm(d, axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------
def test_config_round_trip_and_unknown_key():
    c = SceneConfig()
    assert SceneConfig.from_dict(c.to_dict()) == c
    assert json.loads(json.dumps(c.to_dict())) == c.to_dict()
    assert c.replace(n_views=3).n_views == 3
    with pytest.raises(ValueError, match="unknown key 'n_view' for SceneConfig; did you mean 'n_views'"):
        SceneConfig.from_dict({"n_view": 3})
    with pytest.raises(TypeError):
        SceneConfig(n_view=3)  # type: ignore[call-arg]
    assert c.bounding_radius < c.camera_distance[0]


@pytest.mark.parametrize("changes, message", [
    ({"n_views": 0}, "n_views must be an int >= 1 \\(a scene needs at least one view\\)"),
    ({"n_primitives": (0, 2)}, "n_primitives must satisfy"),
    ({"n_primitives": (3, 2)}, "n_primitives must satisfy"),
    ({"n_primitives": (1.5, 2)}, "n_primitives must hold two ints"),
    ({"kinds": ("sphere", "cone")}, "kinds must be distinct names"),
    ({"kinds": ()}, "kinds must be distinct names"),
    ({"kinds": ("box", "box")}, "kinds must be distinct names"),
    ({"sphere_radius": (-0.1, 0.2)}, "sphere_radius must satisfy"),
    ({"box_half_size": (0.1,)}, "box_half_size must be a \\(min, max\\) pair"),
    ({"torus_minor_radius": (0.1, 0.3)}, "ring tori only"),
    ({"camera_distance": (1.0, 4.0)}, "must exceed the bounding radius"),
    ({"fov_degrees": 180.0}, "fov_degrees must be in \\(0, 180\\)"),
    ({"height": 0}, "height must be an int >= 1"),
    ({"width": 2.5}, "width must be an int >= 1"),
    ({"n_points": -1}, "n_points must be an int >= 0"),
    ({"near_surface_fraction": 1.5}, "near_surface_fraction must be a finite number in"),
    ({"albedo": (0.0, 2.0)}, "albedo must lie in \\[0, 1\\]"),
    ({"ambient": float("nan")}, "ambient must be a finite number"),
    ({"light_direction": (0.0, 0.0, 0.0)}, "light_direction must be three finite numbers"),
])
def test_config_bad_values(changes, message):
    with pytest.raises(ValueError, match=message) as exc:
        SceneConfig(**changes)
    assert "\n" not in str(exc.value) and str(exc.value).startswith("SceneConfig: ")


# --------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------
def test_look_at_and_intrinsics():
    rng = np.random.default_rng(0)
    pos, target = rng.normal(size=(5, 3)) * 3, rng.normal(size=(5, 3)) * 0.1
    pose = look_at(pos, target, rng.uniform(0, 2 * np.pi, 5))
    r = pose[:, :3, :3]
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-14)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-14)
    np.testing.assert_allclose(pose[:, 3], np.broadcast_to([0, 0, 0, 1.0], (5, 4)))
    axis = (target - pos) / np.linalg.norm(target - pos, axis=1, keepdims=True)
    np.testing.assert_allclose(r[:, :, 2], axis, atol=1e-14)
    k = pinhole_intrinsics(7, 9, 60.0)
    np.testing.assert_allclose(k[0, 0], 4.5 / math.tan(math.radians(30)))
    # the ray of the centre pixel (odd sizes) is the optical axis; the edge of the image is fov/2 off it
    rays = camera_rays(torch.from_numpy(k), torch.from_numpy(pose[0]), torch.tensor([[4.0, 3.0], [-0.5, 3.0]],
                                                                                    dtype=torch.float64)).numpy()
    np.testing.assert_allclose(rays[0, :3], axis[0], atol=1e-14)
    np.testing.assert_allclose(np.degrees(np.arccos(rays[1, :3] @ axis[0])), 30.0, atol=1e-10)
    with pytest.raises(ValueError, match="degenerate camera pose"):
        look_at(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="fov_degrees"):
        pinhole_intrinsics(4, 4, 0.0)


# --------------------------------------------------------------------------------------------
# Exact intersections
# --------------------------------------------------------------------------------------------
_AXIS_CASES = [  # kind, params, origin, direction, depth (None: miss), normal
    ("sphere", (0.5, 0, 0), (0.3, 0, -3), (0, 0, 1), 2.6, (0.6, 0, -0.8)),
    ("sphere", (0.5, 0, 0), (0.0, 0.51, -3), (0, 0, 1), None, None),
    ("box", (0.2, 0.3, 0.4), (0.1, 0.1, -3), (0, 0, 1), 2.6, (0, 0, -1)),
    ("box", (0.2, 0.3, 0.4), (-3, 0.1, 0.1), (1, 0, 0), 2.8, (-1, 0, 0)),
    ("box", (0.2, 0.3, 0.4), (0.1, 3, 0.1), (0, -1, 0), 2.7, (0, 1, 0)),
    ("box", (0.2, 0.3, 0.4), (0.25, 0, -3), (0, 0, 1), None, None),
    ("cylinder", (0.3, 0.5, 0), (0.1, 0, -3), (0, 0, 1), 2.5, (0, 0, -1)),
    ("cylinder", (0.3, 0.5, 0), (0.1, 0.2, 3), (0, 0, -1), 2.5, (0, 0, 1)),
    ("cylinder", (0.3, 0.5, 0), (-3, 0, 0.2), (1, 0, 0), 2.7, (-1, 0, 0)),
    ("cylinder", (0.3, 0.5, 0), (-3, 0, 0.6), (1, 0, 0), None, None),
    ("cylinder", (0.3, 0.5, 0), (0.31, 0, -3), (0, 0, 1), None, None),
    ("torus", (0.5, 0.1, 0), (-3, 0, 0), (1, 0, 0), 2.4, (-1, 0, 0)),
    ("torus", (0.5, 0.1, 0), (0.5, 0, -3), (0, 0, 1), 2.9, (0, 0, -1)),
    ("torus", (0.5, 0.1, 0), (0, 0, -3), (0, 0, 1), None, None),
    ("torus", (0.5, 0.1, 0), (-3, 0, 0.05), (1, 0, 0), 3 - 0.5 - math.sqrt(0.0075), (-math.sqrt(0.75), 0, 0.5)),
    ("torus", (0.5, 0.1, 0), (0.0, -3, 0.0), (0, 1, 0), 2.4, (0, -1, 0)),
]


@pytest.mark.parametrize("kind, params, origin, direction, depth, normal", _AXIS_CASES)
def test_closed_form_axis_aligned(kind, params, origin, direction, depth, normal):
    hit = cast_rays(_scene([kind], [params]), np.array([origin], float), np.array([direction], float))
    if depth is None:
        assert not hit["mask"][0] and hit["depth"][0] == 0 and hit["primitive"][0] == -1
    else:
        assert hit["mask"][0] and hit["primitive"][0] == 0
        np.testing.assert_allclose(hit["depth"][0], depth, rtol=0, atol=1e-12)
        np.testing.assert_allclose(hit["normal"][0], normal, rtol=0, atol=1e-12)


def _march(scene, origins, dirs, far=6.0, steps=3000):
    """Independent first hits: the scene SDF on a fine grid along each ray, then bisection."""
    s = np.linspace(0.0, far, steps + 1)
    pts = origins[:, None] + s[None, :, None] * dirs[:, None]  # (R, S, 3)
    sdf = scene_sdf({k: v[None] for k, v in scene.items()}, pts.reshape(1, -1, 3))[0].reshape(pts.shape[:2])
    inside = sdf <= 0
    hit = inside.any(1)
    first = np.argmax(inside, axis=1)
    lo, hi = s[np.maximum(first - 1, 0)], s[first]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        f = scene_sdf(scene, origins + mid[:, None] * dirs)
        lo, hi = np.where(f > 0, mid, lo), np.where(f > 0, hi, mid)
    # ambiguous: rays whose SDF has a local minimum below one grid step before their first hit (a
    # near miss or a sliver the grid may skip); the monotone approach to the hit is not one
    j = np.arange(1, steps)[None]
    dip = (sdf[:, 1:-1] <= sdf[:, :-2]) & (sdf[:, 1:-1] <= sdf[:, 2:]) & (sdf[:, 1:-1] < far / steps)
    grazing = (dip & (j < np.where(hit, first, steps + 1)[:, None])).any(1)
    return np.where(hit, hi, 0.0), hit, grazing


def test_exact_hits_against_sdf_march():
    rng = np.random.default_rng(1)
    for seed in range(2):
        scene = _one_of_each(seed)
        origins, dirs = _random_rays(rng, 400)
        cast = cast_rays(scene, origins, dirs)
        depth, hit, grazing = _march(scene, origins, dirs)
        assert grazing.mean() < 0.05 and hit.mean() > 0.3
        assert set(np.unique(cast["primitive"][cast["mask"]])) == {0, 1, 2, 3}  # every kind is hit
        assert not (hit & ~cast["mask"]).any()  # the grid found the solid: the caster must too
        ok = ~grazing
        np.testing.assert_array_equal(cast["mask"][ok], hit[ok])
        np.testing.assert_allclose(cast["depth"][ok], depth[ok], rtol=0, atol=1e-9)


def test_hits_lie_on_the_surface_with_outward_normals():
    rng = np.random.default_rng(2)
    scene = _one_of_each(3)
    origins, dirs = _random_rays(rng, 2000)
    cast = cast_rays(scene, origins, dirs)
    m = cast["mask"]
    pts = origins[m] + cast["depth"][m, None] * dirs[m]
    np.testing.assert_allclose(scene_sdf(scene, pts), 0.0, atol=1e-10)
    n = cast["normal"][m]
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-12)
    assert ((n * dirs[m]).sum(1) <= 1e-12).all()  # front-facing
    eps = 1e-6
    out = scene_sdf(scene, pts + eps * n)
    assert (out > 0).all() and (out <= eps * (1 + 1e-6)).all()
    # the ray before the hit is outside: (hits are first hits)
    assert (scene_sdf(scene, origins[m] + 0.999 * cast["depth"][m, None] * dirs[m]) > 0).all()


def test_render_depth_matches_cast_and_colour_is_lambertian():
    data = sample_scenes(2, SMALL, seed=3)
    rays = scene_rays(data)  # (N, V, HW, 6)
    for i in range(2):
        scene = {k: data[k][i] for k in scenes._SCENE_KEYS}
        centre = np.broadcast_to(data["cam_to_world"][i, :, None, :3, 3], rays[i, ..., :3].shape)
        cast = cast_rays(scene, centre.reshape(-1, 3), rays[i, ..., :3].reshape(-1, 3))
        np.testing.assert_allclose(data["depth"][i].reshape(-1), cast["depth"], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(data["mask"][i].reshape(-1), cast["mask"])
        light = np.asarray(SMALL.light_direction) / np.linalg.norm(SMALL.light_direction)
        light_w = np.repeat(data["cam_to_world"][i, :, :3, :3] @ light, SMALL.height * SMALL.width, axis=0)
        lam = np.clip((cast["normal"] * light_w).sum(1), 0, None)
        albedo = scene["prim_albedo"][np.maximum(cast["primitive"], 0)]
        want = np.where(cast["mask"][:, None], albedo * (SMALL.ambient + (1 - SMALL.ambient) * lam[:, None]), 0)
        np.testing.assert_allclose(data["colour"][i].reshape(-1, 3), want, atol=1e-12)
    assert data["mask"].any() and not data["mask"].all()
    assert (data["depth"][~data["mask"]] == 0).all() and (data["colour"][~data["mask"]] == 0).all()


# --------------------------------------------------------------------------------------------
# Signed distances and occupancy
# --------------------------------------------------------------------------------------------
_PARAMS = {"sphere": (0.4, 0, 0), "box": (0.2, 0.35, 0.3), "cylinder": (0.3, 0.25, 0), "torus": (0.45, 0.12, 0)}


@pytest.mark.parametrize("kind", KINDS)
def test_sdf_is_exact(kind):
    """Projection along the gradient lands on the surface (dist <= |sdf|) and the SDF is 1-Lipschitz."""
    rng = np.random.default_rng(4)
    params = np.array(_PARAMS[kind])
    p = rng.uniform(-0.6, 0.6, (3000, 3))
    f = primitive_sdf(kind, params, p)
    h = 1e-7
    grad = np.stack([(primitive_sdf(kind, params, p + h * e) - primitive_sdf(kind, params, p - h * e)) / (2 * h)
                     for e in np.eye(3)], axis=-1)
    good = np.abs(np.linalg.norm(grad, axis=1) - 1) < 1e-5  # away from the medial axis (measure zero)
    assert good.mean() > 0.99 and (f < 0).mean() > 0.03
    proj = p[good] - f[good, None] * grad[good]
    np.testing.assert_allclose(primitive_sdf(kind, params, proj), 0.0, atol=1e-6)
    a, b = p[:1500], p[1500:] + 0.05 * rng.standard_normal((1500, 3))
    lip = np.abs(primitive_sdf(kind, params, a) - primitive_sdf(kind, params, b)) / np.linalg.norm(a - b, axis=1)
    assert lip.max() <= 1 + 1e-9


def _inside_reference(kind, params, p):
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    if kind == "sphere":
        return x * x + y * y + z * z <= params[0] ** 2
    if kind == "box":
        return (np.abs(p) <= params).all(-1)
    if kind == "cylinder":
        return (x * x + y * y <= params[0] ** 2) & (np.abs(z) <= params[1])
    return (np.sqrt(x * x + y * y) - params[0]) ** 2 + z * z <= params[1] ** 2


def test_occupancy_matches_inside_tests_and_sdf_sign():
    data = sample_scenes(4, SMALL, seed=5)
    for i in range(4):
        inside = np.zeros(SMALL.n_points, dtype=bool)
        for k, par, rot, t in zip(data["prim_kind"][i], data["prim_params"][i], data["prim_rotation"][i],
                                  data["prim_translation"][i], strict=True):
            if k >= 0:
                local = (data["points"][i] - t) @ rot  # R^T (p - t), as rows
                inside |= _inside_reference(KINDS[k], par, local)
        np.testing.assert_array_equal(data["occupancy"][i], inside)
    scene = {k: data[k] for k in scenes._SCENE_KEYS}
    np.testing.assert_array_equal(occupancy(scene, data["points"]), scene_sdf(scene, data["points"]) <= 0)
    np.testing.assert_array_equal(data["points"], data["points"].astype(np.float32))
    n_near = SMALL.n_points // 2
    near, far = data["occupancy"][:, :n_near].mean(), data["occupancy"][:, n_near:].mean()
    assert 0.2 < near < 0.8 and far < near  # near-surface points are balanced, uniform ones mostly empty
    half = SMALL.bounding_radius
    assert (np.abs(data["points"][:, n_near:]) <= half).all()


# --------------------------------------------------------------------------------------------
# SE(3) consistency
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batched_motion", [False, True])
def test_se3_consistency_by_re_rendering(batched_motion):
    data = sample_scenes(3, SMALL, seed=6)
    rng = np.random.default_rng(7)
    if batched_motion:
        q, u = haar_rotations(rng, 3), rng.normal(size=(3, 3)) * 5
    else:
        q, u = haar_rotations(rng, 1)[0], rng.normal(size=3) * 5
    moved = apply_se3(data, q, u)
    for key in ("depth", "mask", "colour", "occupancy", "intrinsics", "prim_params", "prim_albedo"):
        np.testing.assert_array_equal(moved[key], data[key])
    assert np.abs(moved["cam_to_world"] - data["cam_to_world"]).max() > 0.1
    scene = {k: moved[k] for k in scenes._SCENE_KEYS}
    again = render(scene, moved["intrinsics"], moved["cam_to_world"], SMALL)
    np.testing.assert_array_equal(again["mask"], data["mask"])
    np.testing.assert_allclose(again["depth"], data["depth"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(again["colour"], data["colour"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(occupancy(scene, moved["points"]), data["occupancy"])
    orig = {k: data[k] for k in scenes._SCENE_KEYS}
    np.testing.assert_allclose(scene_sdf(scene, moved["points"]), scene_sdf(orig, data["points"]), atol=1e-12)
    # rays move by the Plücker action
    rays, moved_rays = scene_rays(data), scene_rays(moved)
    qt, ut = torch.from_numpy(np.asarray(q)), torch.from_numpy(np.asarray(u))
    if batched_motion:
        qt, ut = qt[:, None, None], ut[:, None, None]
    np.testing.assert_allclose(moved_rays, transform_rays(qt, ut, torch.from_numpy(rays)).numpy(), atol=1e-12)
    np.testing.assert_allclose(apply_se3({**data, "rays": rays}, q, u)["rays"], moved_rays, atol=1e-12)
    # one scene without the batch axis
    single = apply_se3({k: v[0] for k, v in data.items() if k != "image_size"}, haar_rotations(rng, 1)[0],
                       np.ones(3))
    one = render({k: single[k] for k in scenes._SCENE_KEYS}, single["intrinsics"], single["cam_to_world"], SMALL)
    np.testing.assert_allclose(one["depth"], data["depth"][0], rtol=0, atol=1e-9)


def test_world_frame_light_would_break_consistency():
    """Sanity of the check above: turning only the cameras changes the images."""
    data = sample_scenes(1, SMALL, seed=8)
    q = haar_rotations(np.random.default_rng(9), 1)[0]
    cams = apply_se3({"cam_to_world": data["cam_to_world"]}, q, np.zeros(3))["cam_to_world"]
    scene = {k: data[k] for k in scenes._SCENE_KEYS}
    assert not np.allclose(render(scene, data["intrinsics"], cams, SMALL)["depth"], data["depth"])


# --------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------
def test_seeds_are_reproducible_and_prefix_stable(monkeypatch):
    a = sample_scenes(5, TINY, seed=11)
    b = sample_scenes(3, TINY, seed=11)
    for k in a:
        np.testing.assert_array_equal(a[k] if k == "image_size" else a[k][:3], b[k])
    monkeypatch.setattr(scenes, "_CHUNK", 2)
    c = sample_scenes(5, TINY, seed=11)
    for k in a:
        np.testing.assert_array_equal(a[k], c[k])
    d = sample_scenes(5, TINY, seed=12)
    assert not np.array_equal(a["prim_translation"], d["prim_translation"])
    assert (a["prim_kind"] >= 0).sum(1).min() >= TINY.n_primitives[0]
    empty = sample_scenes(0, TINY)
    assert empty["depth"].shape == (0, 2, 30) and empty["prim_kind"].shape == (0, 4)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def test_generate_load_round_trip(tmp_path):
    paths = generate(tmp_path, 3, 2, 1, TINY, seed=4)
    assert set(paths) == {"train", "val", "test"} and all(p.is_file() for p in paths.values())
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["format"] == "eqt.data.scenes" and meta["splits"]["val"]["size"] == 2
    assert SceneConfig.from_dict(meta["splits"]["train"]["config"]) == TINY
    train = load(tmp_path, "train")
    ref = sample_scenes(3, TINY, seed=split_seed(4, "train"))
    for k, v in ref.items():
        np.testing.assert_array_equal(train[k], v.astype(scenes._STORE_DTYPES[k]).astype(train[k].dtype))
    assert train["depth"].dtype == np.float32 and train["cam_to_world"].dtype == np.float64
    assert train["prim_kind"].dtype == np.int64
    assert train["rays"].shape == (3, 2, 30, 6) and train["rays"].dtype == np.float32
    np.testing.assert_allclose(train["rays"], scene_rays(ref), atol=1e-6)
    np.testing.assert_array_equal(occupancy({k: train[k] for k in scenes._SCENE_KEYS}, train["points"]),
                                  train["occupancy"])  # float32 points keep exact labels
    assert not np.array_equal(load(tmp_path, "val", rays=False)["points"][:1], train["points"][:1])
    assert "rays" not in load(tmp_path, "test", rays=False)
    # up-to-date splits are kept; overwrite rewrites
    mtime = paths["train"].stat().st_mtime_ns
    generate(tmp_path, 3, 2, 1, TINY, seed=4)
    assert paths["train"].stat().st_mtime_ns == mtime
    generate(tmp_path, 3, 0, 0, TINY, seed=4, overwrite=True)
    assert paths["train"].stat().st_mtime_ns != mtime
    assert set(json.loads((tmp_path / "meta.json").read_text())["splits"]) == {"train", "val", "test"}


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train\.npz not found"):
        load(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown scene split 'eval'"):
        load(tmp_path, "eval")
    generate(tmp_path, 2, 0, 1, TINY, seed=0)
    path = tmp_path / "train.npz"
    good = dict(np.load(path))
    np.savez(path, **{k: v for k, v in good.items() if k != "depth"})
    with pytest.raises(ValueError, match=re.escape(f"scene split file {path} lacks depth")):
        load(tmp_path, "train")
    np.savez(path, **{**good, "colour": good["colour"][:, :1]})
    with pytest.raises(ValueError, match=re.escape(f"scene split file {path}: colour must have shape")):
        load(tmp_path, "train")
    np.savez(path, **{**good, "depth": good["depth"].astype(np.float64)})
    with pytest.raises(ValueError, match="depth has dtype float64, expected float32"):
        load(tmp_path, "train")
    np.savez(path, **{k: v[:1] if k != "image_size" else v for k, v in good.items()})
    with pytest.raises(ValueError, match=r"has 1 scenes, meta\.json says 2"):
        load(tmp_path, "train")
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=re.escape(f"cannot read scene split file {path}")) as exc:
        load(tmp_path, "train")
    assert "\n" not in str(exc.value)
    (tmp_path / "test.npz").write_bytes(path.read_bytes()[:0])
    with pytest.raises(ValueError, match=r"test\.npz"):
        load(tmp_path, "test")
    # generate repairs a corrupt split that meta.json still lists
    generate(tmp_path, 2, 0, 1, TINY, seed=0)
    assert load(tmp_path, "train", rays=False)["depth"].shape == (2, 2, 30)


def test_bad_inputs_raise_one_line_errors():
    data = sample_scenes(1, TINY, seed=0)
    scene = {k: data[k][0] for k in scenes._SCENE_KEYS}
    k, c2w = data["intrinsics"][0], data["cam_to_world"][0]
    inside = c2w.copy()
    inside[1, :3, 3] = scene["prim_translation"][0]
    cases = [
        (lambda: render(scene, k[:0], c2w[:0], TINY), "no views \\(V = 0\\)"),
        (lambda: render(scene, k, c2w * np.array([1, 1, 1, 1.0]) * 1.01, TINY), "degenerate camera pose"),
        (lambda: render(scene, k, c2w @ np.diag([-1.0, 1, 1, 1]), TINY), "degenerate camera pose"),
        (lambda: render(scene, k * np.array([[0.0], [1], [1]]), c2w, TINY), "degenerate intrinsics"),
        (lambda: render(scene, k, inside, TINY), "camera 1 is inside the scene"),
        (lambda: render(scene, k, c2w, "config"), "config must be a SceneConfig"),
        (lambda: render({**scene, "prim_params": scene["prim_params"][:1]}, k, c2w, TINY),
         "prim_params must have shape"),
        (lambda: render({**scene, "prim_kind": scene["prim_kind"] + 7}, k, c2w, TINY), "prim_kind values"),
        (lambda: cast_rays(scene, np.zeros((2, 3)), np.zeros((2, 3))), "directions non-zero"),
        (lambda: scene_sdf(scene, np.zeros((2, 2))), "points must be \\(Q, 3\\)"),
        (lambda: primitive_sdf("cone", np.ones(3), np.zeros(3)), "unknown kind 'cone'"),
        (lambda: apply_se3(data, np.diag([1.0, 1, -1]), np.zeros(3)), "proper rotation"),
        (lambda: apply_se3(data, 2 * np.eye(3), np.zeros(3)), "proper rotation"),
        (lambda: apply_se3(data, np.stack([np.eye(3)] * 2), np.zeros((2, 3))), "need a batch of 2 scenes"),
        (lambda: apply_se3(data, np.eye(3), np.zeros(2)), "translation"),
        (lambda: sample_scenes(-1, TINY), "n must be an int >= 0"),
        (lambda: sample_scenes(1, TINY, seed=-2), "seed must be an int >= 0"),
        (lambda: sample_scenes(1, {"n_views": 2}), "config must be a SceneConfig"),
        (lambda: generate("/nonexistent-not-created", -1, 0, 0, TINY), "n_train must be an int >= 0"),
    ]
    for fn, message in cases:
        with pytest.raises(ValueError, match=message) as exc:
            fn()
        assert "\n" not in str(exc.value), str(exc.value)


def test_pixels_are_row_major():
    """Ray ``v * W + u`` of a view goes through pixel (u, v), as pixels_grid orders them."""
    data = sample_scenes(1, TINY, seed=1)
    rays = scene_rays(data)[0, 0]
    pix = pixels_grid(TINY.height, TINY.width, dtype=torch.float64)
    want = camera_rays(torch.from_numpy(data["intrinsics"][0, 0]), torch.from_numpy(data["cam_to_world"][0, 0]),
                       pix).numpy()
    np.testing.assert_allclose(rays, want, rtol=0, atol=1e-15)  # torch's batched matmul may round differently
    assert tuple(data["image_size"]) == (TINY.height, TINY.width)
