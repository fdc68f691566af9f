"""``assert_equivariant``: check ``fn(g·x) == g·fn(x)`` for elements of a group."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from eqt.reps.actions import Rep
from eqt.reps.groups import Element, Group

__all__ = ["assert_equivariant"]

_DEFAULT_RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}
_MAX_ENUMERATED = 1000


def _as_tuple(y: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (y,) if isinstance(y, torch.Tensor) else tuple(y)


def _group_elements(group: Group, n_samples: int, seed: int) -> list[Element]:
    if group.finite and group.order is not None and group.order <= _MAX_ENUMERATED:
        return group.elements()
    return group.sample(n_samples, np.random.default_rng(seed))


def assert_equivariant(
    fn: Callable[..., torch.Tensor | Sequence[torch.Tensor]],
    group: Group,
    inputs: Sequence[tuple[torch.Tensor, Rep]],
    outputs: Rep | Sequence[Rep],
    *,
    n_samples: int = 4,
    dtype: torch.dtype = torch.float64,
    rtol: float | None = None,
    atol: float = 0.0,
    seed: int = 0,
    grad: bool = False,
) -> float:
    """Assert that ``fn(*[g·x]) == [g·y for y in fn(*x)]`` for group elements ``g``.

    Finite groups with at most 1000 elements are checked exhaustively; otherwise
    ``n_samples`` elements are drawn with ``np.random.default_rng(seed)``.
    For each output the error is ``max|a - b| / max(max|b|, 1e-12)`` where ``a``
    is ``fn`` of the transformed inputs and ``b`` the transformed output; the
    check fails if ``max|a - b| > atol + rtol * max(max|b|, 1e-12)``.

    Args:
        fn: function or nn.Module taking the input tensors positionally and
            returning a tensor or a tuple/list of tensors. A module must already
            be in ``dtype``.
        group: the group to test (e.g. ``O3() * Permutations(n)``).
        inputs: ``(tensor, rep)`` pairs. Floating tensors are cast to ``dtype``;
            other tensors (atomic numbers (N,), ``edge_index`` (2, E), ...) are
            acted on but never cast.
        outputs: one rep, or one rep per returned tensor.
        n_samples: number of sampled elements for infinite/large groups.
        dtype: floating dtype of the check.
        rtol: relative tolerance; default 1e-10 for float64, 1e-5 for float32.
        atol: absolute tolerance added to ``rtol * scale`` (useful for outputs
            that are zero up to round-off).
        seed: seed for sampling group elements.
        grad: if False, ``fn`` runs under ``torch.no_grad()``; set True for
            functions that use autograd inside (e.g. forces). The harness never
            sets ``requires_grad`` itself.

    Returns:
        The largest relative error seen over all elements and outputs.

    Raises:
        ValueError: if a module's floating parameters/buffers are not ``dtype``,
            no default tolerance exists for ``dtype``, or the number of outputs
            does not match the reps.
        AssertionError: if some output is not equivariant within tolerance
            (one-line message: group, element index, improper or not, output
            index, error and tolerance), or output shapes differ.
    """
    if isinstance(fn, torch.nn.Module):
        for name, t in [*fn.named_parameters(), *fn.named_buffers()]:
            if t.is_floating_point() and t.dtype != dtype:
                raise ValueError(f"module tensor {name!r} has dtype {t.dtype}, expected {dtype}")
    if rtol is None:
        if dtype not in _DEFAULT_RTOL:
            raise ValueError(f"no default tolerance for {dtype}; pass rtol")
        rtol = _DEFAULT_RTOL[dtype]
    out_reps = [outputs] if isinstance(outputs, Rep) else list(outputs)

    xs = [x.detach().to(dtype) if x.is_floating_point() else x.detach() for x, _ in inputs]
    in_reps = [rep for _, rep in inputs]

    def call(args: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        ctx = contextlib.nullcontext() if grad else torch.no_grad()
        with ctx:
            ys = _as_tuple(fn(*[a.clone() for a in args]))
        if len(ys) != len(out_reps):
            raise ValueError(f"fn returned {len(ys)} outputs but {len(out_reps)} reps were given")
        return tuple(y.detach() for y in ys)

    ys = call(xs)
    worst = 0.0
    for k, g in enumerate(_group_elements(group, n_samples, seed)):
        ys_of_gx = call([rep.act(g, x) for x, rep in zip(xs, in_reps)])
        for j, (a, y, rep) in enumerate(zip(ys_of_gx, ys, out_reps)):
            b = rep.act(g, y)
            where = f"{group.name} element {k} (improper={g.is_improper}), output {j}"
            if a.shape != b.shape:
                raise AssertionError(f"not equivariant: {where}: shape {tuple(a.shape)} != {tuple(b.shape)}")
            diff = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
            scale = max(b.double().abs().max().item() if b.numel() else 0.0, 1e-12)
            err = diff / scale
            worst = max(worst, err)
            if not diff <= atol + rtol * scale:  # also catches NaN
                raise AssertionError(
                    f"not equivariant: {where}: error {err:.3e} > rtol {rtol:.1e} (atol {atol:.1e})"
                )
    return worst
