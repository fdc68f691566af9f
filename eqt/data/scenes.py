"""Procedural multi-view scenes with exact ray casting, for equivariant 3D reconstruction (issue 7).

Each sample is a small composition of analytic solids, seen by ``V`` pinhole cameras, with
per-pixel depth, hit mask and shaded colour, and occupancy labels at query points. Everything is a
function of ``(config, seed, scene index)`` and is computed in NumPy float64; the ray caster is
exact (closed-form, or a polished quartic for the torus), so a rigid motion of the scene and the
cameras together (:func:`apply_se3`) leaves the images, depths and labels unchanged to round-off.
This is the data of the I/I vs I/SO(3) / SE(3) reconstruction protocol (spec ``rays.md`` §A.6).

Sampling of one scene (scene ``i`` of base seed ``s`` uses ``np.random.default_rng([s, i])``, so
``sample_scenes(n1)`` is the first ``n1`` scenes of ``sample_scenes(n2)`` for ``n1 <= n2``):

1. Primitives: their number uniform in ``n_primitives`` (default 1–4), each kind uniform over
   ``kinds`` (sphere, box, cylinder, torus), sizes uniform in their ranges, a Haar-random rotation
   (uniform unit quaternion), a centre uniform in the ball of radius ``extent`` and an albedo
   uniform in ``albedo`` per channel. The solid is the **union** of the primitives.
2. Cameras: ``n_views`` centres with directions uniform on the sphere and distances uniform in
   ``camera_distance`` (a shell around the scene centre, the origin), each looking at the origin
   with a uniform roll about its optical axis. ``camera_distance`` must exceed the scene's
   bounding radius, so every camera is outside the solid. Intrinsics: square pixels,
   horizontal field of view ``fov_degrees``, principal point at the image centre.
3. Rendering: one ray per pixel (:func:`eqt.primitives.rays.camera_rays`). ``depth`` is the
   **distance along the unit ray** from the camera centre to the first hit (not z-depth; z-depth
   is ``depth * (d · optical axis)``), 0 where the ray misses. ``colour = albedo * (ambient +
   (1 - ambient) max(0, n · l))`` with the outward normal ``n`` and a light direction ``l`` fixed
   **in the camera frame** (``light_direction``, OpenCV axes), so images do not depend on the world
   frame; background colour 0.
4. Query points: ``n_points`` per scene, the first ``round(near_surface_fraction * n_points)``
   near the surface (a uniformly chosen hit pixel of any view, its 3D hit point plus isotropic
   Gaussian noise of std ``near_surface_std``; uniform like the rest if no pixel hits), the others
   uniform in the axis-aligned cube of half-side :attr:`SceneConfig.bounding_radius` around the
   origin. Points are rounded to float32 **before** labelling, so the float32 files hold exact
   labels. ``occupancy = scene SDF <= 0`` (inside the union).

Ray casting (:func:`cast_rays`), in each primitive's frame: sphere and capped cylinder by
numerically stable quadratics (the cylinder intersected with the slab of its caps), box by the
slab method, torus ``(|p|² + R² - r²)² = 4R²(x² + y²)`` by the eigenvalues of the companion
matrix of its quartic, written about the point of the ray closest to the torus centre (so the
roots are of order ``R + r``), then two Newton steps on the quartic; rays are first culled by the
torus's bounding sphere. Complex roots with an imaginary part below ``1e-7 (R + r)`` count as
(grazing) hits. Ray origins must lie outside every primitive.

Signed distances (:func:`scene_sdf`) are the exact Euclidean SDFs of each primitive; the scene
SDF is their minimum (exact outside the union, a lower bound of the distance inside, exact sign).

Generation rate, default config (8 views of 32x32, 2048 points, 1–4 primitives), one thread
(``OMP_NUM_THREADS=1``) of a shared 2-core development machine: ``sample_scenes(400)`` 6.2 s
(65 scenes/s); ``generate(root, 1000, 0, 0)`` 12.5 s (80 scenes/s) for a 168 MB ``train.npz``,
``load`` of it with rays 1.3 s. About a quarter of the time goes to the torus quartics.

Arrays of ``N`` scenes (``P = n_primitives[1]`` primitive slots, ``V`` views, ``H x W`` pixels,
``Q`` points):

====================  ==================  =========  =============================================
key                   shape               dtype      meaning
====================  ==================  =========  =============================================
``prim_kind``         (N, P)              int64      index into :data:`KINDS`; -1: empty slot
``prim_params``       (N, P, 3)           float64    sphere (r, 0, 0); box half-sizes (a, b, c);
                                                     cylinder (r, half-height, 0); torus (R, r, 0)
``prim_rotation``     (N, P, 3, 3)        float64    primitive-to-world rotation
``prim_translation``  (N, P, 3)           float64    primitive centre; ``x_w = R x_local + t``
``prim_albedo``       (N, P, 3)           float64    RGB in [0, 1]
``intrinsics``        (N, V, 3, 3)        float64    pinhole ``K``
``cam_to_world``      (N, V, 4, 4)        float64    ``[R_c t_c; 0 1]`` (OpenCV axes)
``depth``             (N, V, H*W)         float      distance along the ray; 0 on misses
``mask``              (N, V, H*W)         bool       the ray hits the solid
``colour``            (N, V, H*W, 3)      float      shaded RGB; 0 on misses
``points``            (N, Q, 3)           float      query points (float32-representable)
``occupancy``         (N, Q)              bool       point inside the solid
``image_size``        (2,)                int64      ``(H, W)``; pixels row-major (:func:`pixels_grid`)
``rays``              (N, V, H*W, 6)      float      Plücker rays, only from :func:`load`
====================  ==================  =========  =============================================

``float`` is float64 from :func:`sample_scenes` and float32 from :func:`load` (which stores the
geometry in float64, so a loaded scene can be re-rendered exactly). :func:`generate` writes
``train``, ``val`` and ``test`` to ``{root}/{split}.npz`` with a ``meta.json``, each split with its
own seed derived from the base seed and its name (:func:`eqt.data.store.split_seed`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eqt.config import Config
from eqt.data.store import check_meta, is_number, meta_entry, one_line, read_npz, split_path, write_splits
from eqt.primitives.rays import camera_rays, pixels_grid, transform_rays
from eqt.primitives.rotations import haar_rotations

__all__ = [
    "KINDS",
    "SPLITS",
    "SceneConfig",
    "apply_se3",
    "cast_rays",
    "generate",
    "load",
    "look_at",
    "occupancy",
    "pinhole_intrinsics",
    "primitive_sdf",
    "render",
    "sample_scenes",
    "scene_rays",
    "scene_sdf",
]

KINDS: tuple[str, ...] = ("sphere", "box", "cylinder", "torus")
"""Primitive kinds; ``prim_kind`` holds indices into this tuple."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split names written by :func:`generate`."""

_CHUNK = 32  # scenes rendered together (the data do not depend on it)
_FORMAT_VERSION = 1  # bump when the sampling protocol changes: generate() then rewrites files
_POSE_TOL = 1e-6  # rigidity of camera poses and of apply_se3 rotations
_WHAT = "scene split file"  # how error messages name a split file
_ROOT_IMAG_TOL = 1e-7  # torus: |Im root| / (R + r) below this counts as a real (grazing) root
_N_PARAMS = (1, 3, 2, 2)  # parameters used by each kind
_SCENE_KEYS = ("prim_kind", "prim_params", "prim_rotation", "prim_translation", "prim_albedo")
_CAMERA_KEYS = ("intrinsics", "cam_to_world")
_IMAGE_KEYS = ("depth", "mask", "colour")
_POINT_KEYS = ("points", "occupancy")
_KEYS = (*_SCENE_KEYS, *_CAMERA_KEYS, *_IMAGE_KEYS, *_POINT_KEYS, "image_size")
_STORE_DTYPES = {
    "prim_kind": np.int8, "prim_params": np.float64, "prim_rotation": np.float64, "prim_translation": np.float64,
    "prim_albedo": np.float64, "intrinsics": np.float64, "cam_to_world": np.float64, "depth": np.float32,
    "mask": np.bool_, "colour": np.float32, "points": np.float32, "occupancy": np.bool_, "image_size": np.int64,
}


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _pair(name: str, value: Any, *, integer: bool = False, low: float = 0.0, strict: bool = True) -> tuple:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"SceneConfig: {name} must be a (min, max) pair, got {value!r}") from None
    check = _is_int if integer else (lambda v: is_number(v) and math.isfinite(v))
    if not (check(lo) and check(hi)):
        kind = "ints" if integer else "finite numbers"
        raise ValueError(f"SceneConfig: {name} must hold two {kind}, got {value!r}")
    if not ((lo > low if strict else lo >= low) and lo <= hi):
        raise ValueError(f"SceneConfig: {name} must satisfy {low} {'<' if strict else '<='} min <= max, got {value!r}")
    cast = int if integer else float
    return cast(lo), cast(hi)


@dataclass(frozen=True)
class SceneConfig(Config):
    """Parameters of the procedural scenes (lengths in scene units; the scene centre is the origin).

    Attributes:
        n_primitives: (min, max) number of primitives per scene, uniform; ``max`` is the number
            ``P`` of primitive slots in the arrays.
        kinds: primitive kinds to draw from (uniformly), a non-empty subset of :data:`KINDS`.
        sphere_radius: (min, max) sphere radius.
        box_half_size: (min, max) of each of the three half-sizes of a box.
        cylinder_radius: (min, max) cylinder radius.
        cylinder_half_height: (min, max) half-height of a capped cylinder (axis: local z).
        torus_major_radius: (min, max) distance from the torus centre to its tube centre (axis:
            local z).
        torus_minor_radius: (min, max) tube radius; its max must be below the major radius min.
        extent: primitive centres are uniform in the ball of this radius.
        albedo: (min, max) of each RGB channel of a primitive's colour, within [0, 1].
        n_views: cameras per scene ``V`` (>= 1).
        height: image height ``H`` in pixels.
        width: image width ``W`` in pixels.
        fov_degrees: horizontal field of view, in (0, 180).
        camera_distance: (min, max) distance of the camera centres to the origin; min must exceed
            :attr:`bounding_radius`.
        n_points: query points ``Q`` per scene.
        near_surface_fraction: fraction of the query points drawn near the surface.
        near_surface_std: std of the Gaussian offset of near-surface points.
        ambient: ambient term of the shading, in [0, 1].
        light_direction: direction towards the light in the camera frame (x right, y down, z
            forward); normalised when used.
    """

    n_primitives: tuple[int, int] = (1, 4)
    kinds: tuple[str, ...] = KINDS
    sphere_radius: tuple[float, float] = (0.2, 0.5)
    box_half_size: tuple[float, float] = (0.12, 0.4)
    cylinder_radius: tuple[float, float] = (0.12, 0.4)
    cylinder_half_height: tuple[float, float] = (0.12, 0.45)
    torus_major_radius: tuple[float, float] = (0.25, 0.45)
    torus_minor_radius: tuple[float, float] = (0.06, 0.15)
    extent: float = 0.5
    albedo: tuple[float, float] = (0.2, 1.0)
    n_views: int = 8
    height: int = 32
    width: int = 32
    fov_degrees: float = 40.0
    camera_distance: tuple[float, float] = (2.5, 3.5)
    n_points: int = 2048
    near_surface_fraction: float = 0.5
    near_surface_std: float = 0.05
    ambient: float = 0.3
    light_direction: tuple[float, float, float] = (-0.4, -0.6, -0.7)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "n_primitives", _pair("n_primitives", self.n_primitives, integer=True, low=1, strict=False))
        kinds = (self.kinds,) if isinstance(self.kinds, str) else self.kinds
        try:
            kinds = tuple(kinds)
        except TypeError:
            raise ValueError(f"SceneConfig: kinds must be a sequence of names, got {self.kinds!r}") from None
        bad = [k for k in kinds if k not in KINDS]
        if not kinds or bad or len(set(kinds)) != len(kinds):
            raise ValueError(f"SceneConfig: kinds must be distinct names from {', '.join(KINDS)}, got {self.kinds!r}")
        set_(self, "kinds", kinds)
        for name in ("sphere_radius", "box_half_size", "cylinder_radius", "cylinder_half_height",
                     "torus_major_radius", "torus_minor_radius"):
            set_(self, name, _pair(name, getattr(self, name)))
        if self.torus_minor_radius[1] >= self.torus_major_radius[0]:
            raise ValueError(f"SceneConfig: torus_minor_radius max {self.torus_minor_radius[1]} must be below "
                             f"torus_major_radius min {self.torus_major_radius[0]} (ring tori only)")
        albedo = _pair("albedo", self.albedo, strict=False)
        if albedo[1] > 1.0:
            raise ValueError(f"SceneConfig: albedo must lie in [0, 1], got {self.albedo!r}")
        set_(self, "albedo", albedo)
        for name, low in (("n_views", 1), ("height", 1), ("width", 1), ("n_points", 0)):
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                what = " (a scene needs at least one view)" if name == "n_views" else ""
                raise ValueError(f"SceneConfig: {name} must be an int >= {low}{what}, got {value!r}")
            set_(self, name, int(value))
        for name, lo, hi in (("extent", 0.0, math.inf), ("near_surface_fraction", 0.0, 1.0),
                             ("near_surface_std", 0.0, math.inf), ("ambient", 0.0, 1.0)):
            value = getattr(self, name)
            if not (is_number(value) and math.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"SceneConfig: {name} must be a finite number in [{lo}, {hi}], got {value!r}")
            set_(self, name, float(value))
        fov = self.fov_degrees
        if not (is_number(fov) and 0.0 < fov < 180.0):
            raise ValueError(f"SceneConfig: fov_degrees must be in (0, 180), got {fov!r}")
        set_(self, "fov_degrees", float(fov))
        try:
            light = tuple(self.light_direction)
        except TypeError:
            light = ()
        if len(light) != 3 or not all(is_number(v) and math.isfinite(v) for v in light) or not any(light):
            raise ValueError(f"SceneConfig: light_direction must be three finite numbers, not all 0, "
                             f"got {self.light_direction!r}")
        set_(self, "light_direction", tuple(float(v) for v in light))
        distance = _pair("camera_distance", self.camera_distance)
        if distance[0] <= self.bounding_radius:
            raise ValueError(f"SceneConfig: camera_distance min {distance[0]} must exceed the bounding radius "
                             f"{self.bounding_radius:.4g} of the scene (cameras must be outside every primitive)")
        set_(self, "camera_distance", distance)

    @property
    def max_primitives(self) -> int:
        """Number ``P`` of primitive slots per scene, ``n_primitives[1]``."""
        return self.n_primitives[1]

    @property
    def bounding_radius(self) -> float:
        """Radius of a ball about the origin that holds every scene: ``extent`` + the largest primitive."""
        reach = {
            "sphere": self.sphere_radius[1],
            "box": math.sqrt(3.0) * self.box_half_size[1],
            "cylinder": math.hypot(self.cylinder_radius[1], self.cylinder_half_height[1]),
            "torus": self.torus_major_radius[1] + self.torus_minor_radius[1],
        }
        return self.extent + max(reach[k] for k in self.kinds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (tuples become lists); :meth:`from_dict` inverts it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# --------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------
def pinhole_intrinsics(height: int, width: int, fov_degrees: float) -> np.ndarray:
    """Pinhole matrix ``K`` (3, 3): square pixels, horizontal field of view, centred principal point.

    ``fx = fy = (W / 2) / tan(fov / 2)``, ``(cx, cy) = ((W - 1) / 2, (H - 1) / 2)`` (pixel centres
    at integer coordinates, as :func:`eqt.primitives.rays.pixels_grid`).

    Raises:
        ValueError: for a non-positive size or a field of view outside (0, 180) degrees.
    """
    if not (_is_int(height) and _is_int(width) and height > 0 and width > 0):
        raise ValueError(f"pinhole_intrinsics needs a positive int size, got ({height!r}, {width!r})")
    if not (is_number(fov_degrees) and 0.0 < fov_degrees < 180.0):
        raise ValueError(f"pinhole_intrinsics: fov_degrees must be in (0, 180), got {fov_degrees!r}")
    f = 0.5 * width / math.tan(math.radians(fov_degrees) / 2)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def look_at(position: np.ndarray, target: np.ndarray, roll: np.ndarray | float = 0.0) -> np.ndarray:
    """Camera poses ``cam_to_world`` (..., 4, 4) at ``position`` with the optical axis (z) towards ``target``.

    The camera x-axis is the unit vector orthogonal to z closest to the world axis least aligned
    with z, then rolled by ``roll`` radians about z; ``y = z × x`` (OpenCV axes, ``det R = +1``).

    Args:
        position: (..., 3) camera centres.
        target: (..., 3) points looked at (broadcast).
        roll: (...) roll angles in radians (broadcast).

    Returns:
        (..., 4, 4) rigid poses ``[R_c t_c; 0 1]`` with ``t_c = position``.

    Raises:
        ValueError: for non-finite input or a degenerate pose (``position`` at ``target``).
    """
    position, target = np.asarray(position, dtype=np.float64), np.asarray(target, dtype=np.float64)
    roll = np.asarray(roll, dtype=np.float64)
    if position.shape[-1:] != (3,) or target.shape[-1:] != (3,):
        raise ValueError(f"look_at: position and target must be (..., 3), got {position.shape} and {target.shape}")
    if not (np.isfinite(position).all() and np.isfinite(target).all() and np.isfinite(roll).all()):
        raise ValueError("look_at: position, target and roll must be finite")
    z = target - position
    norm = np.sqrt((z * z).sum(-1, keepdims=True))
    scale = np.maximum(1.0, np.abs(position).max(-1, keepdims=True))
    if (norm <= 1e-12 * scale).any():
        raise ValueError("look_at: degenerate camera pose, a camera position coincides with its target")
    z = z / norm
    helper = np.eye(3)[np.argmin(np.abs(z), axis=-1)]  # (..., 3)
    x0 = helper - (helper * z).sum(-1, keepdims=True) * z
    x0 /= np.sqrt((x0 * x0).sum(-1, keepdims=True))
    y0 = np.cross(z, x0)
    c, s = np.cos(roll)[..., None], np.sin(roll)[..., None]
    x = c * x0 + s * y0
    x, z = np.broadcast_arrays(x, z)
    y = np.cross(z, x)
    pose = np.zeros((*x.shape[:-1], 4, 4))
    pose[..., :3, 0], pose[..., :3, 1], pose[..., :3, 2] = x, y, z
    pose[..., :3, 3] = np.broadcast_to(position, x.shape)
    pose[..., 3, 3] = 1.0
    return pose


# --------------------------------------------------------------------------------------------
# Signed distances (local frames; params (..., 3), points (..., 3), broadcast)
# --------------------------------------------------------------------------------------------
def _norm3(v: np.ndarray) -> np.ndarray:
    return np.sqrt(v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1] + v[..., 2] * v[..., 2])


def _dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _sdf_sphere(params: np.ndarray, p: np.ndarray) -> np.ndarray:
    return _norm3(p) - params[..., 0]


def _sdf_box(params: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = np.abs(p) - params
    return _norm3(np.maximum(q, 0.0)) + np.minimum(q.max(-1), 0.0)


def _sdf_cylinder(params: np.ndarray, p: np.ndarray) -> np.ndarray:
    q0 = np.hypot(p[..., 0], p[..., 1]) - params[..., 0]
    q1 = np.abs(p[..., 2]) - params[..., 1]
    return np.hypot(np.maximum(q0, 0.0), np.maximum(q1, 0.0)) + np.minimum(np.maximum(q0, q1), 0.0)


def _sdf_torus(params: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.hypot(np.hypot(p[..., 0], p[..., 1]) - params[..., 0], p[..., 2]) - params[..., 1]


_SDF = (_sdf_sphere, _sdf_box, _sdf_cylinder, _sdf_torus)


def primitive_sdf(kind: str, params: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Exact signed distance (...) of points (..., 3), in the primitive's own frame, to one kind.

    Args:
        kind: a name in :data:`KINDS`.
        params: (3,) or (..., 3) parameters (see the module docstring), broadcast with ``points``.
        points: (..., 3) points in the primitive's frame (centre at 0, axis z for cylinder/torus).

    Returns:
        (...) signed distances, negative inside.

    Raises:
        ValueError: for an unknown kind or a last axis other than 3.
    """
    if kind not in KINDS:
        raise ValueError(f"primitive_sdf: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    params, points = np.asarray(params, dtype=np.float64), np.asarray(points, dtype=np.float64)
    if params.shape[-1:] != (3,) or points.shape[-1:] != (3,):
        raise ValueError(f"primitive_sdf: params and points must be (..., 3), got {params.shape} and {points.shape}")
    return _SDF[KINDS.index(kind)](params, points)


def _to_local(v: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """``R^T v`` for v (..., 3) and R (..., 3, 3) (broadcast), elementwise (batch-independent round-off)."""
    return v[..., 0:1] * rotation[..., 0, :] + v[..., 1:2] * rotation[..., 1, :] + v[..., 2:3] * rotation[..., 2, :]


def _to_world(v: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """``R v`` for v (..., 3) and R (..., 3, 3) (broadcast), elementwise."""
    return v[..., 0:1] * rotation[..., :, 0] + v[..., 1:2] * rotation[..., :, 1] + v[..., 2:3] * rotation[..., :, 2]


def _scene_sdf(scene: Mapping[str, np.ndarray], points: np.ndarray) -> np.ndarray:
    """SDF (N, Q) of batched scenes (N, P) at points (N, Q, 3)."""
    kind = scene["prim_kind"]  # (N, P)
    rot = scene["prim_rotation"][:, :, None]  # (N, P, 1, 3, 3)
    local = _to_local(points[:, None] - scene["prim_translation"][:, :, None], rot)  # (N, P, Q, 3)
    params = scene["prim_params"][:, :, None]  # (N, P, 1, 3)
    out = np.full(local.shape[:-1], np.inf)
    for k, fn in enumerate(_SDF):
        sel = kind == k
        if sel.any():
            out[sel] = fn(params[sel], local[sel])
    return out.min(axis=1) if out.shape[1] else np.full(out.shape[::2], np.inf)


# --------------------------------------------------------------------------------------------
# Input checks and batching
# --------------------------------------------------------------------------------------------
def _scene_batch(scene: Mapping[str, np.ndarray], where: str) -> tuple[dict[str, np.ndarray], bool]:
    """Scene arrays with a leading batch axis, and whether the input had one."""
    missing = [k for k in _SCENE_KEYS if k not in scene]
    if missing:
        raise ValueError(f"{where}: scene lacks {', '.join(missing)}")
    kind = np.asarray(scene["prim_kind"])
    if kind.ndim not in (1, 2) or not np.issubdtype(kind.dtype, np.integer):
        raise ValueError(f"{where}: prim_kind must be an int array (P,) or (N, P), got {kind.dtype} {kind.shape}")
    batched = kind.ndim == 2
    lead = kind.shape
    out = {"prim_kind": kind.astype(np.int64) if batched else kind.astype(np.int64)[None]}
    tails = {"prim_params": (3,), "prim_rotation": (3, 3), "prim_translation": (3,), "prim_albedo": (3,)}
    for key, tail in tails.items():
        arr = np.asarray(scene[key], dtype=np.float64)
        if arr.shape != (*lead, *tail):
            raise ValueError(f"{where}: {key} must have shape {(*lead, *tail)} (from prim_kind), got {arr.shape}")
        out[key] = arr if batched else arr[None]
    if ((out["prim_kind"] < -1) | (out["prim_kind"] >= len(KINDS))).any():
        raise ValueError(f"{where}: prim_kind values must be -1 (empty) or 0..{len(KINDS) - 1}")
    real = out["prim_kind"] >= 0
    if not all(np.isfinite(out[k][real]).all() for k in tails):
        raise ValueError(f"{where}: primitive parameters and poses must be finite")
    used = np.arange(3) < np.array([*_N_PARAMS, 0])[out["prim_kind"]][..., None]  # (N, P, 3)
    if (out["prim_params"][used] <= 0).any():
        raise ValueError(f"{where}: primitive sizes must be positive")
    torus = out["prim_kind"] == KINDS.index("torus")
    if (out["prim_params"][torus][:, 1] >= out["prim_params"][torus][:, 0]).any():
        raise ValueError(f"{where}: a torus needs minor radius < major radius (ring tori only)")
    return out, batched


def _check_cameras(intrinsics: np.ndarray, cam_to_world: np.ndarray, n: int, where: str) -> None:
    if cam_to_world.ndim != 4 or cam_to_world.shape[0] != n or cam_to_world.shape[2:] != (4, 4):
        raise ValueError(f"{where}: cam_to_world must be (V, 4, 4) or (N, V, 4, 4) matching the scenes, "
                         f"got {cam_to_world.shape}")
    if cam_to_world.shape[1] == 0:
        raise ValueError(f"{where}: no views (V = 0); a scene needs at least one camera")
    if intrinsics.shape != (*cam_to_world.shape[:2], 3, 3):
        raise ValueError(f"{where}: intrinsics must be (3, 3) or match the cameras as (..., V, 3, 3), "
                         f"got {intrinsics.shape} for cam_to_world {cam_to_world.shape}")
    if n == 0:
        return
    if not (np.isfinite(intrinsics).all() and np.isfinite(cam_to_world).all()):
        raise ValueError(f"{where}: camera intrinsics and poses must be finite")
    if (np.abs(intrinsics[..., 2, :] - [0.0, 0.0, 1.0]).max() > 0) or (np.abs(intrinsics[..., 1, 0]).max() > 0) \
            or (np.abs(np.linalg.det(intrinsics)) <= 1e-12).any():
        raise ValueError(f"{where}: degenerate intrinsics, K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] "
                         f"with fx, fy != 0")
    r = cam_to_world[..., :3, :3]
    err = max(np.abs(r @ np.swapaxes(r, -1, -2) - np.eye(3)).max(),
              np.abs(cam_to_world[..., 3, :] - [0.0, 0.0, 0.0, 1.0]).max())
    if err > _POSE_TOL or (np.linalg.det(r) < 0).any():
        raise ValueError(f"{where}: degenerate camera pose, cam_to_world must be [R t; 0 1] with R in SO(3) "
                         f"(error {err:.2e})")


# --------------------------------------------------------------------------------------------
# Ray casting (local frames: o, d (M, R, 3), params (M, 3); returns s (M, R) with inf on misses
# and outward normals (M, R, 3))
# --------------------------------------------------------------------------------------------
def _quadratic(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real roots ``lo <= hi`` of ``a s² + 2 b s + c = 0`` (a > 0), stable; (inf, -inf) without roots."""
    disc = b * b - a * c
    ok = disc >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        q = -(b + np.copysign(np.sqrt(np.where(ok, disc, 0.0)), b))
        r1, r2 = q / a, c / q
    lo, hi = np.minimum(r1, r2), np.maximum(r1, r2)
    ok &= np.isfinite(lo) & np.isfinite(hi)
    return np.where(ok, lo, np.inf), np.where(ok, hi, -np.inf)


def _hit_sphere(params: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = params[:, None, 0]
    b = _dot3(o, d)
    lo, _ = _quadratic(np.ones_like(b), b, _dot3(o, o) - r * r)
    hit = np.isfinite(lo) & (lo > 0)
    s = np.where(hit, lo, np.inf)
    normal = (o + np.where(hit, lo, 0.0)[..., None] * d) / r[..., None]
    return s, normal


def _slab(lo_b: np.ndarray, hi_b: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit parameters of the slab ``lo_b <= o + s d <= hi_b`` (elementwise); d = 0 handled."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo_b - o) / d, (hi_b - o) / d
    inside = (o >= lo_b) & (o <= hi_b)
    parallel = d == 0
    t_in = np.where(parallel, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2))
    t_out = np.where(parallel, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2))
    return t_in, t_out


def _hit_box(params: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = params[:, None, :]  # (M, 1, 3)
    t_in, t_out = _slab(-h, h, o, d)  # (M, R, 3)
    near, far = t_in.max(-1), t_out.min(-1)
    s = np.where((near <= far) & (near > 0), near, np.inf)
    axis = np.argmax(t_in, axis=-1)  # face of entry
    normal = np.zeros_like(o)
    sign = -np.sign(np.take_along_axis(d, axis[..., None], -1))
    np.put_along_axis(normal, axis[..., None], sign, -1)
    return s, normal


def _hit_cylinder(params: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, h = params[:, None, 0], params[:, None, 1]
    a = d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]
    b = o[..., 0] * d[..., 0] + o[..., 1] * d[..., 1]
    c = o[..., 0] * o[..., 0] + o[..., 1] * o[..., 1] - r * r
    side_in, side_out = _quadratic(np.where(a > 0, a, 1.0), b, c)
    side_in = np.where(a > 0, side_in, np.where(c <= 0, -np.inf, np.inf))
    side_out = np.where(a > 0, side_out, np.where(c <= 0, np.inf, -np.inf))
    cap_in, cap_out = _slab(-h, h, o[..., 2], d[..., 2])
    near, far = np.maximum(side_in, cap_in), np.minimum(side_out, cap_out)
    hit = (near <= far) & (near > 0) & np.isfinite(near)
    s = np.where(hit, near, np.inf)
    p = o + np.where(hit, near, 0.0)[..., None] * d
    radial = np.stack([p[..., 0] / r, p[..., 1] / r, np.zeros_like(s)], axis=-1)
    cap = np.zeros_like(o)
    cap[..., 2] = -np.sign(d[..., 2])
    return s, np.where((side_in >= cap_in)[..., None], radial, cap)


def _hit_torus(params: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    big, small = params[:, None, 0], params[:, None, 1]
    reach = big + small
    b = _dot3(o, d)
    c = _dot3(o, o) - reach * reach
    s = np.full(b.shape, np.inf)
    normal = np.zeros_like(o)
    cand = (b * b - c > 0) & (np.sqrt(np.maximum(b * b - c, 0.0)) - b > 0)  # meets the bounding sphere ahead
    if not cand.any():
        return s, normal
    m_idx, r_idx = np.nonzero(cand)
    R, r = big[m_idx, 0], small[m_idx, 0]
    dd, bb = d[m_idx, r_idx], b[m_idx, r_idx]
    oo = o[m_idx, r_idx] - bb[:, None] * dd  # closest point of the ray to the centre; s = s' - b
    k = _dot3(oo, oo) + R * R - r * r
    c2 = 2 * k - 4 * R * R * (dd[:, 0] * dd[:, 0] + dd[:, 1] * dd[:, 1])
    c1 = -8 * R * R * (oo[:, 0] * dd[:, 0] + oo[:, 1] * dd[:, 1])
    c0 = k * k - 4 * R * R * (oo[:, 0] * oo[:, 0] + oo[:, 1] * oo[:, 1])
    comp = np.zeros((m_idx.size, 4, 4))  # companion matrix of s^4 + c2 s^2 + c1 s + c0
    comp[:, 0, 1], comp[:, 0, 2], comp[:, 0, 3] = -c2, -c1, -c0
    comp[:, 1, 0] = comp[:, 2, 1] = comp[:, 3, 2] = 1.0
    roots = np.linalg.eigvals(comp)  # (M', 4)
    real = np.abs(roots.imag) <= _ROOT_IMAG_TOL * (R + r)[:, None]
    x = roots.real
    c2_, c1_, c0_ = c2[:, None], c1[:, None], c0[:, None]
    for _ in range(2):  # Newton polish on the quartic; keep a step only if it lowers |f|
        f = ((x * x + c2_) * x + c1_) * x + c0_
        df = (4 * x * x + 2 * c2_) * x + c1_
        with np.errstate(divide="ignore", invalid="ignore"):
            x_new = x - f / df
        f_new = ((x_new * x_new + c2_) * x_new + c1_) * x_new + c0_
        x = np.where(np.isfinite(x_new) & (np.abs(f_new) < np.abs(f)), x_new, x)
    t = x - bb[:, None]
    t = np.where(real & (t > 0), t, np.inf).min(-1)
    s[m_idx, r_idx] = t
    hit = np.isfinite(t)
    p = oo[hit] + (t[hit] + bb[hit])[:, None] * dd[hit]
    rho = np.hypot(p[:, 0], p[:, 1])
    tube = p.copy()
    tube[:, 0] -= R[hit] * p[:, 0] / rho
    tube[:, 1] -= R[hit] * p[:, 1] / rho
    normal[m_idx[hit], r_idx[hit]] = tube / _norm3(tube)[:, None]
    return s, normal


_HIT = (_hit_sphere, _hit_box, _hit_cylinder, _hit_torus)


def _cast(scene: Mapping[str, np.ndarray], origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, ...]:
    """First hits of rays (N, R, 3) + t (N, R, 3) with batched scenes: depth, normal (world), primitive."""
    kind = scene["prim_kind"]
    n, p = kind.shape
    n_rays = origins.shape[1]
    depth = np.full((n, p, n_rays), np.inf)
    normal = np.zeros((n, p, n_rays, 3))
    for k, fn in enumerate(_HIT):
        n_idx, p_idx = np.nonzero(kind == k)
        if not n_idx.size:
            continue
        rot = scene["prim_rotation"][n_idx, p_idx][:, None]  # (M, 1, 3, 3)
        o = _to_local(origins[n_idx] - scene["prim_translation"][n_idx, p_idx][:, None], rot)  # (M, R, 3)
        d = _to_local(dirs[n_idx], rot)
        s, nl = fn(scene["prim_params"][n_idx, p_idx], o, d)
        depth[n_idx, p_idx] = s
        normal[n_idx, p_idx] = _to_world(nl, rot)
    if p == 0:
        return np.zeros((n, n_rays)), np.zeros((n, n_rays, 3)), np.full((n, n_rays), -1)
    first = np.argmin(depth, axis=1)  # (N, R)
    best = np.take_along_axis(depth, first[:, None], 1)[:, 0]
    hit = np.isfinite(best)
    nrm = np.take_along_axis(normal, first[:, None, :, None], 1)[:, 0]
    return np.where(hit, best, 0.0), np.where(hit[..., None], nrm, 0.0), np.where(hit, first, -1)


def cast_rays(scene: Mapping[str, np.ndarray], origins: np.ndarray, directions: np.ndarray) -> dict[str, np.ndarray]:
    """Exact first hits of rays with the union of a scene's primitives (see the module docstring).

    Args:
        scene: ``prim_*`` arrays of one scene (P, ...) or of a batch (N, P, ...).
        origins: (R, 3) or (N, R, 3) ray origins, **outside** every primitive (not checked here;
            :func:`render` checks camera centres).
        directions: (R, 3) or (N, R, 3) non-zero directions (normalised here), matching ``origins``.

    Returns:
        ``{"depth": (..., R), "mask": (..., R), "normal": (..., R, 3), "primitive": (..., R)}``:
        distance along the unit direction to the first hit (0 on a miss), whether the ray hits,
        the outward unit normal there (0 on a miss) and the index of the primitive hit (-1).

    Raises:
        ValueError: for malformed scene arrays, shapes that disagree, or zero directions.
    """
    batch, batched = _scene_batch(scene, "cast_rays")
    origins, directions = np.asarray(origins, dtype=np.float64), np.asarray(directions, dtype=np.float64)
    want = 3 if batched else 2
    if origins.ndim != want or origins.shape[-1] != 3 or origins.shape != directions.shape \
            or (batched and origins.shape[0] != batch["prim_kind"].shape[0]):
        raise ValueError(f"cast_rays: origins and directions must both be {'(N, R, 3)' if batched else '(R, 3)'} "
                         f"matching the scene, got {origins.shape} and {directions.shape}")
    if not batched:
        origins, directions = origins[None], directions[None]
    norm = _norm3(directions)[..., None]
    if not (np.isfinite(origins).all() and np.isfinite(directions).all()) or (norm == 0).any():
        raise ValueError("cast_rays: origins and directions must be finite, directions non-zero")
    depth, normal, prim = _cast(batch, origins, directions / norm)
    out = {"depth": depth, "mask": prim >= 0, "normal": normal, "primitive": prim}
    return out if batched else {k: v[0] for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
def _world_rays(intrinsics: np.ndarray, cam_to_world: np.ndarray, height: int, width: int) -> np.ndarray:
    """Plücker rays (N, V, H*W, 6) float64, per scene through camera_rays (batch-independent round-off)."""
    pixels = pixels_grid(height, width, dtype=torch.float64)[None]  # (1, HW, 2)
    return np.stack([
        camera_rays(torch.from_numpy(k), torch.from_numpy(c), pixels).numpy()
        for k, c in zip(intrinsics, cam_to_world, strict=True)
    ]) if len(intrinsics) else np.zeros((0, cam_to_world.shape[1], height * width, 6))


def _render(scene: Mapping[str, np.ndarray], intrinsics: np.ndarray, cam_to_world: np.ndarray,
            config: SceneConfig) -> dict[str, np.ndarray]:
    """Batched render: depth/mask (N, V, HW), colour (N, V, HW, 3) and hit points (N, V, HW, 3)."""
    n, v = cam_to_world.shape[:2]
    hw = config.height * config.width
    rays = _world_rays(intrinsics, cam_to_world, config.height, config.width)  # (N, V, HW, 6)
    centres = np.broadcast_to(cam_to_world[:, :, None, :3, 3], (n, v, hw, 3))
    dirs = rays[..., :3]
    depth, normal, prim = _cast(scene, centres.reshape(n, v * hw, 3), dirs.reshape(n, v * hw, 3))
    depth, normal, prim = depth.reshape(n, v, hw), normal.reshape(n, v, hw, 3), prim.reshape(n, v, hw)
    mask = prim >= 0
    light = np.asarray(config.light_direction)
    light = light / math.sqrt(float(light @ light))
    light_w = _to_world(light, cam_to_world[:, :, None, :3, :3])  # (N, V, 1, 3) = R_c l
    lambert = np.maximum(_dot3(normal, light_w), 0.0)  # (N, V, HW)
    albedo = np.take_along_axis(scene["prim_albedo"], np.maximum(prim, 0).reshape(n, v * hw, 1), 1)
    shade = config.ambient + (1.0 - config.ambient) * lambert
    colour = np.where(mask[..., None], albedo.reshape(n, v, hw, 3) * shade[..., None], 0.0)
    hits = centres + depth[..., None] * dirs
    return {"depth": depth, "mask": mask, "colour": colour, "hits": hits}


def render(scene: Mapping[str, np.ndarray], intrinsics: np.ndarray, cam_to_world: np.ndarray,
           config: SceneConfig = SceneConfig()) -> dict[str, np.ndarray]:
    """Render depth, hit mask and shaded colour of a scene from pinhole cameras, one ray per pixel.

    Args:
        scene: ``prim_*`` arrays of one scene (P, ...) or a batch (N, P, ...).
        intrinsics: (3, 3), (V, 3, 3) or (N, V, 3, 3) matrices ``K`` for ``config.height`` x
            ``config.width`` images.
        cam_to_world: (V, 4, 4) or (N, V, 4, 4) rigid poses ``[R_c t_c; 0 1]``; every centre
            ``t_c`` outside the scene's primitives.
        config: supplies ``height``, ``width``, ``ambient`` and ``light_direction``.

    Returns:
        ``{"depth": (..., V, H*W), "mask": (..., V, H*W), "colour": (..., V, H*W, 3)}``, pixels
        row-major as :func:`eqt.primitives.rays.pixels_grid`.

    Raises:
        ValueError: on malformed scenes, no views (V = 0), degenerate intrinsics or poses
            (non-rigid, improper, non-finite), or a camera inside a primitive.
    """
    if not isinstance(config, SceneConfig):
        raise ValueError(f"render: config must be a SceneConfig, got {type(config).__name__}")  # noqa: TRY004
    batch, batched = _scene_batch(scene, "render")
    n = batch["prim_kind"].shape[0]
    cam_to_world = np.asarray(cam_to_world, dtype=np.float64)
    intrinsics = np.asarray(intrinsics, dtype=np.float64)
    if not batched:
        cam_to_world = cam_to_world[None]
        intrinsics = intrinsics[None] if intrinsics.ndim == 3 else intrinsics
    if cam_to_world.ndim == 4 and intrinsics.ndim in (2, 3) and intrinsics.shape[-2:] == (3, 3):
        try:
            intrinsics = np.broadcast_to(intrinsics, (*cam_to_world.shape[:2], 3, 3))
        except ValueError:
            pass  # reported by _check_cameras
    _check_cameras(intrinsics, cam_to_world, n, "render")
    inside = _scene_sdf(batch, cam_to_world[:, :, :3, 3]) <= 0  # (N, V)
    if inside.any():
        i, j = np.argwhere(inside)[0]
        where = f"camera {j} of scene {i}" if batched else f"camera {j}"
        raise ValueError(f"render: degenerate camera pose, {where} is inside the scene; cameras must be outside "
                         f"every primitive")
    out = _render(batch, np.ascontiguousarray(intrinsics), cam_to_world, config)
    del out["hits"]
    return out if batched else {k: v[0] for k, v in out.items()}


def scene_rays(sample: Mapping[str, np.ndarray], *, dtype: Any = np.float64) -> np.ndarray:
    """Plücker rays (..., V, H*W, 6) of every pixel of a sample's cameras (:func:`camera_rays`).

    Args:
        sample: with ``intrinsics`` (..., V, 3, 3), ``cam_to_world`` (..., V, 4, 4) and
            ``image_size`` (2,) = (H, W).
        dtype: output dtype (computed in float64).

    Returns:
        (..., V, H*W, 6) rays ``(d, m)``, pixels row-major.

    Raises:
        ValueError: if a key is missing or the cameras are malformed.
    """
    missing = [k for k in (*_CAMERA_KEYS, "image_size") if k not in sample]
    if missing:
        raise ValueError(f"scene_rays: sample lacks {', '.join(missing)}")
    c2w = np.asarray(sample["cam_to_world"], dtype=np.float64)
    k = np.asarray(sample["intrinsics"], dtype=np.float64)
    h, w = (int(x) for x in np.asarray(sample["image_size"]).reshape(2))
    if c2w.ndim < 3 or c2w.shape[-2:] != (4, 4) or k.shape != (*c2w.shape[:-2], 3, 3):
        raise ValueError(f"scene_rays: cam_to_world (..., V, 4, 4) and intrinsics (..., V, 3, 3) disagree: "
                         f"{c2w.shape}, {k.shape}")
    lead = c2w.shape[:-3]
    flat_c, flat_k = c2w.reshape(-1, *c2w.shape[-3:]), k.reshape(-1, *k.shape[-3:])
    if flat_c.shape[0]:
        _check_cameras(flat_k, flat_c, flat_c.shape[0], "scene_rays")
    rays = np.empty((*flat_c.shape[:2], h * w, 6), dtype=dtype)
    for start in range(0, flat_c.shape[0], _CHUNK):
        stop = start + _CHUNK
        rays[start:stop] = _world_rays(flat_k[start:stop], flat_c[start:stop], h, w)
    return rays.reshape(*lead, c2w.shape[-3], h * w, 6)


def _scene_sdf_public_batch(scene: Mapping[str, np.ndarray], points: np.ndarray, where: str) -> np.ndarray:
    batch, batched = _scene_batch(scene, where)
    points = np.asarray(points, dtype=np.float64)
    want = 3 if batched else 2
    if points.ndim != want or points.shape[-1] != 3 or (batched and points.shape[0] != batch["prim_kind"].shape[0]):
        raise ValueError(f"{where}: points must be {'(N, Q, 3)' if batched else '(Q, 3)'} matching the scene, "
                         f"got {points.shape}")
    out = _scene_sdf(batch, points if batched else points[None])
    return out if batched else out[0]


def scene_sdf(scene: Mapping[str, np.ndarray], points: np.ndarray) -> np.ndarray:
    """Signed distance (..., Q) of points to the union of a scene's primitives (min of exact SDFs).

    Args:
        scene: ``prim_*`` arrays of one scene (P, ...) or a batch (N, P, ...).
        points: (Q, 3) or (N, Q, 3) world points.

    Returns:
        (Q,) or (N, Q): exact distance outside, negative inside (its magnitude a lower bound of
        the distance to the surface); +inf for a scene without primitives.

    Raises:
        ValueError: for malformed scene arrays or points.
    """
    return _scene_sdf_public_batch(scene, points, "scene_sdf")


def occupancy(scene: Mapping[str, np.ndarray], points: np.ndarray) -> np.ndarray:
    """Whether points (Q, 3) or (N, Q, 3) lie inside (or on) the union of the primitives: (..., Q) bool."""
    return _scene_sdf_public_batch(scene, points, "occupancy") <= 0


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------
def _sample_geometry(rng: np.random.Generator, config: SceneConfig) -> dict[str, np.ndarray]:
    """One scene's primitives (P slots) and cameras (V), from its own generator."""
    p_max, v = config.max_primitives, config.n_views
    count = int(rng.integers(config.n_primitives[0], config.n_primitives[1] + 1))
    kinds = np.array([KINDS.index(k) for k in config.kinds])[rng.integers(0, len(config.kinds), size=count)]
    u = rng.uniform(size=(count, 3))
    ranges = {
        0: ((config.sphere_radius,) * 1, 1),
        1: ((config.box_half_size,) * 3, 3),
        2: ((config.cylinder_radius, config.cylinder_half_height), 2),
        3: ((config.torus_major_radius, config.torus_minor_radius), 2),
    }
    params = np.zeros((count, 3))
    for i, k in enumerate(kinds):
        bounds, used = ranges[int(k)]
        for j in range(used):
            lo, hi = bounds[j]
            params[i, j] = lo + (hi - lo) * u[i, j]
    rotation = haar_rotations(rng, count)
    direction = rng.standard_normal((count, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    translation = direction * (config.extent * np.cbrt(rng.uniform(size=(count, 1))))
    albedo = rng.uniform(config.albedo[0], config.albedo[1], size=(count, 3))

    cam_dir = rng.standard_normal((v, 3))
    cam_dir /= np.linalg.norm(cam_dir, axis=1, keepdims=True)
    dist = rng.uniform(config.camera_distance[0], config.camera_distance[1], size=(v, 1))
    roll = rng.uniform(0.0, 2.0 * math.pi, size=v)

    out = {
        "prim_kind": np.full(p_max, -1, dtype=np.int64),
        "prim_params": np.zeros((p_max, 3)),
        "prim_rotation": np.broadcast_to(np.eye(3), (p_max, 3, 3)).copy(),
        "prim_translation": np.zeros((p_max, 3)),
        "prim_albedo": np.zeros((p_max, 3)),
        "intrinsics": np.broadcast_to(pinhole_intrinsics(config.height, config.width, config.fov_degrees),
                                      (v, 3, 3)).copy(),
        "cam_to_world": look_at(cam_dir * dist, np.zeros(3), roll),
    }
    for key, val in (("prim_kind", kinds), ("prim_params", params), ("prim_rotation", rotation),
                     ("prim_translation", translation), ("prim_albedo", albedo)):
        out[key][:count] = val
    return out


def _sample_points(rng: np.random.Generator, hits: np.ndarray, mask: np.ndarray, config: SceneConfig) -> np.ndarray:
    """Query points (Q, 3) of one scene: near-surface (from hit pixels) then uniform, rounded to float32."""
    q = config.n_points
    n_near = round(config.near_surface_fraction * q)
    surface = hits[mask]  # (hits, 3)
    if not surface.shape[0]:
        n_near = 0
    half = config.bounding_radius
    near = surface[rng.integers(0, max(surface.shape[0], 1), size=n_near)] \
        + config.near_surface_std * rng.standard_normal((n_near, 3))
    uniform = rng.uniform(-half, half, size=(q - n_near, 3))
    return np.concatenate([near, uniform]).astype(np.float32).astype(np.float64)


def _iter_chunks(n: int, config: SceneConfig, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """Scenes ``[0, n)`` in chunks of :data:`_CHUNK`, scene ``i`` from ``default_rng([seed, i])``."""
    for start in range(0, n, _CHUNK):
        idx = range(start, min(n, start + _CHUNK))
        rngs = [np.random.default_rng([int(seed), i]) for i in idx]
        parts = [_sample_geometry(rng, config) for rng in rngs]
        chunk = {k: np.stack([p[k] for p in parts]) for k in parts[0]}
        images = _render(chunk, chunk["intrinsics"], chunk["cam_to_world"], config)
        points = np.stack([_sample_points(rng, h, m, config)
                           for rng, h, m in zip(rngs, images["hits"], images["mask"], strict=True)])
        chunk.update({k: images[k] for k in _IMAGE_KEYS})
        chunk["points"] = points
        chunk["occupancy"] = _scene_sdf(chunk, points) <= 0
        yield chunk


def _empty(config: SceneConfig) -> dict[str, np.ndarray]:
    p, v, hw, q = config.max_primitives, config.n_views, config.height * config.width, config.n_points
    shapes = {"prim_kind": (0, p), "prim_params": (0, p, 3), "prim_rotation": (0, p, 3, 3),
              "prim_translation": (0, p, 3), "prim_albedo": (0, p, 3), "intrinsics": (0, v, 3, 3),
              "cam_to_world": (0, v, 4, 4), "depth": (0, v, hw), "mask": (0, v, hw), "colour": (0, v, hw, 3),
              "points": (0, q, 3), "occupancy": (0, q)}
    dtypes = {"prim_kind": np.int64, "mask": np.bool_, "occupancy": np.bool_}
    return {k: np.zeros(s, dtype=dtypes.get(k, np.float64)) for k, s in shapes.items()}


def _check_n_seed(n: Any, seed: Any, config: Any, where: str, name: str = "n") -> None:
    if not _is_int(n) or n < 0:
        raise ValueError(f"{where}: {name} must be an int >= 0, got {n!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"{where}: seed must be an int >= 0, got {seed!r}")
    if not isinstance(config, SceneConfig):
        raise ValueError(f"{where}: config must be a SceneConfig, got {type(config).__name__}")  # noqa: TRY004


def sample_scenes(n: int, config: SceneConfig = SceneConfig(), seed: int = 0) -> dict[str, np.ndarray]:
    """Sample and render ``n`` scenes (see the module docstring for the protocol and the keys).

    Args:
        n: number of scenes (>= 0).
        config: scene parameters.
        seed: non-negative base seed; scene ``i`` uses ``np.random.default_rng([seed, i])``.

    Returns:
        The arrays of the module docstring's table (all but ``rays``), float64, with the leading
        axis ``N = n``; ``image_size`` is (2,).

    Raises:
        ValueError: on a negative ``n`` or ``seed``, or a ``config`` that is not a :class:`SceneConfig`.
    """
    _check_n_seed(n, seed, config, "sample_scenes")
    chunks = list(_iter_chunks(int(n), config, int(seed)))
    out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} if chunks else _empty(config)
    out["image_size"] = np.array([config.height, config.width], dtype=np.int64)
    return out


# --------------------------------------------------------------------------------------------
# Rigid motions
# --------------------------------------------------------------------------------------------
def apply_se3(sample: Mapping[str, np.ndarray], rotation: np.ndarray, translation: np.ndarray) -> dict[str, np.ndarray]:
    """Move a sample's scene, cameras and query points rigidly by ``x -> Q x + u``.

    Primitive poses become ``(Q R, Q t + u)``, camera poses ``[Q R_c, Q t_c + u]``, points
    ``Q p + u`` and rays (if present) move by :func:`eqt.primitives.rays.transform_rays`. Images,
    depths, masks, occupancy, intrinsics and any other key are copied unchanged: re-rendering the
    result gives the same images (the data are SE(3)-consistent).

    Args:
        sample: arrays as from :func:`sample_scenes` or :func:`load`, for one scene (no ``N`` axis)
            or a batch; keys that are absent are skipped.
        rotation: (3, 3) or (N, 3, 3) proper rotation(s), one per scene of a batch.
        translation: (3,) or (N, 3).

    Returns:
        A new dict with the moved arrays (float64 for moved float64 inputs; dtypes kept).

    Raises:
        ValueError: if the rotation is not in SO(3) (to 1e-6), shapes disagree, or input is non-finite.
    """
    q = np.asarray(rotation, dtype=np.float64)
    u = np.asarray(translation, dtype=np.float64)
    if q.shape[-2:] != (3, 3) or q.ndim > 3 or u.shape != (*q.shape[:-2], 3):
        raise ValueError(f"apply_se3: rotation must be (3, 3) or (N, 3, 3) and translation (3,) or (N, 3) "
                         f"alike, got {q.shape} and {u.shape}")
    if not (np.isfinite(q).all() and np.isfinite(u).all()):
        raise ValueError("apply_se3: rotation and translation must be finite")
    err = np.abs(q @ np.swapaxes(q, -1, -2) - np.eye(3)).max() if q.size else 0.0
    if err > _POSE_TOL or (np.linalg.det(q) < 0).any():
        raise ValueError(f"apply_se3: rotation must be a proper rotation (SO(3)); error {err:.2e}, "
                         f"det {np.linalg.det(q).min():+.3f} (reflections would mirror the images)")
    lead = None  # the sample's batch shape, from an array whose rank is known
    for key, core in (("prim_kind", 1), ("cam_to_world", 3), ("points", 2), ("occupancy", 1)):
        if key in sample:
            lead = np.shape(sample[key])[:-core]
            break
    if q.ndim == 3 and lead != (q.shape[0],):
        raise ValueError(f"apply_se3: {q.shape[0]} rotations need a batch of {q.shape[0]} scenes, "
                         f"the sample has batch shape {lead}")
    out = dict(sample)
    qb, ub = q[..., None, :, :], u[..., None, :]  # broadcast over the P, V or Q axis

    def move(key: str, fn) -> None:
        if key in sample:
            arr = np.asarray(sample[key])
            moved = fn(arr.astype(np.float64))
            out[key] = moved.astype(arr.dtype) if arr.dtype != np.float64 else moved

    def points(x: np.ndarray) -> np.ndarray:
        return _to_world(x, qb) + ub

    def poses(x: np.ndarray) -> np.ndarray:
        y = x.copy()
        y[..., :3, :3] = qb @ x[..., :3, :3]
        y[..., :3, 3] = points(x[..., :3, 3])
        return y

    try:
        move("prim_rotation", lambda r: qb @ r)
        move("prim_translation", points)
        move("cam_to_world", poses)
        move("points", points)
        if "rays" in sample:
            qr, ur = q[..., None, None, :, :], u[..., None, None, :]  # rays (..., V, HW, 6)
            move("rays", lambda r: transform_rays(torch.from_numpy(qr), torch.from_numpy(ur),
                                                  torch.from_numpy(r)).numpy())
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"apply_se3: sample arrays do not match the rotation {q.shape}: {one_line(exc)}") from None
    return out


# --------------------------------------------------------------------------------------------
# Splits and files
# --------------------------------------------------------------------------------------------
def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown scene split {split!r}; expected one of {', '.join(SPLITS)}")


def generate(
    root: str | os.PathLike,
    n_train: int,
    n_val: int,
    n_test: int,
    config: SceneConfig = SceneConfig(),
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Sample the ``train``, ``val`` and ``test`` splits and write ``{root}/{split}.npz`` plus ``meta.json``.

    Each split has its own seed derived from ``seed`` and its name. A split of size 0 is skipped.
    A split whose file exists, loads and is recorded in ``meta.json`` with the same size, seed,
    config and format is kept unless ``overwrite``. Files are written atomically; ``meta.json`` is
    rewritten after each split, keeping the entries of the others. On disk, depth, colour and
    points are float32 (the points are float32 already, so the labels stay exact), geometry float64.

    Args:
        root: output folder (created if missing).
        n_train: scenes in ``train`` (>= 0).
        n_val: scenes in ``val`` (>= 0).
        n_test: scenes in ``test`` (>= 0).
        config: scene parameters, shared by the splits.
        seed: non-negative base seed.
        overwrite: regenerate splits even when up to date.

    Returns:
        ``{split: path of its .npz}`` for the splits of size >= 1.

    Raises:
        ValueError: on a negative size or seed, or a ``config`` that is not a :class:`SceneConfig`.
    """
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    for split, size in sizes.items():
        _check_n_seed(size, seed, config, "generate", f"n_{split}")
    return write_splits(
        root,
        {split: size for split, size in sizes.items() if size > 0},
        seed,
        configs=dict.fromkeys(sizes, config.to_dict()),
        make=lambda split, size, split_seed: _stored_split(size, config, split_seed),
        verify=lambda split: load(root, split, rays=False),
        format_name="eqt.data.scenes",
        format_version=_FORMAT_VERSION,
        overwrite=overwrite,
    )


def _stored_split(n: int, config: SceneConfig, seed: int) -> dict[str, np.ndarray]:
    """``n`` scenes of base seed ``seed`` in their on-disk dtypes (:data:`_STORE_DTYPES`)."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in _STORE_DTYPES if k != "image_size"}
    for chunk in _iter_chunks(n, config, seed):
        for key, arrays in parts.items():
            arrays.append(chunk[key].astype(_STORE_DTYPES[key]))
    data = {k: np.concatenate(v) for k, v in parts.items()}
    data["image_size"] = np.array([config.height, config.width], dtype=np.int64)
    return data


def _check_file_shapes(data: Mapping[str, np.ndarray], path: Path) -> None:
    kind = data["prim_kind"]
    if kind.ndim != 2:
        raise ValueError(f"{_WHAT} {path}: prim_kind must be (N, P), got {kind.shape}")
    n, p = kind.shape
    v = data["cam_to_world"].shape[1] if data["cam_to_world"].ndim == 4 else -1
    size = data["image_size"]
    if size.shape != (2,) or (size < 1).any():
        raise ValueError(f"{_WHAT} {path}: image_size must be (2,) positive, got {size}")
    hw = int(size[0]) * int(size[1])
    q = data["points"].shape[1] if data["points"].ndim == 3 else -1
    want = {"prim_params": (n, p, 3), "prim_rotation": (n, p, 3, 3), "prim_translation": (n, p, 3),
            "prim_albedo": (n, p, 3), "intrinsics": (n, v, 3, 3), "cam_to_world": (n, v, 4, 4),
            "depth": (n, v, hw), "mask": (n, v, hw), "colour": (n, v, hw, 3), "points": (n, q, 3),
            "occupancy": (n, q)}
    for key, shape in want.items():
        if data[key].shape != shape:
            raise ValueError(f"{_WHAT} {path}: {key} must have shape {shape}, got {data[key].shape}")
    if v < 1:
        raise ValueError(f"{_WHAT} {path} has no views (V = 0)")


def load(root: str | os.PathLike, split: str, *, rays: bool = True) -> dict[str, np.ndarray]:
    """Load one split written by :func:`generate`.

    Args:
        root: the folder passed to :func:`generate`.
        split: one of :data:`SPLITS`.
        rays: also return ``rays`` (N, V, H*W, 6) float32, computed from the cameras by
            :func:`scene_rays` (not stored, to halve the files).

    Returns:
        The arrays of the module docstring's table: geometry float64, ``prim_kind`` int64,
        ``depth``/``colour``/``points``/``rays`` float32, ``mask``/``occupancy`` bool.

    Raises:
        FileNotFoundError: if ``{root}/{split}.npz`` does not exist.
        ValueError: on an unknown split, or a file that is unreadable, lacks a key, has a wrong
            dtype or inconsistent shapes, or disagrees with ``meta.json`` (all naming the file).
    """
    _check_split(split)
    root = Path(root)
    path = split_path(root, split)
    data = read_npz(path, _KEYS, _WHAT, f"eqt.data.scenes.generate({str(root)!r}, ...)")
    for key, want in _STORE_DTYPES.items():
        if data[key].dtype != want:
            raise ValueError(f"{_WHAT} {path}: {key} has dtype {data[key].dtype}, expected "
                             f"{np.dtype(want).name}")
    _check_file_shapes(data, path)
    entry = meta_entry(root, split)
    if entry is not None:
        cfg = entry.get("config") or {}
        n, v, q = data["prim_kind"].shape[0], data["cam_to_world"].shape[1], data["points"].shape[1]
        hw = tuple(int(x) for x in data["image_size"])
        checks = (("scenes", n, entry.get("size")), ("views", v, cfg.get("n_views")),
                  ("query points", q, cfg.get("n_points")),
                  ("image size", hw, (cfg.get("height"), cfg.get("width")) if "height" in cfg else None))
        check_meta(path, _WHAT, checks)
    data["prim_kind"] = data["prim_kind"].astype(np.int64)
    if rays:
        data["rays"] = scene_rays(data, dtype=np.float32)
    return data
