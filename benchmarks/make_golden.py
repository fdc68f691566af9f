"""Golden files: outputs of the reference Equiformer and GATr with fixed random weights.

Builds small models of the public reference implementations with seeded random weights, runs them
on fixed inputs and saves weights + inputs + outputs under ``tests/data/golden/`` (``torch.save`` of
plain dicts of tensors, strings and numbers; ``torch.load(..., weights_only=True)`` reads them). The
tests ``tests/models/test_equiformer_reference.py`` and ``tests/models/test_gatr_reference.py``
transplant the weights into eqt (``eqt.models.equiformer.from_reference_state_dict``,
``eqt.models.gatr.from_reference_state_dict`` and the per-layer helpers next to it) and compare; they
need no reference code. Everything runs in float64 (both references allow it).

Command (from the repository root; the references and their helpers live outside the repository)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/make_golden.py \\
        --equiformer /work/ref/equiformer --gatr /work/ref/gatr \\
        --shims /work/ref/shims --deps /work/ref/deps --xformers-stub /work/ref/stubs

References (work trees made with ``git archive`` of these commits):

- Equiformer: github.com/atomicarchitects/equiformer at ``64cb7866f48b9aa156e74a9d6a2ef2663b367437``,
  run on this environment's e3nn 0.6.0 and torch_geometric 2.8.1. ``--shims`` holds pure-torch
  stand-ins for packages it imports but that are not installed: ``torch_cluster.radius_graph``
  (dense pairwise distances, no neighbour cap), ``torch_scatter.scatter`` (``scatter_add``) and a stub
  ``ocpmodels.models.gemnet.layers.radial_basis.RadialBasis`` (imported at module top, used only by
  the Bessel models). ``nets/__init__.py`` is bypassed (it imports the OC20 models). One patch at run
  time: ``NodeEmbeddingNetwork.forward`` builds its one-hot in the model's dtype instead of
  ``.float()``, so that the model runs in float64 (the same function).
- GATr: github.com/Qualcomm-AI-research/geometric-algebra-transformer at
  ``6afc26f26b8fcf51136ae8c1d264a36e14b6e497`` (v1.4.3). ``--deps`` is a ``pip install --target``
  folder with ``einops==0.8.1`` (``opt_einsum`` comes from this environment); ``--xformers-stub`` a
  folder with a stub ``xformers`` package (``xformers.ops.AttentionBias`` for ``isinstance`` checks,
  ``memory_efficient_attention`` never called: torch's SDPA runs). NumPy 2 lacks ``np.product``,
  which the reference still calls; it is aliased to ``np.prod``.

The default dtype is set to float64 before the references are built, so that their constants
(GATr's normalised basis of linear maps, Equiformer's radial-basis means) are float64 too; otherwise
they would carry float32 round-off (1.4e-8 relative in a GATr linear layer).

Weights: each reference model is built with ``torch.manual_seed`` and its own initialisation, then
every parameter gets ``0.1 * N(0, 1)`` added (so zero-initialised biases, unit layer-norm gains and
GATr's zero log-weights are also exercised by the transplant). Files stay far below 1 MB.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
EQUIFORMER_COMMIT = "64cb7866f48b9aa156e74a9d6a2ef2663b367437"
GATR_COMMIT = "6afc26f26b8fcf51136ae8c1d264a36e14b6e497"

#: the small Equiformer of the golden file (the reference's MD17 model class, SE(3) labels)
EQUIFORMER_CONFIG = dict(
    irreps_node_embedding="8x0e+4x1e+4x2e", num_layers=2, irreps_sh="1x0e+1x1e+1x2e", max_radius=4.0,
    number_of_basis=8, fc_neurons=[8, 8], basis_type="exp", irreps_feature="16x0e",
    irreps_head="4x0e+2x1e+2x2e", num_heads=2, nonlinear_message=True, irreps_mlp_mid="24x0e+12x1e+12x2e",
    alpha_drop=0.0, proj_drop=0.0, drop_path_rate=0.0,
)

#: the small GATr of the golden file (the reference net; per-layer modules use their own sizes below)
GATR_CONFIG = dict(in_mv_channels=2, out_mv_channels=1, hidden_mv_channels=4, in_s_channels=3, out_s_channels=2,
                   hidden_s_channels=6, num_blocks=2)
GATR_ATTENTION = dict(num_heads=2, multi_query=True, increase_hidden_channels=2)


def _perturb(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _state(model: torch.nn.Module) -> dict:
    """Parameters and persistent buffers, without e3nn's derived constants (w3j tables, output masks)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if "_w3j" not in k and not k.endswith("output_mask")}


def make_equiformer(ref: Path, shims: Path) -> dict:
    sys.path[:0] = [str(shims), str(ref)]
    nets = types.ModuleType("nets")  # import nets/ without nets/__init__.py (OC20 models, ocpmodels)
    nets.__path__ = [str(ref / "nets")]
    sys.modules["nets"] = nets
    import nets.graph_attention_transformer as gat
    from nets.graph_attention_transformer_md17 import _AVG_DEGREE, _AVG_NUM_NODES, _MAX_ATOM_TYPE
    from nets.graph_attention_transformer_md17 import GraphAttentionTransformerMD17

    def node_embedding(self, node_atom):  # the reference's forward with the one-hot in the weights' dtype
        onehot = torch.nn.functional.one_hot(node_atom, self.max_atom_type).to(self.atom_type_lin.tp.weight.dtype)
        return self.atom_type_lin(onehot), onehot, onehot

    gat.NodeEmbeddingNetwork.forward = node_embedding
    torch.manual_seed(0)
    model = GraphAttentionTransformerMD17(irreps_in=None, mean=0.0, std=1.0, **EQUIFORMER_CONFIG).double().eval()
    _perturb(model, 1)
    g = torch.Generator().manual_seed(2)
    z = torch.tensor([6, 1, 1, 8, 7, 1, 6, 1, 8, 1, 1])  # two molecules: 6 and 5 atoms
    batch = torch.tensor([0] * 6 + [1] * 5)
    pos = torch.randn(11, 3, generator=g, dtype=torch.float64) * 0.9
    pos[6:] += 30.0  # far apart (the graph is built per system anyway)
    feats = {}
    model.norm.register_forward_hook(lambda m, i, o: feats.__setitem__("features", o.detach().clone()))
    energy, forces = model(z, pos.clone(), batch)
    src, dst = sys.modules["torch_cluster"].radius_graph(pos, r=EQUIFORMER_CONFIG["max_radius"], batch=batch)
    return dict(reference="github.com/atomicarchitects/equiformer", commit=EQUIFORMER_COMMIT,
                model="nets.graph_attention_transformer_md17.GraphAttentionTransformerMD17",
                config={k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in EQUIFORMER_CONFIG.items()},
                max_atom_type=_MAX_ATOM_TYPE, avg_num_nodes=float(_AVG_NUM_NODES), avg_degree=float(_AVG_DEGREE),
                state_dict=_state(model), z=z, pos=pos, batch=batch, num_edges=int(src.numel()),
                energy=energy.detach().view(-1), forces=forces.detach(), features=feats["features"])


def make_gatr(ref: Path, deps: Path, stub: Path) -> dict:
    import numpy as np

    if not hasattr(np, "product"):
        np.product = np.prod
    sys.path[:0] = [str(stub), str(deps), str(ref)]
    from gatr.interface import embed_point
    from gatr.layers.attention.config import SelfAttentionConfig
    from gatr.layers.attention.self_attention import SelfAttention
    from gatr.layers.layer_norm import EquiLayerNorm
    from gatr.layers.linear import EquiLinear
    from gatr.layers.mlp.config import MLPConfig
    from gatr.layers.mlp.geometric_bilinears import GeometricBilinear
    from gatr.layers.mlp.mlp import GeoMLP
    from gatr.nets import GATr

    dt = torch.float64
    g = torch.Generator().manual_seed(10)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=dt)

    def mv_input(*lead, channels):  # embedded points plus noise on every blade: all grades populated
        pts = embed_point(randn(*lead, channels, 3))
        return pts + 0.5 * randn(*lead, channels, 16)

    out = dict(reference="github.com/Qualcomm-AI-research/geometric-algebra-transformer", commit=GATR_COMMIT)
    B, T = 2, 5

    torch.manual_seed(11)
    lin = EquiLinear(3, 4, in_s_channels=2, out_s_channels=5).to(dt)
    _perturb(lin, 12)
    mv, s = mv_input(B, T, channels=3), randn(B, T, 2)
    y_mv, y_s = lin(mv, scalars=s)
    out["linear"] = dict(sizes=dict(in_mv=3, out_mv=4, in_s=2, out_s=5), state_dict=_state(lin), mv=mv, s=s,
                         out_mv=y_mv.detach(), out_s=y_s.detach())

    torch.manual_seed(13)
    bil = GeometricBilinear(3, 4, hidden_mv_channels=6, in_s_channels=2, out_s_channels=5).to(dt)
    _perturb(bil, 14)
    mv, s = mv_input(B, T, channels=3), randn(B, T, 2)
    reference = mv.mean(dim=(1, 2), keepdim=True)  # as GATr's join_reference="data"
    y_mv, y_s = bil(mv, reference_mv=reference, scalars=s)
    out["bilinear"] = dict(sizes=dict(in_mv=3, out_mv=4, hidden=3, in_s=2, out_s=5), state_dict=_state(bil),
                           mv=mv, s=s, reference_mv=reference, out_mv=y_mv.detach(), out_s=y_s.detach())

    torch.manual_seed(15)
    mlp = GeoMLP(MLPConfig(mv_channels=(4, 8, 4), s_channels=(6, 12, 6), activation="gelu")).to(dt)
    _perturb(mlp, 16)
    mv, s = mv_input(B, T, channels=4), randn(B, T, 6)
    reference = mv.mean(dim=(1, 2), keepdim=True)
    y_mv, y_s = mlp(mv, scalars=s, reference_mv=reference)
    out["mlp"] = dict(sizes=dict(mv=4, s=6, mid_mv=8, mid_s=12, hidden=4), state_dict=_state(mlp), mv=mv, s=s,
                      reference_mv=reference, out_mv=y_mv.detach(), out_s=y_s.detach())

    for name, multi_query in (("attention", True), ("attention_multihead", False)):
        torch.manual_seed(17)
        cfg = SelfAttentionConfig(in_mv_channels=4, out_mv_channels=4, in_s_channels=6, out_s_channels=6,
                                  num_heads=2, multi_query=multi_query, increase_hidden_channels=2)
        att = SelfAttention(cfg).to(dt)
        _perturb(att, 18)
        mv, s = mv_input(B, T, channels=4), randn(B, T, 6)
        y_mv, y_s = att(mv, scalars=s)
        out[name] = dict(sizes=dict(mv=4, s=6, heads=2, head_mv=cfg.hidden_mv_channels, head_s=cfg.hidden_s_channels,
                                    multi_query=multi_query),
                         state_dict=_state(att), mv=mv, s=s, out_mv=y_mv.detach(), out_s=y_s.detach())

    norm = EquiLayerNorm()
    mv, s = mv_input(B, T, channels=4), randn(B, T, 6)
    mv[0, 1] *= 0.01  # one token with mean squared norm below the reference's epsilon 0.01 (its clamp)
    y_mv, y_s = norm(mv, scalars=s)
    out["layer_norm"] = dict(mv=mv, s=s, out_mv=y_mv.detach(), out_s=y_s.detach())

    torch.manual_seed(19)
    net = GATr(**GATR_CONFIG, attention=SelfAttentionConfig(**GATR_ATTENTION), mlp=MLPConfig()).to(dt)
    _perturb(net, 20)
    mv, s = mv_input(B, T, channels=GATR_CONFIG["in_mv_channels"]), randn(B, T, GATR_CONFIG["in_s_channels"])
    y_mv, y_s = net(mv, scalars=s)
    out["net"] = dict(sizes=dict(GATR_CONFIG), attention=dict(GATR_ATTENTION), state_dict=_state(net), mv=mv, s=s,
                      out_mv=y_mv.detach(), out_s=y_s.detach())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--equiformer", type=Path, help="work tree of atomicarchitects/equiformer")
    p.add_argument("--gatr", type=Path, help="work tree of Qualcomm-AI-research/geometric-algebra-transformer")
    p.add_argument("--shims", type=Path, help="torch_cluster / torch_scatter / ocpmodels shims (Equiformer)")
    p.add_argument("--deps", type=Path, help="pip --target folder with einops (GATr)")
    p.add_argument("--xformers-stub", type=Path, help="folder with a stub xformers package (GATr)")
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "golden")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    # float64 throughout: the references build some constants in the default dtype before casting them
    # (GATr's normalised linear basis, the ExpNormal means); in float32 those would carry float32 round-off
    torch.set_default_dtype(torch.float64)
    written = []
    if a.equiformer is not None:
        torch.save(make_equiformer(a.equiformer, a.shims), a.out / "equiformer.pt")
        written.append(a.out / "equiformer.pt")
    if a.gatr is not None:
        torch.save(make_gatr(a.gatr, a.deps, a.xformers_stub), a.out / "gatr.pt")
        written.append(a.out / "gatr.pt")
    for f in written:
        size = f.stat().st_size
        assert size < 2**20, f"{f} is {size} bytes (limit 1 MB)"
        torch.load(f, weights_only=True)  # loadable without pickled classes
        print(f"wrote {f} ({size / 1024:.0f} KiB)")
    if not written:
        sys.exit("nothing to do: give --equiformer and/or --gatr")


if __name__ == "__main__":
    main()
