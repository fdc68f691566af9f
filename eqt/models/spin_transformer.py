"""The equivariant transformer effective model of self-learning Monte Carlo (Nagai & Tomiya).

``SpinTransformer`` maps spin configurations ``(B, L, L, 3)`` to effective energies ``(B,)``:
the spins are copied into ``channels`` vector channels, ``num_layers``
:class:`~eqt.layers.lattice.SpinAttention` layers turn them into effective spins, and a
:class:`~eqt.layers.lattice.ShellReadout` gives the Heisenberg energy of the effective spins
``E0 - sum_n sum_c J_nc sum_<ij>_n S^eff_ic . S^eff_jc``. With ``num_layers = 0`` this is the
linear effective model; :meth:`SpinTransformer.from_linear` starts any depth exactly at a fitted
linear model (attention outputs are initialised at zero), so training only improves on it.

Symmetries: a global O(3) rotation of the spins (inversion ``S -> -S`` included), lattice
translations and the square's point group D4 leave the energy unchanged; proven for every element
of translations x D4 and random O(3) elements in ``tests/models/test_spin_transformer.py``.

Choices where the paper is not available (``docs/slmc.md``): softmax attention over all sites,
shell-shared query/key/value weights up to ``qkv_shells`` shells (the "block-spin" transforms),
renormalisation of every channel to unit length after each layer, the Heisenberg readout of the
linear model with per-channel couplings.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from eqt.config import Config
from eqt.layers.lattice import ShellReadout, SpinAttention
from eqt.primitives.lattice import check_lattice_size

__all__ = ["SpinTransformerConfig", "SpinTransformer"]


@dataclasses.dataclass(frozen=True)
class SpinTransformerConfig(Config):
    """Size of the effective model.

    Attributes:
        L: lattice size (even).
        num_layers: attention layers (0: the linear model).
        channels: vector channels of the effective spins.
        heads: attention heads per layer.
        head_channels: vector channels per head.
        qkv_shells: neighbour shells of the query/key/value convolution.
        readout_shells: neighbour shells with a coupling in the readout.
        normalize: renormalise channels to unit length after each layer.
    """

    L: int = 6
    num_layers: int = 2
    channels: int = 4
    heads: int = 2
    head_channels: int = 4
    qkv_shells: int = 3
    readout_shells: int = 5
    normalize: bool = True

    def __post_init__(self) -> None:
        check_lattice_size(self.L)
        for name in ("channels", "heads", "head_channels", "qkv_shells", "readout_shells"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {self.num_layers}")


class SpinTransformer(nn.Module):
    """Effective energy of classical spin configurations on the periodic square lattice.

    Args:
        config: a :class:`SpinTransformerConfig`.
    """

    def __init__(self, config: SpinTransformerConfig = SpinTransformerConfig()):
        super().__init__()
        c = self.config = config
        self.layers = nn.ModuleList(SpinAttention(c.L, c.channels, c.heads, c.head_channels, c.qkv_shells, c.normalize)
                                    for _ in range(c.num_layers))
        self.readout = ShellReadout(c.L, c.channels, c.readout_shells)

    @classmethod
    def from_linear(cls, config: SpinTransformerConfig, e0: float, couplings: tuple[float, ...]) -> SpinTransformer:
        """A model that starts exactly at the linear model ``E0 - sum_n J_n sum_<ij>_n S_i . S_j``.

        Args:
            config: the size (``readout_shells`` must equal ``len(couplings)``).
            e0, couplings: of a fitted :class:`eqt.physics.linear_model.LinearSpinModel`.
        """
        if len(couplings) != config.readout_shells:
            raise ValueError(f"{len(couplings)} couplings for readout_shells={config.readout_shells}")
        model = cls(config)
        with torch.no_grad():
            model.readout.e0.fill_(float(e0))
            j = torch.as_tensor(couplings, dtype=model.readout.couplings.dtype)
            model.readout.couplings.copy_(j[:, None].expand(-1, config.channels) / config.channels)
        return model

    def effective_spins(self, spins: Tensor) -> Tensor:
        """Args: spins ``(B, L, L, 3)``. Returns the effective spins ``(B, L*L, channels, 3)``."""
        L = self.config.L
        if spins.dim() != 4 or spins.shape[1:] != (L, L, 3):
            raise ValueError(f"spins must be (B, {L}, {L}, 3), got {tuple(spins.shape)}")
        param = self.readout.e0
        x = spins.to(param.dtype).reshape(spins.shape[0], L * L, 1, 3).expand(-1, -1, self.config.channels, -1)
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, spins: Tensor) -> Tensor:
        """Args: spins ``(B, L, L, 3)`` unit vectors. Returns effective energies ``(B,)``."""
        return self.readout(self.effective_spins(spins))
