"""Tests of the MuJoCo rigid-body data: sampling, physics sanity, E(3) consistency, files, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eqt.data import rigid
from eqt.data.rigid import (
    SHAPES,
    RigidConfig,
    apply_e3,
    generate,
    load,
    sample_scenes,
    scene_xml,
    simulate,
    simulate_scenes,
)
from eqt.data.store import split_seed
from eqt.primitives.rotations import haar_rotations

mujoco = pytest.importorskip("mujoco")

# Short simulations keep the file fast; the protocol is the same as with the defaults.
FAST = RigidConfig(n_bodies=5, warmup=20, history=2, history_stride=5, horizon=30)
TINY = RigidConfig(n_bodies=3, warmup=5, history=2, history_stride=2, horizon=5)


def _energy(mass, inertia, pos, rot, vel, angvel, gravity):
    """Total energy (n, S) of states (n, S, B, ...) with body-frame inertia (n, B, 3, 3)."""
    world_inertia = np.einsum("nsbij,nbjk,nsblk->nsbil", rot, inertia, rot)
    kinetic = 0.5 * mass[:, None] * (vel**2).sum(-1)
    kinetic += 0.5 * np.einsum("nsbi,nsbij,nsbj->nsb", angvel, world_inertia, angvel)
    potential = -mass[:, None] * np.einsum("nsbi,ni->nsb", pos, gravity)
    return (kinetic + potential).sum(-1)


def _scene(kinds, sizes, pos, vel=None, angvel=None, gravity=(0.0, 0.0, -9.81), rot=None, vertices=None):
    """One explicit scene as a batch of one (floor z = 0)."""
    b = len(kinds)
    size = np.zeros((b, 3))
    for j, s in enumerate(sizes):
        size[j, : len(s)] = s
    scene = {
        "kind": np.array([[SHAPES.index(k) for k in kinds]]),
        "size": size[None],
        "mass": np.ones((1, b)),
        "pos": np.asarray(pos, dtype=float)[None],
        "rot": (np.broadcast_to(np.eye(3), (b, 3, 3)) if rot is None else np.asarray(rot))[None],
        "vel": (np.zeros((b, 3)) if vel is None else np.asarray(vel, dtype=float))[None],
        "angvel": (np.zeros((b, 3)) if angvel is None else np.asarray(angvel, dtype=float))[None],
        "floor_point": np.zeros((1, 3)),
        "floor_normal": np.array([[0.0, 0.0, 1.0]]),
        "gravity": np.asarray(gravity, dtype=float)[None],
    }
    if vertices is not None:
        scene["vertices"] = np.asarray(vertices, dtype=float)[None]
    return scene


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_bodies": 0}, "n_bodies must be >= 1"),
        ({"n_bodies": 2.0}, "n_bodies must be an int"),
        ({"shapes": ("box", "cone")}, "shapes must be distinct names"),
        ({"shapes": ()}, "shapes must be distinct names"),
        ({"size": (0.0, 0.1)}, "size must satisfy 0 < min"),
        ({"mass": (2.0, 1.0)}, "mass must satisfy"),
        ({"height": (-0.1, 0.1)}, "height must satisfy 0 <= min"),
        ({"size": 0.1}, r"size must be a \(min, max\) pair"),
        ({"mesh_points": 3}, "mesh_points must be >= 4"),
        ({"arena": 0.0}, "arena must be a finite number > 0"),
        ({"timestep": float("nan")}, "timestep must be a finite number > 0"),
        ({"friction": -1.0}, "friction must be a finite number >= 0"),
        ({"integrator": "euler"}, "integrator must be one of"),
        ({"history": 0}, "history must be >= 1"),
        ({"horizon": 0}, "horizon must be >= 1"),
        ({"random_rotation": 1}, "random_rotation must be a bool"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RigidConfig(**kwargs)


def test_config_round_trips_and_rejects_unknown_keys():
    cfg = RigidConfig(shapes=("box", "mesh"), size=(0.05, 0.1), n_bodies=4)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert RigidConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown key 'n_body' for RigidConfig; did you mean 'n_bodies'"):
        RigidConfig.from_dict({"n_body": 3})
    assert cfg.replace(horizon=7).horizon == 7
    assert RigidConfig(warmup=10, history=3, history_stride=4, horizon=20).steps == (10, 14, 18, 38)


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------
def test_sample_scenes_shapes_determinism_and_prefix():
    a = sample_scenes(6, FAST, seed=3)
    b = sample_scenes(6, FAST, seed=3)
    c = sample_scenes(2, FAST, seed=3)
    e = sample_scenes(2, FAST, seed=4)
    assert a["kind"].shape == (6, 5) and a["kind"].dtype == np.int64
    assert a["vertices"].shape == (6, 5, FAST.mesh_points, 3) and a["rot"].shape == (6, 5, 3, 3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k][:2], c[k])
    assert not np.allclose(c["pos"], e["pos"])
    empty = sample_scenes(0, FAST)
    assert empty["pos"].shape == (0, 5, 3) and empty["vertices"].shape == (0, 5, FAST.mesh_points, 3)


def test_sampled_bodies_follow_the_protocol():
    s = sample_scenes(40, RigidConfig(n_bodies=6), seed=1)
    kind, size, verts = s["kind"], s["size"], s["vertices"]
    assert set(np.unique(kind)) == {0, 1, 2, 3}
    lo, hi = RigidConfig().size
    assert (size[kind == 0] >= lo).all() and (size[kind == 0] <= hi).all()
    assert (size[kind == 1][:, 1:] == 0).all() and (size[kind == 2][:, 2] == 0).all()
    assert (verts[kind != 3] == 0).all() and (size[kind == 3] == 0).all()
    dist = np.linalg.norm(verts[kind == 3], axis=-1)
    assert dist.max() <= 1.2 * hi  # points at distance in size, then shifted by the small centroid
    for v in verts[kind == 3][:5]:  # the hull's centre of mass is the body origin
        centroid, volume, _ = rigid._hull_centroid(v)
        np.testing.assert_allclose(centroid, 0.0, atol=1e-12)
        assert volume > 0
    rot = s["rot"]
    gram = np.einsum("...ji,...jk->...ik", rot, rot)
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0)
    assert np.linalg.norm(s["vel"], axis=-1).max() <= 1.0 and np.linalg.norm(s["angvel"], axis=-1).max() <= 6.0
    assert np.all(np.log(s["mass"]) >= np.log(0.2) - 1e-12) and np.all(s["mass"] <= 2.0)
    np.testing.assert_array_equal(s["gravity"], np.broadcast_to([0.0, 0.0, -9.81], (40, 3)))


def test_no_initial_overlap():
    cfg = RigidConfig(n_bodies=10)  # as crowded as the defaults allow
    s = sample_scenes(20, cfg, seed=2)
    r, pos = s["radius"], s["pos"]
    gap = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1) - r[:, :, None] - r[:, None]
    off_diagonal = ~np.eye(10, dtype=bool)
    assert (gap[:, off_diagonal] > 0).all()
    assert (pos[..., 2] - r >= 0).all() and (pos[..., 2] - r <= 0.5).all()
    assert (np.abs(pos[..., :2]) <= 0.4).all()
    simulate_scenes(s, [0], cfg)  # MuJoCo's exact collision check agrees: no penetration


def test_impossible_placement_is_a_clear_error():
    cfg = RigidConfig(n_bodies=40, arena=0.05, height=(0.0, 0.01), max_tries=50)
    with pytest.raises(ValueError, match=r"could not place body \d+ of 40 without overlap in 50 tries"):
        sample_scenes(1, cfg)


# --------------------------------------------------------------------------------------------
# Explicit scenes: bad input
# --------------------------------------------------------------------------------------------
def test_overlapping_explicit_bodies_are_rejected():
    boxes = _scene(["box", "sphere"], [(0.1, 0.1, 0.1), (0.1,)], [[0, 0, 0.5], [0.15, 0, 0.5]])
    with pytest.raises(ValueError, match=r"scene 0: bodies 0 \(box\) and 1 \(sphere\) overlap by 0.05"):
        simulate_scenes(boxes, [0, 10])
    sunk = _scene(["sphere", "capsule"], [(0.1,), (0.05, 0.1)], [[0, 0, 0.05], [1, 0, 0.5]])
    with pytest.raises(ValueError, match=r"scene 0: body 0 \(sphere\) penetrates the floor by 0.05"):
        simulate_scenes(sunk, [0])
    # Bounding spheres overlap but the boxes do not (the check is MuJoCo's, not a sphere test).
    close = _scene(["box", "box"], [(0.1, 0.1, 0.1), (0.1, 0.1, 0.1)], [[0, 0, 0.5], [0.21, 0, 0.5]])
    simulate_scenes(close, [0])


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: s.pop("gravity"), "scenes lack gravity"),
        (lambda s: s.__setitem__("pos", s["pos"][:, :1]), r"pos must have shape \(1, 2, 3\)"),
        (lambda s: s.__setitem__("mass", -s["mass"]), "masses must be > 0"),
        (lambda s: s.__setitem__("rot", 2 * s["rot"]), "rot must hold proper rotation matrices"),
        (lambda s: s.__setitem__("rot", -s["rot"]), "rot must hold proper rotation matrices"),
        (lambda s: s.__setitem__("floor_normal", 2 * s["floor_normal"]), "floor_normal must be unit"),
        (lambda s: s.__setitem__("kind", s["kind"] + 3), "kind must index SHAPES"),
        (lambda s: s.__setitem__("size", 0 * s["size"]), "size parameters must be > 0"),
        (lambda s: s.__setitem__("vel", np.nan * s["vel"]), "vel must be finite"),
    ],
)
def test_malformed_scenes_are_rejected(change, match):
    scene = _scene(["sphere", "box"], [(0.1,), (0.1, 0.1, 0.1)], [[0, 0, 0.5], [1, 0, 0.5]])
    change(scene)
    with pytest.raises(ValueError, match=match):
        simulate_scenes(scene, [0])


def test_bad_steps_threads_and_missing_vertices():
    scene = _scene(["sphere"], [(0.1,)], [[0, 0, 0.5]])
    for steps, match in (([], "non-empty"), ([5, 2], "non-decreasing"), ([-1], "non-negative"), ([0.5], "ints")):
        with pytest.raises(ValueError, match=match):
            simulate_scenes(scene, steps)
    with pytest.raises(ValueError, match="nthread must be an int >= 1"):
        simulate_scenes(scene, [0], nthread=0)
    mesh = _scene(["mesh"], [()], [[0, 0, 0.5]])
    with pytest.raises(ValueError, match="meshes .* need vertices"):
        simulate_scenes(mesh, [0])
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        simulate(-1)
    with pytest.raises(ValueError, match="config must be a RigidConfig"):
        simulate(1, config={"n_bodies": 2})


# --------------------------------------------------------------------------------------------
# Physics
# --------------------------------------------------------------------------------------------
def test_free_flight_without_gravity_is_exact():
    """No gravity, no contacts: the centre of mass moves on a straight line at constant speed."""
    rng = np.random.default_rng(0)
    verts = np.zeros((4, 8, 3))
    pts = rng.normal(size=(8, 3)) * 0.1
    verts[3] = pts - rigid._hull_centroid(pts)[0]
    rot = haar_rotations(rng, 4)
    scene = _scene(
        ["box", "sphere", "capsule", "mesh"],
        [(0.05, 0.1, 0.2), (0.1,), (0.05, 0.1), ()],
        [[0, 0, 5], [2, 0, 5], [0, 2, 5], [2, 2, 5]],
        vel=rng.uniform(-0.5, 0.5, (4, 3)),
        angvel=rng.uniform(-5, 5, (4, 3)),
        gravity=(0.0, 0.0, 0.0),
        rot=rot,
        vertices=verts,
    )
    steps = [0, 100, 250, 500]
    for integrator in ("Euler", "implicitfast", "RK4"):
        out = simulate_scenes(scene, steps, RigidConfig(integrator=integrator))
        t = np.array(steps) * RigidConfig().timestep
        expected = scene["pos"][:, None] + t[None, :, None, None] * scene["vel"][:, None]
        err = np.abs(out["pos"] - expected).max(axis=(0, 1, 3))  # per body
        assert err[:3].max() < 1e-11  # box, sphere, capsule: exact up to rounding
        assert err[3] < 1e-6  # mesh: MuJoCo stores it in float32, its centre of mass is ~1e-9 off
        np.testing.assert_allclose(out["vel"], np.broadcast_to(scene["vel"][:, None], out["vel"].shape), atol=1e-7)
        np.testing.assert_allclose(out["angvel"][:, 0], scene["angvel"], atol=1e-12)
        np.testing.assert_allclose(out["rot"][:, 0], scene["rot"], atol=1e-12)
        # Angular momentum about the centre of mass is conserved (up to the integrator's error).
        i_world = np.einsum("nsbij,nbjk,nsblk->nsbil", out["rot"], out["inertia"], out["rot"])
        ang_mom = np.einsum("nsbij,nsbj->nsbi", i_world, out["angvel"])
        drift = np.abs(ang_mom - ang_mom[:, :1]).max() / np.abs(ang_mom).max()
        assert drift < (1e-8 if integrator == "RK4" else 0.05), (integrator, drift)
    # The sphere spins at constant angular velocity; its inertia is 2/5 m r^2.
    np.testing.assert_allclose(out["angvel"][0, :, 1], np.broadcast_to(scene["angvel"][0, 1], (4, 3)), atol=1e-9)
    np.testing.assert_allclose(out["inertia"][0, 1], 0.4 * 0.1**2 * np.eye(3), rtol=1e-6)


def test_head_on_collision_conserves_momentum_and_stops_the_approach():
    scene = _scene(["sphere", "sphere"], [(0.1,), (0.1,)], [[-0.3, 0, 1], [0.3, 0, 1]],
                   vel=[[1.0, 0, 0], [-1.0, 0, 0]], gravity=(0.0, 0.0, 0.0))  # fmt: skip
    scene["mass"] = np.array([[1.0, 2.0]])
    out = simulate_scenes(scene, [0, 50, 100, 200, 300])
    mom = np.einsum("b,nsbi->nsi", scene["mass"][0], out["vel"])
    np.testing.assert_allclose(mom, np.broadcast_to([[-1.0, 0, 0]], mom.shape), atol=1e-9)
    gap = out["pos"][0, :, 1, 0] - out["pos"][0, :, 0, 0] - 0.2
    assert gap.min() > -5e-3  # soft contact: at most millimetres of penetration
    rel = out["vel"][0, -1, 1, 0] - out["vel"][0, -1, 0, 0]
    assert rel > -1e-6  # no longer approaching: they collided (approach speed was 2)
    assert abs(out["vel"][0, -1, 0, 0] - 1.0) > 0.5  # the light sphere was stopped or turned back


def test_bodies_fall_collide_and_come_to_rest_above_the_floor():
    cfg = RigidConfig(n_bodies=8)
    scenes = sample_scenes(3, cfg, seed=7)
    steps = [0, 100, 200, 400, 800, 1500]
    out = simulate_scenes(scenes, steps, cfg)
    energy = _energy(
        scenes["mass"], out["inertia"], out["pos"], out["rot"], out["vel"], out["angvel"], scenes["gravity"]
    )
    assert (np.diff(energy, axis=1) < 1e-3 * np.abs(energy[:, :1])).all()  # friction and soft contacts dissipate
    assert (energy[:, -1] < energy[:, 0] - 0.1).all()
    assert (out["pos"][:, -1, :, 2] < scenes["pos"][..., 2]).all()  # everything fell
    assert (out["pos"][:, -1, :, 2] > 0).all()
    final = {**scenes, **{k: out[k][:, -1] for k in ("pos", "rot", "vel", "angvel")}}
    simulate_scenes(final, [0], cfg.replace(overlap_tol=5e-3))  # no penetration beyond 5 mm
    # A body-body contact happened in every scene (MuJoCo's contact list, stepped by hand).
    for i in range(3):
        model = mujoco.MjModel.from_xml_string(scene_xml({k: v[i] for k, v in scenes.items()}, cfg))
        data = mujoco.MjData(model)
        mujoco.mj_resetDataKeyframe(model, data, 0)
        body_body = 0
        for _ in range(400):
            mujoco.mj_step(model, data)
            body_body += sum(1 for c in data.contact[: data.ncon] if min(c.geom) > 0) if data.ncon else 0
        assert body_body > 0


def test_spheres_rest_on_the_floor():
    cfg = RigidConfig(n_bodies=6, shapes=("sphere",))
    s = sample_scenes(2, cfg, seed=1)
    out = simulate_scenes(s, [1500], cfg)
    clearance = out["pos"][:, 0, :, 2] - s["size"][..., 0]
    assert clearance.min() > -2e-3 and clearance.max() < 0.05  # on (or touching) the floor, none floating


def test_mujoco_dynamics_are_e3_equivariant():
    """A scene built in a rotated and translated frame (floor and gravity rotated too) evolves as
    the original one, rotated. Holds with contacts because the friction cones are elliptic."""
    cfg = RigidConfig(n_bodies=8)
    scenes = sample_scenes(3, cfg, seed=11)
    rng = np.random.default_rng(12)
    r = haar_rotations(rng, 3)
    t = rng.normal(0, 3.0, size=(3, 3))
    moved = apply_e3(scenes, r, t)
    assert not np.allclose(moved["floor_normal"], [0, 0, 1])
    steps = [0, 50, 100, 200, 300]
    a = simulate_scenes(scenes, steps, cfg)
    b = simulate_scenes(moved, steps, cfg)
    a_moved = apply_e3({k: a[k] for k in ("pos", "rot", "quat", "vel", "angvel")}, r, t)
    for key, tol in (("pos", 1e-8), ("rot", 1e-8), ("vel", 1e-7), ("angvel", 1e-6)):  # measured: < 1e-11
        np.testing.assert_allclose(b[key], a_moved[key], rtol=0, atol=tol, err_msg=key)
    np.testing.assert_allclose(b["inertia"], a["inertia"], rtol=1e-6, atol=1e-12)
    assert np.abs(a["pos"][:, -1] - a["pos"][:, 0]).max() > 0.1  # things happened


def test_pyramidal_friction_cones_would_break_equivariance(monkeypatch):
    """Why the scenes use elliptic cones: MuJoCo's default pyramid depends on the contact frame."""
    cfg = RigidConfig(n_bodies=8)
    scenes = sample_scenes(2, cfg, seed=11)
    r = haar_rotations(np.random.default_rng(12), 2)
    moved = apply_e3(scenes, r)
    original = rigid.scene_xml
    monkeypatch.setattr(rigid, "scene_xml", lambda s, c=cfg: original(s, c).replace(' cone="elliptic"', ""))
    assert 'cone="elliptic"' not in rigid.scene_xml({k: v[0] for k, v in scenes.items()})
    a = simulate_scenes(scenes, [200], cfg)
    b = simulate_scenes(moved, [200], cfg)
    assert np.abs(b["pos"] - apply_e3({"pos": a["pos"]}, r)["pos"]).max() > 1e-3


# --------------------------------------------------------------------------------------------
# Data sets and the E(3) action
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fast_data():
    return simulate(4, FAST, seed=5)


def test_simulate_shapes_determinism_and_threads(fast_data):
    d = fast_data
    n, h, b, v, k = 4, 2, 5, FAST.mesh_points, len(SHAPES)
    assert d["pos"].shape == (n, h, b, 3) and d["rot"].shape == (n, h, b, 3, 3) and d["quat"].shape == (n, h, b, 4)
    assert d["target_pos"].shape == (n, b, 3) and d["target_rot"].shape == (n, b, 3, 3)
    assert d["kind_onehot"].shape == (n, b, k) and d["vertices"].shape == (n, b, v, 3)
    np.testing.assert_array_equal(d["kind_onehot"].argmax(-1), d["kind"])
    again = simulate(2, FAST, seed=5, nthread=2)
    for key in d:
        np.testing.assert_array_equal(d[key][:2], again[key], err_msg=key)
    # quat and rot agree; the current state is the last history frame
    np.testing.assert_allclose(rigid._to_rot(d["quat"]), d["rot"], atol=1e-12)
    traj = simulate_scenes(sample_scenes(1, FAST, seed=5), FAST.steps, FAST)
    np.testing.assert_array_equal(traj["pos"][0, -1], d["target_pos"][0])
    np.testing.assert_array_equal(traj["pos"][0, :2], d["pos"][0])


def test_random_frame_option():
    cfg = TINY.replace(random_rotation=True, translation_std=5.0)
    d = simulate(3, cfg, seed=0)
    n = d["floor_normal"]
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0)
    assert np.abs(n[:, 2]).max() < 0.999
    np.testing.assert_allclose(d["gravity"], -9.81 * n, atol=1e-12)
    height = np.einsum("nhbi,ni->nhb", d["pos"] - d["floor_point"][:, None, None], n)
    assert (height > 0).all()


def test_apply_e3_round_trip_and_action(fast_data):
    d = fast_data
    rng = np.random.default_rng(3)
    r = haar_rotations(rng, 4)
    r[1::2, :, 0] *= -1  # two reflections
    t = rng.normal(size=(4, 3))
    moved = apply_e3(d, r, t)
    back = apply_e3(moved, np.swapaxes(r, 1, 2), -np.einsum("nji,nj->ni", r, t))
    for key in d:
        np.testing.assert_allclose(back[key], d[key], rtol=0, atol=1e-12, err_msg=key)
    det = np.linalg.det(r)
    expected_angvel = det[:, None, None, None] * np.einsum("nij,nhbj->nhbi", r, d["angvel"])
    np.testing.assert_allclose(moved["angvel"], expected_angvel, atol=1e-12)  # a pseudovector
    np.testing.assert_allclose(np.linalg.det(moved["rot"]), np.broadcast_to(det[:, None, None], (4, 2, 5)), atol=1e-12)
    proper = det[:, None, None, None, None] * moved["rot"]
    np.testing.assert_allclose(rigid._to_rot(moved["quat"]), proper, atol=1e-12)
    # The world points of every mesh move as points: pos + rot @ vertices -> R (.) + t.
    world = d["target_pos"][..., None, :] + np.einsum("nbij,nbvj->nbvi", d["target_rot"], d["vertices"])
    world_moved = moved["target_pos"][..., None, :]
    world_moved = world_moved + np.einsum("nbij,nbvj->nbvi", moved["target_rot"], moved["vertices"])
    np.testing.assert_allclose(world_moved, np.einsum("nij,nbvj->nbvi", r, world) + t[:, None, None], atol=1e-12)
    for key in ("kind", "size", "vertices", "mass", "inertia", "radius", "kind_onehot"):
        np.testing.assert_array_equal(moved[key], d[key])
    # One (3, 3) rotation for the whole batch is the same as repeating it.
    single = apply_e3(d, r[0], t[0])
    tiled = apply_e3(d, np.broadcast_to(r[0], (4, 3, 3)), np.broadcast_to(t[0], (4, 3)))
    for key in d:
        np.testing.assert_allclose(single[key], tiled[key], atol=1e-14)


def test_apply_e3_errors(fast_data):
    with pytest.raises(ValueError, match="unknown keys 'x'"):
        apply_e3({"x": np.zeros((1, 3))}, np.eye(3))
    with pytest.raises(ValueError, match="rotation must be orthogonal"):
        apply_e3(fast_data, 2 * np.eye(3))
    with pytest.raises(ValueError, match=r"rotation must have shape \(3, 3\) or \(n, 3, 3\)"):
        apply_e3(fast_data, np.eye(4))
    with pytest.raises(ValueError, match="pos has 4 samples, the rotation or translation 3"):
        apply_e3({"pos": fast_data["pos"]}, np.broadcast_to(np.eye(3), (3, 3, 3)))
    with pytest.raises(ValueError, match="disagree on the sample count"):
        apply_e3(fast_data, np.broadcast_to(np.eye(3), (4, 3, 3)), np.zeros((3, 3)))


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def test_generate_load_round_trip_cache_and_corruption(tmp_path, monkeypatch):
    paths = generate(tmp_path, 3, 2, 2, TINY, seed=1)
    assert set(paths) == {"train", "val", "test"}
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["format"] == "eqt.data.rigid"
    assert meta["splits"]["val"]["mujoco_version"] == mujoco.__version__
    assert RigidConfig.from_dict(meta["splits"]["val"]["config"]) == TINY
    val = load(tmp_path, "val")
    ref = simulate(2, TINY, seed=split_seed(1, "val"))
    for key in ref:
        np.testing.assert_array_equal(val[key], ref[key], err_msg=key)
        assert val[key].dtype == (np.int64 if key == "kind" else np.float64)
    assert load(tmp_path, "train")["pos"].shape == (3, 2, 3, 3)

    def boom(*args, **kwargs):
        raise AssertionError("regenerated an up-to-date split")

    monkeypatch.setattr(rigid, "simulate", boom)
    generate(tmp_path, 3, 2, 2, TINY, seed=1)  # cached: nothing is simulated
    monkeypatch.undo()

    (tmp_path / "test.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"cannot read rigid-body split file .*test\.npz") as err:
        load(tmp_path, "test")
    assert "\n" not in str(err.value)
    generate(tmp_path, 3, 2, 2, TINY, seed=1)  # rewrites the corrupt split only
    np.testing.assert_array_equal(load(tmp_path, "test")["pos"], simulate(2, TINY, seed=split_seed(1, "test"))["pos"])

    generate(tmp_path, 3, 2, 2, TINY, seed=2)  # another seed: new data
    assert not np.array_equal(load(tmp_path, "val")["pos"], val["pos"])


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown rigid-body split 'eval'"):
        load(tmp_path, "eval")
    with pytest.raises(FileNotFoundError, match=r"train\.npz not found; create it with"):
        load(tmp_path, "train")
    generate(tmp_path, 1, 1, 1, TINY)
    data = load(tmp_path, "train")
    np.savez(tmp_path / "train.npz", **{k: v for k, v in data.items() if k != "gravity"})
    with pytest.raises(ValueError, match=r"train\.npz lacks gravity"):
        load(tmp_path, "train")
    np.savez(tmp_path / "train.npz", **{**data, "mass": data["mass"][:, :2]})
    with pytest.raises(ValueError, match=r"train\.npz: mass must have shape \(1, 3\)"):
        load(tmp_path, "train")
    np.savez(tmp_path / "train.npz", **{k: np.concatenate([v, v]) for k, v in data.items()})
    with pytest.raises(ValueError, match=r"train\.npz has 2 samples, meta.json says 1"):
        load(tmp_path, "train")


def test_generate_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_val must be an int >= 1"):
        generate(tmp_path, 1, 0, 1, TINY)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        generate(tmp_path, 1, 1, 1, TINY, seed=-1)
    with pytest.raises(ValueError, match="config must be a RigidConfig"):
        generate(tmp_path, 1, 1, 1, TINY.to_dict())


def test_command_line(tmp_path, capsys):
    cfg = json.dumps(TINY.to_dict())
    assert rigid._main([str(tmp_path), "--n-train", "1", "--n-val", "1", "--n-test", "1", "--config", cfg]) == 0
    assert "train:" in capsys.readouterr().out
    assert load(tmp_path, "test")["pos"].shape == (1, 2, 3, 3)
    with pytest.raises(SystemExit):
        rigid._main([str(tmp_path), "--config", '{"n_bodys": 2}'])
