"""Layers on O(3)-irreps features in e3nn layout (Equiformer's building blocks, reusable by any model).

Features are ``(N, irreps.dim)`` tensors in e3nn order (see :mod:`eqt.primitives.irreps`); every
layer has ``rep_in`` / ``rep_out`` (``e3nn.o3.Irreps``), and the layers that read edge spherical
harmonics also ``rep_sh``. Parity follows the labels: the same code is O(3)-equivariant with
``1o`` vectors and only SE(3)-equivariant if polar vectors are labelled ``1e`` (Equiformer's
reference).

Normalisation follows Equiformer (``atomicarchitects/equiformer``): linear maps are initialised
with ``N(0, 1/fan_in)`` weights and zero biases on ``0e`` outputs only (``LinearRS``); tensor
products use component-normalised Clebsch-Gordan coefficients without path normalisation
(``TensorProductRescale``); activations are scaled to unit second moment (e3nn ``normalize2mom``).

Layers: :class:`IrrepsLinear`, :class:`RadialMLP`, :class:`EquivariantLayerNorm`, :class:`Gate`,
:class:`DepthwiseTensorProduct`, :class:`EquivariantFFN`, :class:`EdgeDegreeEmbedding`,
:class:`EquivariantGraphAttention`, :class:`EquiformerBlock`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from e3nn import o3
from torch import Tensor, nn

from eqt.primitives.irreps import (
    clebsch_gordan,
    divide_irreps,
    head_permutation,
    scalar_mul,
    second_moment_constant,
    smooth_leaky_relu,
    sort_even_first,
)
from eqt.primitives.segment import segment_softmax, segment_sum

__all__ = [
    "IrrepsLinear",
    "RadialMLP",
    "EquivariantLayerNorm",
    "Gate",
    "DepthwiseTensorProduct",
    "EquivariantFFN",
    "EdgeDegreeEmbedding",
    "EquivariantGraphAttention",
    "EquiformerBlock",
]

_SCALAR = o3.Irrep(0, 1)
_C_SILU = second_moment_constant(F.silu)
_C_SIGMOID = second_moment_constant(torch.sigmoid)
_C_SLRELU = second_moment_constant(smooth_leaky_relu)


class IrrepsLinear(nn.Module):
    """Equivariant linear map: channel mixing within each irrep type, bias on ``0e`` outputs only.

    ``y_(w, ir) = sum_(u over inputs of type ir) W[u, w] x_(u, ir) (+ b_w if ir == 0e)``.
    Weights start ``N(0, 1/fan_in)`` (fan-in: the input channels of the output's irrep type),
    biases at zero (Equiformer's ``LinearRS``). Output irreps without a matching input are zero.

    Args:
        irreps_in: input irreps.
        irreps_out: output irreps.
        bias: learn a bias on the ``0e`` outputs.

    Shapes: ``(..., rep_in.dim) -> (..., rep_out.dim)``.
    """

    def __init__(self, irreps_in: str | o3.Irreps, irreps_out: str | o3.Irreps, bias: bool = True):
        super().__init__()
        self.rep_in, self.rep_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        # per output slot: (mul_out, d, [(input slot, weight offset, mul_in)], bias offset or -1)
        self._plan: list[tuple[int, int, list[tuple[int, int, int]], int]] = []
        offset, b_offset, w_init = 0, 0, []
        for mul_out, ir_out in self.rep_out:
            ins = [(i, mul_in) for i, (mul_in, ir_in) in enumerate(self.rep_in) if ir_in == ir_out]
            fan_in = sum(m for _, m in ins)
            paths = []
            for i, mul_in in ins:
                paths.append((i, offset, mul_in))
                w_init.append(torch.randn(mul_in * mul_out) / math.sqrt(fan_in))
                offset += mul_in * mul_out
            has_bias = bias and ir_out == _SCALAR
            self._plan.append((mul_out, ir_out.dim, paths, b_offset if has_bias else -1))
            b_offset += mul_out if has_bias else 0
        self.weight = nn.Parameter(torch.cat(w_init) if w_init else torch.zeros(0))
        self.bias = nn.Parameter(torch.zeros(b_offset)) if b_offset else None

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(..., rep_in.dim)``. Returns: ``(..., rep_out.dim)``."""
        lead = x.shape[:-1]
        x = x.reshape(-1, self.rep_in.dim)
        parts = x.split([mul * ir.dim for mul, ir in self.rep_in], dim=-1)  # split: cheap backward (no zero fills)
        blocks = [b.reshape(-1, mul, ir.dim) for b, (mul, ir) in zip(parts, self.rep_in)]
        outs = []
        for mul_out, d, paths, b in self._plan:
            y = None
            for i, off, mul_in in paths:
                w = self.weight[off:off + mul_in * mul_out].view(mul_in, mul_out)
                term = torch.einsum("nud,uw->nwd", blocks[i], w)  # (n, mul_out, d)
                y = term if y is None else y + term
            if y is None:
                y = x.new_zeros(x.shape[0], mul_out, d)
            if b >= 0:
                y = y + self.bias[b:b + mul_out].view(1, mul_out, 1)
            outs.append(y.reshape(-1, mul_out * d))
        return torch.cat(outs, dim=-1).reshape(*lead, self.rep_out.dim)


class RadialMLP(nn.Module):
    """Invariant MLP of edge features (Equiformer's ``RadialProfile``), e.g. radial basis -> TP weights.

    ``[Linear -> LayerNorm -> SiLU] * (len(channels) - 2)``, then a bias-free ``Linear`` plus a
    learnable ``offset``. Hidden biases start at zero, the offset ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Args:
        channels: ``(in, hidden..., out)``, e.g. ``(32, 64, 64, weight_numel)``.

    Shapes: ``(..., channels[0]) -> (..., channels[-1])``; ``rep_in``/``rep_out`` are ``Cx0e``.
    """

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 2:
            raise ValueError(f"RadialMLP needs at least (in, out) channels, got {channels}")
        self.rep_in, self.rep_out = o3.Irreps(f"{channels[0]}x0e"), o3.Irreps(f"{channels[-1]}x0e")
        layers: list[nn.Module] = []
        for a, b in zip(channels[:-2], channels[1:-1]):
            lin = nn.Linear(a, b)
            nn.init.zeros_(lin.bias)
            layers += [lin, nn.LayerNorm(b), nn.SiLU()]
        layers.append(nn.Linear(channels[-2], channels[-1], bias=False))
        self.net = nn.Sequential(*layers)
        bound = 1.0 / math.sqrt(channels[-2])
        self.offset = nn.Parameter(torch.empty(channels[-1]).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(..., in)``. Returns: ``(..., out)``."""
        return self.net(x) + self.offset


class EquivariantLayerNorm(nn.Module):
    """Layer norm per irrep type (Equiformer's ``EquivariantLayerNormV2``, ``'component'``).

    For each slot ``(mul, ir)``: ``0e`` channels are centred over the slot; every slot is divided by
    ``sqrt(mean_(channels, components) x^2 + eps)`` and multiplied by a per-channel weight; ``0e``
    channels get a bias. Norms of odd or higher-``l`` irreps are never centred or shifted, so the
    map is O(3)-equivariant.

    Args:
        irreps: feature irreps.
        eps: added to the mean square.
        affine: learn the weight and bias.

    Shapes: ``(..., irreps.dim) -> (..., irreps.dim)``.
    """

    def __init__(self, irreps: str | o3.Irreps, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.rep_in = self.rep_out = o3.Irreps(irreps)
        self.eps = eps
        n_scalar = scalar_mul(self.rep_in)
        self.weight = nn.Parameter(torch.ones(self.rep_in.num_irreps)) if affine else None
        self.bias = nn.Parameter(torch.zeros(n_scalar)) if affine and n_scalar else None

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(..., irreps.dim)``. Returns: same shape."""
        lead = x.shape[:-1]
        x = x.reshape(-1, self.rep_in.dim)
        out, iw, ib = [], 0, 0
        for (mul, ir), f in zip(self.rep_in, x.split([mul * ir.dim for mul, ir in self.rep_in], dim=-1)):
            f = f.reshape(-1, mul, ir.dim)
            scalar = ir == _SCALAR
            if scalar:
                f = f - f.mean(dim=1, keepdim=True)
            scale = torch.rsqrt(f.pow(2).mean(dim=(1, 2), keepdim=True) + self.eps)  # (n, 1, 1)
            if self.weight is not None:
                scale = scale * self.weight[iw:iw + mul].view(1, mul, 1)
            f = f * scale
            if scalar and self.bias is not None:
                f = f + self.bias[ib:ib + mul].view(1, mul, 1)
            iw += mul
            ib += mul if scalar else 0
            out.append(f.reshape(-1, mul * ir.dim))
        return torch.cat(out, dim=-1).reshape(*lead, self.rep_in.dim)


class Gate(nn.Module):
    """Gated non-linearity: SiLU on the ``0e`` scalars, sigmoid gates multiplying every other irrep.

    Built from the wanted output irreps: ``rep_out = scalars + gated`` (the ``0e`` slots first, then
    the others in order) and ``rep_in = (scalars + gates + gated).simplify()`` with one ``0e`` gate
    per gated irrep. Both activations are scaled to unit second moment (e3nn's ``Gate``).
    Without gated irreps this is the normalised SiLU.

    Args:
        irreps_out: the irreps after the gate.

    Shapes: ``(..., rep_in.dim) -> (..., rep_out.dim)``.
    """

    def __init__(self, irreps_out: str | o3.Irreps):
        super().__init__()
        irreps_out = o3.Irreps(irreps_out)
        scalars = o3.Irreps([(m, ir) for m, ir in irreps_out if ir == _SCALAR]).simplify()
        gated = o3.Irreps([(m, ir) for m, ir in irreps_out if ir != _SCALAR]).simplify()
        self.n_scalars, self.n_gates = scalars.dim, gated.num_irreps
        gates = o3.Irreps(f"{self.n_gates}x0e") if self.n_gates else o3.Irreps("")
        self.rep_in = (scalars + gates + gated).simplify()
        self.rep_out = scalars + gated
        index: list[int] = []  # gate k multiplies the k-th gated irrep (all its 2l+1 components)
        k = 0
        for mul, ir in gated:
            for _ in range(mul):
                index += [k] * ir.dim
                k += 1
        self.register_buffer("gate_index", torch.tensor(index, dtype=torch.long), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(..., rep_in.dim)``. Returns: ``(..., rep_out.dim)``."""
        if not self.n_gates:
            return F.silu(x) * _C_SILU
        s, g, v = x.split([self.n_scalars, self.n_gates, x.shape[-1] - self.n_scalars - self.n_gates], dim=-1)
        s = F.silu(s) * _C_SILU
        v = v * (torch.sigmoid(g) * _C_SIGMOID).index_select(-1, self.gate_index)
        return torch.cat([s, v], dim=-1)


class _ExactTables(nn.Module):
    """Constant float64 tables kept as non-persistent buffers that follow the module's dtype.

    ``module.double()`` after construction in float32 would otherwise keep float32-rounded
    coefficients (equivariance only to ~1e-7); here each dtype change re-derives the buffer from
    its float64 master.
    """

    def __init__(self):
        super().__init__()
        self._masters: dict[str, Tensor] = {}

    def _register_table(self, name: str, table: Tensor) -> None:
        self._masters[name] = table
        self.register_buffer(name, table.to(torch.get_default_dtype()), persistent=False)

    def _apply(self, fn, recurse=True):  # noqa: D102 - nn.Module hook
        super()._apply(fn, recurse)
        for name, master in self._masters.items():
            buf = self._buffers[name]
            self._buffers[name] = master.to(device=buf.device, dtype=buf.dtype)
        return self


class DepthwiseTensorProduct(_ExactTables):
    """Channel-wise ('uvu') tensor product of node features with edge spherical harmonics.

    One path per (input slot ``(mul, l1)``, harmonic ``l2``, output ``l3 in l1 x l2``) whose
    output irrep is in ``irreps_target`` or is ``0e``; each path keeps the ``mul`` channels and has
    one weight per channel, per edge (from a :class:`RadialMLP`) or shared (``internal_weights``).
    Outputs are sorted even-first (Equiformer's ``DepthwiseTensorProduct``) and ``rep_out`` is the
    simplified result. Coefficients are component-normalised Clebsch-Gordan tables without path
    normalisation; Equiformer's ``1/sqrt(fan_in)`` rescale is 1 for these paths (one path per
    output slot, one harmonic channel), so there is nothing to rescale.

    Per input slot the harmonics are first contracted with the stacked tables of all its paths,
    ``S = Y @ C`` ``(E, 2l1+1, P)``, then one batched matmul ``x (E, mul, 2l1+1) @ S`` gives every
    path of the slot at once. Weights use e3nn's ``TensorProduct`` layout (path-major, channel-minor,
    paths in construction order), so the results equal e3nn's ``'uvu'`` instructions.

    Args:
        irreps_in: node feature irreps.
        irreps_sh: spherical-harmonic irreps (multiplicity 1 each), e.g. ``0e+1o+2e``.
        irreps_target: output irreps to keep (``0e`` is always kept).
        internal_weights: learn one shared weight vector (``N(0, 1)`` init) instead of taking
            per-edge weights.

    Shapes: ``x (E, rep_in.dim)``, ``sh (E, rep_sh.dim)``, ``weight (E, weight_numel)`` ->
    ``(E, rep_out.dim)``.
    """

    def __init__(self, irreps_in: str | o3.Irreps, irreps_sh: str | o3.Irreps, irreps_target: str | o3.Irreps,
                 internal_weights: bool = False):
        super().__init__()
        self.rep_in, self.rep_sh, target = o3.Irreps(irreps_in), o3.Irreps(irreps_sh), o3.Irreps(irreps_target)
        if any(mul != 1 for mul, _ in self.rep_sh):
            raise ValueError(f"spherical harmonics must have multiplicity 1, got {self.rep_sh}")
        paths = [(i, j, ir_out) for i, (_, ir_in) in enumerate(self.rep_in) for j, (_, ir_sh) in enumerate(self.rep_sh)
                 for ir_out in ir_in * ir_sh if ir_out in target or ir_out == _SCALAR]
        self.paths = [(i, j, str(ir)) for i, j, ir in paths]
        out_sorted, perm = sort_even_first(o3.Irreps([(self.rep_in[i].mul, ir) for i, _, ir in paths]))
        self.irreps_paths = out_sorted  # unsimplified: one slot per path
        self.rep_out = out_sorted.simplify()
        self.weight_numel = sum(self.rep_in[i].mul for i, _, _ in paths)
        sh_slices = self.rep_sh.slices()
        # per input slot with paths: (slot, mul, d_in, P columns, weight offset, n paths, path output dims)
        self._groups: list[tuple[int, int, int, int, int, int, list[int]]] = []
        pieces: list[tuple[int, int, int, int] | None] = [None] * len(paths)  # (group, path in group, mul, d_out)
        w_off = 0
        for i, (mul, ir_in) in enumerate(self.rep_in):
            mine = [p for p, (pi, _, _) in enumerate(paths) if pi == i]
            if not mine:
                continue
            width = sum(paths[p][2].dim for p in mine)
            table = torch.zeros(self.rep_sh.dim, ir_in.dim, width, dtype=torch.float64)
            col_path, col = [], 0
            for k, p in enumerate(mine):
                _, j, ir_out = paths[p]
                cg = clebsch_gordan(ir_in.l, self.rep_sh[j].ir.l, ir_out.l)  # (d_in, d_sh, d_out)
                table[sh_slices[j], :, col:col + ir_out.dim] = cg.permute(1, 0, 2)
                pieces[perm[p]] = (len(self._groups), k, mul, ir_out.dim)
                col_path += [k] * ir_out.dim
                col += ir_out.dim
            g = len(self._groups)
            self._register_table(f"cg_{g}", table.reshape(self.rep_sh.dim, ir_in.dim * width))
            self.register_buffer(f"col_path_{g}", torch.tensor(col_path, dtype=torch.long), persistent=False)
            self._groups.append((i, mul, ir_in.dim, width, w_off, len(mine), [paths[p][2].dim for p in mine]))
            w_off += len(mine) * mul
        self._pieces = pieces
        self.weight = nn.Parameter(torch.randn(self.weight_numel)) if internal_weights else None

    def forward(self, x: Tensor, sh: Tensor, weight: Tensor | None = None) -> Tensor:
        """Args: x ``(E, rep_in.dim)``, sh ``(E, rep_sh.dim)``, weight ``(E, weight_numel)`` (None with
        internal weights). Returns: ``(E, rep_out.dim)``."""
        if (weight is None) == (self.weight is None):
            raise ValueError("pass per-edge weights exactly when the product has no internal weights")
        w_all = self.weight.unsqueeze(0) if weight is None else weight
        n = x.shape[0]
        xs = x.split([mul * ir.dim for mul, ir in self.rep_in], dim=-1)
        ws = w_all.split([n_paths * mul for _, mul, _, _, _, n_paths, _ in self._groups], dim=-1)
        results = []
        for g, (i, mul, d_in, width, _, n_paths, dims) in enumerate(self._groups):
            s = (sh @ getattr(self, f"cg_{g}")).view(n, d_in, width)  # (E, d_in, P)
            y = torch.bmm(xs[i].reshape(n, mul, d_in), s)  # (E, mul, P)
            w = ws[g].reshape(-1, n_paths, mul).transpose(1, 2)  # (E|1, mul, paths)
            results.append((y * w.index_select(2, getattr(self, f"col_path_{g}"))).split(dims, dim=2))
        return torch.cat([results[g][k].reshape(n, mul * d) for g, k, mul, d in self._pieces], dim=-1)


class EquivariantFFN(nn.Module):
    """Feed-forward block: ``IrrepsLinear -> Gate -> IrrepsLinear`` (Equiformer's ``FeedForwardNetwork``).

    Args:
        irreps_in: input irreps.
        irreps_mid: hidden irreps after the gate (e.g. 3x the input multiplicities).
        irreps_out: output irreps.

    Shapes: ``(..., rep_in.dim) -> (..., rep_out.dim)``.
    """

    def __init__(self, irreps_in: str | o3.Irreps, irreps_mid: str | o3.Irreps, irreps_out: str | o3.Irreps):
        super().__init__()
        self.gate = Gate(irreps_mid)
        self.lin1 = IrrepsLinear(irreps_in, self.gate.rep_in)
        self.lin2 = IrrepsLinear(self.gate.rep_out, irreps_out)
        self.rep_in, self.rep_out = self.lin1.rep_in, self.lin2.rep_out

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(..., rep_in.dim)``. Returns: ``(..., rep_out.dim)``."""
        return self.lin2(self.gate(self.lin1(x)))


class EdgeDegreeEmbedding(nn.Module):
    """Initial higher-``l`` node features from the neighbour geometry (Equiformer's ``EdgeDegreeEmbeddingNetwork``).

    ``h_i = sum_j c_ij * Linear(DTP(s, Y(r_ij), RadialMLP(rbf_ij))) / sqrt(avg_degree)`` with ``s`` a
    learned vector of ``0e`` channels (the reference's ``LinearRS(1x0e)`` of a constant 1) and
    ``c_ij`` an optional smooth cutoff. The reference runs the product on all node irreps, whose
    non-scalar part is zero here; only the ``0e`` input is kept (same function class).

    Args:
        irreps_node: node irreps (output); its ``0e`` channels are the product's input.
        irreps_sh: spherical-harmonic irreps.
        radial_channels: ``(num_basis, hidden...)`` of the :class:`RadialMLP`.
        avg_degree: the normalisation ``sqrt(avg_degree)`` of the neighbour sum.

    Shapes: ``sh (E, rep_sh.dim)``, ``rbf (E, num_basis)``, ``edge_index (2, E)``, ``edge_weight (E,)``
    -> ``(N, rep_out.dim)``.
    """

    def __init__(self, irreps_node: str | o3.Irreps, irreps_sh: str | o3.Irreps, radial_channels: Sequence[int],
                 avg_degree: float):
        super().__init__()
        self.rep_out = o3.Irreps(irreps_node)
        n0 = scalar_mul(self.rep_out)
        self.scalars = nn.Parameter(torch.randn(n0))
        self.dtp = DepthwiseTensorProduct(f"{n0}x0e", irreps_sh, self.rep_out)
        self.rep_sh = self.dtp.rep_sh
        self.radial = RadialMLP([*radial_channels, self.dtp.weight_numel])
        self.proj = IrrepsLinear(self.dtp.rep_out, self.rep_out)
        self.avg_degree = float(avg_degree)

    def forward(self, sh: Tensor, rbf: Tensor, edge_index: Tensor, num_nodes: int,
                edge_weight: Tensor | None = None) -> Tensor:
        """Returns: ``(N, rep_out.dim)`` (see the class docstring for the arguments)."""
        x = self.scalars.unsqueeze(0).expand(sh.shape[0], -1)  # (E, n0)
        y = self.proj(self.dtp(x, sh, self.radial(rbf)))  # (E, dim)
        if edge_weight is not None:
            y = y * edge_weight.unsqueeze(-1)
        return segment_sum(y, edge_index[1], num_nodes) / math.sqrt(self.avg_degree)


class EquivariantGraphAttention(nn.Module):
    """Equiformer's equivariant graph attention with MLP attention and non-linear messages.

    For an edge ``j -> i`` (``edge_index[0] = j``, ``edge_index[1] = i``)::

        m_ij  = DTP(Lin_src(x_j) + Lin_dst(x_i), Y(r_ij), RadialMLP(rbf_ij))
        a_ij  = softmax_j( <w_h, slrelu(Lin_alpha(m_ij)_h)> )                  (per head h)
        v_ij  = Lin_v(DTP'(Gate(Lin_g(m_ij)), Y(r_ij)))                         (DTP' shared weights)
        out_i = Lin_out(concat_h sum_j a_ij v_ij,h)

    With ``edge_weight`` ``c_ij`` (a smooth cutoff) the weights become
    ``a_ij = c_ij p_ij / sum_k c_ik p_ik`` and the message ``a_ij c_ij v_ij``: an atom entering the
    cutoff sphere then changes nothing discontinuously (the reference has no such envelope).

    Head ``h`` owns channels ``h*mul/H .. (h+1)*mul/H`` of every slot; the logits come from the
    ``0e`` part (as many channels as ``irreps_node`` has ``0e``), split per head.

    Args:
        irreps_node: input irreps (sorted even-first, simplified); every multiplicity divisible by
            ``num_heads``; must contain ``0e``.
        irreps_sh: spherical-harmonic irreps.
        num_heads: ``H``.
        radial_channels: ``(num_basis, hidden...)`` of the radial MLP.
        irreps_out: output irreps (default ``irreps_node``).
        alpha_drop: dropout on the attention weights (training only).

    Shapes: ``x (N, rep_in.dim)``, ``edge_index (2, E)``, ``sh (E, rep_sh.dim)``, ``rbf (E, K)``,
    ``edge_weight (E,)`` -> ``(N, rep_out.dim)``.
    """

    def __init__(self, irreps_node: str | o3.Irreps, irreps_sh: str | o3.Irreps, num_heads: int,
                 radial_channels: Sequence[int], irreps_out: str | o3.Irreps | None = None, alpha_drop: float = 0.0):
        super().__init__()
        node = o3.Irreps(irreps_node)
        self.rep_in, self.rep_out = node, o3.Irreps(irreps_out) if irreps_out is not None else node
        self.num_heads = num_heads
        divide_irreps(node, num_heads, "irreps_node")
        n_alpha = scalar_mul(node)
        if n_alpha == 0:
            raise ValueError(f"attention logits need 0e channels in irreps_node '{node}'")
        self.merge_src = IrrepsLinear(node, node, bias=True)
        self.merge_dst = IrrepsLinear(node, node, bias=False)
        self.dtp = DepthwiseTensorProduct(node, irreps_sh, node)
        self.rep_sh = self.dtp.rep_sh
        self.radial = RadialMLP([*radial_channels, self.dtp.weight_numel])
        self.alpha_linear = IrrepsLinear(self.dtp.rep_out, f"{n_alpha}x0e")
        self.alpha_dot = nn.Parameter(torch.empty(num_heads, n_alpha // num_heads))
        bound = math.sqrt(6.0 / (num_heads + n_alpha // num_heads))  # glorot, as the reference (GATv2)
        nn.init.uniform_(self.alpha_dot, -bound, bound)
        self.gate = Gate(node)
        self.value_linear = IrrepsLinear(self.dtp.rep_out, self.gate.rep_in)
        self.value_dtp = DepthwiseTensorProduct(self.gate.rep_out, irreps_sh, node, internal_weights=True)
        self.value_proj = IrrepsLinear(self.value_dtp.rep_out, node)
        self.proj = IrrepsLinear(node, self.rep_out)
        self.alpha_dropout = nn.Dropout(alpha_drop) if alpha_drop > 0 else None
        perm = head_permutation(node, num_heads)
        self.register_buffer("head_index", perm, persistent=False)
        self.register_buffer("head_index_inv", torch.argsort(perm), persistent=False)

    def forward(self, x: Tensor, edge_index: Tensor, sh: Tensor, rbf: Tensor,
                edge_weight: Tensor | None = None) -> Tensor:
        """Returns: ``(N, rep_out.dim)`` (see the class docstring for the arguments)."""
        src, dst = edge_index[0], edge_index[1]
        n, e, h = x.shape[0], src.shape[0], self.num_heads
        m = self.merge_src(x).index_select(0, src) + self.merge_dst(x).index_select(0, dst)  # (E, dim)
        m = self.dtp(m, sh, self.radial(rbf))  # (E, dtp.dim)

        logits = smooth_leaky_relu(self.alpha_linear(m).view(e, h, self.alpha_dot.shape[1])) * _C_SLRELU  # (E, H, C)
        logits = (logits * self.alpha_dot).sum(-1)  # (E, H)
        alpha = segment_softmax(logits, dst, n)  # (E, H)
        if edge_weight is not None:
            alpha = alpha * edge_weight.unsqueeze(-1)
            denom = segment_sum(alpha, dst, n).clamp(min=torch.finfo(alpha.dtype).tiny)
            alpha = alpha / denom.index_select(0, dst) * edge_weight.unsqueeze(-1)
        if self.alpha_dropout is not None:
            alpha = self.alpha_dropout(alpha)

        v = self.value_proj(self.value_dtp(self.gate(self.value_linear(m)), sh))  # (E, dim)
        v = v.index_select(1, self.head_index).view(e, h, self.rep_in.dim // h)  # (E, H, dim / H)
        out = segment_sum(v * alpha.unsqueeze(-1), dst, n)  # (N, H, dim / H)
        out = out.reshape(n, -1).index_select(1, self.head_index_inv)  # (N, dim)
        return self.proj(out)


class EquiformerBlock(nn.Module):
    """Pre-norm transformer block (Equiformer's ``TransBlock``).

    ``x = x + Attention(LN1(x))``; ``x = Shortcut(x) + FFN(LN2(x))``, where the shortcut is an
    :class:`IrrepsLinear` when the output irreps differ from the input (the last block) and the
    identity otherwise.

    Args:
        irreps_node: node irreps.
        irreps_sh: spherical-harmonic irreps.
        num_heads: attention heads.
        radial_channels: ``(num_basis, hidden...)``.
        irreps_mid: FFN hidden irreps.
        irreps_out: block output irreps (default ``irreps_node``).
        alpha_drop: attention dropout.

    Shapes: ``x (N, rep_in.dim)``, ``edge_index (2, E)``, ``sh (E, rep_sh.dim)``, ``rbf (E, K)``,
    ``edge_weight (E,)`` -> ``(N, rep_out.dim)``.
    """

    def __init__(self, irreps_node: str | o3.Irreps, irreps_sh: str | o3.Irreps, num_heads: int,
                 radial_channels: Sequence[int], irreps_mid: str | o3.Irreps,
                 irreps_out: str | o3.Irreps | None = None, alpha_drop: float = 0.0):
        super().__init__()
        node = o3.Irreps(irreps_node)
        self.rep_in, self.rep_out = node, o3.Irreps(irreps_out) if irreps_out is not None else node
        self.norm1 = EquivariantLayerNorm(node)
        self.attention = EquivariantGraphAttention(node, irreps_sh, num_heads, radial_channels, alpha_drop=alpha_drop)
        self.rep_sh = self.attention.rep_sh
        self.norm2 = EquivariantLayerNorm(node)
        self.ffn = EquivariantFFN(node, irreps_mid, self.rep_out)
        self.shortcut = IrrepsLinear(node, self.rep_out) if self.rep_out != node else None

    def forward(self, x: Tensor, edge_index: Tensor, sh: Tensor, rbf: Tensor,
                edge_weight: Tensor | None = None) -> Tensor:
        """Returns: ``(N, rep_out.dim)`` (see the class docstring for the arguments)."""
        x = x + self.attention(self.norm1(x), edge_index, sh, rbf, edge_weight)
        y = self.ffn(self.norm2(x))
        return (x if self.shortcut is None else self.shortcut(x)) + y
