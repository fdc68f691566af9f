"""Occupancy from posed views: the ray-space equivariant reconstruction model and its transformer baseline.

One class, :class:`RayOccupancyModel`, whose ``variant`` picks the network (as
:class:`eqt.models.nbody.NBodyModel`); both see exactly the same inputs and the same rays per point.

Inputs (``B`` scenes, ``V`` views of ``P`` rays each, ``Q`` query points):

- ``rays (B, V, P, 6)``: the views' Plücker rays; ``origins (B, V, 3)``: the camera centres
  (each view's rays pass through its centre); ``depth (B, V, P)``: distance along the ray to the
  first hit (ignored on misses); ``mask (B, V, P)`` bool: the ray hits; ``colour (B, V, P, 3)``.
  :func:`camera_inputs` builds them from intrinsics, poses and images (and rejects degenerate
  cameras). Depth, mask and colour are SE(3)-invariant; rays, centres and points move.
- ``points (B, Q, 3)``; optional ``neighbours (B, Q, V k)`` from
  :func:`eqt.layers.rays.ray_neighbours` (computed when absent) and ``frames (B, V, P, 3, 3)``
  (the rays' sections, default :func:`eqt.primitives.rays.ray_frame`).

Output: occupancy logits ``(B, Q)``.

Shared front end: every point gets the ``k = rays_per_view`` rays of each view nearest to it
(``K = V k`` rays, an SE(3)-invariant choice); each ray is anchored at its hit point
``a = o + depth d`` (misses at ``o + miss_depth d``), and its invariant inputs are ``(depth or
miss_depth, mask, colour)``.

- ``"equivariant"`` (the ray-space transformer, spec §A.3–A.4): an invariant MLP embeds the inputs
  as scalar ray features (type-1 channels start at zero), ``ray_blocks`` pre-norm blocks of
  :class:`~eqt.layers.rays.RayToRayAttention` + :class:`~eqt.layers.rays.SO2MLP` among the point's
  ``K`` rays (types 0 and 1), one :class:`~eqt.layers.rays.RayToPointAttention` lifting them to
  ``0e + 1o`` features at the point, ``point_blocks`` residual
  :class:`~eqt.layers.gated.GatedEquivariantBlock` s, and a final gated block to one invariant
  logit. Exactly SE(3)-invariant (and independent of the sections' gauge), so rotated and
  translated scenes give the same occupancy.
- ``"transformer"`` (non-equivariant baseline): :class:`eqt.models.transformer.Transformer` over
  ``1 + K`` tokens per point: the point ``(x, y, z)`` and each ray's raw world coordinates
  ``(d, m, o, a, depth, mask, colour)``; the logit is read at the point token. It sees the same
  numbers as the equivariant model, in world coordinates, so any invariance must be learned.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from eqt.config import Config
from eqt.layers.gated import GatedEquivariantBlock
from eqt.layers.rays import (
    RayToPointAttention,
    RayToRayAttention,
    SO2LayerNorm,
    SO2MLP,
    SO2Rep,
    check_rays,
    ray_neighbours,
)
from eqt.layers.transformer import PreNormBlock
from eqt.models.transformer import Transformer, TransformerConfig
from eqt.primitives.rays import camera_rays, pixels_grid, ray_frame

__all__ = ["VARIANTS", "RayModelConfig", "RayOccupancyModel", "camera_inputs"]

VARIANTS = ("equivariant", "transformer")
RAY_SCALARS = 5  # depth (or miss_depth), mask, colour
TOKEN_FEATURES = 21  # point xyz (3), d, m (6), o (3), a (3), depth, mask, colour (5), is_point (1)


@dataclasses.dataclass(frozen=True)
class RayModelConfig(Config):
    """Model choice and sizes.

    Attributes:
        variant: ``"equivariant"`` or ``"transformer"``.
        rays_per_view: rays of each view given to each point (``k``).
        miss_depth: anchor distance along rays that hit nothing.
        scalars, vectors: ray feature channels of frequency 0 and 1 (equivariant).
        ray_blocks: ray→ray attention blocks (equivariant).
        heads, head_scalars, head_vectors: ray→ray and ray→point attention heads and their widths.
        point_channels: scalar and vector channels at the points (equivariant).
        point_blocks: residual gated blocks at the points (equivariant).
        hidden: width of the invariant kernel MLPs (equivariant).
        transformer_hidden, transformer_blocks, transformer_heads: baseline sizes.
    """

    variant: str = "equivariant"
    rays_per_view: int = 2
    miss_depth: float = 6.0
    scalars: int = 32
    vectors: int = 8
    ray_blocks: int = 1
    heads: int = 4
    head_scalars: int = 8
    head_vectors: int = 2
    point_channels: int = 32
    point_blocks: int = 2
    hidden: int = 32
    transformer_hidden: int = 64
    transformer_blocks: int = 2
    transformer_heads: int = 4

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown ray model variant '{self.variant}' (choose from {', '.join(VARIANTS)})")
        for name in ("rays_per_view", "scalars", "heads", "head_scalars", "point_channels", "hidden",
                     "transformer_hidden", "transformer_blocks", "transformer_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"RayModelConfig: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("vectors", "ray_blocks", "point_blocks", "head_vectors"):
            if getattr(self, name) < 0:
                raise ValueError(f"RayModelConfig: {name} must be >= 0, got {getattr(self, name)}")
        if not self.miss_depth > 0:
            raise ValueError(f"RayModelConfig: miss_depth must be positive, got {self.miss_depth}")
        if self.point_channels % self.heads:
            raise ValueError(f"RayModelConfig: point_channels ({self.point_channels}) must be a multiple of heads "
                             f"({self.heads})")


class _Tupled(nn.Module):
    """Adapter to :class:`~eqt.layers.transformer.PreNormBlock`'s tuple convention: ``f(*a, **k) -> (f(...),)``."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        return (self.inner(*args, **kwargs),)


class RayOccupancyModel(nn.Module):
    """Occupancy logits at query points from posed views (see the module docstring).

    Args:
        config: a :class:`RayModelConfig`.
    """

    def __init__(self, config: RayModelConfig = RayModelConfig()):
        super().__init__()
        self.config = c = config
        if c.variant == "transformer":
            self.net = Transformer(TransformerConfig(in_features=TOKEN_FEATURES, out_features=1,
                                                     hidden=c.transformer_hidden, num_blocks=c.transformer_blocks,
                                                     heads=c.transformer_heads, mlp_ratio=2))
            return
        self.rep = SO2Rep((c.scalars, c.vectors))
        self.embed = nn.Sequential(nn.Linear(RAY_SCALARS, c.scalars), nn.SiLU(), nn.Linear(c.scalars, c.scalars))
        self.ray_blocks = nn.ModuleList(
            PreNormBlock(_Tupled(SO2LayerNorm(self.rep)),
                         _Tupled(RayToRayAttention(self.rep, heads=c.heads, head_scalars=c.head_scalars,
                                                   head_vectors=c.head_vectors, hidden=c.hidden)),
                         _Tupled(SO2LayerNorm(self.rep)), _Tupled(SO2MLP(self.rep)))
            for _ in range(c.ray_blocks))
        self.norm = SO2LayerNorm(self.rep)
        self.lift = RayToPointAttention(self.rep, scalars=c.point_channels, vectors=c.point_channels, heads=c.heads,
                                        key_channels=c.head_scalars, hidden=c.hidden)
        self.point_blocks = nn.ModuleList(GatedEquivariantBlock(c.point_channels, c.point_channels)
                                          for _ in range(c.point_blocks))
        self.point_norms = nn.ModuleList(nn.LayerNorm(c.point_channels) for _ in range(c.point_blocks))
        self.head = GatedEquivariantBlock(c.point_channels, 1)

    # ------------------------------------------------------------------------------------------- inputs

    def _check(self, rays: Tensor, origins: Tensor, depth: Tensor, mask: Tensor, colour: Tensor, points: Tensor,
               neighbours: Tensor | None, frames: Tensor | None) -> None:
        if rays.dim() != 4 or rays.shape[-1] != 6:
            raise ValueError(f"rays must be (B, V, P, 6), got {tuple(rays.shape)}")
        b, v, p = rays.shape[:3]
        if v == 0 or p == 0:
            raise ValueError(f"empty views: the model needs at least one view with one ray, got V = {v}, P = {p}")
        check_rays(rays)
        if origins.shape != (b, v, 3) or not bool(torch.isfinite(origins).all()):
            raise ValueError(f"origins must be finite camera centres (B, V, 3) = ({b}, {v}, 3), got "
                             f"{tuple(origins.shape)}")
        off = (torch.linalg.cross(origins.unsqueeze(2).expand(b, v, p, 3), rays[..., :3], dim=-1)
               - rays[..., 3:]).norm(dim=-1) / (1 + origins.norm(dim=-1, keepdim=True))
        tol = max(1e-4, torch.finfo(rays.dtype).eps ** 0.5)
        if off.numel() and off.max().item() > tol:
            raise ValueError(f"origins are not on their views' rays (relative distance {off.max().item():.2e}); "
                             f"each view's rays must pass through its camera centre")
        if depth.shape != (b, v, p) or mask.shape != (b, v, p) or colour.shape != (b, v, p, 3):
            raise ValueError(f"depth (B, V, P), mask (B, V, P) and colour (B, V, P, 3) must match rays "
                             f"{tuple(rays.shape)}, got {tuple(depth.shape)}, {tuple(mask.shape)}, "
                             f"{tuple(colour.shape)}")
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool (the ray hits the scene), got {mask.dtype}")
        if not (bool(torch.isfinite(depth).all()) and bool(torch.isfinite(colour).all())):
            raise ValueError("depth and colour must be finite")
        if points.dim() != 3 or points.shape[0] != b or points.shape[-1] != 3 or not bool(torch.isfinite(points).all()):
            raise ValueError(f"points must be finite (B, Q, 3) with B = {b}, got {tuple(points.shape)}")
        if neighbours is not None and (neighbours.dtype != torch.long or neighbours.dim() != 3
                                       or neighbours.shape[:2] != points.shape[:2] or neighbours.shape[-1] == 0):
            raise ValueError(f"neighbours must be int64 (B, Q, K >= 1) for points {tuple(points.shape)}, got "
                             f"{neighbours.dtype} {tuple(neighbours.shape)}")
        if neighbours is not None and neighbours.numel() and (int(neighbours.min()) < 0
                                                              or int(neighbours.max()) >= v * p):
            raise ValueError(f"neighbour index out of range [0, {v * p})")
        if frames is not None and frames.shape != (b, v, p, 3, 3):
            raise ValueError(f"frames must be (B, V, P, 3, 3), got {tuple(frames.shape)}")

    def forward(self, rays: Tensor, origins: Tensor, depth: Tensor, mask: Tensor, colour: Tensor, points: Tensor,
                neighbours: Tensor | None = None, frames: Tensor | None = None) -> Tensor:
        """Occupancy logits ``(B, Q)``; shapes in the module docstring.

        Raises:
            ValueError: for empty views, invalid rays (zero-length directions, ``d · m != 0``),
                centres off their rays, or mismatched shapes.
        """
        self._check(rays, origins, depth, mask, colour, points, neighbours, frames)
        c = self.config
        b, v, p = rays.shape[:3]
        q = points.shape[1]
        if neighbours is None:
            neighbours = ray_neighbours(points, rays, min(c.rays_per_view, p))
        k = neighbours.shape[-1]
        hit_depth = torch.where(mask, depth, torch.full_like(depth, c.miss_depth))  # (B, V, P)
        d = rays[..., :3]
        anchors = origins.unsqueeze(2) + hit_depth.unsqueeze(-1) * d  # (B, V, P, 3)
        scal = torch.cat([hit_depth.unsqueeze(-1), mask.unsqueeze(-1).to(rays.dtype), colour], dim=-1)
        flat = lambda t: t.reshape(b, v * p, *t.shape[3:])  # noqa: E731 - (B, V*P, ...)
        bi = torch.arange(b, device=rays.device).view(b, 1, 1)
        gather = lambda t: flat(t)[bi, neighbours]  # noqa: E731 - (B, Q, K, ...)
        rn, an, sn = gather(rays), gather(anchors), gather(scal)
        if c.variant == "transformer":
            on = gather(origins.unsqueeze(2).expand(b, v, p, 3))
            zero = rn.new_zeros(b, q, k, 3)
            ray_tokens = torch.cat([zero, rn, on, an, sn, rn.new_zeros(b, q, k, 1)], dim=-1)  # (B, Q, K, 21)
            point_token = torch.cat([points, points.new_zeros(b, q, TOKEN_FEATURES - 4), points.new_ones(b, q, 1)], -1)
            tokens = torch.cat([point_token.unsqueeze(2), ray_tokens], dim=2)  # (B, Q, 1 + K, 21)
            return self.net(tokens.reshape(b * q, 1 + k, TOKEN_FEATURES))[:, 0, 0].reshape(b, q)
        fn = ray_frame(rn)[0] if frames is None else gather(frames)  # (B, Q, K, 3, 3)
        x = SO2Rep.join([self.embed(sn), sn.new_zeros(b, q, k, c.vectors, 2)])  # (B, Q, K, rep.dim)
        geometry = dict(rays=rn, anchors=an, frames=fn)
        for block in self.ray_blocks:
            (x,) = block((x,), geometry)
        x = self.norm(x)
        bq = b * q
        s, vec = self.lift(x.reshape(bq, k, -1), rn.reshape(bq, k, 6), an.reshape(bq, k, 3), fn.reshape(bq, k, 3, 3),
                           points.reshape(bq, 1, 3))  # (BQ, 1, C), (BQ, 1, 3, C)
        s, vec = s[:, 0], vec[:, 0]
        for norm, block in zip(self.point_norms, self.point_blocks):
            ds, dv = block(norm(s), vec)
            s, vec = s + ds, vec + dv
        out, _ = self.head(s, vec)
        return out[:, 0].reshape(b, q)


def camera_inputs(intrinsics: Tensor, cam_to_world: Tensor, depth: Tensor, mask: Tensor, colour: Tensor,
                  image_size: tuple[int, int]) -> dict[str, Tensor]:
    """Model inputs ``{rays, origins, depth, mask, colour}`` from pinhole cameras and their images.

    Args:
        intrinsics: ``(B, V, 3, 3)`` matrices ``K`` (bottom row ``(0, 0, 1)``, invertible).
        cam_to_world: ``(B, V, 4, 4)`` rigid poses (OpenCV axes, :func:`eqt.primitives.rays.camera_rays`).
        depth: ``(B, V, H*W)`` distances along the rays (row-major pixels).
        mask: ``(B, V, H*W)`` bool hits.
        colour: ``(B, V, H*W, 3)``.
        image_size: ``(H, W)``.

    Returns:
        ``rays (B, V, H*W, 6)``, ``origins (B, V, 3)`` and the images, in the dtype of ``cam_to_world``.

    Raises:
        ValueError: for no views or pixels, non-finite or degenerate cameras (singular ``K``, a pose
            that is not a rigid motion), or mismatched shapes.
    """
    if cam_to_world.dim() != 4 or cam_to_world.shape[-2:] != (4, 4):
        raise ValueError(f"cam_to_world must be (B, V, 4, 4), got {tuple(cam_to_world.shape)}")
    b, v = cam_to_world.shape[:2]
    h, w = (int(s) for s in image_size)
    if v == 0 or h * w == 0:
        raise ValueError(f"empty views: need at least one view of at least one pixel, got V = {v}, H x W = {h} x {w}")
    if intrinsics.shape != (b, v, 3, 3):
        raise ValueError(f"intrinsics must be (B, V, 3, 3) = ({b}, {v}, 3, 3), got {tuple(intrinsics.shape)}")
    if not (bool(torch.isfinite(intrinsics).all()) and bool(torch.isfinite(cam_to_world).all())):
        raise ValueError("degenerate camera: intrinsics or pose hold NaN or infinite values")
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=intrinsics.dtype)
    det = torch.linalg.det(intrinsics).abs()
    if bool(((intrinsics[..., 2, :] - bottom).abs() > 1e-6).any()) or bool((det < 1e-9).any()):
        raise ValueError(f"degenerate camera intrinsics: K must be invertible with bottom row (0, 0, 1); smallest "
                         f"|det K| = {det.min().item():.2e}")
    try:
        rays = camera_rays(intrinsics.to(cam_to_world.dtype), cam_to_world,
                           pixels_grid(h, w, dtype=cam_to_world.dtype).expand(b, v, h * w, 2))
    except ValueError as err:
        raise ValueError(f"degenerate camera pose: {err}") from None
    if depth.shape != (b, v, h * w) or mask.shape != (b, v, h * w) or colour.shape != (b, v, h * w, 3):
        raise ValueError(f"images must be depth (B, V, H*W), mask (B, V, H*W), colour (B, V, H*W, 3) with "
                         f"H*W = {h * w}, got {tuple(depth.shape)}, {tuple(mask.shape)}, {tuple(colour.shape)}")
    dtype = cam_to_world.dtype
    return {"rays": rays, "origins": cam_to_world[..., :3, 3].clone(), "depth": depth.to(dtype),
            "mask": mask.to(torch.bool), "colour": colour.to(dtype)}
