"""Group elements and groups used to test equivariance.

Conventions (used everywhere in :mod:`eqt.reps` and :mod:`eqt.testing`):

* ``rotation`` ``R`` (3, 3) acts on a Cartesian column vector as ``v -> R @ v``;
  for row-vector tensors ``pos`` (N, 3) this is ``pos -> pos @ R.T``. ``R`` is
  orthogonal with ``det R = +1`` (proper) or ``-1`` (improper).
* ``translation`` ``t`` (3,) acts on positions as ``r -> R @ r + t`` (rotate first).
* ``permutation`` ``perm`` (n,) relabels items: ``new[i] = old[perm[i]]``, i.e.
  ``x_new = x[perm]`` along the atom axis.

A field set to ``None`` means "identity" for that part of the element.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

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
    "square_lattice_group",
]

_MIRROR = np.diag([1.0, 1.0, -1.0])


@dataclass(frozen=True, eq=False)
class Element:
    """One group element: an optional rotation, translation and permutation.

    The action on positions is ``r -> R @ r + t`` followed by relabelling atoms
    with ``x_new = x[perm]`` (``new[i] = old[perm[i]]``). The spatial and
    permutation parts commute, so their order does not matter.

    Args:
        rotation: (3, 3) float64 orthogonal matrix (det +1 or -1), or None.
        translation: (3,) float64 vector, or None.
        permutation: (n,) int64 array, a permutation of ``range(n)``, or None.
        vector_action: (n, n) float64 matrix of a Pin(p, q, r) element on the basis vectors of a
            Clifford algebra (a product of metric reflections), or None; multivectors transform
            by its outermorphism (see :class:`eqt.reps.actions.Multivector`).

    Raises:
        ValueError: if a field has the wrong shape, is not orthogonal, or is not
            a permutation.
    """

    rotation: np.ndarray | None = None
    translation: np.ndarray | None = None
    permutation: np.ndarray | None = None
    vector_action: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.rotation is not None:
            r = np.asarray(self.rotation, dtype=np.float64)
            if r.shape != (3, 3):
                raise ValueError(f"rotation must be (3, 3), got {r.shape}")
            if not np.allclose(r @ r.T, np.eye(3), atol=1e-8):
                raise ValueError("rotation must be orthogonal")
            object.__setattr__(self, "rotation", r)
        if self.translation is not None:
            t = np.asarray(self.translation, dtype=np.float64)
            if t.shape != (3,):
                raise ValueError(f"translation must be (3,), got {t.shape}")
            object.__setattr__(self, "translation", t)
        if self.vector_action is not None:
            object.__setattr__(self, "vector_action", np.asarray(self.vector_action, dtype=np.float64))
        if self.permutation is not None:
            p = np.asarray(self.permutation, dtype=np.int64)
            if p.ndim != 1 or not np.array_equal(np.sort(p), np.arange(len(p))):
                raise ValueError("permutation must be a permutation of range(n)")
            object.__setattr__(self, "permutation", p)

    @property
    def is_improper(self) -> bool:
        """True if the rotation part has determinant -1 (contains a reflection)."""
        return self.rotation is not None and bool(np.linalg.det(self.rotation) < 0)

    def compose(self, other: Element) -> Element:
        """Return ``self ∘ other``: apply ``other`` first, then ``self``.

        Args:
            other: the element applied first.

        Returns:
            The composed element (rotation ``R_s @ R_o``, translation
            ``R_s @ t_o + t_s``, permutation ``perm_o[perm_s]``).
        """
        r_s = np.eye(3) if self.rotation is None else self.rotation
        rot = None
        if self.rotation is not None or other.rotation is not None:
            r_o = np.eye(3) if other.rotation is None else other.rotation
            rot = r_s @ r_o
        trans = None
        if self.translation is not None or other.translation is not None:
            t_o = np.zeros(3) if other.translation is None else other.translation
            t_s = np.zeros(3) if self.translation is None else self.translation
            trans = r_s @ t_o + t_s
        if self.permutation is None:
            perm = other.permutation
        elif other.permutation is None:
            perm = self.permutation
        else:
            perm = other.permutation[self.permutation]
        return Element(rotation=rot, translation=trans, permutation=perm)


class Group:
    """Base class of groups: a way to sample (and, if finite, list) elements.

    Attributes:
        name: human-readable name used in error messages.
        finite: whether ``elements()`` is available.
    """

    name: str = "Group"
    finite: bool = False

    @property
    def order(self) -> int | None:
        """Number of elements, or None for infinite groups."""
        return None

    def sample(self, n: int, rng: np.random.Generator) -> list[Element]:
        """Draw ``n`` random elements.

        Args:
            n: number of elements.
            rng: numpy random generator.

        Returns:
            A list of ``n`` elements.
        """
        raise NotImplementedError

    def elements(self) -> list[Element]:
        """List all elements of a finite group.

        Returns:
            All group elements.

        Raises:
            ValueError: if the group is infinite.
        """
        raise ValueError(f"{self.name} is not finite")

    def __mul__(self, other: Group) -> ProductGroup:
        return ProductGroup(self, other)

    def __repr__(self) -> str:
        return self.name


def _haar_rotation(rng: np.random.Generator) -> np.ndarray:
    """Haar-random (3, 3) rotation with det +1 (QR of a Gaussian + sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))  # Haar on O(3)
    if np.linalg.det(q) < 0:
        q = -q  # -I commutes with everything: Haar on SO(3)
    return q


class SO3(Group):
    """Proper rotations (det +1), sampled from the Haar measure."""

    name = "SO3"

    def sample(self, n: int, rng: np.random.Generator) -> list[Element]:
        return [Element(rotation=_haar_rotation(rng)) for _ in range(n)]


class O3(Group):
    """Rotations and improper rotations.

    ``sample`` returns Haar rotations at even indices and improper elements at
    odd indices: index ``i % 4 == 1`` is an inversion ``-R`` and ``i % 4 == 3``
    a mirror ``diag(1, 1, -1) @ R``. For ``n == 3`` index 2 is also a mirror, so
    both kinds of improper element appear whenever ``n >= 3``.
    """

    name = "O3"

    def sample(self, n: int, rng: np.random.Generator) -> list[Element]:
        out = []
        for i in range(n):
            r = _haar_rotation(rng)
            if i % 4 == 1:
                r = -r
            elif i % 4 == 3 or (n == 3 and i == 2):
                r = _MIRROR @ r
            out.append(Element(rotation=r))
        return out


class SE3(Group):
    """Proper rotations plus a random translation (normal, scale 3.0)."""

    name = "SE3"

    def sample(self, n: int, rng: np.random.Generator) -> list[Element]:
        return [
            Element(rotation=g.rotation, translation=3.0 * rng.standard_normal(3))
            for g in SO3().sample(n, rng)
        ]


class E3(Group):
    """``O3`` samples plus a random translation (normal, scale 3.0)."""

    name = "E3"

    def sample(self, n: int, rng: np.random.Generator) -> list[Element]:
        return [
            Element(rotation=g.rotation, translation=3.0 * rng.standard_normal(3))
            for g in O3().sample(n, rng)
        ]


class Translations(Group):
    """Pure translations (normal, scale 3.0)."""

    name = "Translations"

    def sample(self, n: int, rng: np.random.Generator) -> list[Element]:
        return [Element(translation=3.0 * rng.standard_normal(3)) for _ in range(n)]


class Permutations(Group):
    """Permutations of ``n_items`` items, optionally only within blocks.

    Args:
        n_items: number of items (atoms).
        blocks: optional (n_items,) sorted int labels (e.g. a molecule ``batch``
            vector); permutations then only mix items with the same label, so
            ``blocks[perm] == blocks``.

    Raises:
        ValueError: if ``blocks`` has the wrong length or is not sorted.
    """

    finite = True

    def __init__(self, n_items: int, blocks: np.ndarray | None = None) -> None:
        self.n_items = int(n_items)
        if blocks is None:
            self.blocks = np.zeros(self.n_items, dtype=np.int64)
        else:
            if hasattr(blocks, "detach"):  # torch tensor
                blocks = blocks.detach().cpu().numpy()
            self.blocks = np.asarray(blocks, dtype=np.int64)
            if self.blocks.shape != (self.n_items,):
                raise ValueError(f"blocks must have shape ({self.n_items},)")
            if np.any(np.diff(self.blocks) < 0):
                raise ValueError("blocks must be sorted")
        self.name = f"Permutations({self.n_items})" + ("" if blocks is None else "[blocks]")

    def _block_indices(self) -> list[np.ndarray]:
        return [np.flatnonzero(self.blocks == b) for b in np.unique(self.blocks)]

    @property
    def order(self) -> int:
        return math.prod(math.factorial(len(idx)) for idx in self._block_indices())

    def sample(self, n: int, rng: np.random.Generator) -> list[Element]:
        out = []
        for _ in range(n):
            perm = np.arange(self.n_items)
            for idx in self._block_indices():
                perm[idx] = rng.permutation(idx)
            out.append(Element(permutation=perm))
        return out

    def elements(self) -> list[Element]:
        """List all (within-block) permutations.

        Returns:
            ``order`` elements.

        Raises:
            ValueError: if ``n_items > 7``.
        """
        if self.n_items > 7:
            raise ValueError(f"refusing to enumerate permutations of {self.n_items} > 7 items")
        blocks = self._block_indices()
        out = []
        for choice in itertools.product(*(itertools.permutations(idx) for idx in blocks)):
            perm = np.arange(self.n_items)
            for idx, p in zip(blocks, choice):
                perm[idx] = p
            out.append(Element(permutation=perm))
        return out


def _merge(parts: list[Element]) -> Element:
    fields: dict[str, np.ndarray] = {}
    for g in parts:
        for key in ("rotation", "translation", "permutation", "vector_action"):
            value = getattr(g, key)
            if value is not None:
                if key in fields:
                    raise ValueError(f"two factors of a product group both set {key!r}")
                fields[key] = value
    return Element(**fields)


class ProductGroup(Group):
    """Direct product of groups acting on different fields (e.g. ``O3() * Permutations(n)``).

    Args:
        *groups: the factors; no two may set the same Element field.
    """

    def __init__(self, *groups: Group) -> None:
        flat: list[Group] = []
        for g in groups:
            flat.extend(g.groups if isinstance(g, ProductGroup) else [g])
        self.groups = flat
        self.name = " x ".join(g.name for g in flat)
        self.finite = all(g.finite for g in flat)

    @property
    def order(self) -> int | None:
        return math.prod(g.order for g in self.groups) if self.finite else None

    def sample(self, n: int, rng: np.random.Generator) -> list[Element]:
        samples = [g.sample(n, rng) for g in self.groups]
        return [_merge(list(parts)) for parts in zip(*samples)]

    def elements(self) -> list[Element]:
        if not self.finite:
            raise ValueError(f"{self.name} is not finite")
        return [_merge(list(p)) for p in itertools.product(*(g.elements() for g in self.groups))]


class FiniteGroup(Group):
    """A finite group given by an explicit list of elements.

    Args:
        elements: all group elements.
        name: name used in messages.
    """

    finite = True

    def __init__(self, elements: list[Element], name: str = "FiniteGroup") -> None:
        self._elements = list(elements)
        self.name = name

    @property
    def order(self) -> int:
        return len(self._elements)

    def sample(self, n: int, rng: np.random.Generator) -> list[Element]:
        return [self._elements[i] for i in rng.integers(len(self._elements), size=n)]

    def elements(self) -> list[Element]:
        return list(self._elements)


def cube_group() -> FiniteGroup:
    """The full octahedral group Oh: the 48 signed 3x3 permutation matrices.

    Returns:
        A FiniteGroup of 48 rotation-only Elements (24 proper, 24 improper).
    """
    out = []
    for perm in itertools.permutations(range(3)):
        p = np.eye(3)[list(perm)]
        for signs in itertools.product((1.0, -1.0), repeat=3):
            out.append(Element(rotation=np.diag(signs) @ p))
    return FiniteGroup(out, name="Oh")


def metric_reflection(v: np.ndarray, metric: np.ndarray) -> np.ndarray:
    """Matrix of the reflection ``a -> a - 2 (a.v) / (v.v) v`` for the diagonal ``metric``.

    Args:
        v: (n,) a non-null vector.
        metric: (n,) diagonal metric (entries 1, -1 or 0).

    Returns:
        (n, n) matrix ``M`` with ``M @ a`` the reflected vector.
    """
    vv = float((v * v * metric).sum())
    if abs(vv) < 1e-12:
        raise ValueError("cannot reflect in a null vector")
    return np.eye(len(v)) - 2.0 * np.outer(v, v * metric) / vv


class Pin(Group):
    """Pin(p, q, r) acting on a Clifford algebra's vectors, or its Euclidean subgroup.

    Elements are products of 1 to 4 random metric reflections (``proper=True``: 2 or 4), stored
    as ``vector_action``. Basis vectors are ordered null first, then ``+1``, then ``-1`` (the order
    of :mod:`eqt.primitives.clifford`). ``subgroup="euclidean"`` reflects only in ``n + d e_inf``
    (``n`` a unit vector of the three first Euclidean directions, ``e_inf`` the null direction:
    none for G(3,0,0), ``e0`` for G(3,0,1), ``e4 + e5`` for G(4,1,0)), i.e. E(3) (O(3) without null
    direction).

    Args:
        p, q, r: the signature.
        subgroup: ``"pin"`` or ``"euclidean"``.
        proper: only even numbers of reflections.
    """

    def __init__(self, p: int, q: int = 0, r: int = 0, subgroup: str = "pin", proper: bool = False) -> None:
        if subgroup not in ("pin", "euclidean"):
            raise ValueError(f"unknown subgroup '{subgroup}'")
        self.p, self.q, self.r, self.subgroup, self.proper = p, q, r, subgroup, proper
        self.metric = np.array([0.0] * r + [1.0] * p + [-1.0] * q)
        self.name = f"Pin({p},{q},{r}){'-euclidean' if subgroup == 'euclidean' else ''}{'+' if proper else ''}"

    def _vector(self, rng: np.random.Generator) -> np.ndarray:
        n = len(self.metric)
        if self.subgroup == "pin":
            while True:
                v = rng.standard_normal(n)
                if abs(float((v * v * self.metric).sum())) > 0.1:
                    return v
        v = np.zeros(n)
        u = rng.standard_normal(3)
        v[self.r:self.r + 3] = u / np.linalg.norm(u)
        if self.r == 1:
            v[0] = rng.standard_normal()
        elif (self.p, self.q) == (4, 1):
            v[3] += (d := rng.standard_normal())
            v[4] += d
        return v

    def sample(self, n: int, rng: np.random.Generator) -> list[Element]:
        out = []
        for i in range(n):
            count = (2, 4)[i % 2] if self.proper else 1 + i % 4
            m = np.eye(len(self.metric))
            for _ in range(count):
                m = metric_reflection(self._vector(rng), self.metric) @ m
            out.append(Element(vector_action=m))
        return out


def square_lattice_group(L: int) -> FiniteGroup:
    """Translations x D4 of the periodic ``L x L`` square lattice as site permutations (``8 L^2`` elements).

    Sites are numbered ``i = x * L + y``. Each element maps site ``(x, y)`` to
    ``g(x, y) = D (x, y) + (a, b) mod L`` with ``D`` one of the 8 signed permutation matrices of the
    square; acting on a per-site tensor it relabels sites (``new[g(i)] = old[i]``). Spins are not
    rotated (the spin rotation group is a separate factor, e.g. ``O3()``).

    Args:
        L: lattice size (>= 1).

    Returns:
        A :class:`FiniteGroup` whose elements carry only ``permutation``.
    """
    if not isinstance(L, int) or L < 1:
        raise ValueError(f"lattice size must be a positive integer, got {L!r}")
    xy = np.array([(x, y) for x in range(L) for y in range(L)])
    mats = []
    for perm in ((0, 1), (1, 0)):
        for sx in (1, -1):
            for sy in (1, -1):
                m = np.zeros((2, 2), dtype=int)
                m[0, perm[0]], m[1, perm[1]] = sx, sy
                mats.append(m)
    elements = []
    for m in mats:
        for a in range(L):
            for b in range(L):
                image = (xy @ m.T + (a, b)) % L  # g(site i)
                target = image[:, 0] * L + image[:, 1]
                perm = np.empty(L * L, dtype=np.int64)
                perm[target] = np.arange(L * L)  # new[g(i)] = old[i]  <=>  new[j] = old[perm[j]]
                elements.append(Element(permutation=perm))
    return FiniteGroup(elements, name=f"p4m({L}x{L})")
