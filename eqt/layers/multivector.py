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

import functools
import math

import torch
from torch import Tensor, nn

from eqt.primitives.attention import distance_feature_count, distance_features, qk_blades
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

    def dense_weight(self, dtype: torch.dtype | None = None,
                     device: torch.device | None = None) -> tuple[Tensor, Tensor | None]:
        """The whole layer as one affine map of the flattened channels.

        Inputs are ``[mv.flatten(-2), s]`` (``in_mv * dim + in_s`` features), outputs
        ``[mv_out.flatten(-2), s_out]``; the basis maps, ``s2mv``, ``mv2s`` and ``s2s`` are folded into
        one matrix (cheap: its size does not depend on the batch), so that :meth:`forward` is one GEMM
        (:func:`_affine` of :meth:`input_parts`).

        Args:
            dtype, device: of the basis maps (default: the weight's).

        Returns:
            ``weight (out_mv * dim + out_s', in_mv * dim + in_s)`` and ``bias`` of the rows (or None),
            where ``out_s' = out_s`` if the layer computes scalars (it has ``mv2s`` or ``s2s``), else 0.
        """
        dtype, device = dtype or self.weight.dtype, device or self.weight.device
        dim, (in_mv, in_s), (out_mv, out_s) = self.algebra.dim, self.rep_in, self.rep_out
        w = torch.einsum("oik,kab->oaib", self.weight, self._basis(dtype, device)).reshape(out_mv * dim, in_mv * dim)
        e0 = _scalar_blade(dim, dtype, device)  # the scalar blade, where s2mv writes and mv2s reads
        if in_s:
            s2mv = (self.s2mv.weight[:, None, :] * e0[:, None]).reshape(out_mv * dim, in_s) if self.s2mv is not None \
                else w.new_zeros(out_mv * dim, in_s)
            w = torch.cat([w, s2mv], dim=1)
        bias = (self.bias[:, None] * e0).reshape(out_mv * dim) if self.bias is not None else None
        if out_s and (self.mv2s is not None or self.s2s is not None):
            mv2s = (self.mv2s.weight[:, :, None] * e0).reshape(out_s, in_mv * dim) if self.mv2s is not None \
                else w.new_zeros(out_s, in_mv * dim)
            rows = [mv2s] + ([self.s2s.weight if self.s2s is not None else w.new_zeros(out_s, in_s)] if in_s else [])
            w = torch.cat([w, torch.cat(rows, dim=1)], dim=0)
            s_bias = self.mv2s.bias if self.mv2s is not None else None
            if bias is not None or s_bias is not None:
                bias = torch.cat([bias if bias is not None else w.new_zeros(out_mv * dim),
                                  s_bias if s_bias is not None else w.new_zeros(out_s)])
        return w, bias

    def forward(self, mv: Tensor, s: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Apply the layer.

        Args:
            mv: ``(..., in_mv, dim)`` multivectors.
            s: ``(..., in_s)`` scalars, or None when ``in_s == 0``.

        Returns:
            ``(..., out_mv, dim)`` multivectors and ``(..., out_s)`` scalars (None when ``out_s == 0``).
        """
        return self.split_output(_affine(self.input_parts(mv, s), *self.dense_weight()))  # one GEMM for all four maps

    def input_parts(self, mv: Tensor, s: Tensor | None = None) -> list[Tensor]:
        """Check the inputs and flatten them to the columns of :meth:`dense_weight`.

        Returns:
            ``[(..., in_mv * dim), (..., in_s)]`` (the scalars only when ``in_s > 0``), of one leading shape.
        """
        dim, (in_mv, in_s) = self.algebra.dim, self.rep_in
        if mv.shape[-2:] != (in_mv, dim):
            raise ValueError(f"EquiLinear expects multivectors (..., {in_mv}, {dim}), got {tuple(mv.shape)}")
        if in_s and (s is None or s.shape[-1] != in_s):
            raise ValueError(f"EquiLinear expects scalars (..., {in_s}), got {None if s is None else tuple(s.shape)}")
        x = mv.flatten(-2)
        if not in_s:
            return [x]
        lead = torch.broadcast_shapes(x.shape[:-1], s.shape[:-1])
        return [x.expand(*lead, -1), s.expand(*lead, -1)]

    def split_output(self, y: Tensor) -> tuple[Tensor, Tensor | None]:
        """Views of the rows of :meth:`dense_weight` as ``(..., out_mv, dim)`` and ``(..., out_s)`` (or None)."""
        (out_mv, out_s), n_mv = self.rep_out, self.rep_out[0] * self.algebra.dim
        if y.shape[-1] == n_mv:
            return y.unflatten(-1, (out_mv, self.algebra.dim)), (0.0 if out_s else None)
        mv, s = y.split([n_mv, out_s], dim=-1)  # split, not slicing: its backward is one cat of the gradients
        return mv.unflatten(-1, (out_mv, self.algebra.dim)), s


def _affine(parts: list[Tensor], weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``cat(parts, -1) @ weight.T + bias`` of ``parts (..., K_i)``, ``weight (N, sum K_i)``, ``bias (N,)``."""
    return nn.functional.linear(parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1), weight, bias)


@functools.lru_cache(maxsize=None)
def _scalar_blade(dim: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(dim,)`` one-hot of the scalar blade."""
    return torch.nn.functional.one_hot(torch.tensor(0), dim).to(dtype=dtype, device=device)


class EquiLayerNorm(nn.Module):
    """Equivariant layer norm: divide by the RMS over channels of the multivectors' norms.

    ``mv / sqrt(mean_c ||mv_c||^2 + eps)`` with the absolute per-grade squared norm
    (:func:`eqt.primitives.clifford.squared_norm` with ``absolute=True``), a positive invariant also
    for indefinite metrics (C-GATr). Blades with a null vector do not enter the norm (they are
    invisible to the invariant form), as in GATr. Scalars get an ordinary LayerNorm.

    Args:
        algebra: the Clifford algebra.
        s_channels: scalar channels (0 for none).
        eps: added to the mean squared norm (or, with ``clamp``, its lower bound).
        clamp: divide by ``sqrt(max(mean_c ||mv_c||^2, eps))`` instead, as the reference GATr does
            (its ``equi_layer_norm``, with ``eps=0.01``).
    """

    def __init__(self, algebra: Algebra, s_channels: int = 0, eps: float = 1e-6, clamp: bool = False):
        super().__init__()
        self.algebra, self.eps, self.clamp = algebra, eps, clamp
        self.s_norm = nn.LayerNorm(s_channels) if s_channels else None

    def forward(self, mv: Tensor, s: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Args: mv ``(..., C, dim)``, s ``(..., C_s)``. Returns: the same shapes."""
        sq = squared_norm(self.algebra, mv, absolute=True).mean(dim=-2, keepdim=True)  # (..., 1, 1)
        mv = mv / torch.sqrt(sq.clamp(min=self.eps) if self.clamp else sq + self.eps)
        return mv, (self.s_norm(s) if self.s_norm is not None else s)


def scalar_gated_gelu(mv: Tensor, s: Tensor | None = None,
                      scalar_approximate: str = "tanh") -> tuple[Tensor, Tensor | None]:
    """GATr's nonlinearity: each multivector times ``GELU`` of its own scalar blade; scalars get GELU.

    Equivariant because the scalar blade is invariant. The gate is the tanh GELU (as GATr).

    Args:
        mv: ``(..., C, dim)``; s: ``(..., C_s)`` or None.
        scalar_approximate: GELU of the scalar channels: ``"tanh"`` (default) or ``"none"`` (the exact
            erf GELU, which the reference GATr applies to its scalar channels).

    Returns:
        The same shapes.
    """
    gate = nn.functional.gelu(mv[..., :1], approximate="tanh")
    return mv * gate, (nn.functional.gelu(s, approximate=scalar_approximate) if s is not None else None)


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
        if self.use_join and reference is None:
            raise ValueError("GeometricBilinear with use_join needs a reference multivector (..., dim)")
        x = self.proj(mv, s)[0].split(h, dim=-2)  # split, not slicing: its backward is one cat of the gradients
        parts = [geometric_product(self.algebra, x[0], x[1])]
        if self.use_join:
            parts.append(join(self.algebra, x[2], x[3], reference.unsqueeze(-2)))
        return self.out(torch.cat(parts, dim=-2), s)


class MultivectorMLP(nn.Module):
    """GATr's feed-forward: :class:`GeometricBilinear` -> :func:`scalar_gated_gelu` -> :class:`EquiLinear`.

    Args:
        algebra: the Clifford algebra.
        mv_channels, s_channels: channels in and out.
        hidden: channels per bilinear product.
        use_join: add the join half of the bilinear (projective algebras).
        subgroup, proper: the symmetry group of the linear maps.
        mid_mv, mid_s: channels between the bilinear and the last linear map (default: ``mv_channels``,
            ``s_channels``; the reference GATr block uses twice those).
        scalar_gelu: GELU of the scalar channels, ``"tanh"`` or ``"none"`` (exact; the reference's).
    """

    def __init__(self, algebra: Algebra, mv_channels: int, s_channels: int, hidden: int, use_join: bool = False,
                 subgroup: str = "pin", proper: bool = False, mid_mv: int | None = None, mid_s: int | None = None,
                 scalar_gelu: str = "tanh"):
        super().__init__()
        self.rep_in = self.rep_out = (mv_channels, s_channels)
        mid_mv = mv_channels if mid_mv is None else mid_mv
        mid_s = s_channels if mid_s is None else mid_s
        self.scalar_gelu = scalar_gelu
        self.bilinear = GeometricBilinear(algebra, mv_channels, mid_mv, hidden, s_channels, mid_s,
                                          use_join=use_join, subgroup=subgroup, proper=proper)
        self.linear = EquiLinear(algebra, mid_mv, mv_channels, mid_s, s_channels, subgroup, proper)

    def forward(self, mv: Tensor, s: Tensor | None = None, reference: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Args: mv ``(..., C, dim)``, s ``(..., C_s)``, reference ``(..., dim)`` (for the join).

        Returns: the same shapes.
        """
        return self.linear(*scalar_gated_gelu(*self.bilinear(mv, s, reference=reference),
                                              scalar_approximate=self.scalar_gelu))


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
        rows, signs, cols = _attention_layout(algebra, distance, heads, hidden_mv, hidden_s)
        self.register_buffer("_qkv_rows", torch.tensor(rows), persistent=False)
        self.register_buffer("_qkv_signs", torch.tensor(signs), persistent=False)
        self.register_buffer("_out_cols", torch.tensor(cols), persistent=False)

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
        ip, _, tri = qk_blades(self.algebra, self.distance)
        n_ip, n_tri = len(ip), len(tri)
        # the qkv layer restricted to the rows that enter attention, reordered per head (see _attention_layout)
        w, b = self.qkv.dense_weight()
        w = w[self._qkv_rows] * self._qkv_signs[:, None]
        b = b[self._qkv_rows] * self._qkv_signs if b is not None else None
        y = _affine(self.qkv.input_parts(mv, s), w, b)  # (..., T, rows)
        f_qk, f_v = hm * n_ip + hs, hm * dim + hs

        widths = [H * f_qk, H * f_qk, H * f_v] + ([H * hm * n_tri] * 2 if self.distance else [])
        parts = y.split(widths, dim=-1)  # split, not slicing: its backward is one cat of the gradients
        # (..., T, H * width) -> (..., H, T, width)
        q, k, v = (part.unflatten(-1, (H, -1)).transpose(-2, -3) for part in parts[:3])
        if self.distance:
            qt, kt = (part.unflatten(-1, (H, hm, n_tri)).transpose(-3, -4) for part in parts[3:])
            qd, kd = distance_features(qt, kt, self.log_weights.exp()[:, None, :])  # (..., H, T, hm, n_tri + 1)
            q, k = torch.cat([q, qd.flatten(-2)], dim=-1), torch.cat([k, kd.flatten(-2)], dim=-1)
        mask = attn_mask.unsqueeze(-3) if attn_mask is not None else None
        o = nn.functional.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous(), attn_mask=mask,
                                                       scale=1.0 / math.sqrt(self.n_features))
        w, b = self.out.dense_weight()
        return self.out.split_output(_affine([o.transpose(-2, -3).flatten(-2)], w[:, self._out_cols], b))


@functools.lru_cache(maxsize=None)
def _attention_layout(alg: Algebra, distance: bool, heads: int, hidden_mv: int,
                      hidden_s: int) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
    """Rows of the qkv layer's :meth:`EquiLinear.dense_weight` in the order attention reads them, and the
    out layer's columns in the order attention writes them.

    The qkv rows are ordered ``(3, heads, hidden_mv, dim)`` multivector rows, then ``(3, heads, hidden_s)``
    scalar rows. Attention reads, per head, ``[query inner-product blades (signed), query scalars]``,
    the same for the keys, ``[all value blades, value scalars]``, and last the grade-n blades of queries
    and keys (distance features). Selecting rows of the weight (not columns of the output) makes the
    GEMM write the features in place. The out layer's input columns ``(heads, hidden_mv, dim)``, then
    ``(heads, hidden_s)``, are read per head as ``[blades, scalars]``.

    Returns:
        ``(rows, signs, out_cols)``.
    """
    H, hm, hs, dim = heads, hidden_mv, hidden_s, alg.dim
    ip, signs, tri = qk_blades(alg, distance)

    def mv_row(t: int, h: int, c: int, a: int) -> int:
        return ((t * H + h) * hm + c) * dim + a

    def s_row(t: int, h: int, j: int) -> int:
        return 3 * H * hm * dim + (t * H + h) * hs + j

    rows, scale = [], []
    for t in (0, 1):
        for h in range(H):
            rows += [mv_row(t, h, c, a) for c in range(hm) for a in ip] + [s_row(t, h, j) for j in range(hs)]
            scale += (list(signs) if t == 0 else [1.0] * len(ip)) * hm + [1.0] * hs
    for h in range(H):
        rows += [mv_row(2, h, c, a) for c in range(hm) for a in range(dim)] + [s_row(2, h, j) for j in range(hs)]
        scale += [1.0] * (hm * dim + hs)
    for t in (0, 1):
        rows += [mv_row(t, h, c, a) for h in range(H) for c in range(hm) for a in tri]
        scale += [1.0] * (H * hm * len(tri))
    cols = [col for h in range(H) for col in [(h * hm + c) * dim + a for c in range(hm) for a in range(dim)]
            + [H * hm * dim + h * hs + j for j in range(hs)]]
    return tuple(rows), tuple(scale), tuple(cols)
