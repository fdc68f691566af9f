"""eqt: equivariant transformers for geometric deep learning and machine-learned physics.

Public API by subpackage: ``eqt.models`` (ET, Equiformer, GATr, ... and their configs),
``eqt.physics`` (Potential, Calculator, GraphedPotential, run_md, MDConfig, ...), ``eqt.data``
(AtomicSystems, read_frames, ...), ``eqt.testing`` (assert_equivariant, PotentialContract).
"""

# The one version string; must equal pyproject.toml's [project] version (tests/test_docs.py checks
# it against pyproject.toml and the installed distribution's metadata).
__version__ = "0.1.0"
