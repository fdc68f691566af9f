"""Group elements, groups and reference representations for equivariance testing."""

from eqt.reps.actions import AtomIndex, Cell, Fixed, Invariant, Irreps, Position, Rep, Stress, Vector
from eqt.reps.groups import (
    E3,
    O3,
    SE3,
    SO3,
    Element,
    FiniteGroup,
    Group,
    Permutations,
    ProductGroup,
    Translations,
    cube_group,
)

__all__ = [
    "Element",
    "Group",
    "SO3",
    "O3",
    "SE3",
    "E3",
    "Translations",
    "Permutations",
    "ProductGroup",
    "FiniteGroup",
    "cube_group",
    "Rep",
    "Invariant",
    "Vector",
    "Position",
    "Irreps",
    "AtomIndex",
    "Fixed",
    "Cell",
    "Stress",
]
