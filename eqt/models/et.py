"""TorchMD-NET's Equivariant Transformer (Thölke & De Fabritiis, ICLR 2022) on eqt's layers.

Faithful to ``torchmdnet.models.torchmd_et`` (torchmd-net 3.1): ExpNormal radial basis, cosine
cutoff, neighbour embedding, SiLU attention without softmax, scalar + vector features with the
U1/U2/U3 updates, final LayerNorm, and the two gated equivariant blocks of ``EquivariantScalar``.
Atoms attend to themselves (self-loops with ``d = 0``, ``rhat = 0``), as in the reference.

Choices (also in ``docs/et.md``):

- ``vector_cutoff=True`` by default: the cutoff multiplies the values, so the energy is continuous
  at the cutoff (TorchMD-NET issue #254). ``False`` reproduces the original, discontinuous ET.
- No ``max_num_neighbors``: the radius graph is never truncated.
- Energies: ``E = energy_shift + sum_i (energy_scale * out_i + atomref[z_i])`` (see
  :class:`eqt.models.base.EnergyModel`); TorchMD-NET's ``std`` is ``energy_scale``, its ``mean``
  is ``energy_shift`` and an ``Atomref`` prior is ``atomref``.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from eqt.config import Config
from eqt.layers.embedding import NeighborEmbedding
from eqt.layers.gated import GatedEquivariantBlock
from eqt.layers.radial import radial_basis
from eqt.layers.vector_attention import EquivariantVectorAttention
from eqt.models.base import EnergyModel
from eqt.primitives.radial import cosine_cutoff, safe_norm

__all__ = ["ETConfig", "ET", "from_torchmdnet", "torchmdnet_args"]


@dataclasses.dataclass(frozen=True)
class ETConfig(Config):
    """Hyper-parameters of ET (defaults: TorchMD-NET's ``ET-MD17.yaml``)."""

    hidden_channels: int = 128
    num_layers: int = 6
    num_heads: int = 8
    num_rbf: int = 32
    rbf_type: str = "expnorm"
    trainable_rbf: bool = False
    cutoff_lower: float = 0.0
    cutoff_upper: float = 5.0
    max_z: int = 100
    activation: str = "silu"
    attn_activation: str = "silu"
    distance_influence: str = "both"
    neighbor_embedding: bool = True
    vector_cutoff: bool = True

    def __post_init__(self) -> None:
        import math

        from eqt.layers.vector_attention import DISTANCE_INFLUENCE
        from eqt.primitives.activations import ACTIVATIONS

        for name in ("hidden_channels", "num_layers", "num_heads", "num_rbf", "max_z"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "num_layers" else 1):
                raise ValueError(f"ETConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_channels % self.num_heads:
            raise ValueError(f"ETConfig.hidden_channels ({self.hidden_channels}) must be divisible by num_heads "
                             f"({self.num_heads})")
        for name in ("cutoff_lower", "cutoff_upper"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"ETConfig.{name} must be a finite number, got {value!r}")
        if not 0 <= self.cutoff_lower < self.cutoff_upper:
            raise ValueError(f"ETConfig needs 0 <= cutoff_lower < cutoff_upper, got {self.cutoff_lower} and "
                             f"{self.cutoff_upper}")
        choices = {"rbf_type": ("expnorm", "gauss"), "activation": tuple(ACTIVATIONS),
                   "attn_activation": (*ACTIVATIONS, "softmax", "none"), "distance_influence": DISTANCE_INFLUENCE}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"ETConfig.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("trainable_rbf", "neighbor_embedding", "vector_cutoff"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ETConfig.{name} must be true or false, got {getattr(self, name)!r}")


class ET(EnergyModel):
    """Equivariant Transformer potential.

    Args:
        config: an :class:`ETConfig`.

    Features: scalars ``x (N, F)`` and vectors ``vec (N, 3, F)``; output one energy per atom.
    """

    def __init__(self, config: ETConfig = ETConfig()):
        super().__init__(cutoff=config.cutoff_upper, max_z=config.max_z)
        c = self.config = config
        F = c.hidden_channels
        self.embedding = nn.Embedding(c.max_z, F)
        self.rbf = radial_basis(c.rbf_type, c.num_rbf, c.cutoff_upper, c.cutoff_lower, c.trainable_rbf)
        self.neighbor_embedding = (NeighborEmbedding(F, c.num_rbf, c.cutoff_upper, c.cutoff_lower, c.max_z)
                                   if c.neighbor_embedding else None)
        self.layers = nn.ModuleList(
            EquivariantVectorAttention(F, c.num_heads, c.num_rbf, c.distance_influence, c.activation,
                                       c.attn_activation, c.vector_cutoff)
            for _ in range(c.num_layers))
        self.out_norm = nn.LayerNorm(F)
        self.head = nn.ModuleList([
            GatedEquivariantBlock(F, F // 2, act=c.activation, scalar_activation=True),
            GatedEquivariantBlock(F // 2, 1, act=c.activation),
        ])

    def representation(self, z: Tensor, edge_index: Tensor, edge_vec: Tensor) -> tuple[Tensor, Tensor]:
        """Scalar and vector features after the attention stack.

        Args:
            z: ``(N,)`` atomic numbers.
            edge_index: ``(2, E)`` edges ``j -> i`` without self-loops.
            edge_vec: ``(E, 3)`` ``r_j - r_i``.

        Returns:
            ``x (N, F)`` (after the output LayerNorm) and ``vec (N, 3, F)``.
        """
        c = self.config
        N = z.shape[0]
        dist = safe_norm(edge_vec, dim=-1)  # (E,)
        rbf = self.rbf(dist)  # (E, K)
        x = self.embedding(z)  # (N, F)
        if self.neighbor_embedding is not None:
            x = self.neighbor_embedding(z, x, edge_index, dist, rbf)

        # every atom also attends to itself (d = 0, rhat = 0): passed as the basis at d = 0 and
        # computed per atom inside the layers, not as N extra edges
        cut = cosine_cutoff(dist, c.cutoff_upper, c.cutoff_lower)
        rhat = edge_vec / dist.clamp(min=1e-12).unsqueeze(-1)
        zero = dist.new_zeros(1)
        self_rbf = self.rbf(zero)[0]  # (K,)
        self_cut = 1.0 if c.cutoff_lower == 0 else 0.0  # cosine_cutoff(0) without a host sync

        vec = None  # all zero before the first layer; the layer skips the terms that vanish
        for layer in self.layers:
            dx, dvec = layer(x, vec, edge_index, rbf, cut, rhat, self_rbf, self_cut)
            x, vec = x + dx, dvec if vec is None else vec + dvec
        if vec is None:
            vec = x.new_zeros(N, 3, x.shape[1])
        return self.out_norm(x), vec

    def atom_outputs(self, z: Tensor, edge_index: Tensor, edge_vec: Tensor, batch: Tensor, num_systems: int) -> Tensor:
        """One raw scalar per atom, ``(N,)`` (see :meth:`EnergyModel.atom_outputs`)."""
        x, vec = self.representation(z, edge_index, edge_vec)
        for block in self.head:
            x, vec = block(x, vec)
        return x.squeeze(-1)


def torchmdnet_args(config: ETConfig = ETConfig()) -> dict:
    """The ``torchmdnet.models.model.create_model`` arguments of the same ET (for tests and benchmarks).

    Args:
        config: the eqt config to mirror.

    Returns:
        A dict for torchmd-net 3.1's ``create_model`` (scalar energy output, forces by autograd).
    """
    c = config
    return dict(model="equivariant-transformer", embedding_dimension=c.hidden_channels, num_layers=c.num_layers,
                num_heads=c.num_heads, num_rbf=c.num_rbf, rbf_type=c.rbf_type, trainable_rbf=c.trainable_rbf,
                activation=c.activation, attn_activation=c.attn_activation, neighbor_embedding=c.neighbor_embedding,
                distance_influence=c.distance_influence, cutoff_lower=c.cutoff_lower, cutoff_upper=c.cutoff_upper,
                max_z=c.max_z, max_num_neighbors=32, vector_cutoff=c.vector_cutoff, output_model="Scalar",
                reduce_op="add", derivative=True, prior_model=None, atom_filter=-1, precision=32,
                equivariance_invariance_group="O(3)", static_shapes=False, check_errors=True, box_vecs=None,
                charge=False, spin=False)


def _blocks(w: Tensor, heads: int) -> Tensor:
    """TorchMD-NET's per-head interleaved value rows ``(H, 3, d)`` -> eqt's blocks ``(3, H, d)``."""
    rest = w.shape[1:]
    return w.reshape(heads, 3, -1, *rest).transpose(0, 1).reshape(w.shape)


def from_torchmdnet(model_or_checkpoint) -> ET:
    """Convert a TorchMD-NET 3.x equivariant-transformer into an eqt :class:`ET` with equal weights.

    Args:
        model_or_checkpoint: a ``torchmdnet.models.model.TorchMD_Net`` whose representation model is
            ``TorchMD_ET`` with an ``EquivariantScalar`` output, or a path to its Lightning checkpoint
            (loaded with ``torchmdnet.models.model.load_model``; needs ``torchmd-net`` installed).

    Returns:
        The eqt model (float32, eval mode). Energies and forces match the source model.

    Raises:
        ValueError: the source is not an ET with a scalar output, or uses features eqt does not
            have (periodic box fixed in the model, charge/spin inputs, unsupported priors).
    """
    if isinstance(model_or_checkpoint, (str, bytes)) or hasattr(model_or_checkpoint, "__fspath__"):
        try:
            from torchmdnet.models.model import load_model
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("loading a TorchMD-NET checkpoint needs `pip install torchmd-net`") from err
        src = load_model(str(model_or_checkpoint), derivative=False)
    else:
        src = model_or_checkpoint
    rep = getattr(src, "representation_model", None)
    if rep is None or type(rep).__name__ != "TorchMD_ET":
        raise ValueError(f"expected a TorchMD-NET model with a TorchMD_ET representation, got {type(rep).__name__}")
    if type(src.output_model).__name__ != "EquivariantScalar":
        raise ValueError(f"only the EquivariantScalar output is supported, got {type(src.output_model).__name__}")
    layer0 = rep.attention_layers[0] if len(rep.attention_layers) else None
    config = ETConfig(
        hidden_channels=rep.hidden_channels, num_layers=rep.num_layers, num_heads=rep.num_heads,
        num_rbf=rep.num_rbf, rbf_type=rep.rbf_type, trainable_rbf=rep.trainable_rbf,
        cutoff_lower=float(rep.cutoff_lower), cutoff_upper=float(rep.cutoff_upper), max_z=rep.max_z,
        activation=rep.activation, attn_activation=rep.attn_activation,
        distance_influence=rep.distance_influence, neighbor_embedding=rep.neighbor_embedding is not None,
        vector_cutoff=bool(layer0.vector_cutoff) if layer0 is not None else True)
    model = ET(config)
    s = {k: v.detach().float() for k, v in src.state_dict().items()}
    r = "representation_model."
    mapped: dict[str, Tensor] = {
        "embedding.weight": s[r + "embedding.weight"],
        "rbf.means" if config.rbf_type == "expnorm" else "rbf.offsets": s.get(
            r + "distance_expansion.means", s.get(r + "distance_expansion.offset")),
        "out_norm.weight": s[r + "out_norm.weight"], "out_norm.bias": s[r + "out_norm.bias"],
    }
    if config.rbf_type == "expnorm":
        mapped["rbf.betas"] = s[r + "distance_expansion.betas"]
    if config.neighbor_embedding:
        for name in ("embedding.weight", "distance_proj.weight", "distance_proj.bias", "combine.weight", "combine.bias"):
            mapped["neighbor_embedding." + name] = s[r + "neighbor_embedding." + name]
    for i in range(config.num_layers):
        a, b = f"{r}attention_layers.{i}.", f"layers.{i}."
        mapped[b + "qkv_proj.weight"] = torch.cat([s[a + "q_proj.weight"], s[a + "k_proj.weight"],
                                                   _blocks(s[a + "v_proj.weight"], config.num_heads)])
        mapped[b + "qkv_proj.bias"] = torch.cat([s[a + "q_proj.bias"], s[a + "k_proj.bias"],
                                                 _blocks(s[a + "v_proj.bias"], config.num_heads)])
        for name in ("layernorm.weight", "layernorm.bias", "o_proj.weight", "o_proj.bias", "vec_proj.weight"):
            mapped[b + name] = s[a + name]
        for p in ("weight", "bias"):
            parts = ([s[f"{a}dk_proj.{p}"]] if f"{a}dk_proj.{p}" in s else []) + (
                [_blocks(s[f"{a}dv_proj.{p}"], config.num_heads)] if f"{a}dv_proj.{p}" in s else [])
            if parts:
                mapped[f"{b}filter_proj.{p}"] = torch.cat(parts)
    for i in range(2):
        a, b = f"output_model.output_network.{i}.", f"head.{i}."
        for name in ("vec1_proj.weight", "vec2_proj.weight"):
            mapped[b + name] = s[a + name]
        for j in (0, 2):
            for p in ("weight", "bias"):
                mapped[f"{b}update_net.{j}.{p}"] = s[f"{a}update_net.layers.{j}.{p}"]
    if src.std is not None:
        mapped["energy_scale"] = s["std"].reshape(())
    if src.mean is not None:
        mapped["energy_shift"] = s["mean"].reshape(())
    mapped["atomref"] = torch.zeros(config.max_z)
    for prior in src.prior_model or []:
        if type(prior).__name__ != "Atomref":
            raise ValueError(f"prior model {type(prior).__name__} is not supported (only Atomref)")
        mapped["atomref"] = mapped["atomref"] + prior.atomref.weight.detach().float().reshape(-1)[: config.max_z]
    model.load_state_dict(mapped, strict=True)
    return model.eval()
