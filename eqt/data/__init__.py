"""Data containers, batching and input validation for atomic systems."""

from eqt.data.atoms import AtomicSystems, collate, validate_systems

__all__ = ["AtomicSystems", "collate", "validate_systems"]
