"""Models: thin compositions of layers, each with a frozen config (tier 3).

The public names below are imported lazily (PEP 562) on first use, so ``import eqt.models`` does
not import e3nn or every model::

    from eqt.models import ET, ETConfig, Equiformer, EquiformerConfig, GATr, GATrConfig
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eqt._lazy import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "EnergyModel": "eqt.models.base",
    "ET": "eqt.models.et",
    "ETConfig": "eqt.models.et",
    "from_torchmdnet": "eqt.models.et",
    "Equiformer": "eqt.models.equiformer",
    "EquiformerConfig": "eqt.models.equiformer",
    "MD17_L2": "eqt.models.equiformer",
    "MD17_L3": "eqt.models.equiformer",
    "QM9_L2": "eqt.models.equiformer",
    "GATr": "eqt.models.gatr",
    "GATrConfig": "eqt.models.gatr",
    "Transformer": "eqt.models.transformer",
    "TransformerConfig": "eqt.models.transformer",
    "NBodyModel": "eqt.models.nbody",
    "NBodyModelConfig": "eqt.models.nbody",
    "RigidBodyModel": "eqt.models.rigid",
    "RigidModelConfig": "eqt.models.rigid",
    "RayOccupancyModel": "eqt.models.rays",
    "RayModelConfig": "eqt.models.rays",
    "SpinTransformer": "eqt.models.spin_transformer",
    "SpinTransformerConfig": "eqt.models.spin_transformer",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from eqt.models.base import EnergyModel
    from eqt.models.equiformer import MD17_L2, MD17_L3, QM9_L2, Equiformer, EquiformerConfig
    from eqt.models.et import ET, ETConfig, from_torchmdnet
    from eqt.models.gatr import GATr, GATrConfig
    from eqt.models.nbody import NBodyModel, NBodyModelConfig
    from eqt.models.rays import RayModelConfig, RayOccupancyModel
    from eqt.models.rigid import RigidBodyModel, RigidModelConfig
    from eqt.models.spin_transformer import SpinTransformer, SpinTransformerConfig
    from eqt.models.transformer import Transformer, TransformerConfig
