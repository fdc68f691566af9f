"""GATr over any geometric algebra (de Haan, Cohen, Brehmer): one class, variants by configuration.

``GATr`` maps tokens of multivector + scalar channels to tokens of multivector + scalar channels:
an input :class:`~eqt.layers.multivector.EquiLinear`, ``num_blocks``
:class:`~eqt.layers.transformer.PreNormBlock` (``EquiLayerNorm -> MultivectorAttention``;
``EquiLayerNorm -> MultivectorMLP``), and an output ``EquiLinear``. The plain baseline
(:mod:`eqt.models.transformer`) uses the same block skeleton. Variants:

- E-GATr: ``algebra=(3, 0, 0)`` (O(3); translations by centring the inputs);
- P-GATr: ``algebra=(3, 0, 1)``, ``use_join=True`` (E(3) = Pin(3,0,1));
- iP-GATr: P-GATr with ``distance_attention=True`` (GATr's distance-aware attention; the released
  reference GATr is this variant);
- C-GATr: ``algebra=(4, 1, 0)``, ``subgroup="euclidean"`` (E(3) inside the conformal group;
  attention sees distances through the null-vector inner product).

The join's reference multivector is the mean of the input multivectors over tokens and channels
(GATr's choice), so it transforms with the input. Layout: ``mv (..., T, C, 2**n)``, ``s (..., T, C_s)``.

Reference weights: :func:`from_reference_state_dict` loads a state dict of the Qualcomm reference
``gatr.nets.GATr`` (v1.4.3) into an eqt iP-GATr built by :func:`reference_config` (its MLP widths
and ``reference_numerics``: the reference's clamped layer norm and exact scalar GELU); the
``load_reference_*`` helpers do the same per layer. Tested against golden outputs of the reference
(``tests/models/test_gatr_reference.py``, ``benchmarks/make_golden.py``).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from eqt.config import Config
from eqt.layers.multivector import (
    EquiLayerNorm,
    EquiLinear,
    GeometricBilinear,
    MultivectorAttention,
    MultivectorMLP,
)
from eqt.layers.transformer import PreNormBlock
from eqt.primitives.clifford import Algebra
from eqt.primitives.clifford_basis import equivariant_linear_basis

__all__ = ["GATrConfig", "GATr", "VARIANTS", "reference_config", "from_reference_state_dict",
           "load_reference_equilinear", "load_reference_bilinear", "load_reference_mlp", "load_reference_attention"]


@dataclasses.dataclass(frozen=True)
class GATrConfig(Config):
    """GATr hyper-parameters (defaults: 4 blocks of 16 mv / 32 s channels).

    ``heads`` heads of ``head_mv`` multivector and ``head_s`` scalar channels each; the MLP's
    bilinear has ``bilinear_mv`` channels per product and ``mlp_mv`` / ``mlp_s`` output channels
    (0: ``hidden_mv`` / ``hidden_s``; the reference GATr uses twice those). ``reference_numerics``
    switches to the reference's numerics where eqt differs on purpose: the multivector layer norm
    divides by ``sqrt(max(mean, 0.01))`` instead of ``sqrt(mean + 1e-6)``, and the MLP's scalar
    channels get the exact (erf) GELU instead of the tanh one.
    """

    algebra: tuple = (3, 0, 1)
    subgroup: str = "pin"
    proper: bool = False
    in_mv: int = 1
    in_s: int = 0
    out_mv: int = 1
    out_s: int = 0
    hidden_mv: int = 16
    hidden_s: int = 32
    num_blocks: int = 4
    heads: int = 4
    head_mv: int = 4
    head_s: int = 8
    bilinear_mv: int = 8
    use_join: bool = True
    distance_attention: bool = False
    mlp_mv: int = 0
    mlp_s: int = 0
    reference_numerics: bool = False

    def __post_init__(self) -> None:
        sig = tuple(self.algebra)
        if len(sig) != 3 or any(not isinstance(v, int) or v < 0 for v in sig):
            raise ValueError(f"algebra must be a signature (p, q, r) of non-negative ints, got {self.algebra!r}")
        object.__setattr__(self, "algebra", sig)
        if self.use_join and sig[2] != 1:
            raise ValueError(f"use_join needs a projective algebra G(p,q,1), got G{sig}")
        if self.distance_attention and (sig[2] != 1 or sig[1] != 0):
            raise ValueError(f"distance_attention needs a projective algebra G(n,0,1), got G{sig}")
        for name in ("hidden_mv", "num_blocks", "heads", "head_mv", "bilinear_mv"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("in_mv", "in_s", "out_mv", "out_s", "hidden_s", "head_s", "mlp_mv", "mlp_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


#: The paper's four variants as partial configurations (combine with sizes by ``GATrConfig(**VARIANTS[v], ...)``).
VARIANTS = {
    "E-GATr": dict(algebra=(3, 0, 0), use_join=False, distance_attention=False),
    "P-GATr": dict(algebra=(3, 0, 1), use_join=True, distance_attention=False),
    "iP-GATr": dict(algebra=(3, 0, 1), use_join=True, distance_attention=True),
    "C-GATr": dict(algebra=(4, 1, 0), subgroup="euclidean", use_join=False, distance_attention=False),
}


class GATr(nn.Module):
    """Geometric Algebra Transformer.

    Args:
        config: a :class:`GATrConfig`.

    Attributes:
        rep_in, rep_out: ``(mv_channels, s_channels)`` over ``algebra``.
    """

    def __init__(self, config: GATrConfig = GATrConfig()):
        super().__init__()
        c = self.config = config
        self.algebra = alg = Algebra(*c.algebra)
        g = dict(subgroup=c.subgroup, proper=c.proper)
        self.rep_in, self.rep_out = (c.in_mv, c.in_s), (c.out_mv, c.out_s)
        self.embed = EquiLinear(alg, c.in_mv, c.hidden_mv, c.in_s, c.hidden_s, **g)
        norm = dict(eps=0.01, clamp=True) if c.reference_numerics else {}
        mlp = dict(mid_mv=c.mlp_mv or None, mid_s=c.mlp_s or None, scalar_gelu="none" if c.reference_numerics else "tanh")
        self.blocks = nn.ModuleList(
            PreNormBlock(EquiLayerNorm(alg, c.hidden_s, **norm),
                         MultivectorAttention(alg, c.hidden_mv, c.hidden_s, c.heads, c.head_mv, c.head_s,
                                              distance=c.distance_attention, **g),
                         EquiLayerNorm(alg, c.hidden_s, **norm),
                         MultivectorMLP(alg, c.hidden_mv, c.hidden_s, c.bilinear_mv, use_join=c.use_join, **mlp, **g))
            for _ in range(c.num_blocks))
        self.head = EquiLinear(alg, c.hidden_mv, c.out_mv, c.hidden_s, c.out_s, **g)

    def forward(self, mv: Tensor, s: Tensor | None = None, attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Args: mv ``(..., T, in_mv, dim)``, s ``(..., T, in_s)``, attn_mask ``(..., T, T)`` boolean.

        Returns: ``(..., T, out_mv, dim)``, ``(..., T, out_s)`` (None when ``out_s == 0``).
        """
        if mv.dim() < 3 or mv.shape[-2:] != (self.config.in_mv, self.algebra.dim):
            raise ValueError(f"GATr over {self.algebra!r} expects multivectors (..., T, {self.config.in_mv}, "
                             f"{self.algebra.dim}), got {tuple(mv.shape)}")
        reference = None
        if self.config.use_join:  # one per token: (..., T, dim)
            reference = mv.mean(dim=(-3, -2), keepdim=True).squeeze(-2).expand(*mv.shape[:-2], -1)
        x = self.embed(mv, s)
        for block in self.blocks:
            x = block(x, dict(attn_mask=attn_mask), dict(reference=reference))
        return self.head(*x)


# ---------------------------------------------------------------------------------------------------
# Reference (Qualcomm GATr v1.4.3) weights.
#
# Mapping, per layer (reference name -> eqt name):
#   EquiLinear: ``weight (out, in, 9)`` in the reference's basis of nine maps (the five grade
#     projections and the four maps x_k -> e0 x_k, each Frobenius-normalised) -> ``weight (out, in, k)``
#     in eqt's basis (the same span, other coordinates: w_eqt = w_ref @ C with C the exact change of
#     basis); the scalar-blade bias ``bias (out, 1)`` or ``s2mvs.bias`` -> ``bias``; ``s2mvs.weight`` ->
#     ``s2mv.weight``; ``mvs2s`` -> ``mv2s``; ``s2s`` -> ``s2s``.
#   GeometricBilinear: ``linear_left``, ``linear_right``, ``linear_join_left``, ``linear_join_right`` ->
#     the four row blocks of ``proj``; ``linear_out`` -> ``out``.
#   GeoMLP: ``layers.0`` -> ``bilinear``, ``layers.2`` -> ``linear`` (``layers.1`` is the gated GELU).
#   SelfAttention: queries, keys and values -> rows of eqt's one ``qkv`` layer, ordered
#     ``(q|k|v, head, channel)``. Multi-query (the reference's default): ``q_linear`` rows
#     ``(channel, head)`` are reordered, ``k_linear`` and ``v_linear`` (shared by the heads) are copied
#     into every head; multi-head ``in_linear`` rows ``(q|k|v, channel, head)`` are reordered.
#     ``out_linear`` -> ``out`` (the same ``(head, channel)`` columns); ``attention.log_weights
#     (heads, 1, head_mv)`` -> ``log_weights (heads, head_mv)``.
#   GATr: ``linear_in`` -> ``embed``, ``blocks.i.attention`` / ``blocks.i.mlp`` -> the same names,
#     ``linear_out`` -> ``head``; the reference's layer norms have no parameters (eqt's scalar
#     LayerNorms keep their unit gain and zero bias).


def _reference_basis(alg: Algebra) -> Tensor:
    """The reference GATr's nine Pin(3,0,1)-equivariant maps ``(9, 16, 16)`` in float64, in eqt's blade order."""
    if (alg.p, alg.q, alg.r) != (3, 0, 1):
        raise ValueError(f"the reference GATr is defined on G(3,0,1), got {alg!r}")
    blades, index = alg.blades, {b: i for i, b in enumerate(alg.blades)}
    maps = []
    for k in range(5):  # grade projections
        w = torch.zeros(16, 16, dtype=torch.float64)
        for b in blades:
            if len(b) == k:
                w[index[b], index[b]] = 1.0
        maps.append(w)
    for k in range(4):  # x_k -> e0 x_k on the blades of grade k without e0 (e0 is vector 0: no sign)
        w = torch.zeros(16, 16, dtype=torch.float64)
        for b in blades:
            if len(b) == k and 0 not in b:
                w[index[(0, *b)], index[b]] = 1.0
        maps.append(w)
    basis = torch.stack(maps)
    return basis / basis.flatten(1).norm(dim=1)[:, None, None]


def _change_of_basis(layer: EquiLinear) -> Tensor:
    """``(9, k)``: reference map ``a`` = ``sum_b C[a, b]`` eqt map ``b`` (exact: the spans are equal)."""
    ours = equivariant_linear_basis(layer.algebra, layer.subgroup, layer.proper, dtype=torch.float64,
                                    device=torch.device("cpu")).flatten(1)  # (k, 256)
    ref = _reference_basis(layer.algebra).flatten(1)  # (9, 256)
    coef = torch.linalg.lstsq(ours.T, ref.T).solution.T  # (9, k)
    if (coef @ ours - ref).abs().max() > 1e-10:
        raise ValueError("eqt's equivariant maps do not span the reference GATr's (subgroup/proper mismatch?)")
    return coef


def _equilinear_state(sd: dict, prefix: str, layer: EquiLinear) -> dict:
    """One reference EquiLinear (keys under ``prefix``) as eqt EquiLinear tensors (all float64)."""
    def get(name):
        return sd[prefix + name].to(torch.float64) if prefix + name in sd else None

    coef = _change_of_basis(layer)
    out = {"weight": torch.einsum("oia,ab->oib", get("weight"), coef)}
    bias = get("bias") if get("bias") is not None else get("s2mvs.bias")
    if bias is not None:
        out["bias"] = bias.reshape(-1)
    for ref_name, name in (("s2mvs.weight", "s2mv.weight"), ("mvs2s.weight", "mv2s.weight"),
                           ("mvs2s.bias", "mv2s.bias"), ("s2s.weight", "s2s.weight")):
        if get(ref_name) is not None:
            out[name] = get(ref_name)
    return out


def _load(module: nn.Module, state: dict) -> None:
    """``load_state_dict(strict=True)`` with every tensor cast to the module's dtype."""
    own = module.state_dict()
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items() if k in own}, strict=True)


def load_reference_equilinear(layer: EquiLinear, sd: dict, prefix: str = "") -> EquiLinear:
    """Load a reference ``gatr.layers.EquiLinear`` state dict (keys under ``prefix``) into ``layer``.

    Args:
        layer: an eqt :class:`EquiLinear` over G(3,0,1) with the reference's channel counts.
        sd: the reference state dict.
        prefix: the reference layer's key prefix (e.g. ``"linear_in."``).

    Returns:
        ``layer``, loaded.
    """
    _load(layer, _equilinear_state(sd, prefix, layer))
    return layer


def load_reference_bilinear(layer: GeometricBilinear, sd: dict, prefix: str = "") -> GeometricBilinear:
    """Load a reference ``GeometricBilinear`` (GP and join halves) into an eqt one with ``use_join=True``."""
    parts = [_equilinear_state(sd, prefix + f"linear_{n}.", layer.proj) for n in ("left", "right", "join_left", "join_right")]
    _load(layer.proj, {k: torch.cat([p[k] for p in parts]) for k in parts[0]})
    load_reference_equilinear(layer.out, sd, prefix + "linear_out.")
    return layer


def load_reference_mlp(mlp: MultivectorMLP, sd: dict, prefix: str = "") -> MultivectorMLP:
    """Load a reference ``GeoMLP`` with channels ``(C, M, C)`` into an eqt :class:`MultivectorMLP`
    (``mid_mv=M``, ``hidden=M // 2``)."""
    load_reference_bilinear(mlp.bilinear, sd, prefix + "layers.0.")
    load_reference_equilinear(mlp.linear, sd, prefix + "layers.2.")
    return mlp


def load_reference_attention(att: MultivectorAttention, sd: dict, prefix: str = "",
                             multi_query: bool = True) -> MultivectorAttention:
    """Load a reference ``SelfAttention`` into an eqt :class:`MultivectorAttention` (``distance=True``).

    The eqt layer needs the reference's per-head widths (``head_mv = hidden_mv_channels``,
    ``head_s = hidden_s_channels`` of its config). Multi-query keys and values are copied into every
    head, which gives the same function.
    """
    H, hm, hs = att.heads, att.hidden_mv, att.hidden_s
    if multi_query:
        q, k, v = (_equilinear_state(sd, prefix + f"qkv_module.{n}_linear.", att.qkv) for n in ("q", "k", "v"))
        mv_rows = [c * H + h for h in range(H) for c in range(hm)]  # eqt (head, channel) <- reference (channel, head)
        s_rows = [j * H + h for h in range(H) for j in range(hs)]
        mv_shared = [c for _ in range(H) for c in range(hm)]
        s_shared = [j for _ in range(H) for j in range(hs)]
        srcs = [(q, mv_rows, s_rows), (k, mv_shared, s_shared), (v, mv_shared, s_shared)]
    else:
        full = _equilinear_state(sd, prefix + "qkv_module.in_linear.", att.qkv)
        srcs = [(full, [(t * hm + c) * H + h for h in range(H) for c in range(hm)],
                 [(t * hs + j) * H + h for h in range(H) for j in range(hs)]) for t in range(3)]
    state = {}
    for name in srcs[0][0]:
        scalar_rows = name.startswith(("mv2s", "s2s"))  # rows are scalar output channels
        state[name] = torch.cat([st[name][s_rows if scalar_rows else mv_rows] for st, mv_rows, s_rows in srcs])
    _load(att.qkv, state)
    load_reference_equilinear(att.out, sd, prefix + "out_linear.")
    with torch.no_grad():
        att.log_weights.copy_(sd[prefix + "attention.log_weights"].reshape(H, hm))
    return att


def reference_config(in_mv: int, out_mv: int, hidden_mv: int, in_s: int, out_s: int, hidden_s: int,
                     num_blocks: int, num_heads: int = 8, increase_hidden_channels: int = 2) -> GATrConfig:
    """The eqt config of a reference ``gatr.nets.GATr`` (iP-GATr, ``MLPConfig()`` defaults).

    Args mirror the reference's ``GATr(in_mv_channels, out_mv_channels, hidden_mv_channels,
    in_s_channels, out_s_channels, hidden_s_channels, num_blocks)`` and its
    ``SelfAttentionConfig(num_heads, increase_hidden_channels)`` (positional encodings, extra q/k
    channels, dropout and checkpointing are not mapped).
    """
    return GATrConfig(**VARIANTS["iP-GATr"], in_mv=in_mv, in_s=in_s, out_mv=out_mv, out_s=out_s,
                      hidden_mv=hidden_mv, hidden_s=hidden_s, num_blocks=num_blocks, heads=num_heads,
                      head_mv=max(increase_hidden_channels * hidden_mv // num_heads, 1),
                      head_s=max(increase_hidden_channels * hidden_s // num_heads, 4),
                      bilinear_mv=hidden_mv, mlp_mv=2 * hidden_mv, mlp_s=2 * hidden_s, reference_numerics=True)


def from_reference_state_dict(state_dict: dict, config: GATrConfig, multi_query: bool = True) -> GATr:
    """An eqt :class:`GATr` with the weights of a reference ``gatr.nets.GATr`` state dict.

    Args:
        state_dict: the reference's ``model.state_dict()``.
        config: from :func:`reference_config` with the reference's sizes.
        multi_query: the reference's ``SelfAttentionConfig.multi_query`` (its default ``True``).

    Returns:
        The model (float64 parameters where the state dict is float64: call ``.float()`` for float32).
    """
    model = GATr(config)
    if any(v.dtype == torch.float64 for v in state_dict.values()):
        model = model.double()
    load_reference_equilinear(model.embed, state_dict, "linear_in.")
    for i, block in enumerate(model.blocks):
        load_reference_attention(block.attention, state_dict, f"blocks.{i}.attention.", multi_query)
        load_reference_mlp(block.mlp, state_dict, f"blocks.{i}.mlp.")
    load_reference_equilinear(model.head, state_dict, "linear_out.")
    n_ref = len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})
    if n_ref != config.num_blocks:
        raise ValueError(f"the state dict has {n_ref} blocks, the config {config.num_blocks}")
    return model
