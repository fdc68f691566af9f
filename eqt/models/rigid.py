"""Models for the rigid-body task of "Does equivariance matter at scale?": GATr or the plain transformer.

One token per body; the task (:mod:`eqt.data.rigid`) is to predict every body's pose ``horizon``
steps after the current state from ``H`` history frames. :class:`RigidBodyModel` wraps either net,
picked by ``family``, and sized by one width multiplier and one depth:

- ``family="gatr"``: iP-GATr (or P-GATr) over G(3,0,1) with ``hidden_mv = 8 w``, ``hidden_s = 16 w``,
  4 heads of ``2 w`` multivector and ``4 w`` scalar channels, bilinear ``4 w`` channels.
- ``family="transformer"``: the baseline of :mod:`eqt.models.transformer` with ``hidden = 64 w``
  (8 heads), MLP ratio 2.

Units. Inside the model lengths are in ``length_scale`` (default 0.1 m, the bodies' size) and times
in ``time_scale`` (0.1 s): positions ``x / L``, velocities ``v T / L``, angular velocities ``w T``,
gravity ``g T^2 / L`` (about 1 for 9.81 m/s^2), all O(1). Body properties become invariant
scalars, the same 15 per body for both families: ``kind_onehot`` (4), ``size / L`` (3),
``log mass`` (1), ``radius / L`` (1) and the six entries of the body-frame inertia over
``mass L^2`` (xx, yy, zz, xy, xz, yz). Mesh vertices are not passed (the inertia and bounding radius
summarise them).

GATr inputs, ``6 H + 2`` multivector channels per body token (the floor and gravity are embedded in
every token, so no extra token and no mask is needed):

- per history frame: the position as a PGA point (:func:`eqt.primitives.pga.embed_point`) times
  ``det`` of the current orientation (see below); the three body axes (columns of ``rot``) as
  directions ``v_i e0i``; the velocity as a direction ``v_i e0i``; the angular velocity as the line
  through the position with direction ``w`` (Euclidean bivector ``w1 e23 - w2 e13 + w3 e12``
  moved by the translation versor to the position);
- the floor as an oriented plane (:func:`eqt.primitives.pga.embed_oriented_plane`) and gravity as
  a direction ``g_i e0i``.

Every one of these transforms under a motion ``x -> R x + t`` (``det R = +-1``) by the outermorphism
that GATr's layers are equivariant to: directions ``e0 ^ v`` as ``R v`` (proper vectors: axes,
velocity, gravity), lines as lines (angular velocity, a pseudovector, gets ``det R``), the plane
as a plane. The exception is the point: a reflection flips an embedded point's sign (GATr issue #3,
the reason the n-body wrapper is only SE(3)-equivariant). Multiplying it by ``det`` of the body's
current orientation, itself a pseudoscalar (``det(R M) = det R det M``), cancels the flip, so the
model is exactly E(3)-equivariant, reflections included (checked in float64 in
``tests/models/test_rigid_model.py``).

Outputs, residual over the current pose: three output channels, each moved by the translation that
takes the body's current position to the origin, and of those the ``e0i`` parts (directions) are a
displacement ``dx`` and two axis corrections ``da``, ``db``. (The move matters: the ``e0i`` part of
a general bivector is the moment of a line, which changes under translations unless its Euclidean
part ``e_ij`` vanishes; read relative to the body's own position it transforms as ``R v``, exactly.)
The predicted position is
``x + L dx``, and the orientation is Gram-Schmidt of ``a = R[:, 0] + da``, ``b = R[:, 1] + db``:
``e1 = a / |a|``, ``e2 = b' / |b'|`` with ``b' = b - (e1.b) e1``, ``e3 = det(R) e1 x e2``
(``det(R)`` keeps the handedness of the current frame, so a mirrored body stays mirrored and the
map is reflection-equivariant). The transformer gets the same information as raw numbers, 15
scalars + ``18 H`` (``x / L``, ``rot`` (9), ``v T / L``, ``w T`` per frame) + 9 (floor point / L,
floor normal, gravity T^2 / L) features per body, and outputs the same 9 numbers ``dx, da, db``.

``centre=True`` subtracts the mean current body position from every position (floor point
included) and adds it back to the prediction: exact translation equivariance for both families
(off by default: the transformer must then learn translations from augmentation).

Loss (:func:`rigid_loss`): ``mean|x_pred - x|^2 / L^2 + rot_weight * mean|R_pred - R|^2``, i.e. the
position MSE per coordinate in units of ``L`` plus the rotation MSE per matrix entry (a ninth of
the squared Frobenius norm).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from eqt.config import Config
from eqt.models.gatr import VARIANTS, GATr, GATrConfig
from eqt.models.transformer import Transformer, TransformerConfig
from eqt.primitives import pga
from eqt.primitives.clifford import sandwich

__all__ = ["FAMILIES", "GATR_VARIANTS", "INPUT_KEYS", "TARGET_KEYS", "N_SCALARS", "RigidModelConfig",
           "RigidBodyModel", "rigid_loss", "rigid_features", "gram_schmidt"]

FAMILIES = ("gatr", "transformer")
GATR_VARIANTS = ("iP-GATr", "P-GATr")
INPUT_KEYS = ("kind_onehot", "size", "mass", "radius", "inertia", "pos", "rot", "vel", "angvel",
              "floor_point", "floor_normal", "gravity")
"""The data arrays (:func:`eqt.data.rigid.load`) a model reads."""
TARGET_KEYS = ("target_pos", "target_rot")
N_SCALARS = 15
"""Invariant scalars per body: kind (4), size (3), log mass, radius, inertia (6)."""
_EPS = 1e-12


@dataclasses.dataclass(frozen=True)
class RigidModelConfig(Config):
    """Which net and how large: ``family``, the width multiplier ``width`` and ``depth`` blocks.

    ``history`` must equal the data's ``H``. ``gatr_variant`` picks iP-GATr (distance-aware
    attention, the released GATr) or P-GATr. Scales and ``centre``: see the module docstring.
    """

    family: str = "gatr"
    width: int = 1
    depth: int = 4
    history: int = 3
    gatr_variant: str = "iP-GATr"
    length_scale: float = 0.1
    time_scale: float = 0.1
    centre: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown rigid-body model family {self.family!r} (choose from {', '.join(FAMILIES)})")
        if self.gatr_variant not in GATR_VARIANTS:
            raise ValueError(f"gatr_variant must be one of {', '.join(GATR_VARIANTS)}, got {self.gatr_variant!r}")
        for name in ("width", "depth", "history"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("length_scale", "time_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")

    @property
    def in_mv(self) -> int:
        """GATr multivector input channels: 6 per history frame + floor + gravity."""
        return 6 * self.history + 2

    @property
    def in_features(self) -> int:
        """Transformer input features per body: 15 scalars + 18 per frame + 9 environment."""
        return N_SCALARS + 18 * self.history + 9

    def net_config(self) -> GATrConfig | TransformerConfig:
        """The configuration of the wrapped net."""
        w = self.width
        if self.family == "transformer":
            return TransformerConfig(in_features=self.in_features, out_features=9, hidden=64 * w,
                                     num_blocks=self.depth, heads=8, mlp_ratio=2)
        return GATrConfig(**VARIANTS[self.gatr_variant], in_mv=self.in_mv, in_s=N_SCALARS, out_mv=3, out_s=0,
                          hidden_mv=8 * w, hidden_s=16 * w, num_blocks=self.depth, heads=4, head_mv=2 * w,
                          head_s=4 * w, bilinear_mv=4 * w)


def _check_inputs(batch: dict[str, Tensor], history: int) -> tuple[int, int]:
    missing = [k for k in INPUT_KEYS if k not in batch]
    if missing:
        raise ValueError(f"rigid-body model inputs lack {', '.join(missing)}")
    pos = batch["pos"]
    if pos.dim() != 4 or pos.shape[-1] != 3:
        raise ValueError(f"pos must have shape (n, H, B, 3), got {tuple(pos.shape)}")
    n, h, b, _ = pos.shape
    if h != history:
        raise ValueError(f"the model was built for history={history} frames, the inputs have {h}")
    want = {"kind_onehot": (n, b, 4), "size": (n, b, 3), "mass": (n, b), "radius": (n, b),
            "inertia": (n, b, 3, 3), "rot": (n, h, b, 3, 3), "vel": (n, h, b, 3), "angvel": (n, h, b, 3),
            "floor_point": (n, 3), "floor_normal": (n, 3), "gravity": (n, 3)}
    for key, shape in want.items():
        if tuple(batch[key].shape) != shape:
            got = tuple(batch[key].shape)
            raise ValueError(f"{key} must have shape {shape} (from pos {tuple(pos.shape)}), got {got}")
    return n, b


def _direction(v: Tensor) -> Tensor:
    """Directions ``(..., 3)`` to ``v_i e0i`` ``(..., 16)`` (they transform as ``R v``, translation-free)."""
    mv = v.new_zeros(*v.shape[:-1], 16)
    mv[..., 5:8] = v
    return mv


def _axis_line(w: Tensor, x: Tensor) -> Tensor:
    """The line through ``x (..., 3)`` along the (pseudo)vector ``w (..., 3)`` as a bivector ``(..., 16)``."""
    mv = w.new_zeros(*w.shape[:-1], 16)
    mv[..., 10], mv[..., 9], mv[..., 8] = w[..., 0], -w[..., 1], w[..., 2]  # w1 e23 + w2 e31 + w3 e12
    return sandwich(pga.PGA, pga.embed_translation(x), mv)


def _unit(v: Tensor) -> Tensor:
    return v / (v.square().sum(-1, keepdim=True) + _EPS).sqrt()


def gram_schmidt(a: Tensor, b: Tensor, handedness: Tensor) -> Tensor:
    """Orthogonal matrices ``(..., 3, 3)`` with columns ``e1 = a/|a|``, ``e2`` from ``b``, ``e3 = h e1 x e2``.

    Args: a, b ``(..., 3)``; handedness ``(...)`` of +-1 (the determinant of the result).
    """
    e1 = _unit(a)
    e2 = _unit(b - (e1 * b).sum(-1, keepdim=True) * e1)
    e3 = handedness.unsqueeze(-1) * torch.linalg.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1)


def rigid_features(batch: dict[str, Tensor], config: RigidModelConfig) -> dict[str, Tensor]:
    """Unit-scaled inputs: ``scalars (n, B, 15)``, ``pos (n, H, B, 3)``, ``vel``, ``angvel``, ``floor_point (n, 3)``,
    ``gravity (n, 3)`` in model units, ``rot (n, H, B, 3, 3)``, ``floor_normal (n, 3)`` and ``centre (n, 1, 3)``
    (in metres; zero unless ``config.centre``)."""
    length, time = config.length_scale, config.time_scale
    mass = batch["mass"]
    inertia = batch["inertia"] / (mass[..., None, None] * length**2)
    i, j = (0, 1, 2, 0, 0, 1), (0, 1, 2, 1, 2, 2)
    scalars = torch.cat([batch["kind_onehot"], batch["size"] / length, mass.log().unsqueeze(-1),
                         (batch["radius"] / length).unsqueeze(-1), inertia[..., i, j]], dim=-1)  # (n, B, 15)
    pos, floor_point = batch["pos"], batch["floor_point"]
    centre = pos[:, -1].mean(dim=1, keepdim=True) if config.centre else pos.new_zeros(pos.shape[0], 1, 3)
    return {"scalars": scalars, "pos": (pos - centre[:, None]) / length,
            "floor_point": (floor_point - centre[:, 0]) / length, "vel": batch["vel"] * (time / length),
            "angvel": batch["angvel"] * time, "gravity": batch["gravity"] * (time**2 / length),
            "rot": batch["rot"], "floor_normal": batch["floor_normal"], "centre": centre}


class RigidBodyModel(nn.Module):
    """Predict every body's pose after the horizon from its history, the floor and gravity.

    Args:
        config: a :class:`RigidModelConfig`.
    """

    def __init__(self, config: RigidModelConfig = RigidModelConfig()):
        super().__init__()
        self.config = config
        net = config.net_config()
        self.net = Transformer(net) if isinstance(net, TransformerConfig) else GATr(net)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Args: batch: the :data:`INPUT_KEYS` arrays of :mod:`eqt.data.rigid` as tensors, e.g. ``pos (n, H, B, 3)``,
        ``rot (n, H, B, 3, 3)``, ``mass (n, B)``, ``gravity (n, 3)`` (other keys are ignored).

        Returns: positions ``(n, B, 3)`` and orientations ``(n, B, 3, 3)`` after the horizon.
        """
        n, b = _check_inputs(batch, self.config.history)
        f = rigid_features(batch, self.config)
        rot_now = f["rot"][:, -1]  # (n, B, 3, 3)
        det = torch.linalg.det(rot_now).sign()  # (n, B): +-1, a pseudoscalar
        if self.config.family == "transformer":
            frames = torch.cat([f["pos"], f["rot"].flatten(-2), f["vel"], f["angvel"]], dim=-1)  # (n, H, B, 18)
            frames = frames.permute(0, 2, 1, 3).reshape(n, b, -1)  # (n, B, 18 H)
            env = torch.cat([f["floor_point"], f["floor_normal"], f["gravity"]], dim=-1)  # (n, 9)
            out = self.net(torch.cat([f["scalars"], frames, env[:, None].expand(n, b, 9)], dim=-1))  # (n, B, 9)
            dx, da, db = out.split(3, dim=-1)
        else:
            point = pga.embed_point(f["pos"]) * det[:, None, :, None]  # (n, H, B, 16)
            axes = _direction(f["rot"].transpose(-1, -2))  # (n, H, B, 3, 16): columns = body axes
            frames = torch.cat([point[..., None, :], axes, _direction(f["vel"])[..., None, :],
                                _axis_line(f["angvel"], f["pos"])[..., None, :]], dim=-2)  # (n, H, B, 6, 16)
            frames = frames.permute(0, 2, 1, 3, 4).reshape(n, b, -1, 16)  # (n, B, 6 H, 16)
            env = torch.stack([pga.embed_oriented_plane(f["floor_normal"], f["floor_point"]),
                               _direction(f["gravity"])], dim=-2)  # (n, 2, 16)
            mv = torch.cat([frames, env[:, None].expand(n, b, 2, 16)], dim=-2)  # (n, B, 6 H + 2, 16)
            out, _ = self.net(mv, f["scalars"])  # (n, B, 3, 16)
            here = pga.embed_translation(-f["pos"][:, -1, :, None])  # (n, B, 1, 16): moves x_now to 0
            dx, da, db = sandwich(pga.PGA, here, out)[..., 5:8].unbind(dim=-2)  # 3 x (n, B, 3)
        pos = batch["pos"][:, -1] + self.config.length_scale * dx  # (n, B, 3), metres
        rot = gram_schmidt(rot_now[..., 0] + da, rot_now[..., 1] + db, det)
        return pos, rot


def rigid_loss(pos: Tensor, rot: Tensor, target_pos: Tensor, target_rot: Tensor, length_scale: float = 0.1,
               rot_weight: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    """``mean|pos - target|^2 / L^2 + rot_weight mean|rot - target|^2`` and detached metrics.

    Args:
        pos, target_pos: ``(n, B, 3)`` positions in metres.
        rot, target_rot: ``(n, B, 3, 3)`` orientations.
        length_scale: ``L`` in metres.
        rot_weight: weight of the rotation term.

    Returns:
        The scalar loss and ``{"pos_mse" (m^2), "rot_mse" (per entry), "angle" (mean geodesic error, rad)}``.
    """
    pos_mse = (pos - target_pos).square().mean()
    rot_mse = (rot - target_rot).square().mean()
    cos = ((rot * target_rot).sum((-2, -1)) - 1.0) / 2.0  # tr(R^T R') = 1 + 2 cos(angle)
    angle = cos.clamp(-1.0, 1.0).detach().acos().mean()
    loss = pos_mse / length_scale**2 + rot_weight * rot_mse
    return loss, {"pos_mse": pos_mse.detach(), "rot_mse": rot_mse.detach(), "angle": angle}
