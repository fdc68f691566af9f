"""Equivariant linear layer on multivector + scalar channels, for any Clifford algebra (GATr blueprint).

Layout: multivectors ``mv (..., C_mv, 2**n)`` (channels, then blades in
:mod:`eqt.primitives.clifford` order), scalars ``s (..., C_s)``. The rep of a layer is
``(mv_channels, s_channels)`` over an algebra and a symmetry group.

``EquiLinear`` mixes channels with one weight per pair of channels and per equivariant basis map
(:func:`eqt.primitives.clifford_basis.equivariant_linear_basis`), adds a bias to the scalar blade
only, and couples the scalar channels with the multivector scalar blade (GATr's ``s2mvs``,
``mvs2s``, ``s2s``). Basis maps are Frobenius-orthonormal, so each scales a unit-variance input by
``1 / dim``; weights are initialised with variance ``dim / (fan_in * k)`` over the ``k`` maps, and
outputs keep roughly the input's scale.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from eqt.primitives.attention import distance_feature_count, multivector_qk_features
from eqt.primitives.clifford import Algebra, geometric_product, join, squared_norm
from eqt.primitives.clifford_basis import equivariant_linear_basis

__all__ = ["EquiLinear", "EquiLayerNorm", "GeometricBilinear", "MultivectorMLP", "MultivectorAttention",
           "scalar_gated_gelu"]


class EquiLinear(nn.Module):
    """Pin- (or E(3)-) equivariant linear map of multivector and scalar channels.

    Args:
        algebra: the Clifford algebra.
        in_mv, out_mv: multivector channels in and out.
        in_s, out_s: scalar channels in and out (0 for none).
        subgroup: ``"pin"`` or ``"euclidean"`` (see :mod:`eqt.primitives.clifford_basis`).
        proper: only rotations/translations (more maps).
        bias: add a learnable bias to the scalar blade and the scalar channels.

    Attributes:
        rep_in, rep_out: ``(mv_channels, s_channels)``.
    """

    def __init__(self, algebra: Algebra, in_mv: int, out_mv: int, in_s: int = 0, out_s: int = 0,
                 subgroup: str = "pin", proper: bool = False, bias: bool = True):
        super().__init__()
        self.algebra = algebra
        self.rep_in, self.rep_out = (in_mv, in_s), (out_mv, out_s)
        self.subgroup, self.proper = subgroup, proper
        k = self._basis(torch.float64, torch.device("cpu")).shape[0]
        # orthonormal maps scale a unit-variance input by 1/dim each: std sqrt(dim / (in * k)) keeps unit variance
        self.weight = nn.Parameter(torch.randn(out_mv, in_mv, k) * math.sqrt(algebra.dim / (max(in_mv, 1) * k)))
        self.bias = nn.Parameter(torch.zeros(out_mv)) if bias and out_mv else None
        self.s2mv = nn.Linear(in_s, out_mv, bias=False) if in_s and out_mv else None
        self.mv2s = nn.Linear(in_mv, out_s, bias=bias) if in_mv and out_s else None
        self.s2s = nn.Linear(in_s, out_s, bias=False) if in_s and out_s else None

    def _basis(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The equivariant maps ``(k, dim, dim)``, computed in float64 and cached per dtype and device."""
        return equivariant_linear_basis(self.algebra, self.subgroup, self.proper, dtype=dtype, device=device)

    def forward(self, mv: Tensor, s: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Apply the layer.

        Args:
            mv: ``(..., in_mv, dim)`` multivectors.
            s: ``(..., in_s)`` scalars, or None when ``in_s == 0``.

        Returns:
            ``(..., out_mv, dim)`` multivectors and ``(..., out_s)`` scalars (None when ``out_s == 0``).
        """
        dim, (in_mv, in_s) = self.algebra.dim, self.rep_in
        if mv.shape[-2:] != (in_mv, dim):
            raise ValueError(f"EquiLinear expects multivectors (..., {in_mv}, {dim}), got {tuple(mv.shape)}")
        if in_s and (s is None or s.shape[-1] != in_s):
            raise ValueError(f"EquiLinear expects scalars (..., {in_s}), got {None if s is None else tuple(s.shape)}")
        # the channel-mixing of every basis map folded into one (out*dim, in*dim) matrix
        w = torch.einsum("oik,kab->oaib", self.weight, self._basis(mv.dtype, mv.device))  # (out, dim, in, dim)
        out = torch.einsum("oaib,...ib->...oa", w, mv)  # (..., out_mv, dim)
        if self.bias is not None or self.s2mv is not None:
            scalar = out[..., 0]
            if self.bias is not None:
                scalar = scalar + self.bias
            if self.s2mv is not None:
                scalar = scalar + self.s2mv(s)
            out = torch.cat([scalar.unsqueeze(-1), out[..., 1:]], dim=-1)
        s_out = None
        if self.rep_out[1]:
            s_out = self.mv2s(mv[..., 0]) if self.mv2s is not None else 0.0
            if self.s2s is not None:
                s_out = s_out + self.s2s(s)
        return out, s_out


class EquiLayerNorm(nn.Module):
    """Equivariant layer norm: divide by the RMS over channels of the multivectors' norms.

    ``mv / sqrt(mean_c ||mv_c||^2 + eps)`` with the absolute per-grade squared norm
    (:func:`eqt.primitives.clifford.squared_norm` with ``absolute=True``), a positive invariant also
    for indefinite metrics (C-GATr). Blades with a null vector do not enter the norm (they are
    invisible to the invariant form), as in GATr. Scalars get an ordinary LayerNorm.

    Args:
        algebra: the Clifford algebra.
        s_channels: scalar channels (0 for none).
        eps: added to the mean squared norm.
    """

    def __init__(self, algebra: Algebra, s_channels: int = 0, eps: float = 1e-6):
        super().__init__()
        self.algebra, self.eps = algebra, eps
        self.s_norm = nn.LayerNorm(s_channels) if s_channels else None

    def forward(self, mv: Tensor, s: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Args: mv ``(..., C, dim)``, s ``(..., C_s)``. Returns: the same shapes."""
        sq = squared_norm(self.algebra, mv, absolute=True)  # (..., C, 1)
        mv = mv / torch.sqrt(sq.mean(dim=-2, keepdim=True) + self.eps)
        return mv, (self.s_norm(s) if self.s_norm is not None else s)


def scalar_gated_gelu(mv: Tensor, s: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """GATr's nonlinearity: each multivector times ``GELU`` of its own scalar blade; scalars get GELU.

    Equivariant because the scalar blade is invariant.

    Args:
        mv: ``(..., C, dim)``; s: ``(..., C_s)`` or None.

    Returns:
        The same shapes.
    """
    gate = nn.functional.gelu(mv[..., :1], approximate="tanh")
    return mv * gate, (nn.functional.gelu(s, approximate="tanh") if s is not None else None)


class GeometricBilinear(nn.Module):
    """GATr's bilinear layer: geometric products (and optionally equivariant joins) of linear images.

    ``out = EquiLinear([gp(L1 x, L2 x) | join(L3 x, L4 x, reference)])`` with ``hidden`` channels per
    product. The join needs a reference multivector (GATr passes the mean of the input) to be
    equivariant under reflections; it is used by P-/iP-GATr (``use_join=True``).

    Args:
        algebra: the Clifford algebra.
        in_mv, out_mv: multivector channels.
        hidden: channels per product (even).
        in_s, out_s: scalar channels.
        use_join: add the join half.
        subgroup, proper: the symmetry group of the linear maps.
    """

    def __init__(self, algebra: Algebra, in_mv: int, out_mv: int, hidden: int, in_s: int = 0, out_s: int = 0,
                 use_join: bool = False, subgroup: str = "pin", proper: bool = False):
        super().__init__()
        self.algebra, self.use_join, self.hidden = algebra, use_join, hidden
        n_in = 4 if use_join else 2
        self.proj = EquiLinear(algebra, in_mv, n_in * hidden, in_s, 0, subgroup, proper)
        self.out = EquiLinear(algebra, (n_in // 2) * hidden, out_mv, in_s, out_s, subgroup, proper)

    def forward(self, mv: Tensor, s: Tensor | None = None, reference: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Args: mv ``(..., C, dim)``, s ``(..., C_s)``, reference ``(..., dim)`` (for the join).

        Returns: ``(..., out_mv, dim)``, ``(..., out_s)``.
        """
        h = self.hidden
        x, _ = self.proj(mv, s)
        parts = [geometric_product(self.algebra, x[..., :h, :], x[..., h:2 * h, :])]
        if self.use_join:
            if reference is None:
                raise ValueError("GeometricBilinear with use_join needs a reference multivector (..., dim)")
            parts.append(join(self.algebra, x[..., 2 * h:3 * h, :], x[..., 3 * h:, :], reference.unsqueeze(-2)))
        return self.out(torch.cat(parts, dim=-2), s)


class MultivectorMLP(nn.Module):
    """GATr's feed-forward: :class:`GeometricBilinear` -> :func:`scalar_gated_gelu` -> :class:`EquiLinear`.

    Args:
        algebra: the Clifford algebra.
        mv_channels, s_channels: channels in and out.
        hidden: channels per bilinear product.
        use_join: add the join half of the bilinear (projective algebras).
        subgroup, proper: the symmetry group of the linear maps.
    """

    def __init__(self, algebra: Algebra, mv_channels: int, s_channels: int, hidden: int, use_join: bool = False,
                 subgroup: str = "pin", proper: bool = False):
        super().__init__()
        self.rep_in = self.rep_out = (mv_channels, s_channels)
        self.bilinear = GeometricBilinear(algebra, mv_channels, mv_channels, hidden, s_channels, s_channels,
                                          use_join=use_join, subgroup=subgroup, proper=proper)
        self.linear = EquiLinear(algebra, mv_channels, mv_channels, s_channels, s_channels, subgroup, proper)

    def forward(self, mv: Tensor, s: Tensor | None = None, reference: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Args: mv ``(..., C, dim)``, s ``(..., C_s)``, reference ``(..., dim)`` (for the join).

        Returns: the same shapes.
        """
        return self.linear(*scalar_gated_gelu(*self.bilinear(mv, s, reference=reference)))


class MultivectorAttention(nn.Module):
    """Multi-head self-attention over tokens of multivector + scalar channels (GATr).

    Queries, keys and values come from one :class:`EquiLinear`. The score of tokens ``i, j`` in a
    head is ``(sum_c <q_ic, k_jc> + q_s . k_s) / sqrt(d)`` with the algebra's invariant inner product
    (:func:`eqt.primitives.attention.multivector_qk_features`; ``d`` counts the features that enter).
    Folding the metric into the queries makes it a plain dot product, so the whole layer is one
    ``scaled_dot_product_attention`` call over flattened features (as GATr does). Conformal points
    score ``-|x - y|^2 / 2`` through the inner product alone (C-GATr). With ``distance=True``
    (projective algebras, iP-GATr) every channel adds ``-w |q_h k_vec - k_h q_vec|^2``, GATr's
    distance-aware term, with learnable positive ``w`` per head and channel (``exp`` of a
    parameter initialised at 0).

    Args:
        algebra: the Clifford algebra.
        mv_channels, s_channels: channels in and out.
        heads: attention heads.
        hidden_mv, hidden_s: multivector / scalar channels per head.
        subgroup, proper: the symmetry group of the linear maps.
        distance: add the distance-aware features (G(n,0,1) only).

    Attributes:
        rep_in, rep_out: ``(mv_channels, s_channels)``.
    """

    def __init__(self, algebra: Algebra, mv_channels: int, s_channels: int, heads: int, hidden_mv: int,
                 hidden_s: int = 0, subgroup: str = "pin", proper: bool = False, distance: bool = False):
        super().__init__()
        self.algebra, self.heads, self.hidden_mv, self.hidden_s = algebra, heads, hidden_mv, hidden_s
        self.rep_in = self.rep_out = (mv_channels, s_channels)
        self.qkv = EquiLinear(algebra, mv_channels, 3 * heads * hidden_mv, s_channels, 3 * heads * hidden_s,
                              subgroup, proper)
        self.out = EquiLinear(algebra, heads * hidden_mv, mv_channels, heads * hidden_s, s_channels, subgroup, proper)
        self.distance = distance
        self.n_features = hidden_mv * distance_feature_count(algebra, distance) + hidden_s  # raises for wrong algebras
        self.log_weights = nn.Parameter(torch.zeros(heads, hidden_mv)) if distance else None

    def forward(self, mv: Tensor, s: Tensor | None = None, attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Attend over the token axis.

        Args:
            mv: ``(..., T, C, dim)`` multivectors of ``T`` tokens.
            s: ``(..., T, C_s)`` scalars.
            attn_mask: optional boolean ``(..., T, T)`` (True = attend), broadcast over heads.

        Returns:
            ``(..., T, C, dim)`` and ``(..., T, C_s)``.
        """
        H, hm, hs, dim = self.heads, self.hidden_mv, self.hidden_s, self.algebra.dim
        x, xs = self.qkv(mv, s)  # (..., T, 3 H hm, dim), (..., T, 3 H hs)
        lead, T = x.shape[:-3], x.shape[-3]
        x = x.reshape(*lead, T, 3, H, hm, dim)
        weights = self.log_weights.exp() if self.distance else None  # (H, hm)
        q, k = multivector_qk_features(self.algebra, x[..., 0, :, :, :], x[..., 1, :, :, :], weights)  # (..., T, H, F)
        v = x[..., 2, :, :, :].flatten(-2)  # (..., T, H, hm*dim)
        if hs:
            xs = xs.reshape(*lead, T, 3, H, hs)
            q, k, v = (torch.cat([a, xs[..., i, :, :]], dim=-1) for i, a in enumerate((q, k, v)))
        q, k, v = (a.transpose(-2, -3) for a in (q, k, v))  # (..., H, T, F)
        mask = attn_mask.unsqueeze(-3) if attn_mask is not None else None
        o = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0 / math.sqrt(self.n_features))
        o = o.transpose(-2, -3)  # (..., T, H, hm*dim + hs)
        o_mv = o[..., : hm * dim].reshape(*lead, T, H * hm, dim)
        o_s = o[..., hm * dim:].reshape(*lead, T, H * hs) if hs else None
        return self.out(o_mv, o_s)
