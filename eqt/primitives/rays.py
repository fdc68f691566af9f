"""Plücker rays: embedding, the E(3) action, ray–ray and point–ray invariants, sections and twists.

Geometry of the ray transformer (spec ``rays.md`` §A.2). Pure functions, no parameters.

Conventions:

- **Layout.** A ray is a tensor ``(..., 6)`` = ``(d, m)``: a unit direction ``d = ray[..., :3]`` and
  the moment ``m = ray[..., 3:] = x × d`` for any point ``x`` on the ray (independent of the choice),
  so ``d · m = 0``. Rays are oriented: ``(d, m)`` and ``(-d, -m)`` are the same line, traversed in
  opposite directions. Functions that assume ``|d| = 1`` check it to
  ``max(1e-4, sqrt(finfo.eps))`` and raise a one-line ``ValueError`` otherwise.
- **Action of** ``g = (R, t)``, ``x -> R x + t`` with ``R`` orthogonal (:mod:`eqt.reps.groups`)::

      d' = R d,        m' = det(R) R m + t × (R d)

  The moment is a **pseudovector**: ``(R a) × (R b) = det(R) R (a × b)``, so for an improper ``R``
  the formula without ``det R`` would break ``m' = x' × d'``. For proper ``R`` it is the spec's
  ``m' = R m + t × R d``.
- **Invariants of a pair** ``(a, b)``: ``cos α = d_a · d_b``; the reciprocal product
  ``w = d_a · m_b + d_b · m_a``, SE(3)-invariant and a **pseudoscalar** (``w -> det(R) w``); the
  signed distance ``δ = w / |d_a × d_b|``; for (numerically) parallel rays, the distance between
  the parallel lines. ``w = 0`` iff the lines meet or are parallel.
- **Parallel threshold.** Rays with ``sin α = |d_a × d_b| < eps`` are treated as parallel. The
  default ``eps = sqrt(finfo(dtype).eps)`` (1.5e-8 in float64, 3.5e-4 in float32) balances the
  round-off of ``w / sin α`` (``~ finfo.eps |m| / eps``) against the error of the parallel formula
  on rays that are not exactly parallel (``~ eps |x|``, ``x`` the feet below).
- **Section** (:func:`ray_frame`): the reference ray is the z-axis through the origin,
  ``η = (e_z, 0)``, whose stabiliser is ``H = SO(2) × R`` (rotations about and translations along
  z). The canonical frame of a ray is ``(F, p)`` with ``F = [e1, e2, d]`` (columns, ``det F = +1``)
  the rotation by the smallest angle taking ``e_z`` to ``d`` and ``p = d × m`` the foot of the
  perpendicular from the origin; ``(F, p) · η = ray``. It is smooth on the sphere except at
  ``d = -e_z``, where no continuous choice exists (hairy ball); there ``F = diag(-1, 1, -1)``.
- **Twist** (:func:`ray_twist`): ``h(g, x) = s(g x)^{-1} g s(x) ∈ H``, an angle about z and a
  translation along z. A gauge change ``e1 -> Rz(γ) e1`` multiplies a type-k feature by ``e^{-ikγ}``.
- **Cameras** (:func:`camera_rays`): pinhole, OpenCV convention: camera x right, y down, z forward
  (viewing direction); pixel ``(u, v)`` = (column, row) coordinates, with integer values at pixel
  centres; ``K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]``; ``cam_to_world`` (4, 4) maps camera
  coordinates to world coordinates, ``x_w = R_c x_c + t_c`` (so ``t_c`` is the camera centre).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from eqt.primitives.radial import safe_norm

__all__ = [
    "rays_from_points",
    "ray_direction",
    "ray_moment",
    "ray_point",
    "normalize_rays",
    "pixels_grid",
    "camera_rays",
    "rays_to_pixels",
    "transform_rays",
    "ray_angle",
    "reciprocal_product",
    "ray_distance",
    "ray_pair_invariants",
    "point_ray_distance",
    "ray_frame",
    "ray_twist",
    "ray_pair_frames",
    "ray_pair_screw",
    "ray_local_invariants",
    "ray_azimuth",
]

_POSE_ATOL = 1e-4  # rigidity check of camera poses (loose: poses often come from float32 files)


# ----------------------------------------------------------------------------------------------- checks


def _unit_tol(dtype: torch.dtype) -> float:
    return max(1e-4, math.sqrt(torch.finfo(dtype).eps))


def _default_eps(dtype: torch.dtype) -> float:
    return math.sqrt(torch.finfo(dtype).eps)


def _check_last(x: Tensor, n: int, name: str) -> None:
    if x.dim() == 0 or x.shape[-1] != n:
        raise ValueError(f"{name} must have a last axis of {n}, got shape {tuple(x.shape)}")


def _check_rays(rays: Tensor, name: str = "rays", unit: bool = True) -> None:
    _check_last(rays, 6, f"{name} (d, m)")
    if unit and rays.numel():
        err = ((rays[..., :3] ** 2).sum(-1).sqrt() - 1).abs().max().item()
        if not err <= _unit_tol(rays.dtype):
            raise ValueError(f"{name} of shape {tuple(rays.shape)} need unit directions, |d| - 1 is off by {err:.2e}")


def _check_rotation(rotation: Tensor, name: str = "rotation") -> None:
    if rotation.dim() < 2 or rotation.shape[-2:] != (3, 3):
        raise ValueError(f"{name} must be (..., 3, 3), got shape {tuple(rotation.shape)}")


def _matvec(m: Tensor, v: Tensor) -> Tensor:
    """``(..., 3, 3) @ (..., 3) -> (..., 3)`` with broadcasting."""
    return (m @ v.unsqueeze(-1)).squeeze(-1)


def _cross(a: Tensor, b: Tensor) -> Tensor:
    a, b = torch.broadcast_tensors(a, b)
    return torch.linalg.cross(a, b, dim=-1)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1)


# ----------------------------------------------------------------------------------------------- embed / extract


def rays_from_points(origin: Tensor, direction: Tensor) -> Tensor:
    """Plücker rays ``(..., 6)`` through ``origin`` along ``direction`` (normalised here).

    Args:
        origin: ``(..., 3)`` a point on each ray.
        direction: ``(..., 3)`` non-zero directions (any length); broadcast with ``origin``.

    Returns:
        ``(..., 6)`` rays ``(d, origin × d)`` with ``|d| = 1``.

    Raises:
        ValueError: for a last axis other than 3, or a zero direction.
    """
    _check_last(origin, 3, "origin")
    _check_last(direction, 3, "direction")
    norm = safe_norm(direction, keepdim=True)
    if direction.numel() and bool((norm == 0).any()):
        raise ValueError(f"direction of shape {tuple(direction.shape)} has a zero vector; rays need non-zero ones")
    d = direction / norm
    origin, d = torch.broadcast_tensors(origin, d)
    return torch.cat([d, _cross(origin, d)], dim=-1)


def ray_direction(rays: Tensor) -> Tensor:
    """Directions ``(..., 3)`` of rays ``(..., 6)``."""
    _check_last(rays, 6, "rays (d, m)")
    return rays[..., :3]


def ray_moment(rays: Tensor) -> Tensor:
    """Moments ``(..., 3)`` (``m = x × d``) of rays ``(..., 6)``."""
    _check_last(rays, 6, "rays (d, m)")
    return rays[..., 3:]


def ray_point(rays: Tensor) -> Tensor:
    """The point ``(..., 3)`` of each ray closest to the origin, ``d × m``, of rays ``(..., 6)``.

    Raises:
        ValueError: for a last axis other than 6 or non-unit directions.
    """
    _check_rays(rays)
    return _cross(rays[..., :3], rays[..., 3:])


def normalize_rays(rays: Tensor) -> Tensor:
    """Project ``(..., 6)`` (non-zero ``d``) onto valid rays: ``d / |d|``, ``m / |d|`` minus its part along ``d``.

    Use it to remove round-off drift (e.g. after many float32 transforms).

    Raises:
        ValueError: for a last axis other than 6.
    """
    _check_rays(rays, unit=False)
    norm = safe_norm(rays[..., :3], keepdim=True, eps=1.0)
    d, m = rays[..., :3] / norm, rays[..., 3:] / norm
    return torch.cat([d, m - _dot(d, m).unsqueeze(-1) * d], dim=-1)


def pixels_grid(height: int, width: int, *, dtype: torch.dtype | None = None,
                device: torch.device | str | None = None) -> Tensor:
    """Pixel centres ``(height * width, 2)`` as ``(u, v)`` = (column, row), row-major (``v`` slowest).

    OpenCV convention: pixel centres have integer coordinates, ``u`` right, ``v`` down.

    Raises:
        ValueError: if ``height`` or ``width`` is not positive.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"pixels_grid needs a positive size, got ({height}, {width})")
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                          torch.arange(width, dtype=dtype, device=device), indexing="ij")
    return torch.stack([u, v], dim=-1).reshape(height * width, 2)


def _check_camera(intrinsics: Tensor, cam_to_world: Tensor) -> None:
    if intrinsics.dim() < 2 or intrinsics.shape[-2:] != (3, 3):
        raise ValueError(f"intrinsics K must be (..., 3, 3), got shape {tuple(intrinsics.shape)}")
    if cam_to_world.dim() < 2 or cam_to_world.shape[-2:] != (4, 4):
        raise ValueError(f"cam_to_world must be (..., 4, 4), got shape {tuple(cam_to_world.shape)}")
    if cam_to_world.numel():
        r = cam_to_world[..., :3, :3]
        eye = torch.eye(3, dtype=r.dtype, device=r.device)
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=r.dtype, device=r.device)
        err = max((r @ r.transpose(-1, -2) - eye).abs().max().item(),
                  (cam_to_world[..., 3, :] - bottom).abs().max().item())
        if not err <= _POSE_ATOL or bool((torch.linalg.det(r) < 0).any()):
            raise ValueError(f"cam_to_world of shape {tuple(cam_to_world.shape)} is not rigid "
                             f"([R t; 0 1], R in SO(3)): error {err:.2e}")


def camera_rays(intrinsics: Tensor, cam_to_world: Tensor, pixels: Tensor) -> Tensor:
    """World rays ``(..., P, 6)`` through the camera centre and ``pixels`` of pinhole cameras.

    Direction ``R_c K^{-1} (u, v, 1)`` normalised, through the centre ``t_c`` (OpenCV convention, see
    the module docstring).

    Args:
        intrinsics: ``(3, 3)`` or ``(..., 3, 3)`` matrices ``K``.
        cam_to_world: ``(..., 4, 4)`` rigid poses ``[R_c t_c; 0 1]``, ``R_c`` proper.
        pixels: ``(..., P, 2)`` pixel coordinates ``(u, v)``; batch axes broadcast with the others.

    Returns:
        ``(..., P, 6)`` rays.

    Raises:
        ValueError: if ``K`` is not 3x3, the pose not 4x4 rigid, or ``pixels`` not ``(..., P, 2)``.
    """
    _check_camera(intrinsics, cam_to_world)
    if pixels.dim() < 2 or pixels.shape[-1] != 2:
        raise ValueError(f"pixels must be (..., P, 2), got shape {tuple(pixels.shape)}")
    homog = torch.cat([pixels, torch.ones_like(pixels[..., :1])], dim=-1)  # (..., P, 3)
    k_inv = torch.linalg.inv(intrinsics)  # (..., 3, 3)
    rotation = cam_to_world[..., :3, :3]
    dirs = homog @ (rotation @ k_inv).transpose(-1, -2)  # (..., P, 3) = R_c K^-1 (u, v, 1)
    centre = cam_to_world[..., None, :3, 3]  # (..., 1, 3)
    return rays_from_points(centre, dirs)


def rays_to_pixels(intrinsics: Tensor, cam_to_world: Tensor, rays: Tensor) -> Tensor:
    """Pixels ``(..., P, 2)`` seen along rays ``(..., P, 6)`` by pinhole cameras (inverse of :func:`camera_rays`).

    Only the directions are used: the rays are assumed to pass through the camera centre (check
    with :func:`point_ray_distance`), and to point forward (``z > 0`` in the camera frame).

    Args:
        intrinsics: ``(3, 3)`` or ``(..., 3, 3)`` matrices ``K``.
        cam_to_world: ``(..., 4, 4)`` rigid poses.
        rays: ``(..., P, 6)`` rays.

    Returns:
        ``(..., P, 2)`` pixel coordinates ``(u, v)``.

    Raises:
        ValueError: for a bad ``K``, pose or ray shape, or non-unit directions.
    """
    _check_camera(intrinsics, cam_to_world)
    _check_rays(rays)
    if rays.dim() < 2:
        raise ValueError(f"rays must be (..., P, 6), got shape {tuple(rays.shape)}")
    # camera-frame directions R_c^T d, as rows: d^T R_c; then K
    proj = rays[..., :3] @ cam_to_world[..., :3, :3] @ intrinsics.transpose(-1, -2)  # (..., P, 3)
    return proj[..., :2] / proj[..., 2:]


# ----------------------------------------------------------------------------------------------- the action


def transform_rays(rotation: Tensor, translation: Tensor, rays: Tensor) -> Tensor:
    """Rays ``(..., 6)`` moved by ``x -> R x + t``: ``d' = R d``, ``m' = det(R) R m + t × R d``.

    Valid for proper and improper orthogonal ``R`` (the moment is a pseudovector). Directions need
    not be unit: the map is linear in ``(d, m)``.

    Args:
        rotation: ``(..., 3, 3)`` orthogonal matrices.
        translation: ``(..., 3)`` translations.
        rays: ``(..., 6)`` rays; batch axes broadcast.

    Returns:
        ``(..., 6)`` rays.

    Raises:
        ValueError: for wrong shapes.
    """
    _check_rotation(rotation)
    _check_last(translation, 3, "translation")
    _check_rays(rays, unit=False)
    sign = torch.where(torch.linalg.det(rotation) < 0, -1.0, 1.0).to(rotation.dtype)  # (...)
    d = _matvec(rotation, rays[..., :3])
    m = sign.unsqueeze(-1) * _matvec(rotation, rays[..., 3:]) + _cross(translation, d)
    d, m = torch.broadcast_tensors(d, m)
    return torch.cat([d, m], dim=-1)


# ----------------------------------------------------------------------------------------------- invariants


def ray_angle(a: Tensor, b: Tensor) -> Tensor:
    """Angle ``(...)`` in ``[0, π]`` between the directions of rays ``(..., 6)`` (``atan2(|d_a × d_b|, d_a · d_b)``).

    E(3)-invariant; ``cos α`` is simply ``(d_a * d_b).sum(-1)``.

    Raises:
        ValueError: for a last axis other than 6.
    """
    _check_rays(a, "a", unit=False)
    _check_rays(b, "b", unit=False)
    da, db = a[..., :3], b[..., :3]
    return torch.atan2(safe_norm(_cross(da, db)), _dot(da, db))


def _reciprocal(a: Tensor, b: Tensor) -> Tensor:
    return _dot(a[..., :3], b[..., 3:]) + _dot(b[..., :3], a[..., 3:])


def reciprocal_product(a: Tensor, b: Tensor) -> Tensor:
    """Reciprocal product ``(...)`` ``w = d_a · m_b + d_b · m_a`` of rays ``(..., 6)``.

    ``w = -δ sin α`` with ``δ`` the signed distance along ``n = d_a × d_b / |d_a × d_b|`` from ``a``
    to ``b``; zero iff the lines meet or are parallel. SE(3)-invariant; a **pseudoscalar** under
    E(3): an improper ``R`` flips its sign.

    Raises:
        ValueError: for a last axis other than 6 or non-unit directions.
    """
    _check_rays(a, "a")
    _check_rays(b, "b")
    return _reciprocal(a, b)


def _point_ray_distance(x: Tensor, rays: Tensor) -> Tensor:
    return safe_norm(_cross(x, rays[..., :3]) - rays[..., 3:])


def point_ray_distance(x: Tensor, rays: Tensor) -> Tensor:
    """Distance ``(...)`` from points ``(..., 3)`` to the lines of rays ``(..., 6)``: ``|x × d - m|``.

    E(3)-invariant; zero gradient (not NaN) on the line.

    Raises:
        ValueError: for wrong last axes or non-unit directions.
    """
    _check_last(x, 3, "x")
    _check_rays(rays)
    return _point_ray_distance(x, rays)


def _distance(a: Tensor, b: Tensor, eps: float | None, signed: bool) -> Tensor:
    eps = _default_eps(a.dtype) if eps is None else eps
    da, db = a[..., :3], b[..., :3]
    sin = safe_norm(_cross(da, db))
    parallel = sin < eps
    w = _reciprocal(a, b)
    skew = w / torch.where(parallel, torch.ones_like(sin), sin)
    if not signed:
        skew = skew.abs()
    # parallel: mean distance from each ray's foot (d × m) to the other line; exact when parallel
    feet_a, feet_b = _cross(da, a[..., 3:]), _cross(db, b[..., 3:])
    par = 0.5 * (_point_ray_distance(feet_a, b) + _point_ray_distance(feet_b, a))
    skew, par = torch.broadcast_tensors(skew, par)
    return torch.where(parallel, par, skew)


def ray_distance(a: Tensor, b: Tensor, *, signed: bool = False, eps: float | None = None) -> Tensor:
    """Closest-approach distance ``(...)`` between the lines of rays ``(..., 6)``.

    ``|w| / |d_a × d_b|`` (``w`` the reciprocal product) when ``sin α = |d_a × d_b| >= eps``; below
    the threshold the rays count as parallel and the result is the distance between parallel
    lines, computed as the mean distance from each ray's foot ``d × m`` to the other line (exact
    for exactly parallel or antiparallel rays; for nearly parallel ones it depends on the origin
    by ``~ sin α |d × m|``). The true closest-approach distance is discontinuous at ``α ∈ {0, π}``
    (nearly parallel lines in one plane meet far away), so no threshold avoids a jump there. Both
    branches are NaN-free, also in the gradient.

    Args:
        a, b: ``(..., 6)`` rays (broadcast).
        signed: return ``w / |d_a × d_b|`` (a pseudoscalar, SE(3)- but not E(3)-invariant) in the
            non-parallel branch; parallel rays still give the non-negative parallel distance.
        eps: parallel threshold on ``sin α``; default ``sqrt(finfo(dtype).eps)`` (1.5e-8 in float64).

    Returns:
        ``(...)`` distances.

    Raises:
        ValueError: for a last axis other than 6 or non-unit directions.
    """
    _check_rays(a, "a")
    _check_rays(b, "b")
    return _distance(a, b, eps, signed)


def ray_pair_invariants(a: Tensor, b: Tensor, *, eps: float | None = None) -> Tensor:
    """``(..., 3)`` = ``(cos α, w, δ)`` of rays ``(..., 6)``: cosine, reciprocal product, signed distance.

    The complete SE(3) invariants of a pair of rays (spec §A.2); ``w`` and ``δ`` flip sign under
    improper elements. ``δ`` is :func:`ray_distance` with ``signed=True``.

    Raises:
        ValueError: for a last axis other than 6 or non-unit directions.
    """
    _check_rays(a, "a")
    _check_rays(b, "b")
    cos = _dot(a[..., :3], b[..., :3])
    w = _reciprocal(a, b)
    delta = _distance(a, b, eps, signed=True)
    return torch.stack(torch.broadcast_tensors(cos, w, delta), dim=-1)


# ----------------------------------------------------------------------------------------------- sections and twists


def _canonical_e1(d: Tensor) -> Tensor:
    """First column of the smallest rotation taking e_z to d (Frisvad's basis, stable for z < 0)."""
    x, y, z = d.unbind(-1)
    rho2 = x * x + y * y
    south = (z < 0) & (rho2 == 0)
    # a = 1 / (1 + z), written as (1 - z) / (x^2 + y^2) for z < 0 to avoid cancellation near -e_z
    a = torch.where(z >= 0, 1 / (1 + z.clamp(min=0)), (1 - z) / torch.where(rho2 == 0, torch.ones_like(rho2), rho2))
    a = torch.where(south, torch.zeros_like(a), a)
    e1 = torch.stack([1 - a * x * x, -a * x * y, -x], dim=-1)
    fallback = torch.tensor([-1.0, 0.0, 0.0], dtype=d.dtype, device=d.device).expand_as(e1)
    return torch.where(south.unsqueeze(-1), fallback, e1)


def ray_frame(rays: Tensor, reference: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Section ``s(ray) = (F, p)``: a proper frame ``F (..., 3, 3)`` and origin ``p (..., 3)`` with ``s · η = ray``.

    ``η = (e_z, 0)``; ``F = [e1, e2, d]`` (columns), ``e2 = d × e1``; ``p = d × m`` the foot of the
    perpendicular from the origin. Without ``reference``, ``F`` is the rotation by the smallest
    angle taking ``e_z`` to ``d`` (identity for ``d = e_z``), smooth except at ``d = -e_z`` where
    ``F = diag(-1, 1, -1)``. With ``reference``, the gauge is fixed by a vector (e.g. the camera
    x-axis, as in the official code): ``e1`` is its normalised component orthogonal to ``d``.

    Args:
        rays: ``(..., 6)`` rays.
        reference: optional ``(..., 3)`` vectors, not parallel to the directions.

    Returns:
        ``(F, p)``: ``(..., 3, 3)`` rotations and ``(..., 3)`` points.

    Raises:
        ValueError: for bad shapes, non-unit directions, or a reference parallel to a direction.
    """
    _check_rays(rays)
    d, m = rays[..., :3], rays[..., 3:]
    if reference is None:
        e1 = _canonical_e1(d)
    else:
        _check_last(reference, 3, "reference")
        perp = reference - _dot(reference, d).unsqueeze(-1) * d
        norm = safe_norm(perp, keepdim=True)
        if perp.numel() and bool((norm <= _unit_tol(d.dtype) * safe_norm(reference, keepdim=True)).any()):
            raise ValueError(f"reference of shape {tuple(reference.shape)} is parallel to a ray direction")
        e1 = perp / norm
    e1, d = torch.broadcast_tensors(e1, d)
    e2 = _cross(d, e1)
    return torch.stack([e1, e2, d], dim=-1), _cross(d, m).expand(d.shape)


def ray_twist(rotation: Tensor, translation: Tensor, rays: Tensor) -> tuple[Tensor, Tensor]:
    """Twist ``h(g, x) = s(g x)^{-1} g s(x) ∈ SO(2) × R`` of the canonical section, as ``(γ, τ)``.

    ``h = (Rz(γ), τ e_z)``: ``R F(x) = F(g x) Rz(γ)`` and ``R p(x) + t = p(g x) + τ d'``.

    Args:
        rotation: ``(..., 3, 3)`` proper rotations.
        translation: ``(..., 3)`` translations.
        rays: ``(..., 6)`` rays.

    Returns:
        ``(γ, τ)``: ``(...)`` angles in ``(-π, π]`` and ``(...)`` translations along the ray.

    Raises:
        ValueError: for bad shapes, non-unit directions, or an improper rotation (the twist of an
            improper element is a reflection, not in ``SO(2) × R``).
    """
    _check_rotation(rotation)
    if rotation.numel() and bool((torch.linalg.det(rotation) < 0).any()):
        raise ValueError(f"ray_twist needs proper rotations, got an improper one in shape {tuple(rotation.shape)}")
    frame, foot = ray_frame(rays)
    moved = transform_rays(rotation, translation, rays)
    frame2, foot2 = ray_frame(moved)
    h = frame2.transpose(-1, -2) @ rotation @ frame  # (..., 3, 3) = Rz(γ)
    gamma = torch.atan2(h[..., 1, 0], h[..., 0, 0])
    tau = _dot(_matvec(rotation, foot) + translation - foot2, moved[..., :3])
    return gamma, tau


def ray_pair_frames(a: Tensor, b: Tensor, *, eps: float | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sections of two rays gauge-fixed by their common perpendicular: ``(F_a, q_a, F_b, q_b)``.

    ``F = [n, d × n, d]`` with ``n`` the unit common normal and ``q`` the foot of the common
    perpendicular on each ray. Then the relative element is a screw about ``n``:
    ``F_a^T F_b = Rx(α)`` and ``F_a^T (q_b - q_a) = (τ, 0, 0)`` (see :func:`ray_pair_screw`).
    Non-parallel (``sin α >= eps``): ``n = d_a × d_b / sin α``. Parallel: ``n`` is the unit
    component of ``p_b - p_a`` orthogonal to ``d_a`` (``p = d × m``), ``q_a = p_a`` and ``q_b`` the
    projection of ``p_a`` on ``b``; coincident lines (that component below ``eps``): ``n`` is ``e1`` of
    ``ray_frame(a)``.

    Args:
        a, b: ``(..., 6)`` rays (broadcast).
        eps: parallel threshold on ``sin α``, as in :func:`ray_distance`.

    Returns:
        ``F_a (..., 3, 3)``, ``q_a (..., 3)``, ``F_b (..., 3, 3)``, ``q_b (..., 3)``.

    Raises:
        ValueError: for a last axis other than 6 or non-unit directions.
    """
    _check_rays(a, "a")
    _check_rays(b, "b")
    a, b = torch.broadcast_tensors(a, b)
    eps = _default_eps(a.dtype) if eps is None else eps
    da, db = a[..., :3], b[..., :3]
    pa, pb = _cross(da, a[..., 3:]), _cross(db, b[..., 3:])
    r = pb - pa
    cross = _cross(da, db)
    sin = safe_norm(cross, keepdim=True)
    parallel = sin < eps  # (..., 1)
    cos = _dot(da, db).unsqueeze(-1)
    rda, rdb = _dot(r, da).unsqueeze(-1), _dot(r, db).unsqueeze(-1)
    den = torch.where(parallel, torch.ones_like(sin), sin * sin)
    s = torch.where(parallel, torch.zeros_like(rda), (rda - cos * rdb) / den)
    u = torch.where(parallel, -rdb, (cos * rda - rdb) / den)
    qa, qb = pa + s * da, pb + u * db
    perp = r - rda * da
    perp_norm = safe_norm(perp, keepdim=True)
    coincident = perp_norm < eps
    n_par = torch.where(coincident, _canonical_e1(da), perp / torch.where(coincident, torch.ones_like(perp_norm),
                                                                          perp_norm))
    n = torch.where(parallel, n_par, cross / torch.where(parallel, torch.ones_like(sin), sin))
    frame_a = torch.stack([n, _cross(da, n), da], dim=-1)
    frame_b = torch.stack([n, _cross(db, n), db], dim=-1)
    return frame_a, qa, frame_b, qb


def ray_pair_screw(a: Tensor, b: Tensor, *, eps: float | None = None) -> tuple[Tensor, Tensor]:
    """Relative element of two gauge-fixed rays as ``(α, τ)``: rotation about and translation along the common normal.

    With the frames of :func:`ray_pair_frames`, ``s_a^{-1} s_b = (Rx(α), τ e_x)``: ``α ∈ [0, π]``
    the angle between the rays and ``τ`` the distance from ``a`` to ``b`` along ``n``. Skew rays:
    ``τ = -w / sin α`` (``-δ``; flips sign under reflections). Parallel: ``τ >= 0`` the parallel
    distance, ``α ∈ {0, π}``.

    Args:
        a, b: ``(..., 6)`` rays.
        eps: parallel threshold on ``sin α``, as in :func:`ray_distance`.

    Returns:
        ``(α, τ)``, each ``(...)``.

    Raises:
        ValueError: for a last axis other than 6 or non-unit directions.
    """
    frame_a, qa, frame_b, qb = ray_pair_frames(a, b, eps=eps)
    rel = frame_a.transpose(-1, -2) @ frame_b  # (..., 3, 3) = Rx(α)
    alpha = torch.atan2(rel[..., 2, 1].abs(), rel[..., 1, 1])  # sin α >= 0 by the choice of n
    tau = _dot(frame_a[..., :, 0], qb - qa)
    return alpha, tau


def ray_local_invariants(frame: Tensor, origin: Tensor, rays: Tensor) -> Tensor:
    """Gauge-independent features ``(..., 4)`` of rays seen from a frame ``(F, origin)`` on another ray.

    With ``(d, m)`` the rays in the frame (``transform_rays(F^T, -F^T origin, rays)``):
    ``(d_z, m_z, |m|, (d × m)_z)`` = (``cos α`` with the frame's ray, the reciprocal product ``w``
    with it, the distance from ``origin`` to the line, the position along the frame's z-axis of the
    point of the line closest to ``origin``). All four are invariant under the gauge
    ``F -> F Rz(γ)`` (rotating the frame about its ray), so they are SE(3)-invariant whenever
    ``origin`` moves with the rays (e.g. a sample point on a target ray) and ``F`` is *any*
    section such as :func:`ray_frame`, even though the section is not equivariant (its twist is a
    rotation about z). The first two are invariant under all of ``H = SO(2) × R``, so they do not
    depend on the origin's position along the ray either.

    Args:
        frame: ``(..., 3, 3)`` proper frames whose third column is the frame's ray direction.
        origin: ``(..., 3)`` frame origins.
        rays: ``(..., 6)`` rays (broadcast).

    Returns:
        ``(..., 4)`` features.

    Raises:
        ValueError: for wrong shapes.
    """
    _check_rotation(frame, "frame")
    _check_last(origin, 3, "origin")
    _check_rays(rays, unit=False)
    inv = frame.transpose(-1, -2)
    local = transform_rays(inv, -_matvec(inv, origin), rays)  # (..., 6) in the frame
    d, m = local[..., :3], local[..., 3:]
    foot_z = d[..., 0] * m[..., 1] - d[..., 1] * m[..., 0]  # (d × m)_z
    return torch.stack([d[..., 2], m[..., 2], safe_norm(m), foot_z], dim=-1)


def ray_azimuth(frame: Tensor, vectors: Tensor) -> Tensor:
    """Azimuth ``(...)`` of vectors ``(..., 3)`` about the z-axis of frames ``(..., 3, 3)``: ``atan2(e2·v, e1·v)``.

    Gauge-covariant: ``F -> F Rz(γ)`` shifts it by ``-γ`` (mod 2π), so ``e^{ikψ}`` is a type-k
    feature. Used for the azimuths ``φ, ψ`` of the common normal in the kernels of spec §A.3.

    Raises:
        ValueError: for wrong shapes.
    """
    _check_rotation(frame, "frame")
    _check_last(vectors, 3, "vectors")
    return torch.atan2(_dot(frame[..., :, 1], vectors), _dot(frame[..., :, 0], vectors))
