"""Tests of the GATr n-body data: sampling protocol, integrator physics, splits and files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eqt.data import nbody
from eqt.data.nbody import (
    SPLIT_CONFIGS,
    SPLITS,
    NBodyConfig,
    _integrate,
    _sample_initial,
    generate,
    inputs_targets,
    load,
    simulate,
)
from eqt.data.store import split_seed
from eqt.primitives.rotations import haar_rotations

_REAL_CHUNK = nbody._CHUNK
_KEYS = ("masses", "x0", "v0", "x_final")


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch):
    """Small candidate chunks keep the tests fast (the data then differ from the default chunking)."""
    monkeypatch.setattr(nbody, "_CHUNK", 512)


def _rotate(r: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.einsum("nij,nbj->nbi", r, x)


# --------------------------------------------------------------------------------------------
# simulate: shapes, determinism, rejection
# --------------------------------------------------------------------------------------------
def test_shapes_dtype_with_the_real_chunk_size(monkeypatch):
    monkeypatch.setattr(nbody, "_CHUNK", _REAL_CHUNK)
    d = simulate(20, seed=0)
    assert set(d) == set(_KEYS)
    assert d["masses"].shape == (20, 4)
    for k in ("x0", "v0", "x_final"):
        assert d[k].shape == (20, 4, 3)
    assert all(d[k].dtype == np.float64 and d[k].flags.c_contiguous for k in _KEYS)
    assert all(np.isfinite(d[k]).all() for k in _KEYS)
    inputs, targets = inputs_targets(d)
    assert inputs.shape == (20, 4, 7) and targets.shape == (20, 4, 3)
    np.testing.assert_array_equal(inputs[..., 0], d["masses"])
    np.testing.assert_array_equal(inputs[..., 1:4], d["x0"])
    np.testing.assert_array_equal(inputs[..., 4:7], d["v0"])
    np.testing.assert_array_equal(targets, d["x_final"])


def test_zero_samples():
    d = simulate(0)
    assert d["masses"].shape == (0, 4) and d["x_final"].shape == (0, 4, 3)


def test_deterministic_prefix_stable_and_seed_dependent():
    a = simulate(700, seed=5)  # spans two chunks of 512
    b = simulate(700, seed=5)
    c = simulate(300, seed=5)
    e = simulate(300, seed=6)
    for k in _KEYS:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k][:300], c[k])
        assert not np.allclose(c[k], e[k])


def test_rejection_holds_and_resamples():
    cfg = NBodyConfig(max_displacement=0.3)  # rejects a good fraction of the candidates
    d = simulate(300, cfg, seed=1)
    assert d["masses"].shape == (300, 4)
    disp = np.linalg.norm(d["x_final"] - d["x0"], axis=-1)
    assert disp.max() <= 0.3
    default = simulate(100, seed=1)
    assert np.linalg.norm(default["x_final"] - default["x0"], axis=-1).max() <= 2.0


def test_impossible_rejection_raises(monkeypatch):
    monkeypatch.setattr(nbody, "_MAX_EMPTY_CHUNKS", 2)
    monkeypatch.setattr(nbody, "_CHUNK", 16)
    with pytest.raises(RuntimeError, match="max_displacement"):
        simulate(1, NBodyConfig(max_displacement=1e-9), seed=0)


# --------------------------------------------------------------------------------------------
# Sampling protocol
# --------------------------------------------------------------------------------------------
def test_initial_state_protocol():
    cfg = NBodyConfig()
    m, x0, v0 = _sample_initial(np.random.default_rng(0), 20_000, cfg)
    star = m.argmax(axis=1)
    assert ((star[:, None] == np.arange(4)) == (m >= 1.0)).all()  # exactly one star, mass >= 1
    idx = np.arange(len(m))
    assert np.bincount(star, minlength=4).min() > 4000  # the star's slot is random (permutation)
    ms, xs, vs = m[idx, star], x0[idx, star], v0[idx, star]
    assert ms.min() >= 1.0 and ms.max() <= 10.0
    assert abs(np.log10(ms).mean() - 0.5) < 0.02  # log-uniform on [1, 10]
    planet = np.ones_like(m, dtype=bool)
    planet[idx, star] = False
    mp = m[planet]
    assert mp.min() >= 0.01 and mp.max() <= 0.1
    assert abs(np.log10(mp).mean() + 1.5) < 0.01  # log-uniform on [0.01, 0.1]
    np.testing.assert_allclose(vs, 0.0, atol=1e-15)  # the star starts at rest
    assert abs(xs.std() - 20.0) < 0.5 and abs(xs.mean()) < 0.5  # N(0, 20^2) translation

    rel = (x0 - xs[:, None])[planet].reshape(-1, 3, 3)
    r = np.linalg.norm(rel, axis=-1)
    assert r.min() >= 0.1 - 1e-12 and r.max() <= 1.0 + 1e-12
    assert abs((r**2).mean() - 0.505) < 0.005  # uniform in area: r^2 ~ U(0.01, 1)
    # Star and planets start in one plane (z = 0 before the rotation).
    np.testing.assert_allclose(np.linalg.det(rel), 0.0, atol=1e-10)
    # Planet velocities: circular speed sqrt(G M / r), tangential, plus N(0, 0.01^2) noise.
    vp = v0[planet].reshape(-1, 3, 3)
    normal = np.cross(rel[:, 0], rel[:, 1])
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    tangent = np.cross(normal[:, None], rel / r[..., None])
    v_circ = np.sqrt(ms[:, None] / r)
    along = np.einsum("npk,npk->np", vp, tangent)
    assert np.abs(np.abs(along) - v_circ).max() < 0.06
    radial_noise = np.einsum("npk,npk->np", vp, rel / r[..., None])
    normal_noise = np.einsum("npk,nk->np", vp, normal)
    assert abs(radial_noise.std() - 0.01) < 5e-4 and abs(normal_noise.std() - 0.01) < 5e-4
    sense = np.sign(along)
    assert abs(sense.mean()) < 0.03  # both senses of rotation ...
    assert abs(np.mean(sense[:, 0] != sense[:, 1]) - 0.5) < 0.03  # ... drawn independently per planet


def test_haar_rotations_are_proper_and_uniform():
    r = haar_rotations(np.random.default_rng(1), 20_000)
    eye = np.broadcast_to(np.eye(3), r.shape)
    np.testing.assert_allclose(np.einsum("nji,njk->nik", r, r), eye, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    assert np.abs(r.mean(axis=0)).max() < 0.02  # Haar measure: E[R] = 0
    assert np.abs((r**2).mean(axis=0) - 1 / 3).max() < 0.02  # and E[R_ij^2] = 1/3


# --------------------------------------------------------------------------------------------
# Physics of the integrator
# --------------------------------------------------------------------------------------------
def _orbit_error(n_steps: int) -> float:
    """Max distance of a test planet from the exact circular orbit after T = 0.1 (r = 1)."""
    cfg = NBodyConfig(
        n_planets=1,
        star_mass=(1.0, 1.0),
        planet_mass=(1e-12, 1e-12),
        radius=(1.0, 1.0),
        velocity_noise=0.0,
        translation_std=0.0,
        n_steps=n_steps,
    )
    d = simulate(50, cfg, seed=3)
    m = d["masses"]
    i, s = np.arange(len(m)), m.argmax(axis=1)
    p = 1 - s
    rel0 = d["x0"][i, p] - d["x0"][i, s]
    vrel0 = d["v0"][i, p] - d["v0"][i, s]
    rel_t = d["x_final"][i, p] - d["x_final"][i, s]
    np.testing.assert_allclose(np.linalg.norm(rel0, axis=-1), 1.0)
    omega = np.sqrt(cfg.G * m.sum(axis=1) / 1.0**3)[:, None]
    t = cfg.duration
    exact = np.cos(omega * t) * rel0 + np.sin(omega * t) / omega * vrel0  # rotation in the orbit plane
    return float(np.linalg.norm(rel_t - exact, axis=-1).max())


def test_semi_implicit_euler_follows_the_circular_orbit_to_first_order():
    err_100, err_200 = _orbit_error(100), _orbit_error(200)
    assert err_100 < 1e-3  # relative to the radius 1
    assert 1.8 < err_100 / err_200 < 2.2  # first-order convergence in dt


def test_momentum_and_centre_of_mass_motion_are_conserved():
    cfg = NBodyConfig()
    m, x0, v0 = _sample_initial(np.random.default_rng(2), 1000, cfg)
    x, v = _integrate(m, x0, v0, cfg)
    p0 = np.einsum("nb,nbk->nk", m, v0)
    p1 = np.einsum("nb,nbk->nk", m, v)
    np.testing.assert_allclose(p1, p0, rtol=0, atol=1e-12)
    c0 = np.einsum("nb,nbk->nk", m, x0)
    c1 = np.einsum("nb,nbk->nk", m, x)
    np.testing.assert_allclose(c1, c0 + cfg.duration * p0, rtol=0, atol=1e-11)
    assert np.abs(x - x0).max() > 0.01  # something did move


def test_dynamics_are_e3_covariant():
    cfg = NBodyConfig(translation_std=0.0)
    d = simulate(64, cfg, seed=4)
    m, x0, v0 = d["masses"], d["x0"], d["v0"]
    x, v = _integrate(m, x0, v0, cfg)
    np.testing.assert_array_equal(x, d["x_final"])
    rng = np.random.default_rng(5)
    r = haar_rotations(rng, 64)
    r[::2, :, 0] *= -1  # half of them improper: reflections are symmetries too
    t = rng.normal(0.0, 20.0, size=(64, 1, 3))
    xt, vt = _integrate(m, _rotate(r, x0) + t, _rotate(r, v0), cfg)
    np.testing.assert_allclose(xt, _rotate(r, x) + t, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vt, _rotate(r, v), rtol=0, atol=1e-8)


# --------------------------------------------------------------------------------------------
# Reference splits
# --------------------------------------------------------------------------------------------
def test_split_definitions():
    assert SPLITS == {
        "train": 100_000,
        "val": 5_000,
        "eval": 5_000,
        "e3_generalization": 5_000,
        "object_generalization": 5_000,
    }
    assert set(SPLIT_CONFIGS) == set(SPLITS)
    assert SPLIT_CONFIGS["train"] == NBodyConfig()
    assert SPLIT_CONFIGS["e3_generalization"] == NBodyConfig(shift=(200.0, 0.0, 0.0))
    assert SPLIT_CONFIGS["object_generalization"].n_bodies == 6
    seeds = {split_seed(0, s) for s in SPLITS} | {split_seed(1, s) for s in SPLITS}
    assert len(seeds) == 10


def test_e3_generalization_shifts_the_centroid_by_200_in_x():
    n = 400
    base = simulate(n, SPLIT_CONFIGS["train"], seed=7)
    shifted = simulate(n, SPLIT_CONFIGS["e3_generalization"], seed=7)
    # Same seed: the same samples, translated by exactly (200, 0, 0) (up to rounding).
    for k in ("x0", "x_final"):
        shift = np.broadcast_to([200.0, 0.0, 0.0], base[k].shape)
        np.testing.assert_allclose(shifted[k] - base[k], shift, atol=1e-9)
    centroid = shifted["x0"].mean(axis=(0, 1))
    sigma = 20.0 / np.sqrt(n)
    assert abs(centroid[0] - 200.0) < 5 * sigma and np.abs(centroid[1:]).max() < 5 * sigma
    assert np.abs(base["x0"].mean(axis=(0, 1))).max() < 5 * sigma


def test_object_generalization_has_six_bodies():
    d = simulate(10, SPLIT_CONFIGS["object_generalization"], seed=0)
    assert d["masses"].shape == (10, 6) and d["x_final"].shape == (10, 6, 3)
    assert ((d["masses"] >= 1.0).sum(axis=1) == 1).all()
    assert inputs_targets(d)[0].shape == (10, 6, 7)


# --------------------------------------------------------------------------------------------
# Config validation, inputs_targets errors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_planets": 0}, "n_planets"),
        ({"n_planets": 2.0}, "n_planets"),
        ({"star_mass": (0.0, 1.0)}, "star_mass"),
        ({"planet_mass": (0.1, 0.01)}, "planet_mass"),
        ({"radius": (0.1,)}, "radius"),
        ({"velocity_noise": -1.0}, "velocity_noise"),
        ({"translation_std": float("nan")}, "translation_std"),
        ({"shift": (1.0, 2.0)}, "shift"),
        ({"n_steps": 0}, "n_steps"),
        ({"duration": 0.0}, "duration"),
        ({"G": -1.0}, "G"),
        ({"max_displacement": 0.0}, "max_displacement"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        NBodyConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_config_round_trips_through_json():
    cfg = NBodyConfig(n_planets=5, shift=[200, 0, 0])
    assert cfg.shift == (200.0, 0.0, 0.0) and cfg.dt == pytest.approx(1e-3)
    assert NBodyConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_simulate_and_inputs_targets_reject_bad_arguments():
    with pytest.raises(ValueError, match="n must be"):
        simulate(-1)
    with pytest.raises(ValueError, match="seed must be"):
        simulate(1, seed=-3)
    with pytest.raises(ValueError, match="lack x_final"):
        inputs_targets({"masses": np.ones((2, 4)), "x0": np.ones((2, 4, 3)), "v0": np.ones((2, 4, 3))})
    with pytest.raises(ValueError, match="v0 must have shape"):
        bad = {"masses": np.ones((2, 4)), "x0": np.ones((2, 4, 3)), "v0": np.ones((2, 3, 3))}
        inputs_targets({**bad, "x_final": np.ones((2, 4, 3))})


# --------------------------------------------------------------------------------------------
# generate / load
# --------------------------------------------------------------------------------------------
def test_generate_load_round_trip_skip_and_overwrite(tmp_path, monkeypatch):
    root = tmp_path / "nbody"
    sizes = {"val": 12, "object_generalization": 7}
    paths = generate(root, sizes=sizes, seed=3)
    assert paths == {s: root / f"{s}.npz" for s in sizes}
    assert sorted(p.name for p in root.iterdir()) == ["meta.json", "object_generalization.npz", "val.npz"]
    meta = json.loads((root / "meta.json").read_text())
    for split, size in sizes.items():
        entry = meta["splits"][split]
        assert entry["size"] == size and entry["seed"] == 3
        assert NBodyConfig(**entry["config"]) == SPLIT_CONFIGS[split]
        assert entry["eqt_version"] == meta["eqt_version"]
        data = load(root, split)
        ref = simulate(size, SPLIT_CONFIGS[split], seed=entry["split_seed"])
        for k in _KEYS:
            np.testing.assert_array_equal(data[k], ref[k])
            assert data[k].dtype == np.float64
    assert load(root, "object_generalization")["masses"].shape == (7, 6)

    # Up to date: nothing is simulated or rewritten.
    stamp = {s: p.stat().st_mtime_ns for s, p in paths.items()}

    def no_simulation(*args, **kwargs):
        raise AssertionError("simulate called for an up-to-date split")

    monkeypatch.setattr(nbody, "simulate", no_simulation)
    generate(root, sizes=sizes, seed=3)
    assert {s: p.stat().st_mtime_ns for s, p in paths.items()} == stamp
    monkeypatch.undo()
    monkeypatch.setattr(nbody, "_CHUNK", 512)

    # A different size, or overwrite, regenerates; other splits' meta entries are kept.
    generate(root, sizes={"val": 5}, seed=3)
    assert load(root, "val")["masses"].shape == (5, 4)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["splits"]["val"]["size"] == 5 and meta["splits"]["object_generalization"]["size"] == 7
    generate(root, sizes={"val": 5}, seed=3, overwrite=True)
    assert load(root, "val")["masses"].shape == (5, 4)
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load(tmp_path, "train")
    msg = str(info.value)
    assert str(tmp_path / "train.npz") in msg and "generate(" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="unknown n-body split 'test'"):
        load(tmp_path, "test")

    (tmp_path / "val.npz").write_bytes(b"this is not an npz file")
    with pytest.raises(ValueError, match="cannot read n-body split file") as info:
        load(tmp_path, "val")
    assert str(tmp_path / "val.npz") in str(info.value) and "\n" not in str(info.value)

    good = simulate(3, seed=0)
    (tmp_path / "eval.npz").write_bytes((b"PK\x03\x04" + bytes(range(256)) * 4))  # truncated zip
    with pytest.raises(ValueError, match="cannot read n-body split file"):
        load(tmp_path, "eval")

    np.savez(tmp_path / "eval.npz", masses=good["masses"], x0=good["x0"], v0=good["v0"])
    with pytest.raises(ValueError, match="lacks x_final"):
        load(tmp_path, "eval")

    np.savez(tmp_path / "eval.npz", **{**good, "v0": good["v0"][:, :3]})
    with pytest.raises(ValueError, match=r"v0 must have shape \(3, 4, 3\)"):
        load(tmp_path, "eval")


def test_generate_rewrites_a_corrupt_file(tmp_path):
    generate(tmp_path, sizes={"eval": 4}, seed=0)
    expected = load(tmp_path, "eval")
    (tmp_path / "eval.npz").write_bytes(b"garbage")
    generate(tmp_path, sizes={"eval": 4}, seed=0)
    np.testing.assert_array_equal(load(tmp_path, "eval")["x_final"], expected["x_final"])


def test_generate_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown n-body split"):
        generate(tmp_path, sizes={"test": 3})
    with pytest.raises(ValueError, match="size of split 'val'"):
        generate(tmp_path, sizes={"val": 0})
