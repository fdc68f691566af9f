"""ASE interface of eqt: ``from eqt.ase import Calculator``."""

from eqt.physics.calculator import Calculator

__all__ = ["Calculator"]
