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
"""

from __future__ import annotations

import dataclasses

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

__all__ = ["EquiformerConfig", "Equiformer", "MD17_L2", "MD17_L3", "QM9_L2", "QM9_TARGETS"]

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
