"""Error bars for Markov-chain time series: integrated autocorrelation time with automatic windowing.

For a stationary series ``x_1 … x_T`` (or ``B`` independent chains of it) with normalised
autocorrelation ``ρ(t)``, the integrated autocorrelation time is ``τ_int = 1/2 + Σ_{t≥1} ρ(t)``
and the variance of the sample mean is ``2 τ_int σ² / (T B)`` (``τ_int = 1/2`` for independent
samples). The sum is truncated at the smallest window ``W`` with ``W >= c τ_int(W)`` (Sokal's
automatic windowing, Madras & Sokal 1988; ``c = 5`` by default), which balances the bias of the
truncation against the noise of the tail. With several chains, the autocovariance is averaged over
chains around the common mean, so chains that disagree (not yet thermalised) inflate the error.
"""

from __future__ import annotations

import dataclasses
import math

import torch

__all__ = ["Estimate", "autocorrelation", "estimate", "integrated_autocorrelation_time"]


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A Monte Carlo average with its error bar.

    Attributes:
        mean: sample mean over all steps and chains.
        error: one standard error, including the autocorrelation (``sqrt(2 τ σ² / (T B))``).
        tau: integrated autocorrelation time ``τ_int`` in steps (1/2 for independent samples).
        num_samples: ``T * B``.
    """

    mean: float
    error: float
    tau: float
    num_samples: int

    def __str__(self) -> str:
        return f"{self.mean:.6g} ± {self.error:.2g} (τ_int = {self.tau:.3g}, {self.num_samples} samples)"


def _as_chains(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"time series must have shape (T,) or (T, B) with T >= 2, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("time series contains non-finite values")
    return x


def autocorrelation(x: torch.Tensor) -> torch.Tensor:
    """Normalised autocorrelation function averaged over chains (FFT, O(T log T)).

    Args:
        x: ``(T,)`` one chain or ``(T, B)`` ``B`` chains of equal length.

    Returns:
        ``(T,)`` float64 ``ρ(t)`` with ``ρ(0) = 1`` (``ρ(t > 0) = 0`` when the series is constant).
    """
    x = _as_chains(x)
    n = x.shape[0]
    y = x - x.mean()
    f = torch.fft.rfft(y, n=2 * n, dim=0)  # zero padding: no wrap-around
    acov = torch.fft.irfft(f * f.conj(), n=2 * n, dim=0)[:n].mean(-1) / n  # (T,)
    if acov[0] <= 0:
        return (torch.arange(n) == 0).to(torch.float64)
    return acov / acov[0]


def integrated_autocorrelation_time(x: torch.Tensor, c: float = 5.0) -> float:
    """``τ_int`` with Sokal's automatic window ``W = min{W : W >= c τ_int(W)}``.

    Args:
        x: ``(T,)`` or ``(T, B)`` time series.
        c: window factor (5 is customary; larger is safer for slowly decaying ``ρ``).

    Returns:
        ``τ_int`` in steps (0.5 for an uncorrelated or a constant series). When no window
        satisfies the condition (series shorter than about ``c τ``), the full-length sum is
        returned, an underestimate: run longer.
    """
    rho = autocorrelation(x)
    taus = 0.5 + torch.cumsum(rho[1:], 0)  # taus[W - 1] = τ(W)
    windows = torch.arange(1, len(rho), dtype=torch.float64)
    ok = torch.nonzero(windows >= c * taus)
    tau = taus[ok[0, 0]] if len(ok) else taus[-1]
    return max(float(tau), 0.5)


def estimate(x: torch.Tensor, c: float = 5.0) -> Estimate:
    """Mean and autocorrelation-aware standard error of a Markov-chain series.

    Args:
        x: ``(T,)`` or ``(T, B)``: ``T`` successive steps of ``B`` independent chains.
        c: window factor of :func:`integrated_autocorrelation_time`.

    Returns:
        The :class:`Estimate`.

    Raises:
        ValueError: wrong shape, fewer than two steps, or non-finite values.
    """
    x = _as_chains(x)
    tau = integrated_autocorrelation_time(x, c)
    n = x.numel()
    var = float(((x - x.mean()) ** 2).mean())
    return Estimate(mean=float(x.mean()), error=math.sqrt(2 * tau * var / n), tau=tau, num_samples=n)
