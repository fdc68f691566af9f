"""Reference action on Plücker rays ``(..., 6)`` = ``(d, m)``, independent of :mod:`eqt.primitives.rays`.

The slow, obvious route: rebuild two points of each line, move them as positions
(``x -> R x + t``), and build the ray from the moved points. No moment formula (and hence no
``det R`` sign rule) is written down, so this checks the fast :func:`eqt.primitives.rays.transform_rays`.
"""

from __future__ import annotations

import numpy as np
import torch

from eqt.reps.actions import Rep, _like, _to_numpy
from eqt.reps.groups import Element

__all__ = ["Ray", "RayField"]


class Ray(Rep):
    """Plücker rays on the last axis (6 = direction ``d``, moment ``m = x × d``) moved by ``x -> R x + t``.

    For each ray: ``p0 = d × m / |d|^2`` (the point closest to the origin) and ``p1 = p0 + d`` lie on
    it; they move to ``R p_i + t``, and the new ray is ``(p1' - p0', p0' × (p1' - p0'))``. Works for
    proper and improper ``R``; the direction's length is kept. Rays ``(N, 6)``: ``Ray()``; a single
    ray or per-system rays: ``Ray(atom_axis=None)``.

    Args:
        atom_axis: permuted axis, or None.
    """

    def __init__(self, atom_axis: int | None = 0) -> None:
        super().__init__(atom_axis)

    def _act_spatial(self, g: Element, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 0 or x.shape[-1] != 6:
            raise ValueError(f"rays must have a last axis of 6 (d, m), got shape {tuple(x.shape)}")
        if g.rotation is None and g.translation is None:
            return x.clone()
        v = _to_numpy(x)
        d, m = v[..., :3], v[..., 3:]
        d2 = np.sum(d * d, axis=-1, keepdims=True)
        if np.any(d2 == 0):
            raise ValueError(f"rays of shape {tuple(x.shape)} have a zero direction")
        p0 = np.cross(d, m) / d2
        p1 = p0 + d
        r = np.eye(3) if g.rotation is None else g.rotation
        t = np.zeros(3) if g.translation is None else g.translation
        q0 = p0 @ r.T + t
        q1 = p1 @ r.T + t
        d_new = q1 - q0
        return _like(np.concatenate([d_new, np.cross(q0, d_new)], axis=-1), x)


class RayField(Rep):
    """Reference action on features typed by SO(2) frequency, expressed in each ray's canonical section.

    ``(g f)(g x) = ρ(h(g, x)) f(x)`` (spec ``rays.md`` §A.2): the twist angle ``γ`` is read off
    ``F(gx)^T R F(x) = Rz(γ)``, with ``F`` the section frame of :func:`eqt.primitives.rays.ray_frame`
    (the gauge convention the features are defined in) and ``gx`` from the independent :class:`Ray`
    action; a frequency-k pair is rotated by ``kγ``, scalars are left alone. Slow, numpy float64.

    Args:
        rep: the feature layout, e.g. :class:`eqt.layers.rays.SO2Rep` (anything with ``split(x)`` ->
            ``[(..., m0), (..., m1, 2), ...]`` and a static ``join(blocks)``).
        rays: ``(..., 6)`` the rays the features live on (before the group acts).
    """

    def __init__(self, rep, rays: torch.Tensor):
        super().__init__(None)
        self.rep, self.rays = rep, rays.detach().to(torch.float64)

    def _act_spatial(self, g: Element, x: torch.Tensor) -> torch.Tensor:
        from eqt.primitives.rays import ray_frame

        if g.rotation is None:
            return x.clone()
        moved = Ray(atom_axis=None).act(g, self.rays)
        f0 = ray_frame(self.rays)[0].numpy()
        f1 = ray_frame(moved)[0].numpy()
        h = np.einsum("...ji,jk,...kl->...il", f1, g.rotation, f0)  # (..., 3, 3) = Rz(γ)
        gamma = np.arctan2(h[..., 1, 0], h[..., 0, 0])
        blocks = self.rep.split(x.detach().to(torch.float64))
        out = [blocks[0].numpy()]
        for k, z in enumerate(blocks[1:], start=1):
            c, s = np.cos(k * gamma)[..., None], np.sin(k * gamma)[..., None]
            re, im = z[..., 0].numpy(), z[..., 1].numpy()
            out.append(np.stack([c * re - s * im, s * re + c * im], axis=-1))
        return type(self.rep).join([torch.from_numpy(np.ascontiguousarray(b)) for b in out]).to(x.dtype)
