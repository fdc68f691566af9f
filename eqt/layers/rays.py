"""Ray layers: SO(2)-frequency fields, ray→ray and ray→point convolution and attention (spec ``rays.md`` §A.3–4).

Feature types and layout
------------------------
Ray features are fields of the induced representation of ``H = SO(2) × R`` (spec §A.2) with a
trivial translation part: every channel has an SO(2) frequency ``k >= 0``. :class:`SO2Rep` lists
the channels per frequency, ``SO2Rep((m0, m1, ..., mK))`` or ``SO2Rep("16x0+8x1")``. Layout
``(..., rep.dim)``: the ``m0`` scalars, then for ``k = 1..K`` the ``m_k`` pairs ``(re, im)``
(channel-major, ``dim = m0 + 2 Σ m_k``). A type-k pair is the complex number ``z = re + i im`` in
the ray's frame (section) ``F = [e1, e2, d]`` (:func:`eqt.primitives.rays.ray_frame`); the gauge
change ``F -> F Rz(γ)`` turns it into ``e^{-ikγ} z`` (:func:`gauge_transform`), and a rigid motion
``g`` maps a field ``f`` to ``(g f)(g x) = ρ(h(g, x)) f(x)`` with ``ρ_k(γ) = e^{ikγ}`` and ``h`` the
twist (:func:`eqt.primitives.rays.ray_twist`).

Type-1 features are in one-to-one correspondence with 3-vectors perpendicular to the ray,
``v = re e1 + im e2`` (:func:`lift`; gauge-free), and :func:`project` is the inverse (it also
returns ``v · d`` as a scalar). The convolution and attention layers are built on that
correspondence: they lift the sources' type-1 features into world vectors, combine them with
SE(3)-invariant weights and with the equivariant vectors of the pair geometry (the source's
direction, anchor offsets), and project the result into the target's own frame. For ``k <= 1``
this is the kernel ``e^{i k_out φ_x} W(α, δ, ...) e^{-i k_in ψ_y}`` of spec §A.3-1 written in
Cartesian form: the projection onto the target frame supplies ``e^{i k_out φ_x}``, the lift the
``e^{-i k_in ψ_y}`` (a subspace of the general kernel space, chosen because it is smooth for
parallel, antiparallel and coincident rays, where the common normal is undefined). The layers
therefore need ``rep.kmax <= 1``; :class:`SO2Linear`, :class:`SO2Gate` and :class:`SO2LayerNorm`
take any frequency.

Geometry inputs
---------------
- ``rays (..., N, 6)``: Plücker ``(d, m)``, ``|d| = 1``, ``d · m = 0`` (checked, see :func:`check_rays`).
- ``anchors (..., N, 3)``: one point on each ray that moves with the scene (the surface hit, or
  the camera centre). Plücker coordinates forget where along the line a ray starts, so an
  SE(3)-invariant use of a depth needs a point on the ray: the only translation-carrying inputs
  the layers read are anchor differences and anchor-to-point offsets (spec §A.3-3).
- ``frames (..., N, 3, 3)``: the sections in which the type-k features are expressed, third
  column ``d``; default :func:`~eqt.primitives.rays.ray_frame`. Outputs do not depend on this choice
  beyond the gauge law above (tested).

Invariants read by the kernels
------------------------------
- ray pair ``(x, y)`` (:func:`ray_pair_features`, 7 numbers): ``cos α = d_x · d_y``, the reciprocal
  product ``w = d_x · m_y + d_y · m_x`` (SE(3)-invariant, chiral), and with ``e = a_y - a_x``:
  ``e · d_x``, ``e · d_y``, ``|e|``, ``|e × d_x|``, ``|e × d_y|`` (where y's anchor lies along and
  off ray x, and vice versa).
- point ``p`` and ray ``y`` (:func:`point_ray_features`, 3 numbers): ``t = (p - a_y) · d_y`` (the
  position of p's foot along the ray, relative to the anchor: ``t < 0`` is in front of a surface
  hit), ``r = |(p - a_y) × d_y|`` (distance to the line), ``|p - a_y|``.

Layers: :class:`SO2Linear`, :class:`SO2Gate`, :class:`SO2LayerNorm`, :class:`SO2MLP`,
:class:`RayToRayConv`, :class:`RayToRayAttention` (one ``scaled_dot_product_attention`` call: its
score is a dot product of per-ray invariant queries and keys, type-1 channels lifted to world
vectors, plus an additive invariant pair bias), :class:`RayToPointConv`,
:class:`RayToPointAttention` (pair-modulated values, so an explicit softmax over each point's
rays). Point outputs are ``(scalars (..., Q, C0), vectors (..., Q, 3, C1))`` in the ET layout of
:class:`eqt.layers.gated.GatedEquivariantBlock` (rep ``C0x0e + C1x1o``); they are SE(3)-equivariant
(the reciprocal product is a pseudoscalar, so the layers are not E(3)-equivariant).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from e3nn import o3
from torch import Tensor, nn

from eqt.layers.irreps import RadialMLP
from eqt.primitives.irreps import second_moment_constant
from eqt.primitives.radial import safe_norm
from eqt.primitives.rays import ray_frame

__all__ = [
    "SO2Rep",
    "gauge_transform",
    "lift",
    "project",
    "check_rays",
    "ray_pair_features",
    "set_pair_features",
    "point_ray_features",
    "ray_neighbours",
    "SO2Linear",
    "SO2Gate",
    "SO2LayerNorm",
    "SO2MLP",
    "RayToRayConv",
    "RayToRayAttention",
    "RayToPointConv",
    "RayToPointAttention",
]

_C_SILU = second_moment_constant(F.silu)
PAIR_FEATURES = 7
POINT_FEATURES = 3


# ----------------------------------------------------------------------------------------------- the rep


class SO2Rep:
    """Channels per SO(2) frequency of a ray feature: ``SO2Rep((m0, m1, ..., mK))`` or ``SO2Rep("16x0+8x1")``.

    Layout ``(..., dim)``: ``m0`` scalars, then ``m_k`` pairs ``(re, im)`` for each ``k = 1..K``.

    Attributes:
        mults: ``(m0, ..., mK)``; ``kmax = K``; ``dim = m0 + 2 (m1 + ... + mK)``.

    Raises:
        ValueError: for negative or non-integer counts, or an unreadable string.
    """

    def __init__(self, mults: Sequence[int] | str | SO2Rep):
        if isinstance(mults, SO2Rep):
            mults = mults.mults
        if isinstance(mults, str):
            mults = self._parse(mults)
        mults = tuple(mults)
        if not mults or any(not isinstance(m, int) or isinstance(m, bool) or m < 0 for m in mults):
            raise ValueError(f"SO2Rep needs non-negative int channel counts per frequency, got {mults!r}")
        self.mults = mults

    @staticmethod
    def _parse(text: str) -> tuple[int, ...]:
        counts: dict[int, int] = {}
        for term in filter(None, (t.strip() for t in text.split("+"))):
            match = re.fullmatch(r"(\d+)x(\d+)", term)
            if not match:
                raise ValueError(f"SO2Rep: cannot read {term!r} in {text!r} (write e.g. '16x0+8x1')")
            mul, k = int(match[1]), int(match[2])
            counts[k] = counts.get(k, 0) + mul
        if not counts:
            raise ValueError(f"SO2Rep: empty rep {text!r}")
        return tuple(counts.get(k, 0) for k in range(max(counts) + 1))

    @property
    def kmax(self) -> int:
        return len(self.mults) - 1

    @property
    def dim(self) -> int:
        return self.mults[0] + 2 * sum(self.mults[1:])

    def mul(self, k: int) -> int:
        """Channels of frequency ``k`` (0 beyond ``kmax``)."""
        return self.mults[k] if k <= self.kmax else 0

    def split(self, x: Tensor) -> list[Tensor]:
        """``(..., dim)`` -> ``[(..., m0), (..., m1, 2), ..., (..., mK, 2)]``.

        Raises:
            ValueError: if the last axis is not ``dim``.
        """
        if x.dim() == 0 or x.shape[-1] != self.dim:
            raise ValueError(f"ray features of rep {self} need a last axis of {self.dim}, got {tuple(x.shape)}")
        sizes = [self.mults[0]] + [2 * m for m in self.mults[1:]]
        parts = list(x.split(sizes, dim=-1))
        return [parts[0]] + [p.unflatten(-1, (m, 2)) for p, m in zip(parts[1:], self.mults[1:])]

    @staticmethod
    def join(blocks: Sequence[Tensor]) -> Tensor:
        """Inverse of :meth:`split`: ``[(..., m0), (..., mk, 2) ...] -> (..., dim)``."""
        return torch.cat([blocks[0]] + [b.flatten(-2) for b in blocks[1:]], dim=-1)

    def randn(self, *lead: int, dtype: torch.dtype | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Standard normal features ``(*lead, dim)``."""
        return torch.randn(*lead, self.dim, dtype=dtype, generator=generator)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SO2Rep) and self.mults == other.mults

    def __hash__(self) -> int:
        return hash(self.mults)

    def __str__(self) -> str:
        return "+".join(f"{m}x{k}" for k, m in enumerate(self.mults) if m) or "0x0"

    def __repr__(self) -> str:
        return f"SO2Rep('{self}')"


def gauge_transform(rep: SO2Rep, x: Tensor, gamma: Tensor) -> Tensor:
    """Features ``(..., dim)`` re-expressed in the rotated frames ``F Rz(γ)``: type-k ``z -> e^{-ikγ} z``.

    Args:
        rep: the features' rep.
        x: ``(..., dim)`` features.
        gamma: ``(...)`` angles (broadcast against ``x[..., 0]``).

    Returns:
        ``(..., dim)``.
    """
    blocks = rep.split(x)
    out = [blocks[0]]
    for k, z in enumerate(blocks[1:], start=1):
        c, s = torch.cos(k * gamma).unsqueeze(-1), torch.sin(k * gamma).unsqueeze(-1)  # (..., 1)
        re, im = z[..., 0], z[..., 1]
        out.append(torch.stack([c * re + s * im, c * im - s * re], dim=-1))
    return SO2Rep.join(out)


def lift(z: Tensor, frames: Tensor) -> Tensor:
    """World vectors ``(..., 3, m)`` ``re e1 + im e2`` of type-1 features ``(..., m, 2)`` in frames ``(..., 3, 3)``."""
    return frames[..., :, 0:1] * z[..., None, :, 0] + frames[..., :, 1:2] * z[..., None, :, 1]


def project(v: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
    """Components of world vectors ``(..., 3, m)`` in frames ``(..., 3, 3)``.

    Returns:
        ``(z, along)``: the type-1 features ``(..., m, 2)`` = ``(v · e1, v · e2)`` and the scalars
        ``(..., m)`` = ``v · d``. ``project(lift(z, F), F) = (z, 0)``.
    """
    comps = torch.einsum("...ia,...im->...ma", frames, v)  # (..., m, 3): v · e1, v · e2, v · d
    return comps[..., :2], comps[..., 2]


# ----------------------------------------------------------------------------------------------- checks


def _tol(dtype: torch.dtype) -> float:
    return max(1e-4, math.sqrt(torch.finfo(dtype).eps))


def check_rays(rays: Tensor, name: str = "rays", anchors: Tensor | None = None, frames: Tensor | None = None) -> None:
    """Raise a one-line ``ValueError`` unless ``rays (..., 6)`` are valid Plücker rays.

    Checks: a last axis of 6; finite values; non-zero directions of unit length (to
    ``max(1e-4, sqrt(eps))``); ``|d · m| <= tol (1 + |m|)``; if given, ``anchors (..., 3)`` on their
    rays (``|a × d - m| <= tol (1 + |a|)``) and ``frames (..., 3, 3)`` orthonormal with third column ``d``.
    """
    if rays.dim() == 0 or rays.shape[-1] != 6:
        raise ValueError(f"{name} must be Plücker rays (..., 6) = (d, m), got shape {tuple(rays.shape)}")
    if not rays.numel():
        return
    if not bool(torch.isfinite(rays).all()):
        raise ValueError(f"{name} of shape {tuple(rays.shape)} hold NaN or infinite values")
    tol = _tol(rays.dtype)
    d, m = rays[..., :3], rays[..., 3:]
    norm = d.norm(dim=-1)
    if bool((norm <= tol).any()):
        raise ValueError(f"{name} of shape {tuple(rays.shape)} have a zero-length direction d; rays need |d| = 1")
    err = (norm - 1).abs().max().item()
    if err > tol:
        raise ValueError(f"{name} of shape {tuple(rays.shape)} need unit directions, |d| - 1 is off by {err:.2e}")
    dm = ((d * m).sum(-1).abs() / (1 + m.norm(dim=-1))).max().item()
    if dm > tol:
        raise ValueError(f"{name} of shape {tuple(rays.shape)} are not rays: d·m = {dm:.2e} (relative) > {tol:.0e}; "
                         f"use eqt.primitives.rays.normalize_rays")
    if anchors is not None:
        if anchors.shape != (*rays.shape[:-1], 3):
            raise ValueError(f"anchors must be (..., 3) matching {name} {tuple(rays.shape)}, "
                             f"got {tuple(anchors.shape)}")
        if not bool(torch.isfinite(anchors).all()):
            raise ValueError("anchors hold NaN or infinite values")
        off = (torch.linalg.cross(anchors, d, dim=-1) - m).norm(dim=-1) / (1 + anchors.norm(dim=-1))
        if off.numel() and off.max().item() > tol:
            raise ValueError(f"anchors are not on their {name}: relative distance {off.max().item():.2e} > {tol:.0e}")
    if frames is not None:
        if frames.shape != (*rays.shape[:-1], 3, 3):
            raise ValueError(f"frames must be (..., 3, 3) matching {name} {tuple(rays.shape)}, "
                             f"got {tuple(frames.shape)}")
        eye = torch.eye(3, dtype=frames.dtype, device=frames.device)
        err = max((frames.transpose(-1, -2) @ frames - eye).abs().max().item(),
                  (frames[..., :, 2] - d).abs().max().item())
        if err > tol:
            raise ValueError(f"frames must be orthonormal [e1, e2, d] sections of the {name}: error {err:.2e}")


def _prepare(x: Tensor, rep: SO2Rep, rays: Tensor, anchors: Tensor, frames: Tensor | None, who: str) -> Tensor:
    if x.shape[:-1] != rays.shape[:-1]:
        raise ValueError(f"{who}: features {tuple(x.shape)} and rays {tuple(rays.shape)} disagree on (..., N)")
    rep.split(x)  # checks the last axis
    check_rays(rays, anchors=anchors, frames=frames)
    return ray_frame(rays)[0] if frames is None else frames


# ----------------------------------------------------------------------------------------------- invariants


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1)


def _cross(a: Tensor, b: Tensor) -> Tensor:
    a, b = torch.broadcast_tensors(a, b)
    return torch.linalg.cross(a, b, dim=-1)


def ray_pair_features(rays_x: Tensor, anchors_x: Tensor, rays_y: Tensor, anchors_y: Tensor) -> Tensor:
    """SE(3) invariants ``(..., 7)`` of anchored ray pairs (broadcast): see the module docstring.

    ``(cos α, w, e·d_x, e·d_y, |e|, |e × d_x|, |e × d_y|)`` with ``e = a_y - a_x``; norms have zero
    (not NaN) gradients at zero. ``w`` is a pseudoscalar (it flips under reflections).
    """
    dx, mx, dy, my = rays_x[..., :3], rays_x[..., 3:], rays_y[..., :3], rays_y[..., 3:]
    e = anchors_y - anchors_x
    feats = (_dot(dx, dy), _dot(dx, my) + _dot(dy, mx), _dot(e, dx), _dot(e, dy), safe_norm(e),
             safe_norm(_cross(e, dx)), safe_norm(_cross(e, dy)))
    return torch.stack(torch.broadcast_tensors(*feats), dim=-1)


def _safe_sqrt(sq: Tensor) -> Tensor:
    """``sqrt(max(sq, 0))`` with a zero (not NaN) gradient at and below zero."""
    pos = sq > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def set_pair_features(rays: Tensor, anchors: Tensor) -> Tensor:
    """:func:`ray_pair_features` of every ordered pair of a set, ``(..., N, 6), (..., N, 3) -> (..., N, N, 7)``.

    The same numbers from batched matrix products (Gram matrices of directions, moments and
    anchors centred on the set's mean anchor) instead of per-pair vector algebra (2.5x faster in the model);
    the norms use ``|e|^2 = |a_x|^2 + |a_y|^2 - 2 a_x · a_y`` and ``|e × d|^2 = |e|^2 - (e · d)^2``
    (clamped at zero), exact to round-off relative to the set's extent.
    """
    d, m = rays[..., :3], rays[..., 3:]
    a = anchors - anchors.mean(dim=-2, keepdim=True)  # translation-invariant, and smaller round-off
    dt = d.transpose(-1, -2)
    cos = d @ dt  # (..., N, N)
    dm = d @ m.transpose(-1, -2)  # [x, y] = d_x · m_y
    ad = a @ dt  # [x, y] = a_x · d_y
    aa = a @ a.transpose(-1, -2)
    sq_a = (a * a).sum(-1)
    ex = ad.transpose(-1, -2) - ad.diagonal(dim1=-2, dim2=-1).unsqueeze(-1)  # (a_y - a_x) · d_x
    ey = ad.diagonal(dim1=-2, dim2=-1).unsqueeze(-2) - ad  # (a_y - a_x) · d_y
    e2 = (sq_a.unsqueeze(-1) + sq_a.unsqueeze(-2) - 2 * aa).clamp(min=0)
    return torch.stack([cos, dm + dm.transpose(-1, -2), ex, ey, _safe_sqrt(e2), _safe_sqrt(e2 - ex * ex),
                        _safe_sqrt(e2 - ey * ey)], dim=-1)


def point_ray_features(points: Tensor, rays: Tensor, anchors: Tensor) -> Tensor:
    """SE(3) invariants ``(..., 3)`` = ``(t, r, |p - a|)`` of points ``(..., 3)`` and anchored rays (broadcast).

    ``t = (p - a) · d`` (the foot of ``p`` along the ray, relative to the anchor), ``r = |(p - a) × d|``.
    """
    e = points - anchors
    d = rays[..., :3]
    feats = (_dot(e, d), safe_norm(_cross(e, d)), safe_norm(e))
    return torch.stack(torch.broadcast_tensors(*feats), dim=-1)


@torch.no_grad()
def ray_neighbours(points: Tensor, rays: Tensor, k: int, chunk: int = 512) -> Tensor:
    """The ``k`` rays of each view nearest to each point (by point–line distance): an SE(3)-invariant choice.

    Args:
        points: ``(..., Q, 3)``.
        rays: ``(..., V, P, 6)`` rays grouped by view (unit directions).
        k: rays per view, ``1 <= k <= P``.
        chunk: points per distance block.

    Returns:
        ``(..., Q, V * k)`` int64 indices into the flattened ``V * P`` rays, view-major, nearest first.

    Raises:
        ValueError: for bad shapes, no views or rays, or ``k`` out of range.
    """
    if rays.dim() < 3 or rays.shape[-1] != 6:
        raise ValueError(f"rays must be grouped by view, (..., V, P, 6), got {tuple(rays.shape)}")
    v, p = rays.shape[-3], rays.shape[-2]
    if v == 0 or p == 0:
        raise ValueError(f"ray_neighbours needs at least one view with one ray, got V = {v}, P = {p}")
    if not 1 <= k <= p:
        raise ValueError(f"ray_neighbours: k must be in [1, {p}] (rays per view), got {k}")
    if points.dim() < 2 or points.shape[-1] != 3 or points.shape[:-2] != rays.shape[:-3]:
        raise ValueError(f"points (..., Q, 3) must share the batch axes of rays {tuple(rays.shape)}, "
                         f"got {tuple(points.shape)}")
    lead = points.shape[:-2]
    q = points.shape[-2]
    pts = points.reshape(-1, q, 3)
    r = rays.reshape(-1, v * p, 6)
    centre = pts.mean(dim=1, keepdim=True) if q else pts.new_zeros(pts.shape[0], 1, 3)  # (B, 1, 3), for round-off
    d = r[..., :3]
    foot = _cross(d, r[..., 3:] - _cross(centre, d))  # (B, R, 3): feet relative to the centre
    foot_sq = (foot * foot).sum(-1).unsqueeze(1)  # (B, 1, R)
    out = []
    for start in range(0, q, chunk):
        x = pts[:, start:start + chunk] - centre  # (B, c, 3)
        along = x @ d.transpose(-1, -2)  # (B, c, R)
        dist2 = (x * x).sum(-1, keepdim=True) - 2 * (x @ foot.transpose(-1, -2)) + foot_sq - along * along
        idx = dist2.view(*dist2.shape[:2], v, p).topk(k, dim=-1, largest=False).indices  # (B, c, V, k)
        idx = idx + p * torch.arange(v, device=idx.device).view(1, 1, v, 1)
        out.append(idx.flatten(-2))
    res = torch.cat(out, dim=1) if out else pts.new_zeros(pts.shape[0], 0, v * k, dtype=torch.long)
    return res.reshape(*lead, q, v * k)


# ----------------------------------------------------------------------------------------------- per-ray layers


class SO2Linear(nn.Module):
    """Equivariant linear map of ray features: a complex ``m_in x m_out`` matrix per frequency, bias on scalars.

    Type-k (``k >= 1``): ``z_out = W_k z_in`` with ``W_k = A_k + i B_k`` (the real 2x2 blocks
    ``A I + B J`` commute with every SO(2) rotation, so the map commutes with gauge changes);
    ``k = 0``: ``A_0`` plus a bias. Initialisation ``N(0, 1/fan_in)`` (split between ``A`` and ``B``),
    zero bias, so outputs keep unit variance. Frequencies missing on either side give zeros.

    Args:
        rep_in, rep_out: :class:`SO2Rep` (or strings).
        bias: learn a bias on the scalar outputs.

    Shapes: ``(..., rep_in.dim) -> (..., rep_out.dim)``.
    """

    def __init__(self, rep_in: SO2Rep | str | Sequence[int], rep_out: SO2Rep | str | Sequence[int], bias: bool = True):
        super().__init__()
        self.rep_in, self.rep_out = SO2Rep(rep_in), SO2Rep(rep_out)
        self.weights = nn.ParameterList()
        for k in range(self.rep_out.kmax + 1):
            m_in, m_out = self.rep_in.mul(k), self.rep_out.mul(k)
            parts = 1 if k == 0 else 2
            std = 1.0 / math.sqrt(max(m_in, 1) * parts)
            self.weights.append(nn.Parameter(torch.randn(parts, m_in, m_out) * std))
        m0 = self.rep_out.mul(0)
        self.bias = nn.Parameter(torch.zeros(m0)) if bias and m0 else None

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(..., rep_in.dim)``. Returns ``(..., rep_out.dim)``."""
        blocks = self.rep_in.split(x)
        lead = x.shape[:-1]
        out = []
        for k, w in enumerate(self.weights):
            m_out = w.shape[-1]
            if k > self.rep_in.kmax or w.shape[1] == 0:
                shape = (*lead, m_out) if k == 0 else (*lead, m_out, 2)
                out.append(x.new_zeros(shape))
                continue
            if k == 0:
                y = blocks[0] @ w[0]
                out.append(y if self.bias is None else y + self.bias)
            else:
                re, im = blocks[k][..., 0], blocks[k][..., 1]  # (..., m_in)
                a, b = w[0], w[1]
                out.append(torch.stack([re @ a - im @ b, re @ b + im @ a], dim=-1))
        if self.bias is not None and self.rep_in.mul(0) == 0:
            out[0] = out[0] + self.bias
        return SO2Rep.join(out)


class SO2Gate(nn.Module):
    """Gated non-linearity: SiLU on scalars, sigmoid gates (extra scalars) on every type-k channel.

    ``rep_in = (m0 + m1 + ... + mK, m1, ..., mK)``: the first ``m0`` scalars pass through SiLU
    (scaled to unit second moment as e3nn's ``normalize2mom``), the next ``m1 + ... + mK`` become
    the gates of the type-k channels, in order. Gates are invariant, so the map is gauge-covariant.

    Args:
        rep: the output rep.

    Shapes: ``(..., rep_in.dim) -> (..., rep.dim)``.
    """

    def __init__(self, rep: SO2Rep | str | Sequence[int]):
        super().__init__()
        self.rep_out = SO2Rep(rep)
        m = self.rep_out.mults
        self.rep_in = SO2Rep((m[0] + sum(m[1:]),) + m[1:])

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(..., rep_in.dim)``. Returns ``(..., rep_out.dim)``."""
        blocks = self.rep_in.split(x)
        m = self.rep_out.mults
        scalars, gates = blocks[0].split([m[0], sum(m[1:])], dim=-1)
        out = [_C_SILU * F.silu(scalars)]
        if len(m) > 1:
            for z, g in zip(blocks[1:], torch.sigmoid(gates).split(list(m[1:]), dim=-1)):
                out.append(z * g.unsqueeze(-1))
        return SO2Rep.join(out)


class SO2LayerNorm(nn.Module):
    """Layer norm of ray features: ``nn.LayerNorm`` on the scalars, RMS of ``|z|`` per frequency on type-k.

    Type-k channels are divided by ``sqrt(mean_c |z_c|^2 / 2 + eps)`` (unit variance per real
    component) and multiplied by a per-channel weight; never centred or shifted, so gauge-covariant.

    Args:
        rep: features' rep.
        eps: added to the mean square.

    Shapes: ``(..., rep.dim) -> (..., rep.dim)``.
    """

    def __init__(self, rep: SO2Rep | str | Sequence[int], eps: float = 1e-5):
        super().__init__()
        self.rep_in = self.rep_out = SO2Rep(rep)
        self.eps = eps
        self.scalar_norm = nn.LayerNorm(self.rep_in.mul(0), eps=eps) if self.rep_in.mul(0) else None
        self.weights = nn.ParameterList(nn.Parameter(torch.ones(m)) for m in self.rep_in.mults[1:])

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(..., rep.dim)``. Returns the same shape."""
        blocks = self.rep_in.split(x)
        out = [self.scalar_norm(blocks[0]) if self.scalar_norm is not None else blocks[0]]
        for z, w in zip(blocks[1:], self.weights):
            if z.shape[-2] == 0:
                out.append(z)
                continue
            scale = torch.rsqrt(z.pow(2).mean(dim=(-2, -1), keepdim=True) + self.eps)  # (..., 1, 1)
            out.append(z * scale * w.unsqueeze(-1))
        return SO2Rep.join(out)


class SO2MLP(nn.Module):
    """Per-ray feed-forward: :class:`SO2Linear` -> :class:`SO2Gate` -> :class:`SO2Linear`.

    Args:
        rep: features in and out.
        hidden: the hidden rep (after the gate), default twice ``rep``.

    Shapes: ``(..., rep.dim) -> (..., rep.dim)``.
    """

    def __init__(self, rep: SO2Rep | str | Sequence[int], hidden: SO2Rep | str | Sequence[int] | None = None):
        super().__init__()
        self.rep_in = self.rep_out = SO2Rep(rep)
        hidden = SO2Rep(hidden) if hidden is not None else SO2Rep(tuple(2 * m for m in self.rep_in.mults))
        self.gate = SO2Gate(hidden)
        self.fc1 = SO2Linear(self.rep_in, self.gate.rep_in)
        self.fc2 = SO2Linear(hidden, self.rep_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.gate(self.fc1(x)))


# ----------------------------------------------------------------------------------------------- ray -> ray


def _check_kmax(rep: SO2Rep, who: str) -> None:
    if rep.kmax > 1:
        raise ValueError(f"{who} supports frequencies 0 and 1 (they lift to 3-vectors), got rep {rep}")


def _key_mask_bias(mask: Tensor | None, shape: torch.Size, who: str) -> Tensor | None:
    """``(..., N)`` bool key mask -> additive ``(..., 1, N)`` bias (0 or -inf); every set needs a key."""
    if mask is None:
        return None
    if mask.dtype != torch.bool or mask.shape != shape:
        raise ValueError(f"{who}: mask must be bool {tuple(shape)}, got {mask.dtype} {tuple(mask.shape)}")
    if mask.numel() and not bool(mask.any(dim=-1).all()):
        raise ValueError(f"{who}: an empty neighbourhood (a set whose mask is all False); every target needs a ray")
    zero = torch.zeros(mask.shape, dtype=torch.get_default_dtype(), device=mask.device)
    return zero.masked_fill(~mask, float("-inf"))


class RayToRayConv(nn.Module):
    """Equivariant ray→ray convolution over a set of rays (each target sums over every source of its set).

    For target ``x`` and sources ``y`` of the same set, with invariant kernels ``φ(I_xy)`` of the
    7 pair invariants (a :class:`~eqt.layers.irreps.RadialMLP`):

        s_x = mean_y φ_s ⊙ S_y
        v_x = mean_y [ φ_v ⊙ V_y + (φ_d ⊙ S'_y) d_y + (φ_a ⊙ S''_y) (a_y - a_x) ]

    where ``S, S', S''`` are scalar and ``V`` lifted type-1 projections of the source features
    (:class:`SO2Linear`). The world vectors ``v_x`` are projected into x's frame (type 1, and
    ``v_x · d_x`` as scalars) and mixed to ``rep_out`` by an :class:`SO2Linear`.

    Args:
        rep_in: ray features in (``kmax <= 1``).
        rep_out: ray features out (``kmax <= 1``; default ``rep_in``).
        channels: scalar message channels.
        vectors: vector message channels.
        hidden: width of the kernel MLP.

    Shapes: ``x (..., N, rep_in.dim)``, ``rays (..., N, 6)``, ``anchors (..., N, 3)``, ``frames
    (..., N, 3, 3)`` or None, ``mask (..., N)`` bool or None -> ``(..., N, rep_out.dim)``.
    """

    def __init__(self, rep_in: SO2Rep | str | Sequence[int], rep_out: SO2Rep | str | Sequence[int] | None = None,
                 channels: int = 16, vectors: int = 4, hidden: int = 16):
        super().__init__()
        self.rep_in = SO2Rep(rep_in)
        self.rep_out = SO2Rep(rep_out) if rep_out is not None else self.rep_in
        _check_kmax(self.rep_in, "RayToRayConv")
        _check_kmax(self.rep_out, "RayToRayConv")
        self.channels, self.vectors = channels, vectors
        self.source = SO2Linear(self.rep_in, SO2Rep((channels + 2 * vectors, vectors)), bias=False)
        self.kernel = RadialMLP((PAIR_FEATURES, hidden, channels + 3 * vectors))
        self.out = SO2Linear(SO2Rep((channels + vectors, vectors)), self.rep_out)

    def forward(self, x: Tensor, rays: Tensor, anchors: Tensor, frames: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        frames = _prepare(x, self.rep_in, rays, anchors, frames, "RayToRayConv")
        c, cv = self.channels, self.vectors
        s_all, z = SO2Rep((c + 2 * cv, cv)).split(self.source(x))
        s, s1, s2 = s_all.split([c, cv, cv], dim=-1)  # (..., N, c), (..., N, cv) x2
        v = lift(z, frames)  # (..., N, 3, cv)
        inv = set_pair_features(rays, anchors)  # (..., N_x, N_y, 7)
        phi = self.kernel(inv)  # (..., N_x, N_y, c + 3 cv)
        if mask is not None:
            _key_mask_bias(mask, rays.shape[:-1], "RayToRayConv")
            keep = mask.to(phi.dtype)  # (..., N_y)
            phi = phi * keep[..., None, :, None]
            count = keep.sum(-1).clamp(min=1)[..., None, None, None]  # (..., 1, 1, 1)
        else:
            count = rays.shape[-2]
        phi = phi / count
        ps, pv, pd, pa = phi.split([c, cv, cv, cv], dim=-1)
        scal = torch.einsum("...xyc,...yc->...xc", ps, s)
        d, a = rays[..., :3], anchors
        w_d, w_a = pd * s1.unsqueeze(-3), pa * s2.unsqueeze(-3)  # (..., N_x, N_y, cv)
        vec = (torch.einsum("...xyc,...yic->...xic", pv, v) + torch.einsum("...xyc,...yi->...xic", w_d, d)
               + torch.einsum("...xyc,...yi->...xic", w_a, a) - w_a.sum(-2).unsqueeze(-2) * a.unsqueeze(-1))
        z_out, along = project(vec, frames)
        return self.out(SO2Rep.join([torch.cat([scal, along], dim=-1), z_out]))


class RayToRayAttention(nn.Module):
    """Equivariant multi-head attention among a set of rays, through one ``scaled_dot_product_attention``.

    Queries and keys per ray: scalar projections and type-1 projections lifted to world vectors, so
    ``q_x · k_y`` is SE(3)-invariant and gauge-free; an invariant pair bias ``b_h(I_xy)`` (a
    :class:`~eqt.layers.irreps.RadialMLP` of the 7 pair invariants) is added to the logits (the float
    ``attn_mask``). Values per ray: scalar projections, lifted type-1 projections, the direction
    ``d_y`` and the anchor ``a_y`` (weights sum to one, so ``Σ_y a_xy a_y`` is a point). At target
    ``x`` the outputs' vectors (mean lifted values, mean direction, mean anchor minus ``a_x``) are
    projected into x's frame (type 1, plus their components along ``d_x`` as scalars) and mixed to
    ``rep_out`` by an :class:`SO2Linear`.

    Args:
        rep_in: ray features in (``kmax <= 1``).
        rep_out: ray features out (default ``rep_in``).
        heads: attention heads.
        head_scalars: scalar query/key/value channels per head.
        head_vectors: type-1 query/key/value channels per head.
        hidden: width of the bias MLP.

    Shapes: ``x (..., N, rep_in.dim)``, ``rays (..., N, 6)``, ``anchors (..., N, 3)``, ``frames
    (..., N, 3, 3)`` or None, ``mask (..., N)`` bool key mask or None -> ``(..., N, rep_out.dim)``.
    """

    def __init__(self, rep_in: SO2Rep | str | Sequence[int], rep_out: SO2Rep | str | Sequence[int] | None = None,
                 heads: int = 4, head_scalars: int = 8, head_vectors: int = 2, hidden: int = 16):
        super().__init__()
        self.rep_in = SO2Rep(rep_in)
        self.rep_out = SO2Rep(rep_out) if rep_out is not None else self.rep_in
        _check_kmax(self.rep_in, "RayToRayAttention")
        _check_kmax(self.rep_out, "RayToRayAttention")
        h, c0, c1 = heads, head_scalars, head_vectors
        self.heads, self.head_scalars, self.head_vectors = h, c0, c1
        self.qkv_rep = SO2Rep((h * c0, h * c1))
        self.q = SO2Linear(self.rep_in, self.qkv_rep, bias=False)
        self.k = SO2Linear(self.rep_in, self.qkv_rep, bias=False)
        self.v = SO2Linear(self.rep_in, self.qkv_rep, bias=False)
        self.bias = RadialMLP((PAIR_FEATURES, hidden, h))
        self.mid_rep = SO2Rep((h * c0 + h * c1 + 2 * h, h * c1 + 2 * h))
        self.out = SO2Linear(self.mid_rep, self.rep_out)

    def _heads(self, y: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        """``(..., N, qkv.dim)`` -> scalars ``(..., N, H, c0)`` and world vectors ``(..., N, H, 3 c1)``."""
        s, z = self.qkv_rep.split(y)
        v = lift(z, frames)  # (..., N, 3, H c1)
        h = self.heads
        v = v.unflatten(-1, (h, self.head_vectors)).movedim(-3, -2).flatten(-2)  # (..., N, H, 3 c1)
        return s.unflatten(-1, (h, self.head_scalars)), v

    def forward(self, x: Tensor, rays: Tensor, anchors: Tensor, frames: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        frames = _prepare(x, self.rep_in, rays, anchors, frames, "RayToRayAttention")
        lead, n, h = x.shape[:-2], x.shape[-2], self.heads
        q = torch.cat(self._heads(self.q(x), frames), dim=-1)  # (..., N, H, dq)
        k = torch.cat(self._heads(self.k(x), frames), dim=-1)
        vs, vv = self._heads(self.v(x), frames)
        geo = torch.cat([rays[..., :3], anchors], dim=-1).unsqueeze(-2).expand(*lead, n, h, 6)
        v = torch.cat([vs, vv, geo], dim=-1)  # (..., N, H, dv)
        inv = set_pair_features(rays, anchors)  # (..., N_x, N_y, 7)
        bias = self.bias(inv).movedim(-1, -3)  # (..., H, N_x, N_y)
        key_bias = _key_mask_bias(mask, rays.shape[:-1], "RayToRayAttention")
        if key_bias is not None:
            bias = bias + key_bias.to(bias.dtype).unsqueeze(-2).unsqueeze(-3)
        flat = lambda t: t.movedim(-2, -3).reshape(-1, h, n, t.shape[-1])  # noqa: E731 - (B*, H, N, .)
        o = F.scaled_dot_product_attention(flat(q), flat(k), flat(v), attn_mask=bias.reshape(-1, h, n, n),
                                           scale=1.0 / math.sqrt(q.shape[-1]))
        o = o.reshape(*lead, h, n, -1).movedim(-3, -2)  # (..., N, H, dv)
        c0, c1 = self.head_scalars, self.head_vectors
        os_, ov, od, oa = o.split([c0, 3 * c1, 3, 3], dim=-1)
        vec = torch.cat([ov.unflatten(-1, (3, c1)).movedim(-3, -2).flatten(-2),  # (..., N, 3, H c1)
                         od.transpose(-1, -2), (oa - anchors.unsqueeze(-2)).transpose(-1, -2)], dim=-1)
        z_out, along = project(vec, frames)  # (..., N, H c1 + 2H, 2), (..., N, H c1 + 2H)
        return self.out(SO2Rep.join([torch.cat([os_.flatten(-2), along], dim=-1), z_out]))


# ----------------------------------------------------------------------------------------------- ray -> point


def _gather(t: Tensor, index: Tensor | None, q: int) -> Tensor:
    """``(B, R, *F)`` per-ray values -> ``(B, Q, K, *F)`` for neighbour indices ``(B, Q, K)`` (all rays if None)."""
    if index is None:
        return t.unsqueeze(1).expand(t.shape[0], q, *t.shape[1:])
    b = torch.arange(t.shape[0], device=t.device).view(-1, 1, 1)
    return t[b, index]


class _RayPointMessages(nn.Module):
    """Shared part of the ray→point layers: per (point, ray) pair, invariants and scalar/vector messages.

    Messages from ray ``y`` (anchor ``a``, direction ``d``) to point ``p``, ``e = p - a``, kernels
    ``φ(t, r, |e|)``: scalars ``[φ_s ⊙ S_y, φ_e ⊙ (V_y · e)]``, vectors ``φ_v ⊙ V_y + (φ_d ⊙ S'_y) d
    + (φ_u ⊙ S''_y) e`` (``V`` the lifted type-1 features). This is the Cartesian form of the kernel
    ``D^l(F) C_l(r) e^{-ikψ}`` of spec §A.3-2 for ``l, k <= 1``, in the pair frame ``F = [u, d × u, d]``.
    """

    def __init__(self, rep_in: SO2Rep, scalars: int, vectors: int, hidden: int, extra: int = 0):
        super().__init__()
        self.rep_in, self.scalars, self.vectors, self.extra = rep_in, scalars, vectors, extra
        self.src_rep = SO2Rep((scalars + 2 * vectors, vectors))
        self.source = SO2Linear(rep_in, self.src_rep, bias=False)
        self.kernel = RadialMLP((POINT_FEATURES, hidden, scalars + 4 * vectors + extra))

    def forward(self, x, rays, anchors, frames, points, neighbours):
        """Returns scalar messages ``(B, Q, K, C0 + C1)``, vector messages ``(B, Q, K, 3, C1)``, extra
        kernel outputs ``(B, Q, K, extra)`` and the gathered ray features ``(B, Q, K, rep_in.dim)``."""
        c0, c1, q = self.scalars, self.vectors, points.shape[1]
        s_all, z = self.src_rep.split(self.source(x))  # per ray, before gathering
        vec = lift(z, frames)  # (B, R, 3, C1)
        g = lambda t: _gather(t, neighbours, q)  # noqa: E731
        s_all, vec, d, a, xg = g(s_all), g(vec), g(rays[..., :3]), g(anchors), g(x)
        e = points.unsqueeze(-2) - a  # (B, Q, K, 3)
        inv = point_ray_features(points.unsqueeze(-2), g(rays), a)
        phi = self.kernel(inv)
        ps, pe, pv, pd, pu, extra = phi.split([c0, c1, c1, c1, c1, self.extra], dim=-1)
        s, s1, s2 = s_all.split([c0, c1, c1], dim=-1)
        scal = torch.cat([ps * s, pe * torch.einsum("...ic,...i->...c", vec, e)], dim=-1)
        vmsg = (pv.unsqueeze(-2) * vec + (pd * s1).unsqueeze(-2) * d.unsqueeze(-1)
                + (pu * s2).unsqueeze(-2) * e.unsqueeze(-1))  # (B, Q, K, 3, C1)
        return scal, vmsg, extra, xg


def _point_inputs(x: Tensor, rep: SO2Rep, rays: Tensor, anchors: Tensor, frames: Tensor | None, points: Tensor,
                  neighbours: Tensor | None, mask: Tensor | None, who: str) -> tuple[Tensor, ...]:
    frames = _prepare(x, rep, rays, anchors, frames, who)
    if rays.dim() != 3:
        raise ValueError(f"{who}: rays must be (B, R, 6) (flatten the views), got {tuple(rays.shape)}")
    b, r = rays.shape[:2]
    if r == 0:
        raise ValueError(f"{who}: no rays (R = 0); a point needs at least one ray")
    if points.dim() != 3 or points.shape[0] != b or points.shape[-1] != 3:
        raise ValueError(f"{who}: points must be (B, Q, 3) with B = {b}, got {tuple(points.shape)}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError(f"{who}: points hold NaN or infinite values")
    q = points.shape[1]
    k = r if neighbours is None else neighbours.shape[-1]
    if neighbours is not None:
        if neighbours.dtype != torch.long or neighbours.dim() != 3 or neighbours.shape[:2] != (b, q):
            raise ValueError(f"{who}: neighbours must be int64 (B, Q, K) = ({b}, {q}, K), got "
                             f"{neighbours.dtype} {tuple(neighbours.shape)}")
        if k == 0:
            raise ValueError(f"{who}: empty neighbourhoods (K = 0); every point needs a ray")
        if neighbours.numel() and (int(neighbours.min()) < 0 or int(neighbours.max()) >= r):
            raise ValueError(f"{who}: neighbour index out of range [0, {r})")
    if mask is not None:
        _key_mask_bias(mask, torch.Size((b, q, k)), who)
    return frames, q


def _reduce_mask(weights: Tensor, mask: Tensor | None) -> Tensor:
    return weights if mask is None else weights * mask.to(weights.dtype).unsqueeze(-1)


class RayToPointConv(nn.Module):
    """Equivariant ray→point convolution: the mean of the kernel messages of each point's rays.

    Messages as in the module docstring (scalars from ``φ ⊙ S_y`` and ``φ ⊙ (V_y · (p - a_y))``,
    vectors from ``V_y``, ``d_y`` and ``p - a_y``); the mean over the point's rays (its
    ``neighbours``, or every ray) gives ``C0`` scalars (after a linear map) and ``C1`` vectors.

    Args:
        rep_in: ray features (``kmax <= 1``).
        scalars: ``C0`` scalar outputs (``0e``).
        vectors: ``C1`` vector outputs (``1o`` under rotations; SE(3) only, see module docstring).
        hidden: width of the kernel MLP.

    Shapes: ``x (B, R, rep_in.dim)``, ``rays (B, R, 6)``, ``anchors (B, R, 3)``, ``frames (B, R, 3, 3)``
    or None, ``points (B, Q, 3)``, ``neighbours (B, Q, K)`` int64 or None (all rays), ``mask (B, Q, K)``
    bool or None -> ``(scalars (B, Q, C0), vectors (B, Q, 3, C1))``.
    """

    def __init__(self, rep_in: SO2Rep | str | Sequence[int], scalars: int = 16, vectors: int = 8, hidden: int = 32):
        super().__init__()
        self.rep_in = SO2Rep(rep_in)
        _check_kmax(self.rep_in, "RayToPointConv")
        self.rep_out = o3.Irreps(f"{scalars}x0e+{vectors}x1o")
        self.messages = _RayPointMessages(self.rep_in, scalars, vectors, hidden)
        self.mix = nn.Linear(scalars + vectors, scalars)

    def forward(self, x: Tensor, rays: Tensor, anchors: Tensor, frames: Tensor | None, points: Tensor,
                neighbours: Tensor | None = None, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        frames, q = _point_inputs(x, self.rep_in, rays, anchors, frames, points, neighbours, mask, "RayToPointConv")
        scal, vec, _, _ = self.messages(x, rays, anchors, frames, points, neighbours)
        w = _reduce_mask(torch.ones_like(scal[..., :1]), mask)  # (B, Q, K, 1)
        w = w / w.sum(-2, keepdim=True)
        s = (w * scal).sum(-2)
        v = (w.unsqueeze(-1) * vec).sum(-3)
        return self.mix(s), v


class RayToPointAttention(nn.Module):
    """Equivariant ray→point attention: each point attends over its rays with invariant logits.

    Logits per head: ``q_p · k_y / sqrt(dk) + b_h(t, r, |p - a|)``, with ``k_y`` a linear map of the
    ray's scalar features, ``q_p`` a linear map of the point's scalar features (or a learned
    constant without them) and ``b_h`` from the kernel MLP; softmax over the point's rays (masked).
    Values are the pair-modulated messages of :class:`RayToPointConv`, split into heads along the
    channels, so the weighted sum is explicit (the values depend on the pair, which
    ``scaled_dot_product_attention`` cannot express).

    Args:
        rep_in: ray features (``kmax <= 1``).
        scalars: ``C0`` scalar outputs (multiple of ``heads``).
        vectors: ``C1`` vector outputs (multiple of ``heads``).
        heads: attention heads.
        key_channels: query/key channels per head.
        query_scalars: scalar features of the points (0: none).
        hidden: width of the kernel MLP.

    Shapes: as :class:`RayToPointConv`, plus ``point_scalars (B, Q, query_scalars)`` or None.
    """

    def __init__(self, rep_in: SO2Rep | str | Sequence[int], scalars: int = 16, vectors: int = 8, heads: int = 4,
                 key_channels: int = 8, query_scalars: int = 0, hidden: int = 32):
        super().__init__()
        self.rep_in = SO2Rep(rep_in)
        _check_kmax(self.rep_in, "RayToPointAttention")
        if scalars % heads or vectors % heads:
            raise ValueError(f"RayToPointAttention: scalars ({scalars}) and vectors ({vectors}) must be multiples "
                             f"of heads ({heads})")
        self.rep_out = o3.Irreps(f"{scalars}x0e+{vectors}x1o")
        self.heads, self.key_channels, self.query_scalars = heads, key_channels, query_scalars
        self.scalars, self.vectors = scalars, vectors
        self.messages = _RayPointMessages(self.rep_in, scalars, vectors, hidden, extra=heads)
        self.key = nn.Linear(self.rep_in.mul(0), heads * key_channels, bias=False)
        if query_scalars:
            self.query = nn.Linear(query_scalars, heads * key_channels)
        else:
            self.query_const = nn.Parameter(torch.randn(heads * key_channels) / math.sqrt(key_channels))
        self.mix = nn.Linear(scalars + vectors, scalars)

    def forward(self, x: Tensor, rays: Tensor, anchors: Tensor, frames: Tensor | None, points: Tensor,
                neighbours: Tensor | None = None, mask: Tensor | None = None,
                point_scalars: Tensor | None = None) -> tuple[Tensor, Tensor]:
        frames, q = _point_inputs(x, self.rep_in, rays, anchors, frames, points, neighbours, mask,
                                  "RayToPointAttention")
        if (point_scalars is None) != (self.query_scalars == 0):
            raise ValueError(f"RayToPointAttention: expected point_scalars (B, Q, {self.query_scalars})"
                             if self.query_scalars else "RayToPointAttention was built without point queries")
        h, dk = self.heads, self.key_channels
        scal, vec, bias, xg = self.messages(x, rays, anchors, frames, points, neighbours)
        keys = self.key(self.rep_in.split(xg)[0]).unflatten(-1, (h, dk))  # (B, Q, K, H, dk)
        query = self.query(point_scalars).unflatten(-1, (h, dk)).unsqueeze(-3) if self.query_scalars \
            else self.query_const.view(h, dk)
        logits = (keys * query).sum(-1) / math.sqrt(dk) + bias  # (B, Q, K, H)
        if mask is not None:
            logits = logits.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        a = torch.softmax(logits, dim=-2)  # over the K rays
        c0, c1 = self.scalars, self.vectors
        s0, s1 = scal.split([c0, c1], dim=-1)
        s0 = (a.unsqueeze(-1) * s0.unflatten(-1, (h, c0 // h))).sum(-3).flatten(-2)  # (B, Q, C0)
        s1 = (a.unsqueeze(-1) * s1.unflatten(-1, (h, c1 // h))).sum(-3).flatten(-2)
        v = (a[..., None, :, None] * vec.unflatten(-1, (h, c1 // h))).sum(-4).flatten(-2)  # (B, Q, 3, C1)
        return self.mix(torch.cat([s0, s1], dim=-1)), v
