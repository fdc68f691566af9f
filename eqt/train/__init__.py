"""Training potentials on energies and forces (Lightning, an optional extra: pip install eqt[train])."""
