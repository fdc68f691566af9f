"""Equivariance test harness: groups, reference reps and ``assert_equivariant``."""

from eqt.reps.actions import AtomIndex, Cell, Fixed, Invariant, Irreps, Multivector, Position, Rep, Stress, Vector
from eqt.reps.groups import (
    E3,
    O3,
    SE3,
    SO3,
    Element,
    FiniteGroup,
    Group,
    Permutations,
    Pin,
    ProductGroup,
    Translations,
    cube_group,
    square_lattice_group,
)
from eqt.reps.rays import Ray, RayField
from eqt.testing.equivariance import assert_equivariant

__all__ = [
    "RayField",
    "assert_equivariant",
    "Element",
    "Group",
    "SO3",
    "O3",
    "SE3",
    "E3",
    "Translations",
    "Permutations",
    "Pin",
    "Multivector",
    "ProductGroup",
    "FiniteGroup",
    "cube_group",
    "square_lattice_group",
    "Rep",
    "Invariant",
    "Vector",
    "Position",
    "Ray",
    "Irreps",
    "AtomIndex",
    "Fixed",
    "Cell",
    "Stress",
]
