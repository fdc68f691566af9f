"""Rigid-body models: GATr family exactly E(3)-equivariant (reflections included), the transformer not.

Inputs are synthetic arrays with the shapes of :mod:`eqt.data.rigid` (no MuJoCo needed); the group
acts through :func:`eqt.data.rigid.apply_e3` on the inputs and by ``x -> R x + t``, ``M -> R M`` on
the predicted positions and orientations. Group elements come from :class:`eqt.testing.E3`
(Haar rotations, point inversions, mirrors; translations of scale 3 m) in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqt.checkpoint import load_model, save_checkpoint
from eqt.data.rigid import apply_e3
from eqt.models.rigid import INPUT_KEYS, RigidBodyModel, RigidModelConfig, gram_schmidt, rigid_loss
from eqt.primitives.rotations import haar_rotations
from eqt.testing import E3, Translations

N, H, B = 3, 2, 4
SMALL = dict(width=1, depth=2, history=H)


def _inputs(seed: int = 0, mirrored: bool = True) -> dict[str, np.ndarray]:
    """Random arrays with the shapes and roles of the data (body 0 mirrored if ``mirrored``)."""
    rng = np.random.default_rng(seed)
    rot = haar_rotations(rng, N * B).reshape(N, 1, B, 3, 3) @ haar_rotations(rng, N * H).reshape(N, H, 1, 3, 3)
    if mirrored:
        rot[:, :, 0] = -rot[:, :, 0]
    normal = rng.standard_normal((N, 3))
    inertia = rng.standard_normal((N, B, 3, 3)) * 1e-3
    return {
        "kind_onehot": np.eye(4)[rng.integers(0, 4, (N, B))], "size": rng.uniform(0.04, 0.12, (N, B, 3)),
        "mass": rng.uniform(0.2, 2.0, (N, B)), "radius": rng.uniform(0.05, 0.2, (N, B)),
        "inertia": inertia + inertia.transpose(0, 1, 3, 2), "pos": 0.3 * rng.standard_normal((N, H, B, 3)),
        "rot": rot, "vel": rng.standard_normal((N, H, B, 3)), "angvel": 5 * rng.standard_normal((N, H, B, 3)),
        "floor_point": 0.2 * rng.standard_normal((N, 3)),
        "floor_normal": normal / np.linalg.norm(normal, axis=-1, keepdims=True),
        "gravity": 9.81 * rng.standard_normal((N, 3)),
    }  # fmt: skip


def _run(model: RigidBodyModel, data: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model({k: torch.as_tensor(data[k], dtype=torch.float64) for k in INPUT_KEYS})


def _e3_error(model: RigidBodyModel, group=None, n_samples: int = 6, mirrored: bool = True) -> float:
    """Largest relative error of ``model(g x)`` against ``g model(x)`` over sampled elements."""
    data = _inputs(mirrored=mirrored)
    pos, rot = _run(model, data)
    worst = 0.0
    for g in (group or E3()).sample(n_samples, np.random.default_rng(1)):
        r = g.rotation if g.rotation is not None else np.eye(3)
        t = g.translation if g.translation is not None else np.zeros(3)
        pos_g, rot_g = _run(model, apply_e3(data, r, t))
        rt, tt = torch.as_tensor(r), torch.as_tensor(t)
        want_pos, want_rot = pos @ rt.T + tt, rt @ rot
        worst = max(worst, ((pos_g - want_pos).abs().max() / want_pos.abs().max()).item(),
                    (rot_g - want_rot).abs().max().item())
    return worst


@pytest.mark.parametrize("options", [dict(), dict(gatr_variant="P-GATr"), dict(centre=True)])
def test_gatr_family_is_e3_equivariant(options):
    """Exact E(3), reflections (inversions and mirrors) and mirrored bodies included."""
    torch.manual_seed(0)
    model = RigidBodyModel(RigidModelConfig(family="gatr", **SMALL, **options)).double()
    assert _e3_error(model) < 1e-9


def test_both_families_are_permutation_equivariant():
    data = _inputs()
    perm = np.array([2, 0, 3, 1])
    history_keys, body_keys = ("pos", "rot", "vel", "angvel"), ("kind_onehot", "size", "mass", "radius", "inertia")
    permuted = {k: v[:, :, perm] if k in history_keys else v[:, perm] if k in body_keys else v for k, v in data.items()}
    for family in ("gatr", "transformer"):
        torch.manual_seed(0)
        model = RigidBodyModel(RigidModelConfig(family=family, **SMALL)).double()
        (pos, rot), (pos_p, rot_p) = _run(model, data), _run(model, permuted)
        torch.testing.assert_close(pos_p, pos[:, perm], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(rot_p, rot[:, perm], rtol=1e-12, atol=1e-12)


def test_transformer_is_not_e3_equivariant():
    """Raw coordinates in: rotations and translations change the prediction (augmentation must teach them)."""
    torch.manual_seed(0)
    model = RigidBodyModel(RigidModelConfig(family="transformer", **SMALL)).double()
    assert _e3_error(model) > 1e-2
    assert _e3_error(model, Translations()) > 1e-2
    centred = RigidBodyModel(RigidModelConfig(family="transformer", centre=True, **SMALL)).double()
    assert _e3_error(centred, Translations()) < 1e-9  # centring gives translations for free, not rotations
    assert _e3_error(centred) > 1e-2


@pytest.mark.parametrize("family", ["gatr", "transformer"])
def test_shapes_and_orthogonal_outputs(family):
    torch.manual_seed(0)
    model = RigidBodyModel(RigidModelConfig(family=family, **SMALL)).double()
    data = _inputs()
    pos, rot = _run(model, data)
    assert pos.shape == (N, B, 3) and rot.shape == (N, B, 3, 3)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(rot.transpose(-1, -2) @ rot, eye.expand_as(rot), rtol=0, atol=1e-9)
    want_det = torch.as_tensor(np.sign(np.linalg.det(data["rot"][:, -1])))
    torch.testing.assert_close(torch.linalg.det(rot), want_det)  # a mirrored body stays mirrored
    f32 = RigidBodyModel(RigidModelConfig(family=family, **SMALL))
    out = f32({k: torch.as_tensor(data[k], dtype=torch.float32) for k in INPUT_KEYS})
    assert all(o.dtype == torch.float32 and torch.isfinite(o).all() for o in out)


def test_size_knob_grows_the_model():
    for family in ("gatr", "transformer"):
        counts = [sum(p.numel() for p in RigidBodyModel(RigidModelConfig(family=family, width=w, depth=d)).parameters())
                  for w, d in ((1, 1), (2, 1), (1, 2))]
        assert counts[0] < counts[1] and counts[0] < counts[2], (family, counts)


def test_loss_gram_schmidt_and_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    rot = torch.as_tensor(haar_rotations(rng, 6).reshape(2, 3, 3, 3))
    pos = torch.randn(2, 3, 3, dtype=torch.float64)
    loss, metrics = rigid_loss(pos, rot, pos, rot)
    assert loss.item() == 0.0 and metrics["angle"].item() < 1e-6
    loss, metrics = rigid_loss(pos + 0.1, rot, pos, rot, length_scale=0.1)
    assert abs(loss.item() - 1.0) < 1e-12  # a 0.1 m error per coordinate is one unit
    torch.testing.assert_close(gram_schmidt(rot[..., 0], rot[..., 1], torch.ones(2, 3, dtype=torch.float64)), rot)
    torch.manual_seed(0)
    model = RigidBodyModel(RigidModelConfig(family="gatr", **SMALL)).double()
    save_checkpoint(tmp_path / "m.pt", model)
    again = load_model(tmp_path / "m.pt").double()
    data = _inputs()
    torch.testing.assert_close(_run(again, data), _run(model, data))


def test_bad_configs_and_inputs():
    with pytest.raises(ValueError, match="unknown rigid-body model family 'mlp'"):
        RigidModelConfig(family="mlp")
    with pytest.raises(ValueError, match="width must be an int >= 1"):
        RigidModelConfig(width=0)
    with pytest.raises(ValueError, match="gatr_variant"):
        RigidModelConfig(gatr_variant="C-GATr")
    with pytest.raises(ValueError, match="length_scale"):
        RigidModelConfig(length_scale=0.0)
    with pytest.raises(ValueError, match="unknown key 'widht'"):
        RigidModelConfig.from_dict({"widht": 2})
    model = RigidBodyModel(RigidModelConfig(family="transformer", **SMALL))
    data = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in _inputs().items()}
    with pytest.raises(ValueError, match="lack gravity"):
        model({k: v for k, v in data.items() if k != "gravity"})
    with pytest.raises(ValueError, match="history=2 frames, the inputs have 1"):
        model({**data, "pos": data["pos"][:, :1]})
    with pytest.raises(ValueError, match=r"mass must have shape \(3, 4\)"):
        model({**data, "mass": data["mass"][:, :2]})
