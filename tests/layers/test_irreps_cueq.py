"""The cuEquivariance backend of the depthwise tensor products (``tp_backend="cueq"``).

Both backends must compute the same function from the same parameters: layer outputs and
gradients (inputs and weights) agree, ``state_dict`` keys and shapes are identical, the whole model
gives the same energy and forces from one ``state_dict``, and the cueq path is O(3)-equivariant.
On a machine without cuequivariance-ops-torch (or on CPU) cuEquivariance runs its PyTorch
(``naive``) path; the fused CUDA kernel is not exercised here.
"""

from __future__ import annotations

import sys

import pytest
import torch

from eqt.layers.irreps import (
    DepthwiseTensorProduct,
    EdgeDegreeEmbedding,
    EquiformerBlock,
    EquivariantGraphAttention,
    cueq_available,
)

if not cueq_available():
    pytest.skip("cuequivariance-torch is not importable (pip install 'eqt[cueq]')", allow_module_level=True)

from eqt.models.equiformer import Equiformer, EquiformerConfig  # noqa: E402
from eqt.physics.potential import Potential  # noqa: E402
from eqt.primitives.irreps import sh_irreps, spherical_harmonics  # noqa: E402
from eqt.testing import O3, AtomIndex, Invariant, Irreps, Permutations, Vector, assert_equivariant  # noqa: E402
from eqt.testing.potential import test_molecule  # noqa: E402

# (node irreps, l_max, parity): l_max 1, 2, 3 with O(3) labels, the reference's SE(3) labels, all
# parities, and the reference's MD17 shapes (gcd 32: several cuEquivariance chunks per slot)
CASES = [("6x0e+4x1o", 1, "o3"), ("8x0e+4x1o+2x2e", 2, "o3"), ("4x0e+2x1o+2x2e+2x3o", 3, "o3"),
         ("6x0e+4x1e+2x2e", 2, "se3"), ("4x0e+2x1e+2x2e+2x3e", 3, "se3"),
         ("4x0e+2x0o+2x1e+2x1o+2x2e+2x2o", 2, "o3"), ("128x0e+64x1e+32x2e", 2, "se3")]
IDS = ["l1-o3", "l2-o3", "l3-o3", "l2-se3", "l3-se3", "l2-both-parities", "md17-se3"]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
SMALL = EquiformerConfig(irreps_node="8x0e+4x1o+2x2e", l_max=2, num_layers=2, num_heads=2, num_basis=8,
                         radial_hidden=(16,), irreps_feature="8x0e", cutoff=4.0)
MODELS = {"l1-o3": SMALL.replace(irreps_node="8x0e+4x1o", l_max=1),
          "l2-o3": SMALL,
          "l3-o3": SMALL.replace(irreps_node="4x0e+2x1o+2x2e+2x3o", l_max=3),
          "l2-se3": SMALL.replace(parity="se3"),
          "l2-both-parities": SMALL.replace(irreps_node="4x0e+2x0o+2x1e+2x1o+2x2e+2x2o",
                                            irreps_feature="4x0e+2x0o+2x1o")}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-300))


def _perturb(module: torch.nn.Module, scale: float = 0.3) -> torch.nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def _pair(make, dtype=torch.float64):
    """The e3nn module (perturbed) and a cueq module loaded from its state_dict with strict=True."""
    ref = _perturb(make("e3nn")).to(dtype)
    cue = make("cueq").to(dtype)
    assert {k: v.shape for k, v in ref.state_dict().items()} == {k: v.shape for k, v in cue.state_dict().items()}
    cue.load_state_dict(ref.state_dict(), strict=True)
    return ref.eval(), cue.eval()


def _tp_inputs(tp: DepthwiseTensorProduct, l_max: int, e: int, dtype, internal: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(e, tp.rep_in.dim, generator=g, dtype=dtype)
    sh = spherical_harmonics(l_max, torch.randn(e, 3, generator=g, dtype=dtype))
    w = None if internal else torch.randn(e, tp.weight_numel, generator=g, dtype=dtype)
    return x, sh, w


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("internal", [False, True], ids=["per-edge", "shared"])
@pytest.mark.parametrize("irreps, l_max, parity", CASES, ids=IDS)
def test_depthwise_tp_outputs_agree(irreps, l_max, parity, internal, dtype):
    sh = sh_irreps(l_max, parity)
    ref, cue = _pair(lambda b: DepthwiseTensorProduct(irreps, sh, irreps, internal_weights=internal, backend=b), dtype)
    assert cue.rep_out == ref.rep_out and cue.weight_numel == ref.weight_numel
    x, y, w = _tp_inputs(ref, l_max, 11, dtype, internal)
    assert _rel(cue(x, y, w), ref(x, y, w)) <= TOL[dtype]
    # the block API the layers use: parts per output slot, weights gathered or pre-permuted, unweighted
    xb, xc = ref.to_input_layout(x), cue.to_input_layout(x)
    calls = ([(None, None, {}), (None, None, {"weighted": False})] if internal else
             [(w, w, {}), (w[:, ref.weight_index], w[:, cue.weight_index], {"channel_order": True})])
    for wr, wc, kwargs in calls:
        pr, pc = ref.forward_parts(xb, y, wr, **kwargs), cue.forward_parts(xc, y, wc, **kwargs)
        for sr, sc in zip(pr, pc, strict=True):
            assert _rel(torch.cat(sc, dim=2), torch.cat(sr, dim=2)) <= TOL[dtype]
    if internal:
        for a, b in zip(ref.channel_weights(), cue.channel_weights(), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("internal", [False, True], ids=["per-edge", "shared"])
@pytest.mark.parametrize("irreps, l_max, parity", CASES[:6], ids=IDS[:6])
def test_depthwise_tp_gradients_agree(irreps, l_max, parity, internal):
    sh = sh_irreps(l_max, parity)
    ref, cue = _pair(lambda b: DepthwiseTensorProduct(irreps, sh, irreps, internal_weights=internal, backend=b))
    grads = []
    for tp in (ref, cue):
        x, y, w = _tp_inputs(ref, l_max, 9, torch.float64, internal)
        leaves = [t.requires_grad_() for t in (x, y, w) if t is not None] + list(tp.parameters())
        out = tp(x, y, w)
        cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
        grads.append(torch.autograd.grad((out * cot).sum(), leaves))
    for a, b in zip(*grads, strict=True):
        assert _rel(b, a) <= 1e-10


@pytest.mark.parametrize("irreps, l_max, parity", [CASES[3], CASES[5]], ids=[IDS[3], IDS[5]])
def test_edge_degree_attention_and_block_agree(irreps, l_max, parity):
    sh_rep = sh_irreps(l_max, parity)
    z, pos = test_molecule()
    pos = pos.double()
    edge_index = torch.tensor([(i, j) for i in range(len(z)) for j in range(len(z)) if i != j]).T
    vec = pos[edge_index[0]] - pos[edge_index[1]]
    sh = spherical_harmonics(l_max, vec)
    rbf = torch.randn(vec.shape[0], 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cut = torch.rand(vec.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref, cue = _pair(lambda b: EdgeDegreeEmbedding(irreps, sh_rep, (6, 8), 7.0, tp_backend=b))
    assert _rel(cue(sh, rbf, edge_index, len(z), cut), ref(sh, rbf, edge_index, len(z), cut)) <= 1e-10
    ref, cue = _pair(lambda b: EquivariantGraphAttention(irreps, sh_rep, 2, (6, 8), tp_backend=b))
    x = torch.randn(len(z), ref.rep_in.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert _rel(cue(x, edge_index, sh, rbf, cut), ref(x, edge_index, sh, rbf, cut)) <= 1e-10
    ref, cue = _pair(lambda b: EquiformerBlock(irreps, sh_rep, 2, (6, 8), irreps, "3x0e+1x1o", tp_backend=b))
    assert _rel(cue(x, edge_index, sh, rbf, None), ref(x, edge_index, sh, rbf, None)) <= 1e-10


def _energy_forces(model, dtype):
    z, pos = test_molecule()
    out = Potential(model)(z, pos.to(dtype))
    return out["energy"], out["forces"]


# model-level cases chosen to cover each irreps kind and both dtypes once (each model costs seconds to build)
@pytest.mark.parametrize("name, dtype", [("l1-o3", torch.float64), ("l3-o3", torch.float64),
                                         ("l2-se3", torch.float32), ("l2-both-parities", torch.float64)],
                         ids=["l1-o3-f64", "l3-o3-f64", "l2-se3-f32", "l2-both-parities-f64"])
def test_model_energy_forces_agree_from_one_state_dict(name, dtype):
    cfg = MODELS[name]
    ref, cue = _pair(lambda b: Equiformer(cfg.replace(tp_backend=b)), dtype)
    e_ref, f_ref = _energy_forces(ref, dtype)
    e_cue, f_cue = _energy_forces(cue, dtype)
    assert _rel(e_cue, e_ref) <= TOL[dtype]
    tol = TOL[dtype]
    if dtype == torch.float32:  # forces (a derivative): the e3nn path alone is ~1e-5 from float64 in float32
        _, f_64 = _energy_forces(ref.double(), torch.float64)
        tol = max(tol, 2 * _rel(f_ref.double(), f_64))
    assert _rel(f_cue, f_ref) <= tol


def test_model_parameter_gradients_agree():
    ref, cue = _pair(lambda b: Equiformer(SMALL.replace(tp_backend=b)))
    grads = []
    for model in (ref, cue):
        energy, forces = _energy_forces(model, torch.float64)
        loss = energy.sum() + forces.pow(2).sum()  # a force loss: second derivatives through the products
        grads.append(dict(zip([n for n, _ in model.named_parameters()],
                              torch.autograd.grad(loss, list(model.parameters()), allow_unused=True))))
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        if g is not None:
            assert _rel(grads[1][name], g) <= 1e-9, name


@pytest.mark.parametrize("irreps, l_max, parity", [c for c in CASES[:6] if c[2] == "o3"],
                         ids=[i for i, c in zip(IDS[:6], CASES[:6]) if c[2] == "o3"])
def test_cueq_depthwise_tp_equivariant(irreps, l_max, parity):
    sh = sh_irreps(l_max, parity)
    tp = _perturb(DepthwiseTensorProduct(irreps, sh, irreps, backend="cueq")).double()
    e = 6
    x, y, w = _tp_inputs(tp, l_max, e, torch.float64, internal=False)
    err = assert_equivariant(tp, O3() * Permutations(e),
                             [(x, Irreps(tp.rep_in)), (y, Irreps(sh)), (w, Invariant(atom_axis=0))], Irreps(tp.rep_out))
    assert err < 1e-10


@pytest.mark.parametrize("name", ["l3-o3", "l2-both-parities"])
def test_cueq_model_equivariant(name):
    model = _perturb(Equiformer(MODELS[name].replace(tp_backend="cueq"))).double().eval()
    z, pos = test_molecule()
    edge_index, _ = model.graph(pos, torch.zeros_like(z))
    vec = pos[edge_index[0]] - pos[edge_index[1]]
    err = assert_equivariant(model.representation, O3() * Permutations(len(z)),
                             [(z, Invariant(atom_axis=0)), (edge_index, AtomIndex()), (vec, Vector(atom_axis=None))],
                             Irreps(model.rep_out), n_samples=3)
    assert err < 1e-10


def test_cueq_tables_exact_after_float32_round_trip():
    """cuEquivariance's coefficient buffers are re-derived from float64 (not float32-rounded) on .double()."""
    ref, cue = _pair(lambda b: DepthwiseTensorProduct("4x0e+2x1o+2x2e", "0e+1o+2e", "4x0e+2x1o+2x2e", backend=b))
    cue = cue.float().double()
    x, y, w = _tp_inputs(ref, 2, 5, torch.float64, internal=False)
    assert _rel(cue(x, y, w), ref(x, y, w)) <= 1e-14
    assert not [k for k in cue.state_dict() if "_cue" in k]  # its tables are buffers, not weights


def test_cpu_fallback_when_the_cuda_kernel_is_selected():
    """With cuequivariance-ops-torch the product uses the CUDA kernel; CPU tensors then take the naive path."""
    ref, cue = _pair(lambda b: DepthwiseTensorProduct("4x0e+2x1o", "0e+1o", "4x0e+2x1o", backend=b))
    cue.cue_method = "uniform_1d"  # as if the ops were installed
    x, y, w = _tp_inputs(ref, 1, 5, torch.float64, internal=False)
    assert _rel(cue(x, y, w), ref(x, y, w)) <= 1e-12
    assert cue._cue_cpu is not None


def test_config_errors(monkeypatch):
    with pytest.raises(ValueError, match="tp_backend must be one of e3nn, cueq"):
        EquiformerConfig(tp_backend="cuda")
    assert EquiformerConfig(tp_backend="cueq").tp_backend == "cueq"
    monkeypatch.setitem(sys.modules, "cuequivariance_torch", None)  # as if it were not installed
    with pytest.raises(ValueError, match=r"pip install 'eqt\[cueq\]'") as err:
        EquiformerConfig(tp_backend="cueq")
    assert "\n" not in str(err.value)
    with pytest.raises(ImportError, match=r"pip install 'eqt\[cueq\]'"):
        DepthwiseTensorProduct("2x0e", "0e+1o", "2x0e+2x1o", backend="cueq")
    assert not cueq_available()
    EquiformerConfig()  # the default needs nothing
