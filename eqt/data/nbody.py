"""The n-body gravity data sets of GATr (Brehmer et al. 2023), simulated in NumPy float64.

This module follows the protocol of the GATr reference simulator
(``gatr/experiments/nbody/simulator.py``), re-implemented from its description. Each sample is
one star and ``n_planets`` planets under Newtonian gravity; the task is to predict where every
body is after a fixed time from the masses, initial positions and initial velocities.

Sampling of one sample (units with ``G = 1`` by default):

1. Masses: the star log-uniform on ``star_mass`` = [1, 10], each planet log-uniform on
   ``planet_mass`` = [0.01, 0.1].
2. Positions: the star at the origin, at rest. Planets in the x-y plane (z = 0), **uniform in
   area** over the annulus ``radius`` = [0.1, 1] (r = sqrt(U(r_min^2, r_max^2)), angle uniform),
   which is the distribution of the reference's rejection sampler ("uniform in circle" with a
   minimum radius); it is not uniform in r.
3. Velocities: the circular-orbit speed around the star, sqrt(G m_star / r), tangential in the
   x-y plane, with the sense of rotation (clockwise or counter-clockwise) drawn **per planet**,
   as in the reference; plus Gaussian noise of std ``velocity_noise`` = 0.01 on **each of the
   three** components (so planets get a small out-of-plane velocity).
4. Symmetries: the bodies are put in a random order (per sample), then a Haar-random proper
   rotation (SO(3), from a uniform unit quaternion) is applied to positions and velocities, then
   a translation with components N(0, ``translation_std``^2) = N(0, 20^2) and the constant
   ``shift`` are added to the positions. The body order in the arrays is therefore random: the
   star is the body with the largest mass.
5. Dynamics: ``n_steps`` = 100 steps of semi-implicit (symplectic) Euler over ``duration`` =
   0.1 (dt = 1e-3): ``v += a(x) dt; x += v dt``, with the full pairwise Newtonian accelerations
   ``a_i = G sum_{j != i} m_j (x_j - x_i) / |x_j - x_i|^3`` (no softening; each pair's term is
   computed once and used with both signs, so total momentum is conserved to rounding).
6. Rejection: a sample in which any body ends more than ``max_displacement`` = 2.0 from where it
   started (or with a non-finite state) is dropped, and candidates are drawn until ``n`` samples
   are accepted. Candidates come in fixed-size chunks, chunk ``k`` from
   ``np.random.default_rng([seed, k])``, so the data are a function of ``(n, config, seed)``
   only, and ``simulate(n1)`` is the first ``n1`` samples of ``simulate(n2)`` for ``n1 <= n2``.

Arrays (``n`` samples, ``B = n_planets + 1`` bodies, float64): ``masses`` (n, B), ``x0`` (n, B,
3), ``v0`` (n, B, 3), ``x_final`` (n, B, 3). Model inputs are ``(mass, x0, v0)`` per body (n, B,
7), targets ``x_final`` (n, B, 3) (:func:`inputs_targets`).

The reference splits (:data:`SPLITS`): ``train`` 100,000, ``val``/``eval`` 5,000 with three
planets (4 bodies); ``e3_generalization`` 5,000 with an extra ``+200`` shift along x;
``object_generalization`` 5,000 with five planets (6 bodies). Each split is simulated with its
own seed, derived from a base seed and the split name. :func:`generate` writes them to
``{root}/{split}.npz`` with a ``meta.json``; :func:`load` reads one back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from eqt.data.store import check_meta, is_number, meta_entry, read_npz, split_path, write_splits
from eqt.primitives.rotations import haar_rotations

__all__ = [
    "NBodyConfig",
    "simulate",
    "inputs_targets",
    "SPLITS",
    "SPLIT_CONFIGS",
    "generate",
    "load",
]

_CHUNK = 8192  # candidates per random-number chunk (fixed: the data depend on it)
_MAX_EMPTY_CHUNKS = 16  # give up when this many chunks in a row produce no accepted sample at all
_FORMAT_VERSION = 1  # bump when the sampling protocol changes: generate() then rewrites files
_KEYS = ("masses", "x0", "v0", "x_final")
_WHAT = "n-body split file"  # how error messages name a split file


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NBodyConfig:
    """Parameters of the n-body simulation (defaults: the GATr reference training set).

    Attributes:
        n_planets: number of planets; every sample has ``n_planets + 1`` bodies.
        star_mass: (min, max) of the log-uniform star mass.
        planet_mass: (min, max) of the log-uniform planet masses.
        radius: (min, max) of the planets' initial distance to the star (uniform in area).
        velocity_noise: std of the Gaussian noise on each initial planet velocity component.
        translation_std: std of each component of the random translation of a sample.
        shift: constant (x, y, z) added to all positions (``(200, 0, 0)`` for
            ``e3_generalization``).
        n_steps: number of semi-implicit Euler steps.
        duration: simulated time between the initial and the final state.
        G: gravitational constant.
        max_displacement: samples in which any body moves farther than this are resampled.
    """

    n_planets: int = 3
    star_mass: tuple[float, float] = (1.0, 10.0)
    planet_mass: tuple[float, float] = (0.01, 0.1)
    radius: tuple[float, float] = (0.1, 1.0)
    velocity_noise: float = 0.01
    translation_std: float = 20.0
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    n_steps: int = 100
    duration: float = 0.1
    G: float = 1.0
    max_displacement: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.n_planets, (int, np.integer)) or isinstance(self.n_planets, bool):
            raise ValueError(f"NBodyConfig: n_planets must be an int, got {self.n_planets!r}")
        if self.n_planets < 1:
            raise ValueError(f"NBodyConfig: n_planets must be >= 1, got {self.n_planets}")
        object.__setattr__(self, "n_planets", int(self.n_planets))
        for name in ("star_mass", "planet_mass", "radius"):
            value = getattr(self, name)
            try:
                lo, hi = value
            except (TypeError, ValueError):
                raise ValueError(f"NBodyConfig: {name} must be a (min, max) pair, got {value!r}") from None
            if not (is_number(lo) and is_number(hi) and math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"NBodyConfig: {name} must hold two finite numbers, got {value!r}")
            if not 0.0 < lo <= hi:
                raise ValueError(f"NBodyConfig: {name} must satisfy 0 < min <= max, got {value!r}")
            object.__setattr__(self, name, (float(lo), float(hi)))
        for name in ("velocity_noise", "translation_std"):
            value = getattr(self, name)
            if not (is_number(value) and math.isfinite(value) and value >= 0.0):
                raise ValueError(f"NBodyConfig: {name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        try:
            shift = tuple(self.shift)
        except TypeError:
            raise ValueError(f"NBodyConfig: shift must be an (x, y, z) triple, got {self.shift!r}") from None
        if len(shift) != 3 or not all(is_number(s) and math.isfinite(s) for s in shift):
            raise ValueError(f"NBodyConfig: shift must be three finite numbers, got {self.shift!r}")
        object.__setattr__(self, "shift", tuple(float(s) for s in shift))
        if not isinstance(self.n_steps, (int, np.integer)) or isinstance(self.n_steps, bool):
            raise ValueError(f"NBodyConfig: n_steps must be an int, got {self.n_steps!r}")
        if self.n_steps < 1:
            raise ValueError(f"NBodyConfig: n_steps must be >= 1, got {self.n_steps}")
        object.__setattr__(self, "n_steps", int(self.n_steps))
        for name in ("duration", "G"):
            value = getattr(self, name)
            if not (is_number(value) and math.isfinite(value) and value > 0.0):
                raise ValueError(f"NBodyConfig: {name} must be a finite number > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        value = self.max_displacement
        if not (is_number(value) and not math.isnan(value) and value > 0.0):
            raise ValueError(f"NBodyConfig: max_displacement must be > 0 (inf: no rejection), got {value!r}")
        object.__setattr__(self, "max_displacement", float(value))

    @property
    def n_bodies(self) -> int:
        """Bodies per sample, ``n_planets + 1``."""
        return self.n_planets + 1

    @property
    def dt(self) -> float:
        """Time step, ``duration / n_steps``."""
        return self.duration / self.n_steps

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (tuples become lists); ``NBodyConfig(**d)`` inverts it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------
def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], size: Any) -> np.ndarray:
    lo, hi = bounds
    return np.exp(rng.uniform(math.log(lo), math.log(hi), size=size))


def _sample_initial(
    rng: np.random.Generator, n: int, config: NBodyConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` candidate initial states: masses (n, B), x0 (n, B, 3), v0 (n, B, 3)."""
    p, b = config.n_planets, config.n_bodies
    star_mass = _log_uniform(rng, config.star_mass, n)
    planet_mass = _log_uniform(rng, config.planet_mass, (n, p))

    r_lo, r_hi = config.radius
    r = np.sqrt(rng.uniform(r_lo * r_lo, r_hi * r_hi, size=(n, p)))  # uniform in area
    phi = rng.uniform(0.0, 2.0 * math.pi, size=(n, p))
    sense = 2.0 * rng.integers(0, 2, size=(n, p)) - 1.0  # per-planet sense of rotation
    noise = config.velocity_noise * rng.standard_normal((n, p, 3))
    order = np.argsort(rng.random((n, b)), axis=1)
    rot = haar_rotations(rng, n)
    translation = config.translation_std * rng.standard_normal((n, 3))

    cos, sin = np.cos(phi), np.sin(phi)
    speed = sense * np.sqrt(config.G * star_mass[:, None] / r)
    masses = np.concatenate([star_mass[:, None], planet_mass], axis=1)
    x0 = np.zeros((n, b, 3))
    x0[:, 1:, 0] = r * cos
    x0[:, 1:, 1] = r * sin
    v0 = np.zeros((n, b, 3))
    v0[:, 1:, 0] = -speed * sin
    v0[:, 1:, 1] = speed * cos
    v0[:, 1:] += noise

    masses = np.take_along_axis(masses, order, axis=1)
    x0 = np.take_along_axis(x0, order[:, :, None], axis=1)
    v0 = np.take_along_axis(v0, order[:, :, None], axis=1)
    x0 = np.einsum("nij,nbj->nbi", rot, x0) + translation[:, None, :] + np.asarray(config.shift)
    v0 = np.einsum("nij,nbj->nbi", rot, v0)
    return masses, x0, v0


def _accelerations(x: np.ndarray, masses: np.ndarray, G: float) -> np.ndarray:
    """Newtonian accelerations (n, B, 3) of bodies at ``x`` (n, B, 3) with ``masses`` (n, B)."""
    n_bodies = x.shape[1]
    acc = np.zeros_like(x)
    for i in range(n_bodies):
        for j in range(i + 1, n_bodies):
            d = x[:, j] - x[:, i]
            r2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]
            d *= (G / (r2 * np.sqrt(r2)))[:, None]
            acc[:, i] += masses[:, j, None] * d
            acc[:, j] -= masses[:, i, None] * d
    return acc


def _integrate(
    masses: np.ndarray, x0: np.ndarray, v0: np.ndarray, config: NBodyConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Semi-implicit Euler: ``config.n_steps`` steps of ``v += a(x) dt; x += v dt``.

    Args:
        masses: (n, B) masses.
        x0: (n, B, 3) initial positions.
        v0: (n, B, 3) initial velocities.
        config: supplies ``G``, ``n_steps`` and ``duration``.

    Returns:
        ``(x, v)``: final positions and velocities, (n, B, 3) float64 each.
    """
    masses = np.asarray(masses, dtype=np.float64)
    x = np.array(x0, dtype=np.float64)
    v = np.array(v0, dtype=np.float64)
    dt = config.dt
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(config.n_steps):
            v += dt * _accelerations(x, masses, config.G)
            x += dt * v
    return x, v


def simulate(n: int, config: NBodyConfig = NBodyConfig(), seed: int = 0) -> dict[str, np.ndarray]:  # noqa: B008
    """Simulate ``n`` accepted n-body samples (see the module docstring for the protocol).

    Args:
        n: number of samples to return (>= 0).
        config: simulation parameters.
        seed: non-negative base seed; chunk ``k`` of candidates uses
            ``np.random.default_rng([seed, k])``.

    Returns:
        ``{"masses": (n, B), "x0": (n, B, 3), "v0": (n, B, 3), "x_final": (n, B, 3)}``, float64,
        with ``B = config.n_planets + 1``; every body moved at most ``config.max_displacement``.

    Raises:
        ValueError: on a negative ``n`` or ``seed``, or a ``config`` that is not an
            :class:`NBodyConfig`.
        RuntimeError: if no candidate at all passes the displacement cut in many chunks.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"simulate: n must be an int >= 0, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"simulate: seed must be an int >= 0, got {seed!r}")
    if not isinstance(config, NBodyConfig):
        raise ValueError(f"simulate: config must be an NBodyConfig, got {type(config).__name__}")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in _KEYS}
    accepted, chunk, empty = 0, 0, 0
    while accepted < n:
        rng = np.random.default_rng([int(seed), chunk])
        masses, x0, v0 = _sample_initial(rng, _CHUNK, config)
        x_final, _ = _integrate(masses, x0, v0, config)
        with np.errstate(invalid="ignore"):
            disp = np.linalg.norm(x_final - x0, axis=-1).max(axis=1)
            keep = np.isfinite(x_final).all(axis=(1, 2)) & (disp <= config.max_displacement)
        idx = np.flatnonzero(keep)[: n - accepted]
        for key, arr in zip(_KEYS, (masses, x0, v0, x_final)):
            parts[key].append(arr[idx])
        accepted += idx.size
        chunk += 1
        empty = empty + 1 if accepted == 0 else 0
        if empty >= _MAX_EMPTY_CHUNKS:
            raise RuntimeError(
                f"simulate: none of {chunk * _CHUNK} candidates moved less than "
                f"max_displacement={config.max_displacement}; check the config"
            )
    b = config.n_bodies
    empty_shapes = {"masses": (0, b), "x0": (0, b, 3), "v0": (0, b, 3), "x_final": (0, b, 3)}
    return {
        k: np.ascontiguousarray(np.concatenate(parts[k]) if parts[k] else np.zeros(empty_shapes[k]))
        for k in _KEYS
    }


def inputs_targets(data: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and targets of a simulated (or loaded) data set.

    Args:
        data: ``{"masses": (n, B), "x0": (n, B, 3), "v0": (n, B, 3), "x_final": (n, B, 3)}``.

    Returns:
        ``(inputs, targets)``: inputs (n, B, 7) = (mass, x0, v0) per body; targets
        (n, B, 3) = ``x_final``.

    Raises:
        ValueError: if a key is missing or the shapes disagree.
    """
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise ValueError(f"inputs_targets: data lack {', '.join(missing)}")
    arrays = {k: np.asarray(data[k]) for k in _KEYS}
    _check_shapes(arrays, "inputs_targets")
    inputs = np.concatenate([arrays["masses"][..., None], arrays["x0"], arrays["v0"]], axis=-1)
    return inputs, arrays["x_final"]


def _check_shapes(arrays: Mapping[str, np.ndarray], where: str) -> None:
    m = arrays["masses"]
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError(f"{where}: masses must have shape (n, B) with B >= 2, got {m.shape}")
    want = (*m.shape, 3)
    for key in ("x0", "v0", "x_final"):
        if arrays[key].shape != want:
            got = arrays[key].shape
            raise ValueError(f"{where}: {key} must have shape {want} (from masses), got {got}")


# --------------------------------------------------------------------------------------------
# Reference splits, files
# --------------------------------------------------------------------------------------------
SPLITS: dict[str, int] = {
    "train": 100_000,
    "val": 5_000,
    "eval": 5_000,
    "e3_generalization": 5_000,
    "object_generalization": 5_000,
}
"""Sizes of the GATr reference n-body splits."""

SPLIT_CONFIGS: dict[str, NBodyConfig] = {
    "train": NBodyConfig(),
    "val": NBodyConfig(),
    "eval": NBodyConfig(),
    "e3_generalization": NBodyConfig(shift=(200.0, 0.0, 0.0)),
    "object_generalization": NBodyConfig(n_planets=5),
}
"""Simulation parameters of each reference split."""


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown n-body split {split!r}; expected one of {', '.join(SPLITS)}")


def generate(
    root: str | os.PathLike,
    sizes: Mapping[str, int] | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Simulate the reference splits and write ``{root}/{split}.npz`` plus ``{root}/meta.json``.

    Each split uses :data:`SPLIT_CONFIGS` and its own seed derived from ``seed`` and the split
    name. A split whose file exists, loads and is recorded in ``meta.json`` with the same size,
    seed, config and format is skipped unless ``overwrite``. Files are written atomically
    (temporary file, then rename); ``meta.json`` is rewritten after each split, keeping the
    entries of splits not generated by this call.

    Args:
        root: output folder (created if missing).
        sizes: ``{split: n_samples}`` for a subset of :data:`SPLITS`; None for all of
            :data:`SPLITS` with their reference sizes.
        seed: non-negative base seed.
        overwrite: regenerate splits even when up to date.

    Returns:
        ``{split: path of its .npz}`` for the requested splits.

    Raises:
        ValueError: on an unknown split name, a size below 1 or a negative seed.
    """
    root = Path(root)
    sizes = dict(SPLITS if sizes is None else sizes)
    for split, size in sizes.items():
        _check_split(split)
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise ValueError(f"generate: size of split {split!r} must be an int >= 1, got {size!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"generate: seed must be an int >= 0, got {seed!r}")
    return write_splits(
        root,
        sizes,
        seed,
        configs={split: SPLIT_CONFIGS[split].to_dict() for split in sizes},
        make=lambda split, size, split_seed: simulate(size, SPLIT_CONFIGS[split], seed=split_seed),
        verify=lambda split: load(root, split),
        format_name="eqt.data.nbody",
        format_version=_FORMAT_VERSION,
        overwrite=overwrite,
    )


def load(root: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """Load one split written by :func:`generate`.

    Args:
        root: the folder passed to :func:`generate`.
        split: a name in :data:`SPLITS`.

    Returns:
        ``{"masses": (n, B), "x0": (n, B, 3), "v0": (n, B, 3), "x_final": (n, B, 3)}`` float64.

    Raises:
        FileNotFoundError: if ``{root}/{split}.npz`` does not exist.
        ValueError: on an unknown split, or a file that is unreadable, lacks a key, has
            inconsistent shapes or disagrees with the size and body count in ``meta.json``.
    """
    _check_split(split)
    root = Path(root)
    path = split_path(root, split)
    create = f"eqt.data.nbody.generate({str(root)!r}, sizes={{{split!r}: {SPLITS[split]}}})"
    data = read_npz(path, _KEYS, _WHAT, create)
    for key, arr in data.items():
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{_WHAT} {path}: {key} has dtype {arr.dtype}, expected float")
    _check_shapes(data, f"{_WHAT} {path}")
    entry = meta_entry(root, split)
    if entry is not None:
        n, b = data["masses"].shape
        want_b = (entry.get("config") or {}).get("n_planets")
        bodies = None if want_b is None else want_b + 1
        check_meta(path, _WHAT, (("samples", n, entry.get("size")), ("bodies", b, bodies)))
    return {k: v.astype(np.float64, copy=False) for k, v in data.items()}
