"""Physics around models: energy to forces and stress, calculators, MD.

The public names below are imported lazily (PEP 562) on first use, so ``import eqt.physics``
stays light (no ASE, tblite or Lightning) and has no import cycles with ``eqt.models``::

    from eqt.physics import Potential, Calculator, GraphedPotential, run_md, MDConfig
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eqt._lazy import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "Potential": "eqt.physics.potential",
    "Calculator": "eqt.physics.calculator",
    "check_device": "eqt.physics.calculator",
    "GraphedPotential": "eqt.physics.graphed",
    "MDConfig": "eqt.physics.md",
    "MDResult": "eqt.physics.md",
    "MDInstabilityError": "eqt.physics.md",
    "MDStateMismatch": "eqt.physics.md",
    "run_md": "eqt.physics.md",
    "check_structure": "eqt.physics.md",
    "plot_md_log": "eqt.physics.md_plot",
    "ReplicaConfig": "eqt.physics.replicas",
    "ReplicaLangevin": "eqt.physics.replicas",
    "LabelError": "eqt.physics.reference",
    "xtb_calculator": "eqt.physics.reference",
    "label": "eqt.physics.reference",
    "label_to_file": "eqt.physics.reference",
    "sample_md": "eqt.physics.reference",
    "sample_md_to_file": "eqt.physics.reference",
    "SpinFermionConfig": "eqt.physics.spin_fermion",
    "free_energy": "eqt.physics.spin_fermion",
    "MCConfig": "eqt.physics.monte_carlo",
    "MCResult": "eqt.physics.monte_carlo",
    "random_spins": "eqt.physics.monte_carlo",
    "run_metropolis": "eqt.physics.monte_carlo",
    "run_slmc": "eqt.physics.monte_carlo",
    "LinearSpinModel": "eqt.physics.linear_model",
    "fit_linear_model": "eqt.physics.linear_model",
    "Estimate": "eqt.physics.mc_statistics",
    "estimate": "eqt.physics.mc_statistics",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from eqt.physics.calculator import Calculator, check_device
    from eqt.physics.graphed import GraphedPotential
    from eqt.physics.linear_model import LinearSpinModel, fit_linear_model
    from eqt.physics.mc_statistics import Estimate, estimate
    from eqt.physics.md import (MDConfig, MDInstabilityError, MDResult, MDStateMismatch, check_structure,
                                run_md)
    from eqt.physics.md_plot import plot_md_log
    from eqt.physics.monte_carlo import MCConfig, MCResult, random_spins, run_metropolis, run_slmc
    from eqt.physics.potential import Potential
    from eqt.physics.reference import (LabelError, label, label_to_file, sample_md, sample_md_to_file,
                                       xtb_calculator)
    from eqt.physics.replicas import ReplicaConfig, ReplicaLangevin
    from eqt.physics.spin_fermion import SpinFermionConfig, free_energy
