"""Irreps layers (Equiformer's building blocks): O(3) x permutation equivariance in float64 at
l_max 1, 2, 3, agreement with e3nn's TensorProduct, normalisation at initialisation, bad input."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from eqt.layers.irreps import (
    DepthwiseTensorProduct,
    EdgeDegreeEmbedding,
    EquiformerBlock,
    EquivariantFFN,
    EquivariantGraphAttention,
    EquivariantLayerNorm,
    Gate,
    IrrepsLinear,
    RadialMLP,
)
from eqt.layers.radial import ExpNormalBasis
from eqt.primitives.irreps import head_permutation, sh_irreps, sort_even_first, spherical_harmonics
from eqt.primitives.neighbors import radius_graph
from eqt.primitives.radial import cosine_cutoff
from eqt.testing import O3, AtomIndex, Invariant, Irreps, Permutations, Vector, assert_equivariant
from eqt.testing.potential import test_molecule

# (node irreps, l_max): O(3) labels, l_max 1, 2, 3, plus both parities at every l ("e3" variant)
CASES = [("6x0e+4x1o", 1), ("6x0e+4x1o+2x2e", 2), ("4x0e+2x1o+2x2e+2x3o", 3),
         ("4x0e+2x0o+2x1e+2x1o+2x2e+2x2o", 2)]
IDS = ["l1", "l2", "l3", "l2-both-parities"]
CUTOFF = 4.0


def _perturb(module: torch.nn.Module, scale: float = 0.3) -> torch.nn.Module:
    """Non-trivial weights everywhere (biases, norm affines, offsets), in float64."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module.double().eval()


def _graph():
    z, pos = test_molecule()
    edge_index, _ = radius_graph(pos, CUTOFF)
    return z, edge_index, pos[edge_index[0]] - pos[edge_index[1]]


def _node_group(n: int):
    return O3() * Permutations(n)


@pytest.mark.parametrize("irreps_in, irreps_out", [("6x0e+4x1o+2x2e", "3x0e+5x1o+2x2e+1x3o"),
                                                   ("2x0e+3x1o+1x0e+2x0o", "4x0e+2x0o+2x1o")])
def test_linear_equivariant(irreps_in, irreps_out):
    lin = _perturb(IrrepsLinear(irreps_in, irreps_out))
    x = lin.rep_in.randn(7, -1, dtype=torch.float64)
    err = assert_equivariant(lin, _node_group(7), [(x, Irreps(lin.rep_in))], Irreps(lin.rep_out))
    assert err < 1e-10


def test_linear_bias_on_even_scalars_only_and_missing_types_are_zero():
    lin = _perturb(IrrepsLinear("2x0e+2x0o+1x1o", "3x0e+3x0o+2x2e"))
    y = lin(torch.zeros(4, lin.rep_in.dim, dtype=torch.float64))
    assert lin.bias.shape == (3,)
    assert y[:, :3].abs().min() > 0 and y[:, 3:].abs().max() == 0


def test_linear_keeps_unit_variance():
    torch.manual_seed(0)
    lin = IrrepsLinear("256x0e+128x1o", "200x0e+100x1o")
    y = lin(lin.rep_in.randn(2000, -1))
    assert 0.8 < y.pow(2).mean() < 1.25


def test_radial_mlp_invariant_and_shapes():
    mlp = _perturb(RadialMLP([8, 16, 16, 5]))
    x = torch.randn(6, 8, dtype=torch.float64)
    assert mlp(x).shape == (6, 5)
    # a row permutation may change the summation order inside the matmul: round-off, not exactly 0
    assert assert_equivariant(mlp, _node_group(6), [(x, Invariant(atom_axis=0))], Invariant(atom_axis=0)) < 1e-13
    assert mlp.rep_out == o3.Irreps("5x0e")


@pytest.mark.parametrize("irreps, _", CASES, ids=IDS)
def test_layer_norm_equivariant_and_normalises(irreps, _):
    ln = _perturb(EquivariantLayerNorm(irreps))
    x = 3.0 * ln.rep_in.randn(5, -1, dtype=torch.float64) + 1.0
    err = assert_equivariant(ln, _node_group(5), [(x, Irreps(irreps))], Irreps(irreps))
    assert err < 1e-10
    plain = EquivariantLayerNorm(irreps, affine=False).double()
    y = plain(x)
    for (mul, ir), sl in zip(plain.rep_in, plain.rep_in.slices()):
        torch.testing.assert_close(y[:, sl].pow(2).mean(-1), torch.ones(5, dtype=torch.float64), rtol=1e-4, atol=0)


@pytest.mark.parametrize("irreps, _", CASES, ids=IDS)
def test_gate_equivariant(irreps, _):
    gate = Gate(irreps).double()
    assert gate.rep_out == o3.Irreps(irreps)  # sorted even-first: scalars already come first
    x = gate.rep_in.randn(5, -1, dtype=torch.float64)
    err = assert_equivariant(gate, _node_group(5), [(x, Irreps(gate.rep_in))], Irreps(gate.rep_out))
    assert err < 1e-10


def test_gate_scalars_only_is_normalised_silu():
    gate = Gate("4000x0e")
    assert gate.rep_in == gate.rep_out
    torch.manual_seed(0)
    assert 0.9 < gate(torch.randn(50, 4000)).pow(2).mean() < 1.1


@pytest.mark.parametrize("irreps, l_max", CASES + [("6x0e+4x1e+2x2e", 2)], ids=IDS + ["se3-labels"])
@pytest.mark.parametrize("internal", [False, True])
def test_depthwise_tp_equivariant(irreps, l_max, internal):
    parity = "se3" if "1e" in irreps and "1o" not in irreps else "o3"
    sh = sh_irreps(l_max, parity)
    tp = _perturb(DepthwiseTensorProduct(irreps, sh, irreps, internal_weights=internal))
    e = 6
    x = tp.rep_in.randn(e, -1, dtype=torch.float64)
    y = sh.randn(e, -1, dtype=torch.float64)
    inputs = [(x, Irreps(irreps)), (y, Irreps(sh))]
    if not internal:
        inputs.append((torch.randn(e, tp.weight_numel, dtype=torch.float64), Invariant(atom_axis=0)))
    err = assert_equivariant(tp, _node_group(e), inputs, Irreps(tp.rep_out))
    assert err < 1e-10


@pytest.mark.parametrize("irreps, sh", [("8x0e+4x1o+2x2e", "0e+1o+2e"), ("128x0e+64x1e+32x2e", "0e+1e+2e"),
                                        ("4x0e+2x0o+2x1e+2x1o+2x2e+2x2o+2x3o", "0e+1o+2e+3o")])
def test_depthwise_tp_equals_e3nn_uvu(irreps, sh):
    """Same numbers as e3nn's TensorProduct with Equiformer's instructions and normalisation."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn builds its tables in the default dtype
    try:
        ours = DepthwiseTensorProduct(irreps, sh, irreps)
        irr_in, irr_sh = o3.Irreps(irreps), o3.Irreps(sh)
        slots, instructions = [], []
        for i, (mul, ir_in) in enumerate(irr_in):
            for j, (_, ir_sh) in enumerate(irr_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in irr_in or ir_out == o3.Irrep("0e"):
                        instructions.append((i, j, len(slots), "uvu", True))
                        slots.append((mul, ir_out))
        out, perm = sort_even_first(o3.Irreps(slots))
        instructions = [(i, j, perm[k], mode, train) for i, j, k, mode, train in instructions]
        ref = o3.TensorProduct(irr_in, irr_sh, out, instructions, irrep_normalization="component",
                               path_normalization="none", internal_weights=False, shared_weights=False)
        torch.manual_seed(0)
        x, y = irr_in.randn(5, -1), irr_sh.randn(5, -1)
        w = torch.randn(5, ref.weight_numel)
        assert ours.weight_numel == ref.weight_numel and ours.rep_out == out.simplify()
        torch.testing.assert_close(ours(x, y, w), ref(x, y, w), rtol=1e-12, atol=1e-12)
    finally:
        torch.set_default_dtype(old)


def test_depthwise_tp_reference_size():
    """The reference's MD17 L2 product: 960 weights per edge, 3136 output components."""
    tp = DepthwiseTensorProduct("128x0e+64x1e+32x2e", "0e+1e+2e", "128x0e+64x1e+32x2e")
    assert (tp.weight_numel, tp.rep_out.dim) == (960, 3136)


def test_depthwise_tp_weights_argument_checked():
    tp = DepthwiseTensorProduct("4x0e", "0e+1o", "4x0e+4x1o")
    with pytest.raises(ValueError, match="per-edge weights"):
        tp(torch.randn(2, 4), torch.randn(2, 4))


@pytest.mark.parametrize("irreps, _", CASES, ids=IDS)
def test_ffn_equivariant(irreps, _):
    mid = o3.Irreps([(3 * mul, ir) for mul, ir in o3.Irreps(irreps)])
    ffn = _perturb(EquivariantFFN(irreps, mid, "5x0e+2x1o"))
    x = ffn.rep_in.randn(5, -1, dtype=torch.float64)
    err = assert_equivariant(ffn, _node_group(5), [(x, Irreps(irreps))], Irreps("5x0e+2x1o"))
    assert err < 1e-10


def _geometric(layer_fn, l_max: int):
    """Wrap a layer taking (sh, rbf, edge_weight) so the test feeds edge vectors (true geometry)."""
    basis = ExpNormalBasis(8, CUTOFF).double()

    def fn(*args):
        *rest, vec = args
        d = vec.norm(dim=-1)
        return layer_fn(*rest, spherical_harmonics(l_max, vec), basis(d), cosine_cutoff(d, CUTOFF))

    return fn


@pytest.mark.parametrize("irreps, l_max", CASES[:3], ids=IDS[:3])
def test_edge_degree_embedding_equivariant(irreps, l_max):
    z, edge_index, vec = _graph()
    n = len(z)
    emb = _perturb(EdgeDegreeEmbedding(irreps, sh_irreps(l_max), (8, 16), avg_degree=5.0))
    fn = _geometric(lambda ei, sh, rbf, w: emb(sh, rbf, ei, n, w), l_max)
    out = fn(edge_index, vec)
    assert out.shape == (n, o3.Irreps(irreps).dim) and out[:, 4:].abs().max() > 0  # l > 0 features appear
    err = assert_equivariant(fn, _node_group(n), [(edge_index, AtomIndex()), (vec, Vector(atom_axis=None))],
                             Irreps(irreps))
    assert err < 1e-10


@pytest.mark.parametrize("irreps, l_max", CASES, ids=IDS)
def test_graph_attention_equivariant(irreps, l_max):
    z, edge_index, vec = _graph()
    n = len(z)
    att = _perturb(EquivariantGraphAttention(irreps, sh_irreps(l_max), 2, (8, 16), irreps_out="3x0e+2x1o+1x2e"))
    x = att.rep_in.randn(n, -1, dtype=torch.float64)
    fn = _geometric(lambda xx, ei, sh, rbf, w: att(xx, ei, sh, rbf, w), l_max)
    err = assert_equivariant(fn, _node_group(n), [(x, Irreps(irreps)), (edge_index, AtomIndex()),
                                                  (vec, Vector(atom_axis=None))], Irreps(att.rep_out))
    assert err < 1e-10


def test_graph_attention_smooth_weights_and_isolated_atoms():
    """With a cutoff weight the message from a neighbour vanishes as its weight goes to 0; no edges -> bias only."""
    att = _perturb(EquivariantGraphAttention("4x0e+2x1o", "0e+1o", 2, (4,)))
    x = att.rep_in.randn(2, -1, dtype=torch.float64)
    ei = torch.tensor([[1], [0]])
    sh, rbf = torch.randn(1, 4, dtype=torch.float64), torch.randn(1, 4, dtype=torch.float64)
    alone = att(x, ei[:, :0], sh[:0], rbf[:0])
    tiny = att(x, ei, sh, rbf, torch.tensor([1e-12], dtype=torch.float64))
    torch.testing.assert_close(tiny, alone, rtol=0, atol=1e-10)


def test_head_permutation_round_trip():
    irreps = o3.Irreps("4x0e+2x1o+2x2e")
    idx = head_permutation(irreps, 2)
    x = torch.arange(irreps.dim)
    heads = x[idx].view(2, -1)
    assert heads[0].tolist()[:2] == [0, 1] and heads[1].tolist()[:2] == [2, 3]  # 0e channels split per head
    assert heads[0].tolist()[2:5] == [4, 5, 6]  # then the head's first 1o channel
    assert torch.equal(heads.reshape(-1)[torch.argsort(idx)], x)


@pytest.mark.parametrize("irreps, l_max", CASES[1:3], ids=IDS[1:3])
def test_block_equivariant_with_output_irreps(irreps, l_max):
    z, edge_index, vec = _graph()
    n = len(z)
    mid = o3.Irreps([(2 * mul, ir) for mul, ir in o3.Irreps(irreps)])
    blk = _perturb(EquiformerBlock(irreps, sh_irreps(l_max), 2, (8, 16), mid, irreps_out="8x0e"))
    x = blk.rep_in.randn(n, -1, dtype=torch.float64)
    fn = _geometric(lambda xx, ei, sh, rbf, w: blk(xx, ei, sh, rbf, w), l_max)
    err = assert_equivariant(fn, _node_group(n), [(x, Irreps(irreps)), (edge_index, AtomIndex()),
                                                  (vec, Vector(atom_axis=None))], Irreps("8x0e"))
    assert err < 1e-10


def test_tables_stay_exact_through_dtype_changes():
    tp = DepthwiseTensorProduct("2x0e+2x1o+2x2e", "0e+1o+2e", "2x0e+2x1o+2x2e")
    exact = tp._masters["cg_1"]
    tp.float().double()
    assert tp.cg_1.dtype == torch.float64 and torch.equal(tp.cg_1, exact)
    assert "cg_1" not in tp.state_dict()


@pytest.mark.parametrize("irreps, l_max", CASES, ids=IDS)
def test_block_paths_match_e3nn_layout(irreps, l_max):
    """The per-slot block code paths (parts, folded shared weights, permuted radial output, gate on
    blocks) compute the same functions as the e3nn-layout forwards."""
    from eqt.primitives.irreps import from_blocks, to_blocks

    torch.manual_seed(0)
    sh_rep = sh_irreps(l_max)
    n = 9
    sh = spherical_harmonics(l_max, torch.randn(n, 3, dtype=torch.float64))
    gate = _perturb(Gate(irreps))
    x = gate.rep_in.randn(n, -1, dtype=torch.float64)
    assert torch.allclose(from_blocks(gate.forward_blocks(to_blocks(x, gate.rep_in))), gate(x), atol=1e-12)

    tp = _perturb(DepthwiseTensorProduct(irreps, sh_rep, irreps, internal_weights=True))
    lin = _perturb(IrrepsLinear(tp.rep_out, irreps))
    x = tp.rep_in.randn(n, -1, dtype=torch.float64)
    plain = lin(tp(x, sh))
    parts = tp.forward_parts(to_blocks(x, tp.rep_in), sh, weighted=False)
    folded = from_blocks(lin.forward_blocks(parts, in_scale=tp.channel_weights()))
    assert torch.allclose(folded, plain, atol=1e-12)

    tp = _perturb(DepthwiseTensorProduct(irreps, sh_rep, irreps))
    radial = _perturb(RadialMLP([5, 7, tp.weight_numel]))
    rbf = torch.randn(n, 5, dtype=torch.float64)
    plain = tp(x, sh, radial(rbf))
    permuted = tp.forward_parts(to_blocks(x, tp.rep_in), sh, radial(rbf, tp.weight_index), channel_order=True)
    assert torch.allclose(from_blocks([torch.cat(p, dim=2) for p in permuted]), plain, atol=1e-12)
