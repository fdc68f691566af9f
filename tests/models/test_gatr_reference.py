"""eqt's GATr layers and network against golden outputs of the Qualcomm reference GATr (v1.4.3).

``tests/data/golden/gatr.pt`` holds reference weights, inputs and outputs (float64), made by
``benchmarks/make_golden.py`` (its docstring: command, commit, shims). The weights are transplanted
with ``eqt.models.gatr``'s ``load_reference_*`` / ``from_reference_state_dict`` and every output must
agree to float64 round-off. No reference code is needed here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eqt.layers.multivector import EquiLayerNorm, EquiLinear, GeometricBilinear, MultivectorAttention, MultivectorMLP
from eqt.models.gatr import (
    from_reference_state_dict,
    load_reference_attention,
    load_reference_bilinear,
    load_reference_equilinear,
    load_reference_mlp,
    reference_config,
)
from eqt.primitives.clifford import Algebra

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "gatr.pt"
PGA = Algebra(3, 0, 1)
TOL = 1e-10  # float64 round-off (observed differences: see docs/gatr.md, "Reference parity")


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(GOLDEN, weights_only=True)


def max_diff(out, g) -> float:
    """Largest absolute difference of the multivector and scalar outputs, relative to max(1, |ref|)."""
    mv, s = out
    scale = max(1.0, g["out_mv"].abs().max().item(), g["out_s"].abs().max().item())
    return max((mv - g["out_mv"]).abs().max().item(), (s - g["out_s"]).abs().max().item()) / scale


def test_golden_file_is_small_and_plain():
    assert GOLDEN.stat().st_size < 2**20
    g = torch.load(GOLDEN, weights_only=True)
    assert g["commit"].startswith("6afc26f")


def test_equilinear(golden):
    g = golden["linear"]
    n = g["sizes"]
    layer = load_reference_equilinear(EquiLinear(PGA, n["in_mv"], n["out_mv"], n["in_s"], n["out_s"]).double(),
                                      g["state_dict"])
    assert max_diff(layer(g["mv"], g["s"]), g) < TOL


def test_geometric_bilinear(golden):
    g = golden["bilinear"]
    n = g["sizes"]
    layer = GeometricBilinear(PGA, n["in_mv"], n["out_mv"], n["hidden"], n["in_s"], n["out_s"], use_join=True).double()
    load_reference_bilinear(layer, g["state_dict"])
    ref = g["reference_mv"].reshape(g["reference_mv"].shape[0], 1, 16).expand(*g["mv"].shape[:2], 16)
    assert max_diff(layer(g["mv"], g["s"], reference=ref), g) < TOL


def test_mlp(golden):
    g = golden["mlp"]
    n = g["sizes"]
    mlp = MultivectorMLP(PGA, n["mv"], n["s"], n["hidden"], use_join=True, mid_mv=n["mid_mv"], mid_s=n["mid_s"],
                         scalar_gelu="none").double()
    load_reference_mlp(mlp, g["state_dict"])
    ref = g["reference_mv"].reshape(g["reference_mv"].shape[0], 1, 16).expand(*g["mv"].shape[:2], 16)
    assert max_diff(mlp(g["mv"], g["s"], reference=ref), g) < TOL
    # eqt's default tanh GELU on the scalar channels is a different function (by choice): visible here
    mlp.scalar_gelu = "tanh"
    assert max_diff(mlp(g["mv"], g["s"], reference=ref), g) > 1e-6


@pytest.mark.parametrize("name", ["attention", "attention_multihead"])
def test_attention(golden, name):
    g = golden[name]
    n = g["sizes"]
    att = MultivectorAttention(PGA, n["mv"], n["s"], n["heads"], n["head_mv"], n["head_s"], distance=True).double()
    load_reference_attention(att, g["state_dict"], multi_query=n["multi_query"])
    assert max_diff(att(g["mv"], g["s"]), g) < TOL


def test_layer_norm(golden):
    g = golden["layer_norm"]
    norm = EquiLayerNorm(PGA, g["s"].shape[-1], eps=0.01, clamp=True).double()
    assert max_diff(norm(g["mv"], g["s"]), g) < TOL
    # eqt's default (sqrt(mean + 1e-6)) differs, most on the token below the clamp
    assert max_diff(EquiLayerNorm(PGA, g["s"].shape[-1]).double()(g["mv"], g["s"]), g) > 1e-3


def test_full_network(golden):
    g = golden["net"]
    n, a = g["sizes"], g["attention"]
    config = reference_config(n["in_mv_channels"], n["out_mv_channels"], n["hidden_mv_channels"], n["in_s_channels"],
                              n["out_s_channels"], n["hidden_s_channels"], n["num_blocks"], a["num_heads"],
                              a["increase_hidden_channels"])
    model = from_reference_state_dict(g["state_dict"], config, multi_query=a["multi_query"])
    assert max_diff(model(g["mv"], g["s"]), g) < TOL


def test_full_network_float32(golden):
    g = golden["net"]
    n, a = g["sizes"], g["attention"]
    config = reference_config(n["in_mv_channels"], n["out_mv_channels"], n["hidden_mv_channels"], n["in_s_channels"],
                              n["out_s_channels"], n["hidden_s_channels"], n["num_blocks"], a["num_heads"],
                              a["increase_hidden_channels"])
    model = from_reference_state_dict(g["state_dict"], config, multi_query=a["multi_query"]).float()
    assert max_diff(model(g["mv"].float(), g["s"].float()), g) < 1e-5


def test_reference_mode_is_opt_in():
    """Defaults unchanged: no new parameters, eqt's own numerics."""
    from eqt.models.gatr import GATr, GATrConfig

    c = GATrConfig()
    assert (c.mlp_mv, c.mlp_s, c.reference_numerics) == (0, 0, False)
    block = GATr(c).blocks[0]
    assert not block.norm1.clamp and block.norm1.eps == 1e-6 and block.mlp.scalar_gelu == "tanh"
    assert block.mlp.linear.rep_in == (c.hidden_mv, c.hidden_s)
