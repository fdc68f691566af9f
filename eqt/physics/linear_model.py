"""The linear (Heisenberg) effective model of self-learning Monte Carlo.

    E_eff(S) = E0 - Σ_{n=1}^{n_shells} J_n C_n(S),    C_n(S) = Σ_{{i,j} in shell n} S_i · S_j

Shells are those of :mod:`eqt.primitives.lattice` (minimum-image distances, each unordered pair once).
``J_n > 0`` favours parallel spins in shell ``n``. The couplings are fitted by ordinary least
squares on (configuration, exact energy) pairs, e.g. from exact Monte Carlo.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch

from eqt.config import Config
from eqt.primitives import lattice
from eqt.primitives.lattice import check_lattice_size, check_spins, shell_masks, shell_pairs

__all__ = ["LinearSpinModel", "fit_linear_model", "shell_correlations"]


def shell_correlations(spins: torch.Tensor, num_shells: int) -> torch.Tensor:
    """Shell sums of spin products ``C_n(S) = Σ_{{i,j} in shell n} S_i · S_j``.

    Args:
        spins: ``(B, L, L, 3)`` unit spins.
        num_shells: number of shells (at most the number present on the lattice).

    Returns:
        ``(B, num_shells)`` float64.

    Raises:
        ValueError: bad spins, or a lattice too small for ``num_shells`` shells.
    """
    L = spins.shape[1] if isinstance(spins, torch.Tensor) and spins.dim() == 4 else -1
    if L < 0:
        raise ValueError(f"spins must have shape (B, L, L, 3), got {tuple(getattr(spins, 'shape', ()))}")
    check_lattice_size(L)
    shell_pairs(L, num_shells)  # validates num_shells against the lattice
    s = check_spins(spins, L).reshape(spins.shape[0], L * L, 1, 3)  # (B, N, 1, 3)
    return lattice.shell_correlations(s, L, num_shells)[..., 0]


@functools.lru_cache(maxsize=64)
def _coupling_matrix(L: int, couplings: tuple[float, ...]) -> torch.Tensor:
    """``(N, N)`` float64 ``K_ij = J_{shell(i, j)}`` (0 on the diagonal and beyond the last shell)."""
    return torch.einsum("n,nij->ij", torch.tensor(couplings, dtype=torch.float64), shell_masks(L, len(couplings)))


@dataclasses.dataclass(frozen=True)
class LinearSpinModel(Config):
    """Fitted linear effective model; call it on ``(B, L, L, 3)`` spins to get ``(B,)`` energies.

    A :class:`~eqt.config.Config`, so ``to_dict``/``from_dict`` store and restore it.

    Attributes:
        L: lattice size.
        e0: constant ``E0``.
        couplings: ``(J_1, ..., J_n)``, one per shell, ``J > 0`` ferromagnetic.
    """

    L: int = 6
    e0: float = 0.0
    couplings: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        check_lattice_size(self.L)
        object.__setattr__(self, "couplings", tuple(float(j) for j in self.couplings))
        if not all(math.isfinite(j) for j in self.couplings + (float(self.e0),)):
            raise ValueError("LinearSpinModel.e0 and couplings must be finite")
        shell_pairs(self.L, len(self.couplings))  # raises for too many shells

    @property
    def num_shells(self) -> int:
        """Number of coupling shells."""
        return len(self.couplings)

    def __call__(self, spins: torch.Tensor) -> torch.Tensor:
        """``(B, L, L, 3)`` spins -> ``(B,)`` float64 effective energies."""
        s = check_spins(spins, self.L).reshape(spins.shape[0], self.L**2, 3)  # (B, N, 3)
        k = _coupling_matrix(self.L, self.couplings)  # (N, N)
        return self.e0 - 0.5 * (s * (k @ s)).sum(dim=(1, 2))


def fit_linear_model(spins: torch.Tensor, energies: torch.Tensor, num_shells: int) -> LinearSpinModel:
    """Least-squares fit of ``E0`` and ``J_1 … J_n`` to exact energies.

    Args:
        spins: ``(M, L, L, 3)`` training configurations.
        energies: ``(M,)`` their exact energies.
        num_shells: number of shells to fit.

    Returns:
        The fitted :class:`LinearSpinModel`.

    Raises:
        ValueError: bad spins, mismatched lengths, too few configurations (``M <= num_shells``) or a
            lattice too small for ``num_shells``.
    """
    features = shell_correlations(spins, num_shells)  # (M, n)
    energies = torch.as_tensor(energies, dtype=torch.float64)
    if energies.shape != (features.shape[0],):
        raise ValueError(f"energies must have shape ({features.shape[0]},), got {tuple(energies.shape)}")
    if features.shape[0] <= num_shells:
        raise ValueError(f"need more than {num_shells} configurations to fit {num_shells} shells and E0, "
                         f"got {features.shape[0]}")
    design = torch.cat([torch.ones_like(features[:, :1]), -features], dim=1)  # (M, 1 + n)
    coef = torch.linalg.lstsq(design, energies[:, None], driver="gelsd").solution[:, 0]
    return LinearSpinModel(L=spins.shape[1], e0=float(coef[0]), couplings=tuple(coef[1:].tolist()))
