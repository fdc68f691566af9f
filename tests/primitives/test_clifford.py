"""Tests for eqt.primitives.clifford: products against the `clifford` library, identities, versors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqt.primitives.clifford import (
    Algebra,
    cayley_indices,
    cayley_table,
    dual,
    geometric_product,
    grade_involution,
    grade_project,
    inner_product,
    inverse,
    join,
    left_contraction,
    norm,
    outer_product,
    random_versor,
    reverse,
    sandwich,
    squared_norm,
)

ALGEBRAS = [Algebra(2, 0, 0), Algebra(3, 0, 0), Algebra(3, 0, 1), Algebra(4, 1, 0)]
IDS = [repr(a) for a in ALGEBRAS]
F64 = torch.float64


def _rand(alg: Algebra, *shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, alg.dim, dtype=F64, generator=g)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-9) -> None:
    scale = max(1.0, float(b.abs().max()))
    torch.testing.assert_close(a, b, rtol=0, atol=tol * scale)


# --- conventions ---------------------------------------------------------------------------------


def test_pga_blade_order_matches_gatr():
    names = ["1", "e0", "e1", "e2", "e3", "e01", "e02", "e03", "e12", "e13", "e23",
             "e012", "e013", "e023", "e123", "e0123"]  # spec gatr.md §1.3
    alg = Algebra(3, 0, 1)
    assert alg.blade_names == tuple(names)
    assert alg.signature == (0, 1, 1, 1)
    assert alg.n == 4 and alg.dim == 16
    assert alg.grades.tolist() == [0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 4]
    torch.testing.assert_close(alg.metric, torch.tensor([0.0, 1, 1, 1], dtype=F64))


def test_other_orders_and_metric():
    assert Algebra(3).blade_names == ("1", "e1", "e2", "e3", "e12", "e13", "e23", "e123")
    c = Algebra(4, 1, 0)
    assert c.dim == 32 and c.signature == (1, 1, 1, 1, -1)
    assert c.blades[:7] == ((), (0,), (1,), (2,), (3,), (4,), (0, 1))
    assert hash(Algebra(3, 0, 1)) == hash(Algebra(3, 0, 1)) and Algebra(3, 0, 1) == Algebra(3, 0, 1)


def test_pga_dual_matches_gatr():
    alg = Algebra(3, 0, 1)
    x = _rand(alg, 5)
    signs = torch.tensor([1, -1, 1, -1, 1, 1, -1, 1, 1, -1, 1, -1, 1, -1, 1, 1], dtype=F64)
    torch.testing.assert_close(dual(alg, x), x[..., list(range(15, -1, -1))] * signs)


@pytest.mark.parametrize("alg", ALGEBRAS, ids=IDS)
def test_dual_is_right_complement(alg):
    eye = torch.eye(alg.dim, dtype=F64)
    pseudo = torch.zeros(alg.dim, dtype=F64)
    pseudo[-1] = 1.0
    _close(outer_product(alg, eye, dual(alg, eye)), pseudo.expand(alg.dim, -1))


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("pqr", [(-1, 0, 0), (3, -1, 0), (3, 0, -2), (4, 2, 1), (7, 0, 0), (2.0, 0, 0)])
def test_bad_signature(pqr):
    with pytest.raises(ValueError, match="Algebra"):
        Algebra(*pqr)


def test_wrong_last_dimension():
    alg = Algebra(3, 0, 1)
    x, bad = torch.zeros(2, 16), torch.zeros(2, 8)
    for fn in (lambda: geometric_product(alg, x, bad), lambda: outer_product(alg, bad, x),
               lambda: inner_product(alg, x, bad), lambda: reverse(alg, bad), lambda: dual(alg, bad),
               lambda: sandwich(alg, bad, x), lambda: norm(alg, bad), lambda: grade_project(alg, bad, 1),
               lambda: join(alg, x, x, reference=bad)):
        with pytest.raises(ValueError, match=r"16.*8|8.*16"):
            fn()
    with pytest.raises(ValueError, match="grades"):
        grade_project(alg, x, 5)
    with pytest.raises(ValueError, match="kind"):
        cayley_table(alg, "regressive")


# --- against the clifford library ---------------------------------------------------------------


def _cf_layout(alg: Algebra):
    cf = pytest.importorskip("clifford")
    first = 0 if alg.r > 0 else 1
    layout, _ = cf.Cl(alg.p, alg.q, alg.r, firstIdx=first)
    # clifford also orders vectors null, positive, negative; check rather than assume.
    assert tuple(int(s) for s in layout.sig) == alg.signature
    # map our blade i -> (clifford index, sign) by matching index sets
    cf_index = {tuple(sorted(b)): (j, _perm_sign(b)) for j, b in enumerate(layout.bladeTupList)}
    perm, signs = [], []
    for b in alg.blades:
        j, s = cf_index[tuple(i + first for i in b)]
        perm.append(j)
        signs.append(s)
    return layout, np.array(perm), np.array(signs, dtype=np.float64)


def _perm_sign(b) -> int:
    b = list(b)
    inv = sum(1 for i in range(len(b)) for j in range(i + 1, len(b)) if b[i] > b[j])
    return -1 if inv % 2 else 1


@pytest.mark.parametrize("alg", ALGEBRAS, ids=IDS)
def test_products_match_clifford(alg):
    layout, perm, signs = _cf_layout(alg)

    def to_cf(x):
        v = np.zeros(alg.dim)
        v[perm] = x.numpy() * signs
        return layout.MultiVector(v)

    def from_cf(mv):
        return torch.from_numpy(np.asarray(mv.value)[perm] * signs)

    xs, ys = _rand(alg, 4, seed=1), _rand(alg, 4, seed=2)
    gp, op, lc = geometric_product(alg, xs, ys), outer_product(alg, xs, ys), left_contraction(alg, xs, ys)
    ip = inner_product(alg, xs, ys)
    for b in range(4):
        x, y = to_cf(xs[b]), to_cf(ys[b])
        _close(gp[b], from_cf(x * y))
        _close(op[b], from_cf(x ^ y))
        _close(lc[b], from_cf(x.lc(y)))
        _close(ip[b], torch.tensor([float((~x * y)[()])], dtype=F64))
        _close(reverse(alg, xs[b]), from_cf(~x))
        _close(grade_involution(alg, xs[b]), from_cf(x.gradeInvol()))
        for k in range(alg.n + 1):
            _close(grade_project(alg, xs[b], k), from_cf(x(k)))


@pytest.mark.parametrize("alg", ALGEBRAS, ids=IDS)
def test_sparse_indices_match_dense(alg):
    out, sign = cayley_indices(alg, "geometric")
    dense = torch.zeros(alg.dim, alg.dim, alg.dim, dtype=F64)
    j, k = torch.meshgrid(torch.arange(alg.dim), torch.arange(alg.dim), indexing="ij")
    dense[out, j, k] = sign
    torch.testing.assert_close(dense, cayley_table(alg, "geometric", dtype=F64))
    assert cayley_table(alg, dtype=torch.float32) is cayley_table(alg, dtype=torch.float32)  # cached


# --- algebraic identities -----------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGEBRAS, ids=IDS)
def test_associativity_and_involutions(alg):
    x, y, z = _rand(alg, 6, seed=3), _rand(alg, 6, seed=4), _rand(alg, 6, seed=5)
    gp = lambda a, b: geometric_product(alg, a, b)  # noqa: E731
    _close(gp(gp(x, y), z), gp(x, gp(y, z)))
    op = lambda a, b: outer_product(alg, a, b)  # noqa: E731
    _close(op(op(x, y), z), op(x, op(y, z)))
    _close(reverse(alg, gp(x, y)), gp(reverse(alg, y), reverse(alg, x)))
    _close(grade_involution(alg, gp(x, y)), gp(grade_involution(alg, x), grade_involution(alg, y)))
    _close(reverse(alg, reverse(alg, x)), x)
    # inner product is the scalar part of reverse(x) y, and symmetric
    _close(inner_product(alg, x, y), gp(reverse(alg, x), y)[..., :1])
    _close(inner_product(alg, x, y), inner_product(alg, y, x))
    # grade projections sum to the identity
    _close(sum(grade_project(alg, x, k) for k in range(alg.n + 1)), x)


def test_vectors_square_to_metric():
    for alg in ALGEBRAS:
        for i, s in enumerate(alg.signature):
            e = torch.zeros(alg.dim, dtype=F64)
            e[alg.blade_index((i,))] = 1.0
            expected = torch.zeros(alg.dim, dtype=F64)
            expected[0] = s
            torch.testing.assert_close(geometric_product(alg, e, e), expected)


@pytest.mark.parametrize("alg", ALGEBRAS, ids=IDS)
@pytest.mark.parametrize("n_refl", [1, 2, 3])
def test_sandwich_is_grade_preserving_automorphism(alg, n_refl):
    g = torch.Generator().manual_seed(10 + n_refl)
    v = random_versor(alg, n_refl, shape=(5,), generator=g)
    x, y = _rand(alg, 5, seed=6), _rand(alg, 5, seed=7)
    sx, sy = sandwich(alg, v, x), sandwich(alg, v, y)
    tol = 1e-8
    _close(sandwich(alg, v, geometric_product(alg, x, y)), geometric_product(alg, sx, sy), tol)
    _close(sandwich(alg, v, outer_product(alg, x, y)), outer_product(alg, sx, sy), tol)
    for k in range(alg.n + 1):
        _close(grade_project(alg, sx, k), sandwich(alg, v, grade_project(alg, x, k)), tol)
    # unit versors preserve the invariant form
    _close(inner_product(alg, sx, sy), inner_product(alg, x, y), tol)
    _close(squared_norm(alg, sx, absolute=True), squared_norm(alg, x, absolute=True), tol)
    _close(geometric_product(alg, v, inverse(alg, v)), torch.eye(alg.dim, dtype=F64)[0].expand(5, -1), tol)


@pytest.mark.parametrize("alg", ALGEBRAS, ids=IDS)
def test_reflection_of_vectors(alg):
    """A unit vector acts on vectors as the reflection x - 2 (x·v) v / v² (non-degenerate part)."""
    g = torch.Generator().manual_seed(0)
    v = random_versor(alg, 1, shape=(4,), generator=g)
    vec = [alg.blade_index((i,)) for i in range(alg.n)]
    x = grade_project(alg, _rand(alg, 4, seed=8), 1)
    sig = torch.tensor(alg.signature, dtype=F64)
    xv, vv = x[..., vec], v[..., vec]
    dot, vsq = (xv * vv * sig).sum(-1, keepdim=True), (vv * vv * sig).sum(-1, keepdim=True)
    _close(sandwich(alg, v, x)[..., vec], xv - 2 * dot / vsq * vv)


def test_euclidean_rotor_is_rotation_matrix():
    alg = Algebra(3, 0, 0)
    g = torch.Generator().manual_seed(1)
    for n_refl, det in ((2, 1.0), (4, 1.0), (3, -1.0)):
        v = random_versor(alg, n_refl, shape=(3,), generator=g)
        basis = torch.zeros(3, alg.dim, dtype=F64)
        basis[:, 1:4] = torch.eye(3, dtype=F64)
        # R[:, j] = image of e_j
        cols = sandwich(alg, v[:, None, :], basis)  # (3 versors, 3 basis vectors, dim)
        mats = cols[..., 1:4].transpose(-1, -2)
        _close(cols[..., 4:], torch.zeros_like(cols[..., 4:]))  # vectors stay vectors
        _close(mats @ mats.transpose(-1, -2), torch.eye(3, dtype=F64).expand(3, 3, 3))
        _close(torch.linalg.det(mats), torch.full((3,), det, dtype=F64))
        # linear action on arbitrary vectors
        x = grade_project(alg, _rand(alg, 3, seed=9), 1)
        _close(sandwich(alg, v, x)[..., 1:4], (mats @ x[..., 1:4, None])[..., 0])


def test_rotor_from_so3_element():
    """Rotor from a Haar rotation of eqt.reps.groups.SO3 reproduces R @ v."""
    from eqt.reps.groups import SO3

    alg = Algebra(3, 0, 0)
    rot = SO3().sample(1, np.random.default_rng(0))[0].rotation
    # rotation R = reflection in n2 after reflection in n1, built from the axis-angle of R
    angle = np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1))
    axis = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    axis /= np.linalg.norm(axis)
    # rotor exp(-B angle/2) with B the unit bivector dual to the axis: B = a1 e23 - a2 e13 + a3 e12
    rotor = torch.zeros(alg.dim, dtype=F64)
    rotor[0] = np.cos(angle / 2)
    s = -np.sin(angle / 2)
    rotor[4], rotor[5], rotor[6] = s * axis[2], -s * axis[1], s * axis[0]  # e12, e13, e23
    x = grade_project(alg, _rand(alg, 5, seed=11), 1)
    _close(sandwich(alg, rotor, x)[..., 1:4], torch.from_numpy(x[..., 1:4].numpy() @ rot.T))


def test_pga_equivariant_join():
    alg = Algebra(3, 0, 1)
    g = torch.Generator().manual_seed(2)
    x, y, ref = _rand(alg, 6, seed=12), _rand(alg, 6, seed=13), _rand(alg, 6, seed=14)
    for n_refl in (1, 2, 3, 4):
        v = random_versor(alg, n_refl, shape=(6,), generator=g)
        lhs = join(alg, sandwich(alg, v, x), sandwich(alg, v, y), sandwich(alg, v, ref))
        _close(lhs, sandwich(alg, v, join(alg, x, y, ref)), 1e-8)
    # the join of two points is the line through them; plain join equals reference e123 = 1
    canon = torch.zeros(16, dtype=F64)
    canon[14] = 1.0
    _close(join(alg, x, y, canon), join(alg, x, y))


def test_norms():
    alg = Algebra(4, 1, 0)
    x = _rand(alg, 7, seed=15)
    sq_abs = squared_norm(alg, x, absolute=True)
    assert (sq_abs >= 0).all()
    _close(norm(alg, x, absolute=True) ** 2, sq_abs)
    e = Algebra(3)
    z = torch.zeros(2, 8, dtype=F64, requires_grad=True)
    norm(e, z).sum().backward()
    assert torch.isfinite(z.grad).all() and (z.grad == 0).all()
    xe = _rand(e, 3, seed=16)
    _close(norm(e, xe), xe.norm(dim=-1, keepdim=True))
    # G(3,0,1): null blades drop out of the norm
    p = Algebra(3, 0, 1)
    xp = _rand(p, 3, seed=17)
    keep = torch.tensor([0, 2, 3, 4, 8, 9, 10, 14])
    _close(squared_norm(p, xp), (xp[..., keep] ** 2).sum(-1, keepdim=True))


def test_float32_and_broadcast():
    alg = Algebra(3, 0, 1)
    x = torch.randn(2, 1, 16)
    y = torch.randn(3, 16)
    out = geometric_product(alg, x, y)
    assert out.shape == (2, 3, 16) and out.dtype == torch.float32
    _close(out.double(), geometric_product(alg, x.double(), y.double()), 1e-5)
