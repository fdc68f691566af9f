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

The depthwise products (and the layers that hold them) take ``tp_backend``: ``"e3nn"`` (default,
eqt's own batched matmuls) or ``"cueq"`` (NVIDIA's ``cuequivariance_torch.ChannelWiseTensorProduct``,
fused CUDA kernels when ``cuequivariance-ops-torch`` is installed; ``pip install 'eqt[cueq]'``).
Both backends compute the same function from the same parameters (identical ``state_dict``).
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
    flat_blocks_to_e3nn,
    from_blocks,
    scalar_mul,
    second_moment_constant,
    smooth_leaky_relu,
    sort_even_first,
    to_blocks,
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
    "TP_BACKENDS",
    "cueq_available",
    "check_tp_backend",
]

#: values of ``tp_backend``
TP_BACKENDS = ("e3nn", "cueq")
_CUEQ_INSTALL = "pip install 'eqt[cueq]'"

_SCALAR = o3.Irrep(0, 1)
_C_SILU = second_moment_constant(F.silu)
_C_SIGMOID = second_moment_constant(torch.sigmoid)
_C_SLRELU = second_moment_constant(smooth_leaky_relu)


def _import_cueq():
    """``(cuequivariance, cuequivariance_torch)``, or an ImportError naming the extra."""
    try:
        import cuequivariance as cue
        import cuequivariance_torch as cuet
    except Exception as err:  # noqa: BLE001 - any failure to import means the backend is unavailable
        raise ImportError(f"tp_backend='cueq' needs cuequivariance-torch, which cannot be imported "
                          f"({type(err).__name__}: {err}); install it with {_CUEQ_INSTALL}") from None
    return cue, cuet


def cueq_available() -> bool:
    """Whether ``tp_backend="cueq"`` can be used (``cuequivariance_torch`` imports)."""
    try:
        _import_cueq()
    except ImportError:
        return False
    return True


def check_tp_backend(backend: str) -> None:
    """Raise a one-line ``ValueError`` for an unknown backend or ``"cueq"`` without cuequivariance-torch."""
    if backend not in TP_BACKENDS:
        raise ValueError(f"tp_backend must be one of {', '.join(TP_BACKENDS)}, got {backend!r}")
    if backend == "cueq":
        try:
            _import_cueq()
        except ImportError as err:
            raise ValueError(str(err)) from None


def _cueq_method() -> str:
    """``"uniform_1d"`` (fused CUDA kernel) when cuequivariance-ops-torch is installed, else ``"naive"`` (PyTorch)."""
    try:
        from cuequivariance_torch.primitives.segmented_polynomial import HAS_CUE_OPS
        from cuequivariance_torch.primitives.segmented_polynomial_uniform_1d import uniform_1d
    except Exception:  # noqa: BLE001 - a layout change inside cuequivariance_torch: use the portable path
        return "naive"
    return "uniform_1d" if HAS_CUE_OPS and uniform_1d is not None else "naive"


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
        y = from_blocks(self.forward_blocks(to_blocks(x, self.rep_in)))
        return y.reshape(*lead, self.rep_out.dim)

    def forward_blocks(self, blocks: list[Tensor], in_scale: list[Tensor] | None = None) -> list[Tensor]:
        """The same map on per-slot blocks (see :mod:`eqt.primitives.irreps`).

        Args:
            blocks: one ``(n, 2l + 1, mul_in)`` per slot of ``rep_in``, or a list of parts whose
                channels concatenate to it (as :meth:`DepthwiseTensorProduct.forward_parts` gives).
            in_scale: optional ``(mul_in,)`` per input slot: the map is applied to the input with
                every channel multiplied by its scale (folded into the weights, not the input).

        Returns: one ``(n, 2l + 1, mul_out)`` per slot of ``rep_out``; each path is one matrix product.
        """
        first = blocks[0] if isinstance(blocks[0], Tensor) else blocks[0][0]
        outs = []
        for mul_out, d, paths, b in self._plan:
            y = None
            for i, off, mul_in in paths:
                w = self.weight[off:off + mul_in * mul_out].view(mul_in, mul_out)
                if in_scale is not None:
                    w = w * in_scale[i].unsqueeze(1)
                xi = blocks[i]
                if isinstance(xi, Tensor):
                    xi = [xi]
                r = 0
                for part in xi:  # (n, d, c): rows r .. r + c of w
                    term = torch.matmul(part, w[r:r + part.shape[2]])  # (n, d, mul_out)
                    r += part.shape[2]
                    y = term if y is None else y + term
            if y is None:
                y = first.new_zeros(first.shape[0], d, mul_out)
            if b >= 0:
                y = y + self.bias[b:b + mul_out]
            outs.append(y)
        return outs


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

    def forward(self, x: Tensor, out_index: Tensor | None = None) -> Tensor:
        """Args: x ``(..., in)``; out_index: optional ``(out,)`` permutation of the outputs (applied to
        the last layer's rows, not to the result). Returns: ``(..., out)``."""
        h = self.net[:-1](x)
        w, b = self.net[-1].weight, self.offset
        if out_index is not None:
            w, b = w.index_select(0, out_index), b.index_select(0, out_index)
        return F.linear(h, w, b)


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
        # blocks: rep_in is [0e slot = scalars + gates] + the gated slots (simplify merges the two 0e parts)
        self._gated_muls = [mul for mul, _ in gated]
        # unit-second-moment constants of SiLU and sigmoid (exact quadrature; the reference's e3nn
        # Monte-Carlo estimates can be set instead, see EquiformerConfig.activation_norm)
        self.c_scalar, self.c_gate = _C_SILU, _C_SIGMOID

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(..., rep_in.dim)``. Returns: ``(..., rep_out.dim)``."""
        if not self.n_gates:
            return F.silu(x) * self.c_scalar
        s, g, v = x.split([self.n_scalars, self.n_gates, x.shape[-1] - self.n_scalars - self.n_gates], dim=-1)
        s = F.silu(s) * self.c_scalar
        v = v * (torch.sigmoid(g) * self.c_gate).index_select(-1, self.gate_index)
        return torch.cat([s, v], dim=-1)

    def forward_blocks(self, blocks: list[Tensor]) -> list[Tensor]:
        """The same map on per-slot blocks: ``(n, 2l + 1, mul)`` per slot of ``rep_in`` -> of ``rep_out``."""
        if not self.n_gates:
            return [F.silu(b) * self.c_scalar for b in blocks]
        s, g = blocks[0].split([self.n_scalars, self.n_gates], dim=-1)  # (n, 1, .)
        g = torch.sigmoid(g) * self.c_gate
        out = [F.silu(s) * self.c_scalar] if self.n_scalars else []
        for v, gk in zip(blocks[1:], g.split(self._gated_muls, dim=-1)):
            out.append(v * gk)  # (n, 2l+1, mul) * (n, 1, mul)
        return out


class _ExactTables(nn.Module):
    """Constant float64 tables kept as non-persistent buffers that follow the module's dtype.

    ``module.double()`` after construction in float32 would otherwise keep float32-rounded
    coefficients (equivariance only to ~1e-7); here each dtype change re-derives the buffer from
    its float64 master.
    """

    def __init__(self):
        super().__init__()
        self._masters: dict[str, Tensor] = {}
        self._child_masters: list[tuple[nn.Module, str, Tensor]] = []

    def _register_table(self, name: str, table: Tensor) -> None:
        self._masters[name] = table
        self.register_buffer(name, table.to(torch.get_default_dtype()), persistent=False)

    def _adopt_tables(self, child: nn.Module) -> None:
        """Make every buffer of a child module (e.g. cuEquivariance's coefficient tables) non-persistent,
        kept out of the ``state_dict``, and re-derived from its float64 value on every dtype change."""
        for mod in child.modules():
            for name, buf in mod._buffers.items():
                if buf is None:
                    continue
                mod._non_persistent_buffers_set.add(name)
                if buf.is_floating_point():
                    self._child_masters.append((mod, name, buf.detach().to(torch.float64).clone()))

    def _apply(self, fn, recurse=True):  # noqa: D102 - nn.Module hook
        super()._apply(fn, recurse)
        for name, master in self._masters.items():
            buf = self._buffers[name]
            self._buffers[name] = master.to(device=buf.device, dtype=buf.dtype)
        for mod, name, master in self._child_masters:
            buf = mod._buffers[name]
            mod._buffers[name] = master.to(device=buf.device, dtype=buf.dtype)
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

    Per input slot the harmonics are contracted with the stacked tables of its paths (one matmul
    ``S = Y @ C``). The paths of one input slot that land in one output slot form a *part*: one
    batched matmul ``S_part (E, (2l3+1) * paths, 2l1+1) @ x (E, 2l1+1, mul)`` gives it directly
    as a contiguous ``(E, 2l3+1, paths * mul)`` block (component-major, the per-slot blocks of
    :mod:`eqt.primitives.irreps`), and one broadcast multiply applies its weights (gathered once
    into output-channel order, ``weight_index``). :meth:`forward_parts` returns the parts of each
    output slot, which :class:`IrrepsLinear` reads without concatenating them;
    :meth:`forward_blocks` concatenates them, and :meth:`forward` is the e3nn-layout wrapper.
    Parts with a one-component input (``0e``) or one output row use broadcast multiplies instead
    (batched matmuls with an inner size of 1 are slow on CPU). Weights use e3nn's
    ``TensorProduct`` layout (path-major, channel-minor, paths in construction order), so the
    results equal e3nn's ``'uvu'`` instructions.

    With ``backend="cueq"`` the same product runs in ``cuequivariance_torch.ChannelWiseTensorProduct``
    (fused CUDA kernel ``uniform_1d`` when cuequivariance-ops-torch is installed, its PyTorch
    ``naive`` path otherwise) on the same parameters; the mapping is derived once, at construction,
    from cuEquivariance's descriptor:

    - every input slot is split into chunks of ``c = gcd(multiplicities)`` channels (equal segment
      sizes are what the ``uniform_1d`` kernel needs), so each eqt path is ``mul / c`` cuEquivariance
      paths; paths are matched by (input slot and chunk, harmonic, output irrep);
    - layout ``ir_mul`` everywhere (each chunk is ``(2l + 1, c)``, component-major, like eqt's
      blocks): no transposes inside cuEquivariance, and each output segment is directly a
      ``(E, 2l3 + 1, c)`` part for :class:`IrrepsLinear`. Node-level callers put their input in
      this layout with :meth:`to_input_layout` before gathering it onto edges;
    - ``weight_index`` gathers eqt's (e3nn-layout) weights into cuEquivariance's weight order
      (sorted by output irrep, then chunk); the radial MLP emits them in that order directly;
    - each path's coefficients are compared with eqt's Clebsch-Gordan table: cuEquivariance's
      "element" path normalisation with one path per output segment equals eqt's normalisation
      (the fitted ratio is exactly 1, so no rescale is applied); a ratio other than 1 would be
      applied to the weights (``weight_scale``), and tables that are not proportional raise.

    Args:
        irreps_in: node feature irreps.
        irreps_sh: spherical-harmonic irreps (multiplicity 1 each), e.g. ``0e+1o+2e``.
        irreps_target: output irreps to keep (``0e`` is always kept).
        internal_weights: learn one shared weight vector (``N(0, 1)`` init) instead of taking
            per-edge weights.
        backend: ``"e3nn"`` (eqt's batched matmuls) or ``"cueq"`` (cuEquivariance); not part of the
            ``state_dict``.

    Shapes: ``x (E, rep_in.dim)``, ``sh (E, rep_sh.dim)``, ``weight (E, weight_numel)`` ->
    ``(E, rep_out.dim)``.
    """

    def __init__(self, irreps_in: str | o3.Irreps, irreps_sh: str | o3.Irreps, irreps_target: str | o3.Irreps,
                 internal_weights: bool = False, backend: str = "e3nn"):
        super().__init__()
        if backend not in TP_BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(TP_BACKENDS)}, got {backend!r}")
        self.backend = backend
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
        # per input slot with paths: (slot, mul, d_in, weight offset, paths in construction order)
        self._groups: list[tuple[int, int, int, int, list[int]]] = []
        group_of: dict[int, tuple[int, int]] = {}  # path -> (group, path in group)
        w_off = 0
        for i, (mul, ir_in) in enumerate(self.rep_in):
            mine = [p for p, (pi, _, _) in enumerate(paths) if pi == i]
            if mine:
                for k, p in enumerate(mine):
                    group_of[p] = (len(self._groups), k)
                self._groups.append((i, mul, ir_in.dim, w_off, mine))
                w_off += len(mine) * mul
        # output slots of rep_out = runs of equal irreps among the sorted paths; a slot's channels are its
        # paths' in sorted order; a *part* is a run of paths of one group inside a slot: one bmm gives it
        # directly as (E, 2l3+1, paths * mul), rows ordered (m3, path)
        order = sorted(range(len(paths)), key=lambda p: perm[p])
        self._slot_parts: list[list[int]] = []  # per slot: its part indices
        self._parts: list[tuple[int, int, int, int, int]] = []  # (group, n paths, d_out, table column offset, mul)
        part_paths: list[list[int]] = []
        prev_ir, prev_g = None, None
        for p in order:
            g, _ = group_of[p]
            ir_out = paths[p][2]
            if ir_out != prev_ir:
                self._slot_parts.append([])
            if ir_out != prev_ir or g != prev_g:
                self._slot_parts[-1].append(len(part_paths))
                part_paths.append([])
            part_paths[-1].append(p)
            prev_ir, prev_g = ir_out, g
        tables: list[list[Tensor]] = [[] for _ in self._groups]
        offsets = [0] * len(self._groups)
        for pp in part_paths:
            g = group_of[pp[0]][0]
            _, mul, d_in, _, _ = self._groups[g]
            d_out = paths[pp[0]][2].dim
            t = torch.zeros(self.rep_sh.dim, d_out, len(pp), d_in, dtype=torch.float64)  # (sh, m3, path, m1)
            for k, p in enumerate(pp):
                _, j, ir_out = paths[p]
                cg = clebsch_gordan(self.rep_in[paths[p][0]].ir.l, self.rep_sh[j].ir.l, ir_out.l)  # (d_in, d_sh, d_out)
                t[sh_slices[j], :, k, :] = cg.permute(1, 2, 0)
            self._parts.append((g, len(pp), d_out, offsets[g], mul))
            tables[g].append(t.reshape(self.rep_sh.dim, -1))
            offsets[g] += d_out * len(pp) * d_in
        for g, ts in enumerate(tables):
            self._register_table(f"cg_{g}", torch.cat(ts, dim=1))  # (sh, sum over the group's parts)
        # the weights in output-channel order (part by part): a part is weighted by one broadcast multiply
        w_index = [self._groups[group_of[p][0]][3] + group_of[p][1] * self._groups[group_of[p][0]][1] + u
                   for pp in part_paths for p in pp for u in range(self._groups[group_of[p][0]][1])]
        self._part_muls = [n_paths * mul for _, n_paths, _, _, mul in self._parts]
        self.weight = nn.Parameter(torch.randn(self.weight_numel)) if internal_weights else None
        self._cue: nn.Module | None = None
        if backend == "e3nn":
            self.register_buffer("weight_index", torch.tensor(w_index, dtype=torch.long), persistent=False)
        else:  # channel_weights() still needs eqt's output-channel order
            self.register_buffer("channel_index", torch.tensor(w_index, dtype=torch.long), persistent=False)
            slot_paths = [[p for q in slot for p in part_paths[q]] for slot in self._slot_parts]
            self._init_cueq(paths, slot_paths)

    def _init_cueq(self, paths: list[tuple[int, int, o3.Irrep]], slot_paths: list[list[int]]) -> None:
        """Build the cuEquivariance product and its mapping onto eqt's paths, weights and parts."""
        cue, cuet = _import_cueq()
        c = math.gcd(*(mul for mul, _ in self.rep_in))
        self._chunk = c
        chunks = [(i, k) for i, (mul, _) in enumerate(self.rep_in) for k in range(mul // c)]  # cue slot -> (slot, k)
        irreps1 = cue.Irreps("O3", "+".join(f"{c}x{self.rep_in[i].ir}" for i, _ in chunks))
        irreps2 = cue.Irreps("O3", "+".join(str(ir) for _, ir in self.rep_sh))
        keep = sorted({str(ir) for _, _, ir in paths})  # exactly the output irreps of eqt's paths
        poly = cue.descriptors.channelwise_tensor_product(irreps1, irreps2, keep)
        stp = poly.polynomial.operations[0][1]
        assert stp.subscripts == "uv,iu,jv,kuv+ijk", stp.subscripts
        irreps3 = poly.operands[-1].irreps
        w_slices, o_slices = stp.operands[0].segment_slices(), stp.operands[3].segment_slices()
        key_to_path = {(i, j, (ir.l, ir.p)): q for q, (i, j, ir) in enumerate(paths)}
        w_off = [0]
        for i, _, _ in paths:
            w_off.append(w_off[-1] + self.rep_in[i].mul)
        cue_index = torch.empty(stp.operands[0].size, dtype=torch.long)
        cue_scale = torch.ones(stp.operands[0].size, dtype=torch.float64)
        segment_of: dict[tuple[int, int], tuple[int, int]] = {}  # (eqt path, chunk) -> (output offset, d_out)
        for path in stp.paths:
            w, a, b, o = path.indices
            (i, k), ir3 = chunks[a], irreps3[o].ir
            q = key_to_path[(i, b, (ir3.l, ir3.p))]  # KeyError: a path eqt does not have
            coeff = torch.as_tensor(path.coefficients, dtype=torch.float64).reshape(
                self.rep_in[i].ir.dim, self.rep_sh[b].ir.dim, ir3.dim)
            ours = clebsch_gordan(self.rep_in[i].ir.l, self.rep_sh[b].ir.l, ir3.l)
            ratio = float((coeff * ours).sum() / (ours * ours).sum())
            if not torch.allclose(coeff, ratio * ours, rtol=0, atol=1e-12):
                raise RuntimeError(f"cuEquivariance's coefficients of {self.rep_in[i].ir} x {self.rep_sh[b].ir} -> "
                                   f"{ir3} are not proportional to eqt's; this cuequivariance version is not supported")
            ws, os_ = w_slices[w], o_slices[o]
            assert ws.stop - ws.start == c and os_.stop - os_.start == c * ir3.dim and (q, k) not in segment_of
            cue_index[ws] = torch.arange(w_off[q] + k * c, w_off[q] + (k + 1) * c)
            cue_scale[ws] = 1.0 / ratio  # cue computes ratio * (eqt's product) per unit weight
            segment_of[(q, k)] = (os_.start, ir3.dim)
        if len(segment_of) != sum(self.rep_in[i].mul // c for i, _, _ in paths):
            raise RuntimeError("cuEquivariance's channel-wise product has other paths than eqt's")
        self.register_buffer("weight_index", cue_index, persistent=False)
        self._cue_scaled = bool((cue_scale - 1).abs().max() > 1e-12)
        self._register_table("weight_scale", cue_scale)
        # per output slot of rep_out, in eqt's channel order: (offset, d_out, channels) views of cue's output;
        # adjacent one-row segments are merged (a (E, 1, 2c) view is as good as two (E, 1, c) views)
        self._cue_parts: list[list[tuple[int, int, int]]] = []
        for slot in slot_paths:
            views: list[list[int]] = []
            for q in slot:
                for k in range(self.rep_in[paths[q][0]].mul // c):
                    off, d = segment_of[(q, k)]
                    if views and d == 1 and views[-1][1] == 1 and views[-1][0] + views[-1][2] == off:
                        views[-1][2] += c
                    else:
                        views.append([off, d, c])
            self._cue_parts.append([tuple(v) for v in views])
        self._cue_in = [(mul // c, ir.dim) for mul, ir in self.rep_in]  # per slot: (chunks, 2l + 1)
        self.cue_method = _cueq_method()
        self._cue_keep = keep
        self._cue = cuet.ChannelWiseTensorProduct(irreps1, irreps2, keep, layout=cue.ir_mul, shared_weights=False,
                                                  internal_weights=False, method=self.cue_method)
        if self._cue.weight_numel != self.weight_numel or self._cue.irreps_out.dim != self.irreps_paths.dim:
            raise RuntimeError("cuEquivariance's channel-wise product does not have eqt's shapes")
        self._adopt_tables(self._cue)
        self.__dict__["_cue_cpu"] = None  # a PyTorch fallback for CPU tensors when the CUDA kernel is selected

    def forward(self, x: Tensor, sh: Tensor, weight: Tensor | None = None) -> Tensor:
        """Args: x ``(E, rep_in.dim)``, sh ``(E, rep_sh.dim)``, weight ``(E, weight_numel)`` (None with
        internal weights). Returns: ``(E, rep_out.dim)``."""
        if self._cue is not None:
            return from_blocks(self.forward_blocks(self.to_input_layout(x), sh, weight))
        return from_blocks(self.forward_blocks(to_blocks(x, self.rep_in), sh, weight))

    def to_input_layout(self, x: Tensor | list[Tensor]) -> Tensor | list[Tensor]:
        """The input as :meth:`forward_parts` reads it best: per-slot blocks (e3nn backend) or, for the
        cueq backend, one ``(n, rep_in.dim)`` tensor of ``ir_mul`` chunks (slot by slot, chunk by chunk,
        each ``(2l + 1, c)``). Cheap at node level, before a gather onto edges.

        Args:
            x: ``(n, rep_in.dim)`` in e3nn layout, or one ``(n, 2l + 1, mul)`` block per slot.
        """
        if isinstance(x, Tensor):
            if self._cue is None:
                return to_blocks(x, self.rep_in)
            n = x.shape[0]
            out = [b.reshape(n, k, self._chunk, d).transpose(2, 3).reshape(n, k * d * self._chunk)
                   for b, (k, d) in zip(x.split([k * d * self._chunk for k, d in self._cue_in], dim=-1), self._cue_in)]
        else:
            if self._cue is None:
                return x
            n = x[0].shape[0]
            out = [b.reshape(b.shape[0], d, k, self._chunk).transpose(1, 2).reshape(b.shape[0], k * d * self._chunk)
                   if k > 1 else b.reshape(b.shape[0], d * self._chunk) for b, (k, d) in zip(x, self._cue_in)]
            if len({b.shape[0] for b in out}) > 1:  # some slots broadcast over edges
                out = [b.expand(n if b.shape[0] == 1 else b.shape[0], -1) for b in out]
        return torch.cat(out, dim=-1) if len(out) > 1 else out[0]

    def forward_blocks(self, x: list[Tensor], sh: Tensor, weight: Tensor | None = None) -> list[Tensor]:
        """The product on per-slot blocks: ``(E, 2l + 1, mul)`` per slot of ``rep_in`` -> of ``rep_out``."""
        return [torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
                for parts in self.forward_parts(x, sh, weight)]

    def forward_parts(self, x: list[Tensor], sh: Tensor, weight: Tensor | None = None, *,
                      weighted: bool = True, channel_order: bool = False) -> list[list[Tensor]]:
        """The product with each output slot left as its channel parts (what :class:`IrrepsLinear` reads).

        Args:
            x: one ``(E, 2l + 1, mul)`` per slot of ``rep_in`` (``E`` may be 1 to broadcast), or what
                :meth:`to_input_layout` gives; sh, weight as in :meth:`forward`.
            weighted: ``False`` skips the internal (shared) weights, for a caller that folds
                :meth:`channel_weights` into the linear map that follows.
            channel_order: ``weight`` is already permuted by ``weight_index`` (e.g. by
                ``RadialMLP(..., out_index=weight_index)``), which saves a gather of ``(E, weight_numel)``.

        Returns:
            Per slot of ``rep_out``, contiguous ``(E, 2l + 1, c)`` parts whose channels concatenate to the slot's.
        """
        if not weighted:
            if weight is not None or self.weight is None:
                raise ValueError("weighted=False is for products with internal weights, called without weights")
        elif (weight is None) == (self.weight is None):
            raise ValueError("pass per-edge weights exactly when the product has no internal weights")
        if self._cue is not None:
            return self._forward_parts_cueq(x, sh, weight, weighted, channel_order)
        n = sh.shape[0]
        s_all = [sh @ getattr(self, f"cg_{g}") for g in range(len(self._groups))]  # per group (E, sum rows * d_in)
        if weighted:
            w_all = self.weight.unsqueeze(0) if weight is None else weight  # (E|1, weight_numel)
            if not channel_order:
                w_all = w_all.index_select(1, self.weight_index)
            ws = w_all.split(self._part_muls, dim=1)  # per part (E|1, c)
        parts = []
        for q, (g, n_paths, d_out, off, mul) in enumerate(self._parts):
            i, _, d_in, _, _ = self._groups[g]
            rows = d_out * n_paths
            s = s_all[g][:, off:off + rows * d_in].view(n, rows, d_in)  # (E, (m3, path), m1)
            if d_in == 1:  # an outer product: a broadcast multiply (batched matmuls with K = 1 are slow)
                if weighted:  # weight the (small) input per path first: one pass over the part
                    xw = x[i].reshape(-1, 1, 1, mul) * ws[q].view(-1, 1, n_paths, mul)  # (E|1, 1, paths, mul)
                    parts.append((s.view(n, d_out, n_paths, 1) * xw).view(n, d_out, n_paths * mul))
                    continue
                y = (s * x[i]).view(n, d_out, n_paths * mul)  # (E, m3, (path, u))
            elif rows == 1:  # one output row: multiply and sum (its backward would be a K = 1 batched matmul)
                y = (s.view(n, d_in, 1) * x[i]).sum(1, keepdim=True)  # (E, 1, mul)
            else:
                y = torch.bmm(s, x[i].expand(n, -1, -1)).view(n, d_out, n_paths * mul)  # (E, m3, (path, u))
            parts.append(y * ws[q].unsqueeze(1) if weighted else y)
        return [[parts[q] for q in slot] for slot in self._slot_parts]

    def _forward_parts_cueq(self, x: Tensor | list[Tensor], sh: Tensor, weight: Tensor | None, weighted: bool,
                            channel_order: bool) -> list[list[Tensor]]:
        """:meth:`forward_parts` through cuEquivariance (see the class docstring for the mapping)."""
        x = self.to_input_layout(x) if not isinstance(x, Tensor) else x  # (E|1, rep_in.dim), ir_mul chunks
        if not weighted:  # unit weights: eqt's unweighted product
            w = self.weight_scale.unsqueeze(0) if self._cue_scaled else sh.new_ones(1, self.weight_numel)
        else:
            w = self.weight.unsqueeze(0) if weight is None else weight  # (E|1, weight_numel)
            if weight is None or not channel_order:
                w = w.index_select(1, self.weight_index)
            if self._cue_scaled:
                w = w * self.weight_scale
        cue = self._cue
        if self.cue_method != "naive" and sh.device.type != "cuda":  # the fused kernel is CUDA-only
            if self._cue_cpu is None:
                _, cuet = _import_cueq()
                cue_mod, _ = _import_cueq()
                self.__dict__["_cue_cpu"] = cuet.ChannelWiseTensorProduct(
                    cue.irreps_in1, cue.irreps_in2, self._cue_keep, layout=cue_mod.ir_mul,
                    shared_weights=False, internal_weights=False, method="naive")
            cue = self._cue_cpu
        y = cue(x, sh, w)  # (E, irreps_paths.dim): one (2l3 + 1, c) segment per cuEquivariance path
        n = y.shape[0]
        return [[y[:, off:off + d * c].view(n, d, c) for off, d, c in slot] for slot in self._cue_parts]

    def channel_weights(self) -> list[Tensor]:
        """The internal weights per output channel: one ``(mul,)`` per slot of ``rep_out``."""
        index = self.weight_index if self._cue is None else self.channel_index
        ws = self.weight.index_select(0, index).split(self._part_muls)
        return [torch.cat([ws[q] for q in slot]) for slot in self._slot_parts]


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
        tp_backend: backend of the depthwise product (:class:`DepthwiseTensorProduct`).

    Shapes: ``sh (E, rep_sh.dim)``, ``rbf (E, num_basis)``, ``edge_index (2, E)``, ``edge_weight (E,)``
    -> ``(N, rep_out.dim)``.
    """

    def __init__(self, irreps_node: str | o3.Irreps, irreps_sh: str | o3.Irreps, radial_channels: Sequence[int],
                 avg_degree: float, tp_backend: str = "e3nn"):
        super().__init__()
        self.rep_out = o3.Irreps(irreps_node)
        n0 = scalar_mul(self.rep_out)
        self.scalars = nn.Parameter(torch.randn(n0))
        self.dtp = DepthwiseTensorProduct(f"{n0}x0e", irreps_sh, self.rep_out, backend=tp_backend)
        self.rep_sh = self.dtp.rep_sh
        self.radial = RadialMLP([*radial_channels, self.dtp.weight_numel])
        self.proj = IrrepsLinear(self.dtp.rep_out, self.rep_out)
        self.avg_degree = float(avg_degree)

    def forward(self, sh: Tensor, rbf: Tensor, edge_index: Tensor, num_nodes: int,
                edge_weight: Tensor | None = None) -> Tensor:
        """Returns: ``(N, rep_out.dim)`` (see the class docstring for the arguments)."""
        x = self.scalars.view(1, 1, -1)  # (1, 1, n0): one 0e block, broadcast over edges
        w = self.radial(rbf, self.dtp.weight_index)  # (E, weight_numel), in the product's channel order
        y = self.proj.forward_blocks(self.dtp.forward_parts([x], sh, w, channel_order=True))  # per slot (E, d, mul)
        y = torch.cat([b.reshape(b.shape[0], b.shape[1] * b.shape[2]) for b in y], dim=-1)  # (E, dim), blocks
        if edge_weight is not None:
            y = y * edge_weight.unsqueeze(-1)
        y = segment_sum(y, edge_index[1], num_nodes) / math.sqrt(self.avg_degree)  # (N, dim)
        return flat_blocks_to_e3nn(y, self.rep_out)


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

    Everything between the gather and the neighbour sum runs on per-slot blocks (see
    :mod:`eqt.primitives.irreps`): the products hand their output parts straight to the linear
    maps, the radial MLP emits the weights in the product's channel order, and ``DTP'``'s shared
    weights are folded into ``Lin_v``'s matrices (the same function, fewer passes over the
    ``(E, 3136)``-sized messages of the MD17 model).

    Args:
        irreps_node: input irreps (sorted even-first, simplified); every multiplicity divisible by
            ``num_heads``; must contain ``0e``.
        irreps_sh: spherical-harmonic irreps.
        num_heads: ``H``.
        radial_channels: ``(num_basis, hidden...)`` of the radial MLP.
        irreps_out: output irreps (default ``irreps_node``).
        alpha_drop: dropout on the attention weights (training only).
        tp_backend: backend of both depthwise products (:class:`DepthwiseTensorProduct`).

    Shapes: ``x (N, rep_in.dim)``, ``edge_index (2, E)``, ``sh (E, rep_sh.dim)``, ``rbf (E, K)``,
    ``edge_weight (E,)`` -> ``(N, rep_out.dim)``.
    """

    def __init__(self, irreps_node: str | o3.Irreps, irreps_sh: str | o3.Irreps, num_heads: int,
                 radial_channels: Sequence[int], irreps_out: str | o3.Irreps | None = None, alpha_drop: float = 0.0,
                 tp_backend: str = "e3nn"):
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
        self.dtp = DepthwiseTensorProduct(node, irreps_sh, node, backend=tp_backend)
        self.rep_sh = self.dtp.rep_sh
        self.radial = RadialMLP([*radial_channels, self.dtp.weight_numel])
        self.alpha_linear = IrrepsLinear(self.dtp.rep_out, f"{n_alpha}x0e")
        self.alpha_dot = nn.Parameter(torch.empty(num_heads, n_alpha // num_heads))
        bound = math.sqrt(6.0 / (num_heads + n_alpha // num_heads))  # glorot, as the reference (GATv2)
        nn.init.uniform_(self.alpha_dot, -bound, bound)
        self.gate = Gate(node)
        self.value_linear = IrrepsLinear(self.dtp.rep_out, self.gate.rep_in)
        self.value_dtp = DepthwiseTensorProduct(self.gate.rep_out, irreps_sh, node, internal_weights=True,
                                                backend=tp_backend)
        self.value_proj = IrrepsLinear(self.value_dtp.rep_out, node)
        self.proj = IrrepsLinear(node, self.rep_out)
        self.alpha_dropout = nn.Dropout(alpha_drop) if alpha_drop > 0 else None
        self.c_alpha = _C_SLRELU  # unit-second-moment constant of the logits' activation (see Gate.c_scalar)

    def forward(self, x: Tensor, edge_index: Tensor, sh: Tensor, rbf: Tensor,
                edge_weight: Tensor | None = None) -> Tensor:
        """Returns: ``(N, rep_out.dim)`` (see the class docstring for the arguments)."""
        src, dst = edge_index[0], edge_index[1]
        n, e, h = x.shape[0], src.shape[0], self.num_heads
        if self.dtp.backend == "e3nn":
            m = self.merge_src(x).index_select(0, src) + self.merge_dst(x).index_select(0, dst)  # (E, dim)
            m = to_blocks(m, self.rep_in)
        else:  # cuEquivariance's input layout, made at node level: no transposes on edges
            m = (self.dtp.to_input_layout(self.merge_src(x)).index_select(0, src)
                 + self.dtp.to_input_layout(self.merge_dst(x)).index_select(0, dst))  # (E, dim)
        # the edge pipeline runs on per-slot blocks (E, 2l+1, mul): no layout copies between its products
        w = self.radial(rbf, self.dtp.weight_index)  # (E, weight_numel), in the product's channel order
        m = self.dtp.forward_parts(m, sh, w, channel_order=True)  # dtp.rep_out slots, as parts

        a = self.alpha_linear.forward_blocks(m)[0]  # (E, 1, n_alpha)
        logits = smooth_leaky_relu(a.view(e, h, self.alpha_dot.shape[1])) * self.c_alpha  # (E, H, C)
        logits = (logits * self.alpha_dot).sum(-1)  # (E, H)
        alpha = segment_softmax(logits, dst, n)  # (E, H)
        if edge_weight is not None:
            alpha = alpha * edge_weight.unsqueeze(-1)
            denom = segment_sum(alpha, dst, n).clamp(min=torch.finfo(alpha.dtype).tiny)
            alpha = alpha / denom.index_select(0, dst) * edge_weight.unsqueeze(-1)
        if self.alpha_dropout is not None:
            alpha = self.alpha_dropout(alpha)

        v = self.gate.forward_blocks(self.value_linear.forward_blocks(m))
        v = self.value_dtp.forward_parts(v, sh, weighted=False)  # its shared weights are folded into value_proj
        v = self.value_proj.forward_blocks(v, in_scale=self.value_dtp.channel_weights())  # node slots (E, 2l+1, mul)
        # head k owns channels k*mul/H .. (k+1)*mul/H of every slot
        a = alpha.view(e, 1, h, 1)
        v = torch.cat([(b.view(e, b.shape[1], h, b.shape[2] // h) * a).view(e, b.shape[1] * b.shape[2])
                       for b in v], dim=-1)  # (E, dim), blocks
        out = segment_sum(v, dst, n)  # (N, dim), component-major blocks
        return self.proj(flat_blocks_to_e3nn(out, self.rep_in))


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
        tp_backend: backend of the depthwise products (:class:`DepthwiseTensorProduct`).

    Shapes: ``x (N, rep_in.dim)``, ``edge_index (2, E)``, ``sh (E, rep_sh.dim)``, ``rbf (E, K)``,
    ``edge_weight (E,)`` -> ``(N, rep_out.dim)``.
    """

    def __init__(self, irreps_node: str | o3.Irreps, irreps_sh: str | o3.Irreps, num_heads: int,
                 radial_channels: Sequence[int], irreps_mid: str | o3.Irreps,
                 irreps_out: str | o3.Irreps | None = None, alpha_drop: float = 0.0, tp_backend: str = "e3nn"):
        super().__init__()
        node = o3.Irreps(irreps_node)
        self.rep_in, self.rep_out = node, o3.Irreps(irreps_out) if irreps_out is not None else node
        self.norm1 = EquivariantLayerNorm(node)
        self.attention = EquivariantGraphAttention(node, irreps_sh, num_heads, radial_channels, alpha_drop=alpha_drop,
                                                   tp_backend=tp_backend)
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
