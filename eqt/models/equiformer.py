"""Equiformer (Liao & Smidt, ICLR 2023) on eqt's irreps layers.

Follows ``atomicarchitects/equiformer`` (``GraphAttentionTransformerMD17`` with
``nonlinear_message=True``, i.e. the paper's model): atom embedding plus edge-degree embedding,
pre-norm blocks of equivariant graph attention (MLP attention, non-linear messages, depthwise
tensor products with spherical harmonics and radial-MLP weights) and a gated feed-forward network,
a final equivariant layer norm and a scalar head giving one raw output per atom. Energies, forces
and stress come from :class:`eqt.models.base.EnergyModel` and :class:`eqt.physics.Potential`.

Choices (also in ``docs/equiformer.md``):

- ``parity="o3"`` (default): irreps keep their labels, the harmonics are ``0e+1o+2e+3o``; the model
  is O(3)-equivariant, which is what the paper claims (E(3)). ``parity="se3"`` relabels everything
  even, as the reference's registered models do (``1e`` vectors): SE(3) only, and it changes the
  energy under a reflection.
- ``smooth_cutoff=True`` (default): a cosine envelope multiplies the edge-degree embedding and the
  attention (see :class:`eqt.layers.irreps.EquivariantGraphAttention`), so the energy is continuous
  when an atom crosses the cutoff. The reference has none (``False``).
- The reference's per-system ``1 / sqrt(_AVG_NUM_NODES)`` is not applied: per-atom outputs start at
  unit scale and ``energy_scale`` (set by the trainer) scales them.
- ``tp_backend="cueq"`` computes the depthwise tensor products with NVIDIA's cuEquivariance
  (``pip install 'eqt[cueq]'``): the same function and the same ``state_dict`` as the default ``"e3nn"``.

Reference weights: :func:`from_reference_state_dict` loads a state dict of the reference's
``GraphAttentionTransformerMD17`` (``nonlinear_message=True``) into the eqt model of
:func:`reference_config` (``parity="se3"``, ``smooth_cutoff=False``, ``max_z=64``, energy scale
``1/sqrt(_AVG_NUM_NODES)``); tested against golden reference outputs
(``tests/models/test_equiformer_reference.py``, ``benchmarks/make_golden.py``).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from e3nn import o3
from torch import Tensor, nn

from eqt.config import Config
from eqt.layers.irreps import (
    EdgeDegreeEmbedding,
    EquiformerBlock,
    EquivariantLayerNorm,
    Gate,
    IrrepsLinear,
    check_tp_backend,
)
from eqt.layers.radial import radial_basis
from eqt.models.base import EnergyModel
from eqt.primitives.irreps import (
    MAX_SH_L,
    divide_irreps,
    is_even_first,
    parse_irreps,
    scalar_mul,
    sh_irreps,
    spherical_harmonics,
    with_parity,
)
from eqt.primitives.radial import cosine_cutoff, safe_norm

__all__ = ["EquiformerConfig", "Equiformer", "MD17_L2", "MD17_L3", "QM9_L2", "QM9_TARGETS", "reference_config",
           "from_reference_state_dict"]

#: scalar molecular properties of QM9 that ``output`` may name (besides ``"energy"``)
QM9_TARGETS = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "Cv")
_BASES = {"exp": "expnorm", "gaussian": "gauss"}


@dataclasses.dataclass(frozen=True)
class EquiformerConfig(Config):
    """Hyper-parameters of Equiformer (defaults: the reference's MD17 L2 model, O(3) labels).

    Attributes:
        irreps_node: node irreps, sorted even-first (``0e`` first) and simplified.
        l_max: highest degree of the edge spherical harmonics (at most 12).
        num_layers: transformer blocks.
        num_heads: attention heads; must divide every multiplicity of ``irreps_node``.
        ffn_multiplier: FFN hidden irreps = ``irreps_node`` multiplicities times this.
        irreps_feature: output irreps of the last block (the head reads its ``0e`` part).
        radial_hidden: hidden widths of every radial MLP.
        cutoff: graph cutoff in Å.
        num_basis: radial basis functions.
        radial_basis: ``"exp"`` (ExpNormal with cosine envelope, the MD17 setting) or ``"gaussian"``.
        trainable_basis: learn the basis centres (and widths).
        parity: ``"o3"`` (true O(3), default) or ``"se3"`` (the reference's all-even labels).
        smooth_cutoff: cosine envelope on messages (continuous energy at the cutoff).
        max_z: atomic numbers ``1 .. max_z - 1``.
        avg_degree: neighbour-sum normalisation of the edge-degree embedding (reference: QM9 at 5 Å).
        alpha_drop: attention-weight dropout.
        output: ``"energy"`` (a potential) or the QM9 property it is trained on (a per-molecule
            scalar, summed over atoms like an energy; forces are then meaningless).
        tp_backend: ``"e3nn"`` (eqt's own depthwise products) or ``"cueq"`` (NVIDIA cuEquivariance's
            ``ChannelWiseTensorProduct``, fused CUDA kernels with cuequivariance-ops-torch; needs
            ``pip install 'eqt[cueq]'``). Not part of the weights: a ``state_dict`` loads into either.
        activation_norm: how the activations' unit-second-moment constants are computed:
            ``"quadrature"`` (exact, Gauss-Hermite) or ``"e3nn"`` (e3nn's ``normalize2mom``, a seeded
            Monte-Carlo estimate, up to 0.3 % off; what the reference model computes with).
    """

    irreps_node: str = "128x0e+64x1o+32x2e"
    l_max: int = 2
    num_layers: int = 6
    num_heads: int = 4
    ffn_multiplier: int = 3
    irreps_feature: str = "512x0e"
    radial_hidden: tuple[int, ...] = (64, 64)
    cutoff: float = 5.0
    num_basis: int = 32
    radial_basis: str = "exp"
    trainable_basis: bool = False
    parity: str = "o3"
    smooth_cutoff: bool = True
    max_z: int = 100
    avg_degree: float = 15.57930850982666
    alpha_drop: float = 0.0
    output: str = "energy"
    tp_backend: str = "e3nn"
    activation_norm: str = "quadrature"

    def __post_init__(self) -> None:
        object.__setattr__(self, "radial_hidden", tuple(int(c) for c in self.radial_hidden))
        if self.parity not in ("o3", "se3"):
            raise ValueError(f"parity must be 'o3' or 'se3', got {self.parity!r}")
        node = parse_irreps(self.irreps_node, "irreps_node")
        feature = parse_irreps(self.irreps_feature, "irreps_feature")
        if not isinstance(self.l_max, int) or not 0 <= self.l_max <= MAX_SH_L:
            raise ValueError(f"l_max={self.l_max} is beyond the spherical harmonics' range 0..{MAX_SH_L}")
        if not is_even_first(node) or scalar_mul(node) == 0:
            raise ValueError(f"irreps_node '{node}' must start with 0e and be sorted by l, even before odd, "
                             f"one slot per irrep (e.g. '128x0e+64x1o+32x2e')")
        if self.num_heads < 1:
            raise ValueError(f"num_heads must be positive, got {self.num_heads}")
        divide_irreps(node, self.num_heads, "irreps_node")
        if scalar_mul(feature) == 0:
            raise ValueError(f"irreps_feature '{feature}' has no 0e channels for the output head")
        if self.radial_basis not in _BASES:
            raise ValueError(f"radial_basis must be one of {', '.join(_BASES)}, got {self.radial_basis!r}")
        for name in ("num_layers", "ffn_multiplier", "num_basis", "max_z"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.cutoff > 0 or not self.avg_degree > 0:
            raise ValueError(f"cutoff and avg_degree must be positive, got {self.cutoff}, {self.avg_degree}")
        if self.output != "energy" and self.output not in QM9_TARGETS:
            raise ValueError(f"output must be 'energy' or a QM9 target ({', '.join(QM9_TARGETS)}), got {self.output!r}")
        check_tp_backend(self.tp_backend)
        if self.activation_norm not in ("quadrature", "e3nn"):
            raise ValueError(f"activation_norm must be 'quadrature' or 'e3nn', got {self.activation_norm!r}")

    @property
    def node_irreps(self) -> o3.Irreps:
        """Node irreps under the parity convention."""
        return with_parity(o3.Irreps(self.irreps_node), self.parity)

    @property
    def feature_irreps(self) -> o3.Irreps:
        """Last-block output irreps under the parity convention."""
        return with_parity(o3.Irreps(self.irreps_feature), self.parity)

    @property
    def mid_irreps(self) -> o3.Irreps:
        """FFN hidden irreps (``ffn_multiplier`` times the node multiplicities)."""
        return o3.Irreps([(mul * self.ffn_multiplier, ir) for mul, ir in self.node_irreps])

    @property
    def sh_irreps(self) -> o3.Irreps:
        """Edge spherical-harmonic irreps under the parity convention."""
        return sh_irreps(self.l_max, self.parity)


MD17_L2 = EquiformerConfig()
MD17_L3 = EquiformerConfig(irreps_node="128x0e+64x1o+64x2e+32x3o", l_max=3)
QM9_L2 = EquiformerConfig(radial_basis="gaussian", num_basis=128, alpha_drop=0.2, max_z=10)


def _use_e3nn_constants(model: nn.Module) -> None:
    """Set every activation's normalisation constant to e3nn's ``normalize2mom`` estimate."""
    from e3nn.math import normalize2mom

    from eqt.layers.irreps import EquivariantGraphAttention, smooth_leaky_relu

    silu, sigmoid = normalize2mom(torch.nn.functional.silu).cst, normalize2mom(torch.sigmoid).cst
    slrelu = normalize2mom(smooth_leaky_relu).cst
    for m in model.modules():
        if isinstance(m, Gate):
            m.c_scalar, m.c_gate = silu, sigmoid
        elif isinstance(m, EquivariantGraphAttention):
            m.c_alpha = slrelu


class Equiformer(EnergyModel):
    """Equiformer potential (or QM9-style scalar property model).

    Args:
        config: an :class:`EquiformerConfig`.

    Features: ``(N, irreps_node.dim)`` in e3nn layout; ``rep_out`` of :meth:`representation` is
    ``config.feature_irreps``; output one raw scalar per atom.
    """

    def __init__(self, config: EquiformerConfig = EquiformerConfig()):
        super().__init__(cutoff=config.cutoff, max_z=config.max_z)
        c = self.config = config
        node, sh, feature = c.node_irreps, c.sh_irreps, c.feature_irreps
        self.rep_out = feature
        radial = (c.num_basis, *c.radial_hidden)
        self.rbf = radial_basis(_BASES[c.radial_basis], c.num_basis, c.cutoff, 0.0, c.trainable_basis)
        self.n_scalars, self.node_dim = scalar_mul(node), node.dim
        # = the reference's LinearRS(one-hot) whose N(0, 1/max_z) weights are scaled by sqrt(max_z)
        self.atom_embedding = nn.Embedding(c.max_z, self.n_scalars)
        self.edge_embedding = EdgeDegreeEmbedding(node, sh, radial, c.avg_degree, c.tp_backend)
        self.blocks = nn.ModuleList(
            EquiformerBlock(node, sh, c.num_heads, radial, c.mid_irreps,
                            node if i < c.num_layers - 1 else feature, c.alpha_drop, c.tp_backend)
            for i in range(c.num_layers))
        self.norm = EquivariantLayerNorm(feature)
        width = scalar_mul(feature)
        self.head = nn.Sequential(IrrepsLinear(feature, f"{width}x0e"), Gate(f"{width}x0e"),
                                  IrrepsLinear(f"{width}x0e", "1x0e"))
        if c.activation_norm == "e3nn":
            _use_e3nn_constants(self)

    def representation(self, z: Tensor, edge_index: Tensor, edge_vec: Tensor) -> Tensor:
        """Node features after the blocks and the final layer norm.

        Args:
            z: ``(N,)`` atomic numbers.
            edge_index: ``(2, E)`` edges ``j -> i``, no self-loops.
            edge_vec: ``(E, 3)`` ``r_j - r_i``.

        Returns:
            ``(N, feature_irreps.dim)``.
        """
        c = self.config
        n = z.shape[0]
        dist = safe_norm(edge_vec, dim=-1)  # (E,)
        rbf = self.rbf(dist)  # (E, K)
        sh = spherical_harmonics(c.l_max, edge_vec)  # (E, (l_max+1)^2)
        cut = cosine_cutoff(dist, c.cutoff) if c.smooth_cutoff else None  # (E,)
        x = self.atom_embedding(z)  # (N, n0)
        x = torch.cat([x, x.new_zeros(n, self.node_dim - self.n_scalars)], dim=-1)  # (N, node.dim)
        x = x + self.edge_embedding(sh, rbf, edge_index, n, cut)
        for block in self.blocks:
            x = block(x, edge_index, sh, rbf, cut)
        return self.norm(x)

    def atom_outputs(self, z: Tensor, edge_index: Tensor, edge_vec: Tensor, batch: Tensor, num_systems: int) -> Tensor:
        """One raw scalar per atom, ``(N,)`` (see :meth:`EnergyModel.atom_outputs`)."""
        return self.head(self.representation(z, edge_index, edge_vec)).squeeze(-1)


# ---------------------------------------------------------------------------------------------------
# Reference (atomicarchitects/equiformer) weights.
#
# Mapping (reference ``GraphAttentionTransformerMD17`` key -> eqt key):
#   rbf.means / rbf.betas                      -> rbf.means / rbf.betas
#   atom_embed.atom_type_lin (64x0e -> node)   -> atom_embedding.weight = W (64, n0) + bias (the one-hot's row)
#   edge_deg_embed.exp (1x0e -> node, of 1)    -> edge_embedding.scalars = w + bias (its non-0e part is 0)
#   edge_deg_embed.rad                         -> edge_embedding.radial: only the output rows (and offsets)
#       of the product paths from the 0e input; the others weigh identically-zero inputs
#   edge_deg_embed.proj                        -> edge_embedding.proj: only the input rows from the 0e input
#   blocks.i.norm_1 / norm_2 (affine_weight, affine_bias) -> blocks.i.norm1 / norm2 (weight, bias)
#   blocks.i.ga.merge_src / merge_dst          -> blocks.i.attention.merge_src / merge_dst
#   blocks.i.ga.sep_act.dtp_rad                -> blocks.i.attention.radial
#   blocks.i.ga.sep_alpha                      -> blocks.i.attention.alpha_linear
#   blocks.i.ga.alpha_dot (1, H, C)            -> blocks.i.attention.alpha_dot (H, C)
#   blocks.i.ga.sep_act.lin                    -> blocks.i.attention.value_linear
#   blocks.i.ga.sep_value.dtp (shared weights) -> blocks.i.attention.value_dtp
#   blocks.i.ga.sep_value.lin                  -> blocks.i.attention.value_proj
#   blocks.i.ga.proj                           -> blocks.i.attention.proj
#   blocks.i.ffn.fctp_1 / fctp_2               -> blocks.i.ffn.lin1 / lin2
#   blocks.i.ffn_shortcut                      -> blocks.i.shortcut
#   norm                                       -> norm;  head.0 / head.2 -> head.0 / head.2
# Linear maps (``LinearRS`` and the FFN's tensor products with the constant ``1x0e``) are e3nn
# ``'uvw'`` products: one ``(mul_in, mul_out)`` block per (input slot, output slot) pair in e3nn's
# instruction order; they are regrouped per irrep type into eqt's :class:`IrrepsLinear` layout. The
# ``0e`` bias (``bias.0``) is eqt's ``bias``. The depthwise products' weights already have e3nn's
# layout in both. The reference divides the summed energy by ``sqrt(_AVG_NUM_NODES)``; here that is
# ``energy_scale``.

_REF_MAX_ATOM_TYPE = 64
_REF_AVG_NUM_NODES = 18.03065905448718


def reference_config(irreps_node_embedding: str = "128x0e+64x1e+32x2e", num_layers: int = 6,
                     irreps_sh: str = "1x0e+1x1e+1x2e", max_radius: float = 5.0, number_of_basis: int = 32,
                     fc_neurons: tuple[int, ...] = (64, 64), basis_type: str = "exp", irreps_feature: str = "512x0e",
                     irreps_head: str = "32x0e+16x1e+8x2e", num_heads: int = 4,
                     irreps_mlp_mid: str = "384x0e+192x1e+96x2e", **ignored) -> EquiformerConfig:
    """The eqt config of a reference ``GraphAttentionTransformerMD17`` (keyword arguments as its constructor's).

    The defaults are the reference's ``graph_attention_transformer_nonlinear_exp_l2_md17``. The result
    has ``parity="se3"`` (the reference's all-even labels), ``smooth_cutoff=False`` (no envelope),
    ``max_z=64`` (its ``_MAX_ATOM_TYPE``), ``activation_norm="e3nn"`` and ``alpha_drop=0``; ``nonlinear_message=True`` is
    assumed (the paper's model); dropout arguments are ignored.

    Raises:
        ValueError: a setting eqt cannot express (head irreps that are not ``irreps_node / num_heads``,
            an FFN width that is not a multiple of the node width, a basis other than exp/gaussian).
    """
    node = o3.Irreps(irreps_node_embedding)
    if o3.Irreps([(mul * num_heads, ir) for mul, ir in o3.Irreps(irreps_head)]) != node:
        raise ValueError(f"irreps_head {irreps_head} x {num_heads} heads must equal {node}")
    mid = o3.Irreps(irreps_mlp_mid)
    ratios = {m2 // m1 for (m1, _), (m2, _) in zip(node, mid)}
    if len(mid) != len(node) or len(ratios) != 1 or o3.Irreps([(m * min(ratios), ir) for m, ir in node]) != mid:
        raise ValueError(f"irreps_mlp_mid {mid} must be a multiple of {node}")
    sh = o3.Irreps(irreps_sh)
    if sh != o3.Irreps([(1, (l, 1)) for l in range(sh.lmax + 1)]):
        raise ValueError(f"irreps_sh {sh} must be 1x0e+1x1e+...+1xLe (SE(3) labels)")
    return EquiformerConfig(irreps_node=str(node), l_max=sh.lmax, num_layers=num_layers, num_heads=num_heads,
                            ffn_multiplier=ratios.pop(), irreps_feature=irreps_feature,
                            radial_hidden=tuple(fc_neurons), cutoff=float(max_radius), num_basis=number_of_basis,
                            radial_basis=basis_type, parity="se3", smooth_cutoff=False, max_z=_REF_MAX_ATOM_TYPE,
                            alpha_drop=0.0, activation_norm="e3nn")


def _per_type_blocks(weight: Tensor, irreps_in: o3.Irreps, irreps_out: o3.Irreps, e3nn_order: bool) -> dict:
    """Flat linear weights -> ``{irrep: (sum mul_in, sum mul_out)}`` dense matrices.

    ``e3nn_order``: blocks ordered by input slot, then output slot (e3nn's instructions);
    otherwise by output slot, then input slot (:class:`IrrepsLinear`).
    """
    def offsets(irreps):
        seen, out = {}, []
        for mul, ir in irreps:
            out.append(seen.get(ir, 0))
            seen[ir] = seen.get(ir, 0) + mul
        return out, seen

    (in_off, in_tot), (out_off, out_tot) = offsets(irreps_in), offsets(irreps_out)
    dense = {ir: weight.new_zeros(in_tot[ir], out_tot[ir]) for ir in out_tot if ir in in_tot}
    pairs = [(i, o) for i in range(len(irreps_in)) for o in range(len(irreps_out)) if irreps_in[i].ir == irreps_out[o].ir]
    if not e3nn_order:
        pairs.sort(key=lambda io: (io[1], io[0]))
    k = 0
    for i, o in pairs:
        (m_in, ir), m_out = irreps_in[i], irreps_out[o].mul
        dense[ir][in_off[i]:in_off[i] + m_in, out_off[o]:out_off[o] + m_out] = weight[k:k + m_in * m_out].view(m_in, m_out)
        k += m_in * m_out
    if k != weight.numel():
        raise ValueError(f"linear weight of {weight.numel()} entries does not fit {irreps_in} -> {irreps_out}")
    return dense


def _flatten_blocks(dense: dict, irreps_in: o3.Irreps, irreps_out: o3.Irreps) -> Tensor:
    """Inverse of :func:`_per_type_blocks` for :class:`IrrepsLinear`'s order."""
    in_off, out_off, seen_in, seen_out = [], [], {}, {}
    for mul, ir in irreps_in:
        in_off.append(seen_in.get(ir, 0))
        seen_in[ir] = seen_in.get(ir, 0) + mul
    for mul, ir in irreps_out:
        out_off.append(seen_out.get(ir, 0))
        seen_out[ir] = seen_out.get(ir, 0) + mul
    parts = []
    for o, (m_out, ir) in enumerate(irreps_out):
        for i, (m_in, ir_in) in enumerate(irreps_in):
            if ir_in == ir:
                parts.append(dense[ir][in_off[i]:in_off[i] + m_in, out_off[o]:out_off[o] + m_out].reshape(-1))
    return torch.cat(parts)


def _ref_linear(sd: dict, prefix: str, layer: IrrepsLinear, ref_in: o3.Irreps | None = None, rows: dict | None = None) -> dict:
    """eqt ``IrrepsLinear`` tensors from a reference e3nn linear map (``{prefix}tp.weight``, ``{prefix}bias.0``).

    ``ref_in``: the reference's input irreps (default ``layer.rep_in``); ``rows``: per irrep, the input
    rows of the reference's dense matrix to keep (the edge-degree embedding drops dead inputs).
    """
    dense = _per_type_blocks(sd[prefix + "tp.weight"], ref_in or layer.rep_in, layer.rep_out, e3nn_order=True)
    if rows is not None:
        dense = {ir: d[rows[ir]] for ir, d in dense.items()}
    out = {"weight": _flatten_blocks(dense, layer.rep_in, layer.rep_out)}
    if layer.bias is not None:
        out["bias"] = sd[prefix + "bias.0"]
    return out


def _ref_dtp_irreps(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps) -> tuple[o3.Irreps, list[int]]:
    """The reference ``DepthwiseTensorProduct``'s output irreps (sorted even-first, stable) and each
    output slot's input slot; and the number of weights per input slot, in e3nn's order."""
    slots, src = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for _, ir_edge in irreps_sh:
            for ir_out in ir_in * ir_edge:
                if ir_out in irreps_target or ir_out == o3.Irrep(0, 1):
                    slots.append((mul, ir_out))
                    src.append(i)
    order = sorted(range(len(slots)), key=lambda k: (slots[k][1].l, -slots[k][1].p, k))
    return o3.Irreps([slots[k] for k in order]), [src[k] for k in order]


def from_reference_state_dict(state_dict: dict, config: EquiformerConfig) -> Equiformer:
    """An eqt :class:`Equiformer` with the weights of a reference ``GraphAttentionTransformerMD17``.

    Args:
        state_dict: the reference model's ``state_dict()`` (``nonlinear_message=True``, ``'layer'`` norm,
            no attention head, exp or gaussian basis; e3nn's constant buffers may be missing).
        config: :func:`reference_config` of the reference's constructor arguments.

    Returns:
        The eqt model; ``Potential(model)`` then gives the reference's energies (including its
        ``1/sqrt(_AVG_NUM_NODES)``, here ``energy_scale``) and forces. Float64 if the state dict is.
    """
    c = config
    if c.parity != "se3" or c.smooth_cutoff or c.max_z != _REF_MAX_ATOM_TYPE or c.activation_norm != "e3nn":
        raise ValueError("the reference needs parity='se3', smooth_cutoff=False, max_z=64, activation_norm='e3nn' "
                         "(use reference_config)")
    sd = {k: v.detach() for k, v in state_dict.items()}
    dtype = sd["atom_embed.atom_type_lin.tp.weight"].dtype
    model = Equiformer(c).to(dtype)
    node, n0 = c.node_irreps, scalar_mul(c.node_irreps)
    new = {"energy_scale": torch.tensor(1.0 / math.sqrt(_REF_AVG_NUM_NODES), dtype=torch.float64),
           "energy_shift": torch.tensor(0.0), "atomref": torch.zeros(c.max_z)}
    if "rbf.means" in sd:
        new.update({"rbf.means": sd["rbf.means"], "rbf.betas": sd["rbf.betas"]})
    emb = "atom_embed.atom_type_lin."
    new["atom_embedding.weight"] = sd[emb + "tp.weight"].view(c.max_z, n0) + sd[emb + "bias.0"]
    new["edge_embedding.scalars"] = sd["edge_deg_embed.exp.tp.weight"] + sd["edge_deg_embed.exp.bias.0"]

    # edge-degree embedding: keep the product paths of the 0e input (the reference's input slot 0)
    ref_out, src = _ref_dtp_irreps(node, c.sh_irreps, node)
    n_w0 = sum(m for (m, _), i in zip(ref_out, src) if i == 0)  # e3nn orders weights by input slot: these come first
    rad = "edge_deg_embed.rad."
    for k, v in sd.items():
        if k.startswith(rad):
            new["edge_embedding.radial." + k[len(rad):]] = v[:n_w0] if k.endswith(("net.6.weight", "offset")) else v
    rows, seen = {}, {}  # per irrep type, the rows of the (simplified, stable-sorted) product output from slot 0
    for (mul, ir), i in zip(ref_out, src):
        start = seen.get(ir, 0)
        if i == 0:
            rows.setdefault(ir, []).extend(range(start, start + mul))
        seen[ir] = start + mul
    proj = _ref_linear(sd, "edge_deg_embed.proj.", model.edge_embedding.proj, ref_out.simplify(), rows)
    new.update({f"edge_embedding.proj.{k}": v for k, v in proj.items()})

    for b, block in enumerate(model.blocks):
        r, e = f"blocks.{b}.", f"blocks.{b}."
        for ref_norm, norm in (("norm_1", "norm1"), ("norm_2", "norm2")):
            new[f"{e}{norm}.weight"] = sd[f"{r}{ref_norm}.affine_weight"]
            new[f"{e}{norm}.bias"] = sd[f"{r}{ref_norm}.affine_bias"]
        att = block.attention
        new[f"{e}attention.alpha_dot"] = sd[f"{r}ga.alpha_dot"].reshape(att.alpha_dot.shape)
        new[f"{e}attention.value_dtp.weight"] = sd[f"{r}ga.sep_value.dtp.tp.weight"]
        ref_rad = f"{r}ga.sep_act.dtp_rad."
        new.update({f"{e}attention.radial.{k[len(ref_rad):]}": v for k, v in sd.items() if k.startswith(ref_rad)})
        linears = [("ga.merge_src.", "attention.merge_src", att.merge_src), ("ga.merge_dst.", "attention.merge_dst", att.merge_dst),
                   ("ga.sep_alpha.", "attention.alpha_linear", att.alpha_linear),
                   ("ga.sep_act.lin.", "attention.value_linear", att.value_linear),
                   ("ga.sep_value.lin.", "attention.value_proj", att.value_proj), ("ga.proj.", "attention.proj", att.proj),
                   ("ffn.fctp_1.", "ffn.lin1", block.ffn.lin1), ("ffn.fctp_2.", "ffn.lin2", block.ffn.lin2)]
        if block.shortcut is not None:
            linears.append(("ffn_shortcut.", "shortcut", block.shortcut))
        for ref_name, name, layer in linears:
            new.update({f"{e}{name}.{k}": v for k, v in _ref_linear(sd, r + ref_name, layer).items()})
    new["norm.weight"], new["norm.bias"] = sd["norm.affine_weight"], sd["norm.affine_bias"]
    for i in (0, 2):
        new.update({f"head.{i}.{k}": v for k, v in _ref_linear(sd, f"head.{i}.", model.head[i]).items()})
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype).reshape(own[k].shape) for k, v in new.items()}, strict=True)
    return model
