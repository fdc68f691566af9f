"""Equivariant multi-head attention on scalar + vector atom features (TorchMD-NET ET).

Layout: scalars ``x (N, F)``, vectors ``vec (N, 3, F)`` (rep ``F x 0e + F x 1o``), edges ``j -> i``
with ``edge_index[0] = j`` (source) and ``edge_index[1] = i`` (target), unit vectors
``rhat_ij = (r_j - r_i) / |r_j - r_i|`` (zero on self-loops).

Per head ``h`` (``d = F / H`` channels):

- score ``a_ij = act_attn(sum_c q_i,c k_j,c D^K_ij,c)`` with ``D^K = act(W_dk e(d_ij))``;
- values ``(s1, s2, s3)_ij = split(v_j * D^V_ij)``, ``D^V = act(W_dv e(d_ij))``; eqt stores the
  value projection as three contiguous blocks ``[s1 | s2 | s3]`` of ``F`` channels each (head-major
  inside a block), TorchMD-NET interleaves them per head (``from_torchmdnet`` permutes the rows);
- the cosine cutoff multiplies the values (``vector_cutoff=True``, continuous energy) or only the
  scores (the original ET, discontinuous at the cutoff; kept to load old checkpoints);
- ``y_i = sum_j a_ij s1_ij`` and ``w_i = sum_j vec_j s2_ij + s3_ij rhat_ij``;
- ``(o1, o2, o3) = split(W_o y_i)``, ``dx_i = <U1 vec_i, U2 vec_i> o2 + o3``,
  ``dvec_i = (U3 vec_i) o1 + w_i``.

The layer returns the residual updates ``(dx, dvec)``; the model adds them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from eqt.primitives.activations import activation
from eqt.primitives.attention import edge_attention_weights, is_elementwise
from eqt.primitives.segment import segment_sum

__all__ = ["EquivariantVectorAttention"]

DISTANCE_INFLUENCE = ("keys", "values", "both", "none")


class EquivariantVectorAttention(nn.Module):
    """ET's equivariant attention layer (pre-LayerNorm on scalars; vectors are never normed).

    Args:
        channels: ``F``.
        num_heads: ``H``; must divide ``F``.
        num_rbf: ``K``.
        distance_influence: where the radial filters enter: ``keys``, ``values``, ``both``, ``none``.
        act: activation of the radial filters.
        attn_activation: element-wise normalisation of the scores (``silu`` in ET).
        vector_cutoff: apply the cutoff on the value path (continuous energy) instead of the scores.

    Attributes:
        rep_in, rep_out: ``"Fx0e + Fx1o"`` (as e3nn strings, vectors stored ``(N, 3, F)``).
    """

    def __init__(self, channels: int, num_heads: int, num_rbf: int, distance_influence: str = "both",
                 act: str = "silu", attn_activation: str = "silu", vector_cutoff: bool = True):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        if distance_influence not in DISTANCE_INFLUENCE:
            raise ValueError(f"unknown distance_influence '{distance_influence}'; choose from {DISTANCE_INFLUENCE}")
        self.channels, self.num_heads, self.head_dim = channels, num_heads, channels // num_heads
        self.attn_activation, self.vector_cutoff = attn_activation, vector_cutoff
        self.rep_in = self.rep_out = f"{channels}x0e + {channels}x1o"
        F = channels
        self.layernorm = nn.LayerNorm(F)
        self.qkv_proj = nn.Linear(F, 5 * F)  # q (F) | k (F) | v (3F)
        self.o_proj = nn.Linear(F, 3 * F)
        self.vec_proj = nn.Linear(F, 3 * F, bias=False)
        # radial filters D^K (F, keys) and D^V (3F, values) as one Linear: [D^K | D^V]
        self.filter_sizes = [F] * (distance_influence in ("keys", "both")) + [3 * F] * (distance_influence in ("values", "both"))
        self.filter_proj = nn.Linear(num_rbf, sum(self.filter_sizes)) if self.filter_sizes else None
        self.distance_influence = distance_influence
        self.act = activation(act)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.layernorm.reset_parameters()
        F = self.channels
        for block in self.qkv_proj.weight.split([F, F, 3 * F]):  # Xavier per projection, as in ET
            nn.init.xavier_uniform_(block)
        nn.init.xavier_uniform_(self.o_proj.weight)
        nn.init.zeros_(self.o_proj.bias)
        if self.filter_proj is not None:  # Xavier per filter, as the separate layers of ET
            for block in self.filter_proj.weight.split(self.filter_sizes):
                nn.init.xavier_uniform_(block)
            nn.init.zeros_(self.filter_proj.bias)
        nn.init.zeros_(self.qkv_proj.bias)
        nn.init.xavier_uniform_(self.vec_proj.weight)

    @staticmethod
    def _inplace() -> bool:
        """In-place updates of temporaries are only safe when no graph is recorded."""
        return not torch.is_grad_enabled()

    def _act(self, x: Tensor) -> Tensor:
        if self._inplace() and isinstance(self.act, nn.SiLU):
            return nn.functional.silu(x, inplace=True)
        return self.act(x)

    def _filters(self, rbf: Tensor, values: tuple[bool, bool, bool] = (True, True, True)) -> list[Tensor | None]:
        """Radial filters ``[D^K, D^V_1, D^V_2, D^V_3]``, each ``(E, F)`` (``None`` where the layer
        has no such filter or ``values`` says the block is not needed).

        One matmul and one activation per block, not one of ``(E, 4F)`` split afterwards: on edge
        tensors the split's backward (a concatenation, zeros for unused blocks) costs as much as
        the activation.
        """
        out: list[Tensor | None] = [None, None, None, None]
        if self.filter_proj is None:
            return out
        F = self.channels
        blocks = ([0] if self.distance_influence in ("keys", "both") else []) + (
            [1 + i for i in range(3) if values[i]] if self.distance_influence in ("values", "both") else [])
        w, b = self.filter_proj.weight, self.filter_proj.bias
        offset = 0 if self.distance_influence in ("keys", "both") else -F  # row offset of D^V_1 is F
        for blk in blocks:
            rows = slice(blk * F + offset, (blk + 1) * F + offset)
            out[blk] = self._act(nn.functional.linear(rbf, w[rows], b[rows]))
        return out

    def forward(self, x: Tensor, vec: Tensor | None, edge_index: Tensor, rbf: Tensor, cutoff: Tensor,
                rhat: Tensor, self_rbf: Tensor | None = None, self_cutoff: float = 1.0) -> tuple[Tensor, Tensor]:
        """Residual updates of the scalar and vector features.

        Args:
            x: ``(N, F)`` scalars.
            vec: ``(N, 3, F)`` vectors, or ``None`` when they are all zero (ET's first layer), which
                skips the terms that vanish.
            edge_index: ``(2, E)`` edges ``j -> i``.
            rbf: ``(E, K)`` radial basis.
            cutoff: ``(E,)`` cosine cutoff ``phi(d_ij)``.
            rhat: ``(E, 3)`` unit edge vectors.
            self_rbf: ``(K,)`` radial basis at ``d = 0``: when given, every atom also attends to
                itself (ET's self-loops, ``rhat = 0``), computed per atom instead of as ``N`` more
                edges. Needs an element-wise ``attn_activation``.
            self_cutoff: the cutoff at ``d = 0``.

        Returns:
            ``dx (N, F)``, ``dvec (N, 3, F)``.
        """
        N, F, H, d = x.shape[0], self.channels, self.num_heads, self.head_dim
        src, dst = edge_index[0], edge_index[1]
        q, k, v = self.qkv_proj(self.layernorm(x)).split([F, F, 3 * F], dim=-1)  # v = [s1 | s2 | s3] (N, 3F)
        v1, v2, v3 = v.split(F, dim=-1)  # (N, F) each
        need = (True, vec is not None, True)  # s2 multiplies vec_j: not needed while vec is zero
        dk, dv1, dv2, dv3 = self._filters(rbf, need)
        inplace = self._inplace()

        def mul(a: Tensor, b: Tensor | None) -> Tensor:  # a * b on a fresh edge temporary
            if b is None:
                return a
            return a.mul_(b) if inplace else a * b

        # edge scores (E, H)
        qk = mul(q.index_select(0, dst) * k.index_select(0, src), dk)  # (E, F)
        attn = edge_attention_weights(qk.view(-1, H, d).sum(-1), dst, N, self.attn_activation)  # (E, H)

        # values s_b = v_b[j] * D^V_b (E, F), gathered per block (no edge-level split); the cutoff
        # multiplies all three (vector_cutoff) or only the scores: it is folded into the smallest
        # factor of each product (scores, s2, rhat), same result.
        c = cutoff.unsqueeze(-1)  # (E, 1)
        attn = attn * c
        s1 = mul(v1.index_select(0, src), dv1)
        y = segment_sum((s1.view(-1, H, d) * attn.unsqueeze(-1)).view(-1, F), dst, N)  # (N, F)
        r = rhat * c if self.vector_cutoff else rhat  # (E, 3)
        msg = r.unsqueeze(-1) * mul(v3.index_select(0, src), dv3).unsqueeze(1)  # (E, 3, F)
        if vec is not None:
            s2 = mul(v2.index_select(0, src), dv2)
            s2 = s2 * c if self.vector_cutoff else s2
            msg = msg.addcmul_(vec.index_select(0, src), s2.unsqueeze(1))  # in place on a fresh temporary
        w = segment_sum(msg, dst, N)  # (N, 3, F)

        if self_rbf is not None:  # self-loops: d = 0, rhat = 0, per atom
            if not is_elementwise(self.attn_activation):
                raise ValueError("dense self-loops need an element-wise attention activation, not softmax")
            dk0, dv1_0, dv2_0, _ = self._filters(self_rbf.unsqueeze(0), (True, vec is not None, False))  # (1, F)
            qk0 = q * k if dk0 is None else q * k * dk0
            loops = torch.arange(N, device=x.device)  # each atom is its own target
            a0 = edge_attention_weights(qk0.view(N, H, d).sum(-1), loops, N, self.attn_activation) * self_cutoff
            s1_0 = v1 if dv1_0 is None else v1 * dv1_0
            y = y + (s1_0.view(N, H, d) * a0.unsqueeze(-1)).view(N, F)
            if vec is not None:
                s2_0 = v2 if dv2_0 is None else v2 * dv2_0
                s2_0 = s2_0 * self_cutoff if self.vector_cutoff else s2_0
                w = w.addcmul_(vec, s2_0.unsqueeze(1))

        o1, o2, o3 = self.o_proj(y).split(F, dim=-1)
        if vec is None:  # U1 vec = U2 vec = U3 vec = 0
            return o3, w
        u1, u2, u3 = self.vec_proj(vec).split(F, dim=-1)  # (N, 3, F) each
        dx = (u1 * u2).sum(dim=1) * o2 + o3
        dvec = w.addcmul_(u3, o1.unsqueeze(1))
        return dx, dvec
