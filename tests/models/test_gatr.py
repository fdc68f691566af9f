"""GATr variants from one class: equivariance of the whole network in float64, config errors."""

from __future__ import annotations

import pytest
import torch

from eqt.models.gatr import VARIANTS as PAPER_VARIANTS
from eqt.models.gatr import GATr, GATrConfig
from eqt.testing import Invariant, Multivector, Permutations, Pin, assert_equivariant

SMALL = dict(hidden_mv=4, hidden_s=6, num_blocks=2, heads=2, head_mv=2, head_s=3, bilinear_mv=2, in_mv=2, in_s=3,
             out_mv=1, out_s=2)
VARIANTS = {name: GATrConfig(**v, **SMALL) for name, v in PAPER_VARIANTS.items()}


@pytest.mark.parametrize("name", VARIANTS)
def test_network_equivariant(name):
    config = VARIANTS[name]
    torch.manual_seed(0)
    net = GATr(config).double()
    dim = net.algebra.dim
    mv = torch.randn(2, 5, config.in_mv, dim, dtype=torch.float64)
    s = torch.randn(2, 5, config.in_s, dtype=torch.float64)
    group = Pin(*config.algebra, subgroup=config.subgroup) * Permutations(5)
    err = assert_equivariant(net, group, [(mv, Multivector(*config.algebra, atom_axis=1)), (s, Invariant(atom_axis=1))],
                             [Multivector(*config.algebra, atom_axis=1), Invariant(atom_axis=1)], n_samples=4)
    assert err < 1e-10


def test_join_needs_a_projective_algebra():
    with pytest.raises(ValueError, match="projective"):
        GATrConfig(algebra=(3, 0, 0), use_join=True)
    with pytest.raises(ValueError, match="projective"):
        GATrConfig(algebra=(4, 1, 0), use_join=False, distance_attention=True)
    with pytest.raises(ValueError, match="signature"):
        GATrConfig(algebra=(3, 0))
    with pytest.raises(ValueError, match="heads"):
        GATrConfig(heads=0)


def test_wrong_input_shapes_are_clear_errors():
    net = GATr(VARIANTS["P-GATr"])
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 2, 16\)"):
        net(torch.randn(1, 5, 2, 32), torch.randn(1, 5, 3))
    with pytest.raises(ValueError, match="scalars"):
        net(torch.randn(1, 5, 2, 16), torch.randn(1, 5, 2))
    with pytest.raises(ValueError, match="did you mean 'num_blocks'"):
        GATrConfig.from_dict({"num_block": 2})


def test_checkpoint_round_trip(tmp_path):
    from eqt.checkpoint import load_model, save_checkpoint

    net = GATr(VARIANTS["C-GATr"])
    save_checkpoint(tmp_path / "gatr.pt", net)
    back = load_model(tmp_path / "gatr.pt")
    mv, s = torch.randn(1, 3, 2, 32), torch.randn(1, 3, 3)
    torch.testing.assert_close(back(mv, s)[0], net.eval()(mv, s)[0])


def test_float32_network_equivariant():
    """Loose float32 twin of the float64 test (end-to-end nets accumulate rounding)."""
    config = VARIANTS["P-GATr"]
    torch.manual_seed(1)
    net = GATr(config)
    mv = torch.randn(1, 5, config.in_mv, 16)
    s = torch.randn(1, 5, config.in_s)
    assert_equivariant(net, Pin(3, 0, 1), [(mv, Multivector(3, 0, 1, atom_axis=1)), (s, Invariant(atom_axis=1))],
                       [Multivector(3, 0, 1, atom_axis=1), Invariant(atom_axis=1)], dtype=torch.float32, rtol=1e-4)


def test_bf16_autocast_runs_and_stays_close():
    """bf16 autocast (GATr's authors recommend bf16 over fp16): output within bf16 rounding of float32."""
    torch.manual_seed(2)
    net = GATr(VARIANTS["iP-GATr"]).eval()
    mv, s = torch.randn(4, 8, 2, 16), torch.randn(4, 8, 3)
    ref_mv, ref_s = net(mv, s)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_mv, out_s = net(mv, s)
    assert out_s.dtype == torch.bfloat16  # the scalar path really ran in bf16
    assert torch.isfinite(out_mv).all() and torch.isfinite(out_s).all()
    rel = (out_mv.float() - ref_mv).norm() / ref_mv.norm()
    assert rel < 0.1, rel
    loss = out_mv.float().square().mean() + out_s.float().square().mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_reference_compatible_mode_equivariant():
    """The reference-numerics mode (clamped layer norm, exact scalar GELU, a wider MLP middle;
    models/gatr.reference_config) is as equivariant as the default one."""
    from eqt.models.gatr import reference_config

    config = reference_config(in_mv=2, out_mv=1, hidden_mv=4, in_s=3, out_s=2, hidden_s=6, num_blocks=2, num_heads=2)
    torch.manual_seed(0)
    net = GATr(config).double()
    mv = torch.randn(2, 5, config.in_mv, net.algebra.dim, dtype=torch.float64)
    s = torch.randn(2, 5, config.in_s, dtype=torch.float64)
    group = Pin(*config.algebra, subgroup=config.subgroup) * Permutations(5)
    err = assert_equivariant(net, group, [(mv, Multivector(*config.algebra, atom_axis=1)), (s, Invariant(atom_axis=1))],
                             [Multivector(*config.algebra, atom_axis=1), Invariant(atom_axis=1)], n_samples=4)
    assert err < 1e-10
