"""Baseline transformer: shapes, token-permutation equivariance, errors, checkpoints."""

from __future__ import annotations

import pytest
import torch

from eqt.models.transformer import Transformer, TransformerConfig
from eqt.testing import Invariant, Permutations, assert_equivariant

SMALL = TransformerConfig(in_features=7, out_features=3, hidden=16, num_blocks=2, heads=4)


def test_shapes_and_permutation_equivariance():
    torch.manual_seed(0)
    net = Transformer(SMALL).double()
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    assert net(x).shape == (3, 5, 3)
    assert assert_equivariant(net, Permutations(5), [(x, Invariant(atom_axis=1))], [Invariant(atom_axis=1)]) < 1e-12


def test_not_rotation_equivariant():
    """The baseline is a control: rotating input coordinates does not rotate its output."""
    torch.manual_seed(0)
    net = Transformer(SMALL).double()
    x = torch.randn(2, 4, 7, dtype=torch.float64)
    rot = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    xr = x.clone()
    xr[..., 1:4] = x[..., 1:4] @ rot.T
    xr[..., 4:7] = x[..., 4:7] @ rot.T
    assert (net(xr) - net(x) @ rot.T).abs().max() > 1e-3


def test_config_and_shape_errors(tmp_path):
    with pytest.raises(ValueError, match="multiple of heads"):
        TransformerConfig(hidden=10, heads=4)
    with pytest.raises(ValueError, match="did you mean 'hidden'"):
        TransformerConfig.from_dict({"hiden": 3})
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 7\)"):
        Transformer(SMALL)(torch.randn(2, 4, 5))


def test_checkpoint_round_trip(tmp_path):
    from eqt.checkpoint import load_model, save_checkpoint

    net = Transformer(SMALL)
    save_checkpoint(tmp_path / "t.pt", net)
    x = torch.randn(1, 3, 7)
    torch.testing.assert_close(load_model(tmp_path / "t.pt")(x), net.eval()(x))
