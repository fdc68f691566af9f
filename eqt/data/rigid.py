"""Rigid bodies falling and colliding on a floor, simulated with MuJoCo (issue 9's benchmark data).

The task of "Does equivariance matter at scale?" (Brehmer et al. 2024) is rigid-body interaction;
its simulator and data are not public, so this generator is this library's own. Each sample is a
scene of ``n_bodies`` rigid bodies of four shape kinds (:data:`SHAPES`: box, sphere, capsule and
the convex hull of a few random points) that fall under gravity onto a floor and collide with it
and with each other; the task is to predict every body's pose ``horizon`` steps after the current
state, from the current state and a short history of poses and velocities.

Equivariance. The floor and gravity break E(3), so every sample carries them as inputs: the floor
as a plane (``floor_point`` on it, unit ``floor_normal`` pointing to the side the bodies are on)
and ``gravity`` as a vector. With them, the data set is E(3) equivariant: :func:`apply_e3` moves a
whole sample (bodies, floor, gravity) by a rotation or reflection and a translation, and the
moved sample is again a valid one. MuJoCo itself is rotation equivariant here to ~1e-11 over 1,000
steps with many contacts **because the contacts use elliptic friction cones**
(``cone="elliptic"``); with MuJoCo's default pyramidal cones the friction pyramid is tied to
an arbitrary tangent frame and a rotated scene drifts apart by O(1) within 100 steps
(measured; see ``tests/data/test_rigid.py``).

Sampling of one scene (sample ``i`` draws from ``np.random.default_rng([seed, i])`` only, so the
data are a function of ``(i, config, seed)``; ``simulate(n1)`` is the first ``n1`` samples of
``simulate(n2)``):

1. Kinds uniform over ``config.shapes``. Size parameters uniform in ``config.size``: box three
   half-extents, sphere a radius, capsule a radius and the half-length of its cylinder (along the
   body z axis), mesh ``mesh_points`` points in random directions at distances in ``size``,
   shifted so that the centroid of their convex hull (the solid's centre of mass) is at the
   origin; hulls thinner than a tenth of the size are redrawn.
2. Masses log-uniform in ``config.mass``; uniform density, so MuJoCo computes the inertia.
3. Orientations Haar-random; linear and angular velocities uniform in balls of radius ``speed``
   and ``angular_speed`` (world frame).
4. Positions by rejection sampling of bounding spheres: horizontal position uniform in the square
   ``[-arena, arena]^2``, height of the bounding sphere's lowest point above the floor uniform in
   ``height``; a position whose bounding sphere overlaps an already placed one is redrawn, and
   ``max_tries`` failures for one body raise a ``ValueError``.
5. Frame: floor ``z = 0`` with normal ``+z``, gravity ``(0, 0, -gravity)``; with
   ``random_rotation`` the whole scene is then rotated by a Haar-random rotation and translated by
   ``N(0, translation_std^2)`` per component, and simulated in that frame.
6. Dynamics: MuJoCo with time step ``timestep``, the ``integrator``, elliptic friction cones,
   sliding friction ``friction`` on every contact and default soft-contact parameters; each scene
   is its own ``MjModel`` (built as MJCF text, :func:`scene_xml`) stepped with ``mj_step`` in its
   own ``MjData``, ``nthread`` scenes at a time. State frames are taken at steps
   ``warmup + k * history_stride`` for ``k = 0 .. history - 1`` (the last is the current state)
   and the target at ``current + horizon``.

Arrays of a data set (``n`` samples, ``H = history``, ``B = n_bodies``, ``V = mesh_points``,
``K = len(SHAPES)``; float64 except ``kind``):

- body properties (invariant): ``kind`` (n, B) int64 index into :data:`SHAPES`, ``kind_onehot``
  (n, B, K), ``size`` (n, B, 3) (box: half-extents; sphere: (r, 0, 0); capsule: (r, half-length,
  0); mesh: zeros), ``vertices`` (n, B, V, 3) mesh points in the body frame (zeros for the other
  kinds), ``radius`` (n, B) bounding-sphere radius about the centre of mass, ``mass`` (n, B),
  ``inertia`` (n, B, 3, 3) inertia tensor about the centre of mass in the body frame.
- environment: ``floor_point`` (n, 3), ``floor_normal`` (n, 3), ``gravity`` (n, 3).
- history (index ``H - 1`` is the current state): ``pos`` (n, H, B, 3) centre of mass, ``rot``
  (n, H, B, 3, 3) orientation (columns: the body axes in the world frame, ``x_world = pos + rot @
  x_body``), ``quat`` (n, H, B, 4) the same as ``(x, y, z, w)``, ``w >= 0`` (the convention of
  :mod:`eqt.primitives.rotations`), ``vel`` (n, H, B, 3) linear and ``angvel`` (n, H, B, 3) angular
  velocity, both in the world frame.
- targets, ``horizon`` steps after the current state: ``target_pos`` (n, B, 3), ``target_rot``
  (n, B, 3, 3), ``target_quat`` (n, B, 4), ``target_vel`` (n, B, 3), ``target_angvel`` (n, B, 3).

A *scene* (:func:`sample_scenes`, :func:`simulate_scenes`) is the initial state: ``kind``, ``size``,
``vertices``, ``radius``, ``mass`` as above, ``pos``, ``rot``, ``vel``, ``angvel`` (n, B, ...)
without the history axis, and the environment.

Throughput (MuJoCo 4.0.0, measured on this project's machine: 2 shared CPU cores): sampling a
scene takes ~1.3 ms and compiling its model ~5 ms; with the default config (8 bodies, 220 steps
per sample) ``simulate`` makes ~70 samples/s on one thread and ~95 on two (``nthread=2``); 64
scenes of 10 bodies stepped 1,000 times take ~3.9 s on one thread and ~2.7 s on two. In 98% of
10-body scenes two bodies touch within the 220 steps. ``mujoco.rollout`` is not used: it steps a
batch of models with shared ``MjData``, but an ``MjData`` is built for one model, and the models
of scenes with different shapes differ in structure (``body_simple``, ``dof_simplenum``); with a
mismatched ``MjData`` MuJoCo 4.0.0 warns of a singular inertia matrix, resets the simulation at
the first step, and ``rollout`` returns the reset states. Stepping each scene in its own
``MjData`` is as fast on one thread, and ``mj_step`` releases the GIL, so threads scale.

Files: :func:`generate` writes ``{root}/{split}.npz`` for the :data:`SPLITS` and a ``meta.json``;
:func:`load` reads a split back (without MuJoCo). From the shell::

    python -m eqt.data.rigid data/rigid --n-train 10000 --n-val 1000 --n-test 1000 --seed 0

MuJoCo (PyPI ``mujoco``) and SciPy are imported only when scenes are sampled or simulated.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from eqt.config import Config
from eqt.data.store import check_meta, is_number, meta_entry, one_line, read_npz, split_path, write_splits
from eqt.primitives.rotations import haar_rotations, quaternion_to_rotation, rotation_to_quaternion

__all__ = [
    "SHAPES",
    "SPLITS",
    "INTEGRATORS",
    "RigidConfig",
    "sample_scenes",
    "scene_xml",
    "simulate_scenes",
    "simulate",
    "apply_e3",
    "generate",
    "load",
]

SHAPES: tuple[str, ...] = ("box", "sphere", "capsule", "mesh")
"""Shape kinds; ``kind`` arrays index into this tuple, ``kind_onehot`` follows its order."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split names written by :func:`generate`."""

INTEGRATORS: tuple[str, ...] = ("Euler", "implicitfast", "RK4")
"""MuJoCo integrators accepted by :class:`RigidConfig`."""

_CHUNK = 64  # scenes compiled and simulated together (memory only: the data do not depend on it)
_FORMAT_VERSION = 1  # bump when the sampling protocol changes: generate() then rewrites files
_TRY_BLOCK = 32  # candidate positions drawn at once during rejection sampling
_ORTHO_TOL = 1e-6  # tolerance of the orthogonality and unit-normal checks
_MIN_HULL_THICKNESS = 0.1  # mesh hulls thinner than this fraction of size[0] are redrawn
_WHAT = "rigid-body split file"  # how error messages name a split file

_BODY_KEYS = ("kind", "kind_onehot", "size", "vertices", "radius", "mass", "inertia")
_ENV_KEYS = ("floor_point", "floor_normal", "gravity")
_STATE_KEYS = ("pos", "rot", "quat", "vel", "angvel")
_TARGET_KEYS = tuple(f"target_{k}" for k in _STATE_KEYS)
_DATA_KEYS = _BODY_KEYS + _ENV_KEYS + _STATE_KEYS + _TARGET_KEYS
_SCENE_KEYS = ("kind", "size", "mass", "pos", "rot", "vel", "angvel") + _ENV_KEYS

# How apply_e3 acts on each key: x -> R x + t (point), R v (vector), det(R) R w (pseudovector),
# R M (frame: columns are vectors), quaternion of det(R) R M (quat), nothing (invariant).
_ROLES: dict[str, str] = {
    **{k: "invariant" for k in _BODY_KEYS},
    "floor_point": "point",
    "floor_normal": "vector",
    "gravity": "vector",
    **{k: r for k, r in zip(_STATE_KEYS, ("point", "frame", "quat", "vector", "pseudovector"))},
    **{f"target_{k}": r for k, r in zip(_STATE_KEYS, ("point", "frame", "quat", "vector", "pseudovector"))},
}


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
def _pair(name: str, value: Any, positive: bool) -> tuple[float, float]:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"RigidConfig: {name} must be a (min, max) pair, got {value!r}") from None
    if not (is_number(lo) and is_number(hi) and math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"RigidConfig: {name} must hold two finite numbers, got {value!r}")
    if not ((lo > 0.0 if positive else lo >= 0.0) and lo <= hi):
        raise ValueError(f"RigidConfig: {name} must satisfy 0 {'<' if positive else '<='} min <= max, got {value!r}")
    return float(lo), float(hi)


def _int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise ValueError(f"RigidConfig: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"RigidConfig: {name} must be >= {minimum}, got {value}")
    return int(value)


def _float(name: str, value: Any, positive: bool) -> float:
    ok = is_number(value) and math.isfinite(value) and (value > 0.0 if positive else value >= 0.0)
    if not ok:
        raise ValueError(f"RigidConfig: {name} must be a finite number {'>' if positive else '>='} 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RigidConfig(Config):
    """Parameters of the rigid-body scenes and their simulation (SI units: m, kg, s).

    Attributes:
        n_bodies: bodies per scene.
        shapes: shape kinds drawn uniformly, a non-empty subset of :data:`SHAPES`.
        size: (min, max) of every size parameter (half-extent, radius, half-length, mesh point
            distance), uniform.
        mass: (min, max) of the log-uniform masses.
        mesh_points: points per random convex mesh (>= 4); ``V`` of the ``vertices`` array.
        arena: half-width of the square of initial horizontal positions.
        height: (min, max) initial gap between a body's bounding sphere and the floor.
        speed: initial linear velocities are uniform in a ball of this radius.
        angular_speed: initial angular velocities are uniform in a ball of this radius (rad/s).
        gravity: magnitude of the gravitational acceleration.
        friction: sliding friction coefficient of every geom (MuJoCo takes the max of a pair).
        timestep: simulation time step.
        integrator: MuJoCo integrator, one of ``Euler``, ``implicitfast``, ``RK4``.
        warmup: steps from the sampled initial state to the first history frame.
        history: state frames per sample, the last one being the current state (>= 1).
        history_stride: steps between history frames.
        horizon: steps from the current state to the target.
        max_tries: placements tried per body before rejection sampling gives up.
        overlap_tol: penetration depth above which :func:`simulate_scenes` rejects an initial state.
        random_rotation: rotate each scene (floor and gravity included) by a Haar-random rotation.
        translation_std: std of each component of a random translation of each scene.
    """

    n_bodies: int = 8
    shapes: tuple[str, ...] = SHAPES
    size: tuple[float, float] = (0.04, 0.12)
    mass: tuple[float, float] = (0.2, 2.0)
    mesh_points: int = 8
    arena: float = 0.4
    height: tuple[float, float] = (0.0, 0.5)
    speed: float = 1.0
    angular_speed: float = 6.0
    gravity: float = 9.81
    friction: float = 0.8
    timestep: float = 0.002
    integrator: str = "implicitfast"
    warmup: int = 100
    history: int = 3
    history_stride: int = 10
    horizon: int = 100
    max_tries: int = 1000
    overlap_tol: float = 1e-6
    random_rotation: bool = False
    translation_std: float = 0.0

    def __post_init__(self) -> None:

        def set_(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        set_("n_bodies", _int("n_bodies", self.n_bodies, 1))
        shapes = (self.shapes,) if isinstance(self.shapes, str) else self.shapes
        try:
            shapes = tuple(shapes)
        except TypeError:
            raise ValueError(f"RigidConfig: shapes must be a tuple of names, got {self.shapes!r}") from None
        bad = [s for s in shapes if s not in SHAPES]
        if not shapes or bad or len(set(shapes)) != len(shapes):
            raise ValueError(
                f"RigidConfig: shapes must be distinct names from {', '.join(SHAPES)}, got {self.shapes!r}"
            )
        set_("shapes", shapes)
        for name in ("size", "mass", "height"):
            set_(name, _pair(name, getattr(self, name), positive=name != "height"))
        set_("mesh_points", _int("mesh_points", self.mesh_points, 4))
        for name in ("arena", "gravity", "friction", "speed", "angular_speed", "overlap_tol", "translation_std"):
            set_(name, _float(name, getattr(self, name), positive=name == "arena"))
        set_("timestep", _float("timestep", self.timestep, positive=True))
        if self.integrator not in INTEGRATORS:
            raise ValueError(
                f"RigidConfig: integrator must be one of {', '.join(INTEGRATORS)}, got {self.integrator!r}"
            )
        for name, minimum in (("warmup", 0), ("history", 1), ("history_stride", 1), ("horizon", 1), ("max_tries", 1)):
            set_(name, _int(name, getattr(self, name), minimum))
        if not isinstance(self.random_rotation, (bool, np.bool_)):
            raise ValueError(f"RigidConfig: random_rotation must be a bool, got {self.random_rotation!r}")
        set_("random_rotation", bool(self.random_rotation))

    @property
    def current_step(self) -> int:
        """Step of the current state, ``warmup + (history - 1) * history_stride``."""
        return self.warmup + (self.history - 1) * self.history_stride

    @property
    def steps(self) -> tuple[int, ...]:
        """Steps of the ``history`` frames and then of the target (``current_step + horizon``)."""
        frames = tuple(self.warmup + k * self.history_stride for k in range(self.history))
        return frames + (self.current_step + self.horizon,)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (tuples become lists); :meth:`from_dict` inverts it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# --------------------------------------------------------------------------------------------
# Lazy imports, small geometry helpers
# --------------------------------------------------------------------------------------------
def _mujoco():
    try:
        import mujoco
    except ImportError:
        raise ImportError("eqt.data.rigid needs MuJoCo to simulate scenes: pip install mujoco") from None
    return mujoco


def _to_quat(rot: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (x, y, z, w), w >= 0, of proper rotations (..., 3, 3)."""
    if rot.size == 0:
        return np.zeros((*rot.shape[:-2], 4))
    return rotation_to_quaternion(torch.from_numpy(np.ascontiguousarray(rot, dtype=np.float64))).numpy()


def _to_rot(quat: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations of quaternions (..., 4) (x, y, z, w)."""
    if quat.size == 0:
        return np.zeros((*quat.shape[:-1], 3, 3))
    return quaternion_to_rotation(torch.from_numpy(np.ascontiguousarray(quat, dtype=np.float64))).numpy()


def _bounding_radius(kind: np.ndarray, size: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Bounding-sphere radii (...,) about the body origin of bodies ``kind`` (...,)."""
    radius = np.zeros(kind.shape)
    radius = np.where(kind == 0, np.linalg.norm(size, axis=-1), radius)
    radius = np.where(kind == 1, size[..., 0], radius)
    radius = np.where(kind == 2, size[..., 0] + size[..., 1], radius)
    if vertices.shape[-2] > 0:
        radius = np.where(kind == 3, np.linalg.norm(vertices, axis=-1).max(axis=-1), radius)
    return radius


def _hull_centroid(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Centroid, volume and thickness (smallest extent over the facet normals) of a point hull."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(points)
    except QhullError:
        return np.zeros(3), 0.0, 0.0
    apex = points[hull.vertices].mean(axis=0)
    tri = points[hull.simplices] - apex  # (F, 3, 3): tetrahedra apex + triangle
    vol = np.abs(np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))) / 6.0
    centroid = apex + (vol[:, None] * tri.sum(axis=1) / 4.0).sum(axis=0) / vol.sum()
    normals = hull.equations[:, :3]  # (F, 3) unit outward normals
    extent = points @ normals.T  # (P, F)
    thickness = float((extent.max(axis=0) - extent.min(axis=0)).min())
    return centroid, float(vol.sum()), thickness


# --------------------------------------------------------------------------------------------
# Sampling scenes
# --------------------------------------------------------------------------------------------
def _sample_scene(rng: np.random.Generator, config: RigidConfig) -> dict[str, np.ndarray]:
    """One scene (arrays without the leading sample axis) in the canonical frame, then moved."""
    b, v = config.n_bodies, config.mesh_points
    lo, hi = config.size
    choice = rng.integers(0, len(config.shapes), size=b)
    kind = np.array([SHAPES.index(config.shapes[c]) for c in choice], dtype=np.int64)
    params = rng.uniform(lo, hi, size=(b, 3))
    size = np.zeros((b, 3))
    size[kind == 0] = params[kind == 0]
    size[kind == 1, 0] = params[kind == 1, 0]
    size[kind == 2, :2] = params[kind == 2, :2]
    vertices = np.zeros((b, v, 3))
    for j in np.flatnonzero(kind == 3):
        for _ in range(100):
            d = rng.standard_normal((v, 3))
            pts = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(lo, hi, size=(v, 1))
            centroid, _, thickness = _hull_centroid(pts)
            if thickness >= _MIN_HULL_THICKNESS * lo:
                vertices[j] = pts - centroid
                break
        else:  # pragma: no cover - needs 100 nearly flat hulls in a row
            raise RuntimeError("sample_scenes: could not draw a non-degenerate convex mesh in 100 tries")
    log_m = rng.uniform(math.log(config.mass[0]), math.log(config.mass[1]), size=b)
    rot = haar_rotations(rng, b)
    vel = _uniform_ball(rng, b, config.speed)
    angvel = _uniform_ball(rng, b, config.angular_speed)
    radius = _bounding_radius(kind, size, vertices)
    pos = _place(rng, radius, config)
    scene = {
        "kind": kind,
        "size": size,
        "vertices": vertices,
        "radius": radius,
        "mass": np.exp(log_m),
        "pos": pos,
        "rot": rot,
        "vel": vel,
        "angvel": angvel,
        "floor_point": np.zeros(3),
        "floor_normal": np.array([0.0, 0.0, 1.0]),
        "gravity": np.array([0.0, 0.0, -config.gravity]),
    }
    if config.random_rotation or config.translation_std > 0.0:
        r = haar_rotations(rng, 1)[0] if config.random_rotation else np.eye(3)
        t = config.translation_std * rng.standard_normal(3)
        scene = {k: a[0] for k, a in apply_e3({k: a[None] for k, a in scene.items()}, r, t).items()}
    return scene


def _uniform_ball(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    d = rng.standard_normal((n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d * (radius * rng.random((n, 1)) ** (1.0 / 3.0))


def _place(rng: np.random.Generator, radius: np.ndarray, config: RigidConfig) -> np.ndarray:
    """Rejection sampling of non-overlapping bounding spheres above the floor z = 0."""
    pos = np.zeros((len(radius), 3))
    for j, r in enumerate(radius):
        tries = 0
        while True:
            if tries >= config.max_tries:
                raise ValueError(
                    f"sample_scenes: could not place body {j} of {len(radius)} without overlap in "
                    f"{config.max_tries} tries (arena={config.arena}, height={config.height}, "
                    f"size={config.size}); enlarge arena or height, or reduce n_bodies or size"
                )
            k = min(_TRY_BLOCK, config.max_tries - tries)
            cand = np.empty((k, 3))
            cand[:, :2] = rng.uniform(-config.arena, config.arena, size=(k, 2))
            cand[:, 2] = r + rng.uniform(*config.height, size=k)
            gap = np.linalg.norm(cand[:, None, :] - pos[None, :j], axis=-1) - radius[None, :j] - r  # (k, j)
            ok = np.flatnonzero((gap > 0.0).all(axis=1))
            if ok.size:
                pos[j] = cand[ok[0]]
                break
            tries += k
    return pos


def sample_scenes(n: int, config: RigidConfig = RigidConfig(), seed: int = 0) -> dict[str, np.ndarray]:  # noqa: B008
    """Draw ``n`` random initial scenes (the sampling protocol of the module docstring).

    Args:
        n: number of scenes (>= 0).
        config: scene parameters.
        seed: non-negative seed; scene ``i`` uses ``np.random.default_rng([seed, i])``.

    Returns:
        ``kind`` (n, B) int64, ``size`` (n, B, 3), ``vertices`` (n, B, V, 3), ``radius`` (n, B),
        ``mass`` (n, B), ``pos`` (n, B, 3), ``rot`` (n, B, 3, 3), ``vel`` (n, B, 3), ``angvel``
        (n, B, 3), ``floor_point`` (n, 3), ``floor_normal`` (n, 3), ``gravity`` (n, 3).

    Raises:
        ValueError: on bad arguments, or if a body cannot be placed in ``config.max_tries`` tries.
    """
    _check_n_seed(n, seed, "sample_scenes")
    if not isinstance(config, RigidConfig):
        raise ValueError(f"sample_scenes: config must be a RigidConfig, got {type(config).__name__}")
    b, v = config.n_bodies, config.mesh_points
    if n == 0:
        shapes = {"kind": (0, b), "size": (0, b, 3), "vertices": (0, b, v, 3), "radius": (0, b), "mass": (0, b),
                  "pos": (0, b, 3), "rot": (0, b, 3, 3), "vel": (0, b, 3), "angvel": (0, b, 3),
                  "floor_point": (0, 3), "floor_normal": (0, 3), "gravity": (0, 3)}  # fmt: skip
        return {k: np.zeros(s, dtype=np.int64 if k == "kind" else np.float64) for k, s in shapes.items()}
    scenes = [_sample_scene(np.random.default_rng([int(seed), i]), config) for i in range(n)]
    return {k: np.ascontiguousarray(np.stack([s[k] for s in scenes])) for k in scenes[0]}


def _check_n_seed(n: Any, seed: Any, where: str) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{where}: n must be an int >= 0, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"{where}: seed must be an int >= 0, got {seed!r}")


# --------------------------------------------------------------------------------------------
# MuJoCo models
# --------------------------------------------------------------------------------------------
def _fmt(values: Any) -> str:
    return " ".join(f"{float(x):.17g}" for x in np.ravel(values))


def scene_xml(scene: Mapping[str, np.ndarray], config: RigidConfig = RigidConfig()) -> str:  # noqa: B008
    """MJCF text of one scene: floor plane, gravity, one free body per rigid body, initial keyframe.

    The keyframe ``initial`` holds the initial ``qpos``/``qvel`` (load it with
    ``mujoco.mj_resetDataKeyframe(model, data, 0)``); free-joint ``qvel`` holds the linear velocity
    in the world frame and the angular velocity in the body frame.

    Args:
        scene: one scene without the leading sample axis: ``kind`` (B,), ``size`` (B, 3),
            ``vertices`` (B, V, 3) (needed only for meshes), ``mass`` (B,), ``pos`` (B, 3), ``rot``
            (B, 3, 3), ``vel`` (B, 3), ``angvel`` (B, 3), ``floor_point`` (3,), ``floor_normal``
            (3,), ``gravity`` (3,).
        config: supplies ``timestep``, ``integrator`` and ``friction``.

    Returns:
        The MJCF document. Body ``j`` is named ``b{j}`` and its geom ``g{j}``; the floor geom is
        ``floor`` (geom 0).
    """
    kind = np.asarray(scene["kind"])
    size = np.asarray(scene["size"], dtype=np.float64)
    friction = f"{config.friction:.17g} 0.005 0.0001"
    assets, bodies = [], []
    quat = _to_quat(np.asarray(scene["rot"], dtype=np.float64))[:, [3, 0, 1, 2]]  # (B, 4) w, x, y, z
    for j, k in enumerate(kind):
        common = f'name="g{j}" mass="{float(scene["mass"][j]):.17g}" friction="{friction}"'
        if SHAPES[k] == "mesh":
            assets.append(f'    <mesh name="m{j}" vertex="{_fmt(scene["vertices"][j])}"/>')
            geom = f'<geom type="mesh" mesh="m{j}" {common}/>'
        else:
            n_params = {"box": 3, "sphere": 1, "capsule": 2}[SHAPES[k]]
            geom = f'<geom type="{SHAPES[k]}" size="{_fmt(size[j, :n_params])}" {common}/>'
        bodies.append(
            f'    <body name="b{j}" pos="{_fmt(scene["pos"][j])}" quat="{_fmt(quat[j])}">'
            f'<freejoint name="j{j}"/>{geom}</body>'
        )
    qpos, qvel = _qpos_qvel(scene)
    lines = [
        '<mujoco model="eqt_rigid">',
        f'  <option timestep="{config.timestep:.17g}" gravity="{_fmt(scene["gravity"])}" '
        f'integrator="{config.integrator}" cone="elliptic"/>',
        "  <asset>",
        *assets,
        "  </asset>",
        "  <worldbody>",
        f'    <geom name="floor" type="plane" size="0 0 1" pos="{_fmt(scene["floor_point"])}" '
        f'zaxis="{_fmt(scene["floor_normal"])}" friction="{friction}"/>',
        *bodies,
        "  </worldbody>",
        f'  <keyframe><key name="initial" qpos="{_fmt(qpos)}" qvel="{_fmt(qvel)}"/></keyframe>',
        "</mujoco>",
    ]
    return "\n".join(lines) + "\n"


def _qpos_qvel(scene: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Free-joint qpos (7B,) (pos, quat w x y z) and qvel (6B,) (world linear, body angular)."""
    rot = np.asarray(scene["rot"], dtype=np.float64)
    quat = _to_quat(rot)[:, [3, 0, 1, 2]]
    qpos = np.concatenate([np.asarray(scene["pos"], dtype=np.float64), quat], axis=1)
    local_w = np.einsum("bji,bj->bi", rot, np.asarray(scene["angvel"], dtype=np.float64))  # rot^T w
    qvel = np.concatenate([np.asarray(scene["vel"], dtype=np.float64), local_w], axis=1)
    return qpos.ravel(), qvel.ravel()


def _check_scenes(scenes: Mapping[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """Validate a batch of scenes; return them as float64/int64 arrays (one-line ValueErrors)."""
    missing = [k for k in _SCENE_KEYS if k not in scenes]
    if missing:
        raise ValueError(f"{where}: scenes lack {', '.join(missing)}")
    out = {k: np.asarray(scenes[k]) for k in _SCENE_KEYS}
    kind = out["kind"]
    if kind.ndim != 2 or kind.shape[1] < 1 or not np.issubdtype(kind.dtype, np.integer):
        raise ValueError(f"{where}: kind must be an integer array of shape (n, B), got {kind.dtype} {kind.shape}")
    n, b = kind.shape
    if ((kind < 0) | (kind >= len(SHAPES))).any():
        raise ValueError(f"{where}: kind must index SHAPES {SHAPES}, got values {np.unique(kind).tolist()}")
    want = {"size": (n, b, 3), "mass": (n, b), "pos": (n, b, 3), "rot": (n, b, 3, 3), "vel": (n, b, 3),
            "angvel": (n, b, 3), "floor_point": (n, 3), "floor_normal": (n, 3), "gravity": (n, 3)}  # fmt: skip
    if "vertices" in scenes:
        out["vertices"] = np.asarray(scenes["vertices"])
        want["vertices"] = (n, b, out["vertices"].shape[2] if out["vertices"].ndim == 4 else -1, 3)
    elif (kind == 3).any():
        raise ValueError(f"{where}: scenes with meshes (kind 3) need vertices (n, B, V, 3)")
    else:
        out["vertices"] = np.zeros((n, b, 0, 3))
    for key, shape in want.items():
        a = out[key]
        if a.shape != shape:
            raise ValueError(f"{where}: {key} must have shape {shape} (n, B from kind), got {a.shape}")
        if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
            raise ValueError(f"{where}: {key} must be finite numbers")
        out[key] = a.astype(np.float64)
    out["kind"] = kind.astype(np.int64)
    if (out["mass"] <= 0).any():
        raise ValueError(f"{where}: masses must be > 0")
    n_params = np.array([3, 1, 2, 0])[kind]  # (n, B) size parameters used per kind
    used = np.arange(3) < n_params[..., None]
    if (out["size"][used] <= 0).any():
        raise ValueError(f"{where}: size parameters must be > 0 (box: 3, sphere: 1, capsule: 2)")
    if (kind == 3).any() and out["vertices"].shape[2] < 4:
        raise ValueError(f"{where}: meshes need at least 4 vertices, got V={out['vertices'].shape[2]}")
    rot = out["rot"]
    gram = np.einsum("...ji,...jk->...ik", rot, rot)
    if n * b and (np.abs(gram - np.eye(3)).max() > _ORTHO_TOL or (np.linalg.det(rot) <= 0).any()):
        raise ValueError(f"{where}: rot must hold proper rotation matrices (orthonormal, det +1)")
    if n and np.abs(np.linalg.norm(out["floor_normal"], axis=-1) - 1.0).max() > _ORTHO_TOL:
        raise ValueError(f"{where}: floor_normal must be unit vectors")
    return out


def _compile(scene: Mapping[str, np.ndarray], config: RigidConfig, where: str):
    mujoco = _mujoco()
    try:
        return mujoco.MjModel.from_xml_string(scene_xml(scene, config))
    except ValueError as exc:
        raise ValueError(f"{where}: MuJoCo rejected the scene: {one_line(exc)}") from None


def _check_overlap(data, kind: np.ndarray, tol: float, where: str) -> None:
    """Raise if any contact of the current state penetrates deeper than ``tol``."""
    worst = None
    for c in data.contact[: data.ncon] if data.ncon else []:
        if c.dist < -tol and (worst is None or c.dist < worst[0]):
            worst = (float(c.dist), int(c.geom[0]), int(c.geom[1]))
    if worst is None:
        return
    depth, g1, g2 = worst
    a, b = sorted((g1, g2))
    if a == 0:
        raise ValueError(f"{where}: body {b - 1} ({SHAPES[kind[b - 1]]}) penetrates the floor by {-depth:.3g}")
    raise ValueError(
        f"{where}: bodies {a - 1} ({SHAPES[kind[a - 1]]}) and {b - 1} ({SHAPES[kind[b - 1]]}) "
        f"overlap by {-depth:.3g} in the initial state; place them apart"
    )


def _body_inertia(model) -> np.ndarray:
    """(B, 3, 3) inertia tensors of the free bodies about their centres of mass, in the body frame."""
    quat = np.asarray(model.body_iquat[1:], dtype=np.float64)[:, [1, 2, 3, 0]]
    r = _to_rot(quat)
    return np.einsum("bij,bj,bkj->bik", r, np.asarray(model.body_inertia[1:], dtype=np.float64), r)


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------
def simulate_scenes(
    scenes: Mapping[str, np.ndarray],
    steps: Sequence[int],
    config: RigidConfig = RigidConfig(),  # noqa: B008
    nthread: int = 1,
) -> dict[str, np.ndarray]:
    """Simulate given scenes with MuJoCo and return the states at the given steps.

    The scenes may be in any frame (any floor plane and gravity vector). Each initial state is
    checked with MuJoCo's collision detection first: a body that penetrates another or the floor
    by more than ``config.overlap_tol`` raises a ``ValueError`` naming the scene and bodies.

    Args:
        scenes: ``kind`` (n, B) int, ``size`` (n, B, 3), ``vertices`` (n, B, V, 3) (needed only
            for meshes), ``mass`` (n, B), ``pos`` (n, B, 3), ``rot`` (n, B, 3, 3) proper, ``vel``
            (n, B, 3), ``angvel`` (n, B, 3) (world frame), ``floor_point`` (n, 3), ``floor_normal``
            (n, 3) unit, ``gravity`` (n, 3); other keys are ignored.
        steps: non-decreasing step indices ``S``; 0 is the initial state.
        config: supplies ``timestep``, ``integrator``, ``friction`` and ``overlap_tol``.
        nthread: simulation threads (the results do not depend on it).

    Returns:
        ``pos`` (n, S, B, 3), ``rot`` (n, S, B, 3, 3), ``quat`` (n, S, B, 4) (x, y, z, w),
        ``vel`` (n, S, B, 3), ``angvel`` (n, S, B, 3) (world frame), and ``inertia`` (n, B, 3, 3)
        (body frame, about the centre of mass, as MuJoCo computed it), float64.

    Raises:
        ValueError: on malformed or overlapping scenes, or bad ``steps``/``nthread``.
        RuntimeError: if MuJoCo's integration became unstable.
    """
    where = "simulate_scenes"
    steps_arr = np.asarray(list(steps))
    if steps_arr.ndim != 1 or steps_arr.size == 0 or not np.issubdtype(steps_arr.dtype, np.integer):
        raise ValueError(f"{where}: steps must be a non-empty sequence of ints, got {list(steps)!r}")
    if (steps_arr < 0).any() or (np.diff(steps_arr) < 0).any():
        raise ValueError(f"{where}: steps must be non-negative and non-decreasing, got {steps_arr.tolist()}")
    if not isinstance(nthread, (int, np.integer)) or isinstance(nthread, bool) or nthread < 1:
        raise ValueError(f"{where}: nthread must be an int >= 1, got {nthread!r}")
    if not isinstance(config, RigidConfig):
        raise ValueError(f"{where}: config must be a RigidConfig, got {type(config).__name__}")
    sc = _check_scenes(scenes, where)
    n, b = sc["kind"].shape
    s = steps_arr.size
    out = {
        "pos": np.zeros((n, s, b, 3)),
        "quat": np.zeros((n, s, b, 4)),
        "vel": np.zeros((n, s, b, 3)),
        "angvel": np.zeros((n, s, b, 3)),
        "inertia": np.zeros((n, b, 3, 3)),
    }
    for start in range(0, n, _CHUNK):
        idx = range(start, min(n, start + _CHUNK))
        qpos, qvel, inertia = _run_chunk(sc, idx, steps_arr, config, int(nthread))
        sl = slice(start, start + len(idx))
        qpos = qpos.reshape(len(idx), s, b, 7)
        qvel = qvel.reshape(len(idx), s, b, 6)
        out["pos"][sl] = qpos[..., :3]
        quat = qpos[..., [4, 5, 6, 3]]  # MuJoCo's (w, x, y, z) -> (x, y, z, w)
        quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
        out["quat"][sl] = quat * np.where(quat[..., 3:] < 0, -1.0, 1.0)
        out["vel"][sl] = qvel[..., :3]
        out["angvel"][sl] = qvel[..., 3:]  # body frame for now
        out["inertia"][sl] = inertia
    rot = _to_rot(out["quat"])
    out["rot"] = rot
    out["angvel"] = np.einsum("...ij,...j->...i", rot, out["angvel"])  # body -> world frame
    order = ("pos", "rot", "quat", "vel", "angvel", "inertia")
    return {k: np.ascontiguousarray(out[k]) for k in order}


def _run_chunk(
    sc: Mapping[str, np.ndarray], idx: range, steps: np.ndarray, config: RigidConfig, nthread: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """qpos (m, S, 7B), qvel (m, S, 6B), inertia (m, B, 3, 3) of scenes ``idx``.

    Every scene is compiled and checked for overlaps first, then stepped with ``mj_step`` in its
    own ``MjData`` (MuJoCo releases the GIL while stepping, so ``nthread`` threads run in
    parallel); see the module docstring for why ``mujoco.rollout`` is not used.
    """
    mujoco = _mujoco()
    runs = []
    for i in idx:
        scene = {k: v[i] for k, v in sc.items()}
        where = f"simulate_scenes: scene {i}"
        model = _compile(scene, config, where)
        data = mujoco.MjData(model)
        data.qpos[:], data.qvel[:] = _qpos_qvel(scene)
        mujoco.mj_forward(model, data)
        _check_overlap(data, sc["kind"][i], config.overlap_tol, where)
        runs.append((i, model, data))
    increments = np.diff(steps, prepend=0)

    def run(item) -> tuple[np.ndarray, np.ndarray]:
        i, model, data = item
        qpos, qvel = np.empty((len(steps), model.nq)), np.empty((len(steps), model.nv))
        for k, inc in enumerate(increments):
            if inc:
                mujoco.mj_step(model, data, nstep=int(inc))
            qpos[k], qvel[k] = data.qpos, data.qvel
        unstable = data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number > 0
        if unstable or not (np.isfinite(qpos).all() and np.isfinite(qvel).all()):
            raise RuntimeError(
                f"simulate_scenes: scene {i}: MuJoCo's integration became unstable "
                f"(non-finite state or an automatic reset); lower timestep or speeds"
            )
        return qpos, qvel

    if nthread > 1 and len(runs) > 1:
        with ThreadPoolExecutor(min(nthread, len(runs))) as pool:
            results = list(pool.map(run, runs))
    else:
        results = [run(item) for item in runs]
    qpos = np.stack([r[0] for r in results])
    qvel = np.stack([r[1] for r in results])
    return qpos, qvel, np.stack([_body_inertia(model) for _, model, _ in runs])


def simulate(
    n: int,
    config: RigidConfig = RigidConfig(),  # noqa: B008
    seed: int = 0,
    nthread: int = 1,
) -> dict[str, np.ndarray]:
    """Sample and simulate ``n`` scenes and return the data set (see the module docstring).

    Args:
        n: number of samples (>= 0).
        config: scene and simulation parameters.
        seed: non-negative seed; sample ``i`` depends on ``(i, config, seed)`` only.
        nthread: simulation threads (the data do not depend on it).

    Returns:
        The arrays of the module docstring: ``kind`` (n, B), ``kind_onehot`` (n, B, K), ``size``
        (n, B, 3), ``vertices`` (n, B, V, 3), ``radius`` (n, B), ``mass`` (n, B), ``inertia``
        (n, B, 3, 3), ``floor_point``/``floor_normal``/``gravity`` (n, 3), ``pos``/``vel``/``angvel``
        (n, H, B, 3), ``rot`` (n, H, B, 3, 3), ``quat`` (n, H, B, 4), ``target_pos``/``target_vel``/
        ``target_angvel`` (n, B, 3), ``target_rot`` (n, B, 3, 3), ``target_quat`` (n, B, 4).

    Raises:
        ValueError: on bad arguments or an impossible placement.
        RuntimeError: if a simulation became unstable.
    """
    _check_n_seed(n, seed, "simulate")
    if not isinstance(config, RigidConfig):
        raise ValueError(f"simulate: config must be a RigidConfig, got {type(config).__name__}")
    scenes = sample_scenes(n, config, seed)
    h = config.history
    traj = simulate_scenes(scenes, config.steps, config, nthread=nthread)
    data: dict[str, np.ndarray] = {
        "kind": scenes["kind"],
        "kind_onehot": np.eye(len(SHAPES))[scenes["kind"]],
        "size": scenes["size"],
        "vertices": scenes["vertices"],
        "radius": scenes["radius"],
        "mass": scenes["mass"],
        "inertia": traj["inertia"],
        **{k: scenes[k] for k in _ENV_KEYS},
        **{k: traj[k][:, :h] for k in _STATE_KEYS},
        **{f"target_{k}": traj[k][:, h] for k in _STATE_KEYS},
    }
    return {k: np.ascontiguousarray(data[k]) for k in _DATA_KEYS}


# --------------------------------------------------------------------------------------------
# E(3) action
# --------------------------------------------------------------------------------------------
def apply_e3(
    data: Mapping[str, np.ndarray],
    rotation: np.ndarray,
    translation: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Move a data set or a batch of scenes by ``x -> R x + t`` (``R`` orthogonal, det +-1).

    Every geometric quantity moves with the bodies, so that the result is the same physical
    system seen in another frame: points (``pos``, ``target_pos``, ``floor_point``) map to
    ``R x + t``; vectors (``vel``, ``target_vel``, ``floor_normal``, ``gravity``) to ``R v``;
    angular velocities, which are pseudovectors, to ``det(R) R w``; orientations (``rot``,
    ``target_rot``, whose columns are the body axes) to ``R M``; quaternions (``quat``,
    ``target_quat``) to the quaternion of the proper part ``det(R) R M``. Body-frame quantities
    (``kind``, ``kind_onehot``, ``size``, ``vertices``, ``radius``, ``mass``, ``inertia``) are
    unchanged. For a reflection (``det R = -1``) the orientations become improper: the result
    describes the mirror-image scene (``pos + rot @ vertices`` are the mirrored mesh points),
    which obeys the same mechanics but cannot be passed to :func:`simulate_scenes`.

    Args:
        data: arrays with a leading sample axis ``n`` (a data set, a scene batch, or any subset
            of their keys), e.g. ``pos`` (n, H, B, 3) or (n, B, 3).
        rotation: (3, 3) or (n, 3, 3) orthogonal matrices.
        translation: (3,) or (n, 3); None for no translation.

    Returns:
        A new dictionary with the same keys and shapes; float64 for the moved arrays.

    Raises:
        ValueError: on an unknown key, a non-orthogonal rotation or mismatched shapes.
    """
    r = np.asarray(rotation, dtype=np.float64)
    t = np.zeros(3) if translation is None else np.asarray(translation, dtype=np.float64)
    if r.shape[-2:] != (3, 3) or r.ndim not in (2, 3):
        raise ValueError(f"apply_e3: rotation must have shape (3, 3) or (n, 3, 3), got {r.shape}")
    if t.shape[-1:] != (3,) or t.ndim not in (1, 2):
        raise ValueError(f"apply_e3: translation must have shape (3,) or (n, 3), got {t.shape}")
    if not (np.isfinite(r).all() and np.isfinite(t).all()):
        raise ValueError("apply_e3: rotation and translation must be finite")
    if r.size and np.abs(np.einsum("...ji,...jk->...ik", r, r) - np.eye(3)).max() > _ORTHO_TOL:
        raise ValueError("apply_e3: rotation must be orthogonal (R^T R = I)")
    unknown = [k for k in data if k not in _ROLES]
    if unknown:
        raise ValueError(f"apply_e3: unknown keys {', '.join(map(repr, unknown))}; known: {', '.join(_ROLES)}")
    batch = {r.shape[0]} if r.ndim == 3 else set()
    if t.ndim == 2:
        batch.add(t.shape[0])
    if len(batch) > 1:
        raise ValueError(f"apply_e3: rotation and translation disagree on the sample count {sorted(batch)}")
    det = np.sign(np.linalg.det(r))  # () or (n,)

    out: dict[str, np.ndarray] = {}
    for key, value in data.items():
        a = np.asarray(value)
        role = _ROLES[key]
        if role == "invariant":
            out[key] = a.copy()
            continue
        trailing = {"point": 1, "vector": 1, "pseudovector": 1, "frame": 2, "quat": 1}[role]
        want_last = (3, 3) if role == "frame" else (4,) if role == "quat" else (3,)
        if a.shape[a.ndim - len(want_last) :] != want_last or a.ndim < trailing + 1:
            last = ", ".join(map(str, want_last))
            raise ValueError(f"apply_e3: {key} must have shape (n, ..., {last}), got {a.shape}")
        for b_ in batch:
            if a.shape[0] != b_:
                raise ValueError(f"apply_e3: {key} has {a.shape[0]} samples, the rotation or translation {b_}")
        mid = a.ndim - 1 - trailing  # axes between the sample axis and the geometric axes
        rb = r if r.ndim == 2 else r.reshape(r.shape[0], *([1] * mid), 3, 3)
        sb = det if r.ndim == 2 else det.reshape(det.shape[0], *([1] * (mid + trailing)))
        a = a.astype(np.float64)
        if role in ("point", "vector", "pseudovector"):
            moved = np.einsum("...ij,...j->...i", rb, a)
            if role == "point":
                moved = moved + (t if t.ndim == 1 else t.reshape(t.shape[0], *([1] * mid), 3))
            if role == "pseudovector":
                moved = moved * sb
        elif role == "frame":
            moved = rb @ a
        else:  # quat: quaternion of the proper rotation det(R) R M
            sm = det if r.ndim == 2 else det.reshape(det.shape[0], *([1] * (mid + 2)))
            moved = _to_quat(sm * (rb @ _to_rot(a)))
        out[key] = np.ascontiguousarray(moved)
    return out


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def _check_data(data: Mapping[str, np.ndarray], where: str) -> None:
    """Consistent shapes of a data set (n, H, B, V from kind, pos and vertices)."""
    kind, pos, verts = data["kind"], data["pos"], data["vertices"]
    if kind.ndim != 2:
        raise ValueError(f"{where}: kind must have shape (n, B), got {kind.shape}")
    n, b = kind.shape
    if pos.ndim != 4 or pos.shape[0] != n or pos.shape[2:] != (b, 3):
        raise ValueError(f"{where}: pos must have shape (n, H, B, 3) = ({n}, H, {b}, 3), got {pos.shape}")
    if verts.ndim != 4:
        raise ValueError(f"{where}: vertices must have shape (n, B, V, 3), got {verts.shape}")
    h, v = pos.shape[1], verts.shape[2]
    want = {
        "kind_onehot": (n, b, len(SHAPES)), "size": (n, b, 3), "vertices": (n, b, v, 3), "radius": (n, b),
        "mass": (n, b), "inertia": (n, b, 3, 3), "floor_point": (n, 3), "floor_normal": (n, 3),
        "gravity": (n, 3), "rot": (n, h, b, 3, 3), "quat": (n, h, b, 4), "vel": (n, h, b, 3),
        "angvel": (n, h, b, 3), "target_pos": (n, b, 3), "target_rot": (n, b, 3, 3),
        "target_quat": (n, b, 4), "target_vel": (n, b, 3), "target_angvel": (n, b, 3),
    }  # fmt: skip
    for key, shape in want.items():
        if data[key].shape != shape:
            got = data[key].shape
            raise ValueError(f"{where}: {key} must have shape {shape} (from kind, pos, vertices), got {got}")


def generate(
    root: str | os.PathLike,
    n_train: int = 10_000,
    n_val: int = 1_000,
    n_test: int = 1_000,
    config: RigidConfig = RigidConfig(),  # noqa: B008
    seed: int = 0,
    overwrite: bool = False,
    nthread: int = 1,
) -> dict[str, Path]:
    """Simulate the train/val/test splits and write ``{root}/{split}.npz`` plus ``meta.json``.

    Each split is simulated with its own seed derived from ``seed`` and the split name. A split
    whose file exists, loads and is recorded in ``meta.json`` with the same size, seed, config
    and format is kept unless ``overwrite`` (so an interrupted run resumes at the first missing
    split). Files are written atomically; ``meta.json`` (which records the MuJoCo version too)
    is rewritten after each split.

    Args:
        root: output folder (created if missing).
        n_train, n_val, n_test: split sizes (>= 1).
        config: scene and simulation parameters, the same for all splits.
        seed: non-negative base seed.
        overwrite: regenerate splits even when up to date.
        nthread: simulation threads (the data do not depend on it).

    Returns:
        ``{split: path of its .npz}``.

    Raises:
        ValueError: on a size below 1, a negative seed or a config that is not a RigidConfig.
    """
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    for split, size in sizes.items():
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise ValueError(f"generate: n_{split} must be an int >= 1, got {size!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"generate: seed must be an int >= 0, got {seed!r}")
    if not isinstance(config, RigidConfig):
        raise ValueError(f"generate: config must be a RigidConfig, got {type(config).__name__}")
    return write_splits(
        root,
        sizes,
        seed,
        configs=dict.fromkeys(sizes, config.to_dict()),
        make=lambda split, size, split_seed: simulate(size, config, seed=split_seed, nthread=nthread),
        verify=lambda split: load(root, split),
        format_name="eqt.data.rigid",
        format_version=_FORMAT_VERSION,
        overwrite=overwrite,
        extra_entry=lambda: {"mujoco_version": _mujoco().__version__},
    )


def load(root: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """Load one split written by :func:`generate` (MuJoCo is not needed).

    Args:
        root: the folder passed to :func:`generate`.
        split: one of :data:`SPLITS`.

    Returns:
        The arrays of :func:`simulate` (float64, ``kind`` int64).

    Raises:
        FileNotFoundError: if ``{root}/{split}.npz`` does not exist.
        ValueError: on an unknown split, or a file that is unreadable, lacks a key, has
            inconsistent shapes or disagrees with the size, bodies or history in ``meta.json``;
            the message names the file.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown rigid-body split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(root)
    path = split_path(root, split)
    create = f"eqt.data.rigid.generate({str(root)!r}) or python -m eqt.data.rigid {root}"
    data = read_npz(path, _DATA_KEYS, _WHAT, create, list_present=False)
    for key, arr in data.items():
        want = np.integer if key == "kind" else np.floating
        if not np.issubdtype(arr.dtype, want):
            raise ValueError(f"{_WHAT} {path}: {key} has dtype {arr.dtype}, expected {want.__name__}")
    _check_data(data, f"{_WHAT} {path}")
    entry = meta_entry(root, split)
    if entry is not None:
        n, h, b = data["pos"].shape[:3]
        cfg = entry.get("config") or {}
        checks = (("samples", n, entry.get("size")), ("bodies", b, cfg.get("n_bodies")),
                  ("history frames", h, cfg.get("history")))  # fmt: skip
        check_meta(path, _WHAT, checks)
    return {k: v.astype(np.int64 if k == "kind" else np.float64, copy=False) for k, v in data.items()}


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eqt.data.rigid", description=__doc__.splitlines()[0])
    parser.add_argument("root", help="output folder")
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-val", type=int, default=1_000)
    parser.add_argument("--n-test", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nthread", type=int, default=1)
    parser.add_argument("--config", default="{}", help='RigidConfig overrides as JSON, e.g. \'{"n_bodies": 10}\'')
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = RigidConfig.from_dict(json.loads(args.config))
    except (ValueError, TypeError) as exc:
        parser.error(one_line(exc))
    paths = generate(args.root, args.n_train, args.n_val, args.n_test, config, args.seed, args.overwrite, args.nthread)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
