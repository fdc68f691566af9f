"""PolyGET MD robustness (issue 8): many ML-potential trajectories of unseen polymers, failures
counted, bond-length and angle distributions compared with GFN2-xTB MD of the same molecules.

``eqt polyget-md configs/polyget/md.yaml`` (or :func:`run_study`) does, under ``out_dir``:

1. **Systems.** ``trajectories`` starting structures per temperature, cycling through
   ``families`` × ``n_repeat`` (capped oligomers from :func:`eqt.data.polymers.build_oligomer`;
   trajectory ``k`` uses conformer seed ``k``, so the replicas of one family start from different
   conformers and tacticities).
2. **ML MD.** All trajectories (every temperature) are integrated together by
   :class:`eqt.physics.replicas.ReplicaLangevin` (BAOAB Langevin, one batched force call per step).
   Every ``check_every`` steps each running trajectory goes through the same checks as the
   GFN2-xTB sampling (:class:`eqt.data.polymers.BondGuard`: a starting bond stretched past
   ``break_factor`` × the covalent radii sum, a new bond, atoms closer than ``min_distance`` (0.5
   Å), non-finite values, a force past ``max_force``, and the potential energy risen more than
   ``max_energy_rise_per_atom`` per atom above its starting value: in NVT the total energy is not
   conserved, so this rise is the study's "energy drift" criterion). A failed trajectory is frozen
   and recorded (step, check, atoms); the rest go on. The state is checkpointed every
   ``checkpoint_every`` steps (``md_state.pt``): a killed run resumes, and raising ``length_ps``
   extends a finished one. ``max_time`` bounds one invocation (it checkpoints and reports how far
   it got).
3. **GFN2-xTB reference MD** of the first starting structure of each (family, n_repeat,
   temperature), ``reference_ps`` long with the same time step, friction and equilibration
   (:func:`eqt.data.polymers.run_trajectory`), cached as extended XYZ under ``reference/``.
4. **Distributions.** After ``equilibration_ps``, every ``sample_every`` steps, the lengths of the
   starting bonds and the angles between bonded pairs are binned per type (``C-H``, ``C-C-O``, ...,
   element symbols; the centre atom in the middle) for each (family, temperature), for the ML
   trajectories (while they run) and for the reference. Compared by the mean and the Wasserstein-1
   distance per type (``results.md``) and plotted (``distributions.png``).

Choices the paper leaves open: time step 1 fs, friction 0.01 fs⁻¹ (100 fs), equilibration 0.5 ps,
distributions pooled over the trajectories of one family and temperature.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eqt.config import Config

__all__ = ["Histograms", "PolyGETMDConfig", "add_arguments", "bond_angle_topology", "plot_survival", "run_from_args",
           "run_study", "survival"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
BOND_RANGE = (0.7, 2.2, 0.005)  # Å: low, high, bin width
ANGLE_RANGE = (40.0, 180.0, 1.0)  # degrees


@dataclasses.dataclass(frozen=True)
class PolyGETMDConfig(Config):
    """The MD robustness study.

    Attributes:
        model: trained potential (``model.pt`` of the force-only PolyGET run).
        families: polymer families simulated (unseen in training).
        n_repeat: chain lengths (repeat units).
        trajectories: trajectories per temperature (cycling through families × n_repeat).
        temperatures: thermostat temperatures, K.
        length_ps: simulated time per trajectory, ps.
        timestep_fs: time step, fs (ML and reference MD).
        friction_per_fs: Langevin friction, 1/fs.
        equilibration_ps: time excluded from the distributions, ps.
        sample_every: steps between samples of the distributions.
        check_every: steps between failure checks.
        checkpoint_every: steps between checkpoints of the ML MD.
        reference_ps: GFN2-xTB MD per (family, n_repeat, temperature) after equilibration, ps
            (0: none).
        thresholds: :class:`eqt.data.polymers.SamplingConfig` failure thresholds overriding its
            defaults (``break_factor``, ``form_factor``, ``min_distance``,
            ``max_energy_rise_per_atom``, ``max_force``, ``bond_factor``).
        max_time: wall-clock budget of one invocation of the ML MD, ``"HH:MM:SS"`` (None: none).
        device: where the model runs.
        dtype: precision of the model evaluation, ``float64`` or ``float32`` (the integrator state
            is float64 either way). Can change between invocations of a resumed run: each segment
            is recorded (``precision`` in the results).
        graphed: evaluate through :class:`eqt.physics.graphed.GraphedPotential` (one CUDA graph
            replay per step on a GPU; on the CPU the same fixed-capacity computation runs eagerly).
        seed: seed of velocities and thermostat noise.
        out_dir: output folder.
    """

    model: str = "runs/polyget/force-only/model.pt"
    families: tuple = ("PVDF", "PVA", "PLA")
    n_repeat: tuple = (4,)
    trajectories: int = 10
    temperatures: tuple = (300.0, 500.0)
    length_ps: float = 50.0
    timestep_fs: float = 1.0
    friction_per_fs: float = 0.01
    equilibration_ps: float = 0.5
    sample_every: int = 10
    check_every: int = 10
    checkpoint_every: int = 1000
    reference_ps: float = 2.0
    thresholds: dict = dataclasses.field(default_factory=dict)
    max_time: str | None = None
    device: str = "cpu"
    dtype: str = "float64"
    graphed: bool = False
    seed: int = 0
    out_dir: str = "runs/polyget_md"

    def __post_init__(self) -> None:
        for name in ("families", "n_repeat", "temperatures"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            if not getattr(self, name):
                raise ValueError(f"PolyGETMDConfig.{name} must not be empty")
        object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))
        for name in ("trajectories", "sample_every", "check_every", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PolyGETMDConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("length_ps", "timestep_fs", "equilibration_ps", "reference_ps", "friction_per_fs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"PolyGETMDConfig.{name} must be a number >= 0, got {value!r}")
        if not self.timestep_fs > 0 or not self.length_ps > 0:
            raise ValueError("PolyGETMDConfig.timestep_fs and length_ps must be > 0")
        if any(not t > 0 for t in self.temperatures):
            raise ValueError(f"PolyGETMDConfig.temperatures must be > 0 K, got {list(self.temperatures)}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"PolyGETMDConfig.dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        self.sampling_config()  # unknown threshold keys fail here
        if self.max_time is not None:
            _seconds(self.max_time)

    def steps(self, ps: float) -> int:
        """MD steps in ``ps`` picoseconds."""
        return int(round(ps * 1000.0 / self.timestep_fs))

    def sampling_config(self, n_frames: int = 1, equilibration_steps: int = 0):
        """A :class:`eqt.data.polymers.SamplingConfig` with this study's MD settings and thresholds."""
        from eqt.data.polymers import SamplingConfig

        allowed = {"bond_factor", "break_factor", "form_factor", "min_distance", "max_energy_rise_per_atom",
                   "max_force"}
        bad = sorted(set(self.thresholds) - allowed)
        if bad:
            raise ValueError(f"PolyGETMDConfig.thresholds: unknown key(s) {', '.join(bad)} "
                             f"(valid: {', '.join(sorted(allowed))})")
        return SamplingConfig.from_dict({"n_frames": n_frames, "stride": self.sample_every,
                                         "equilibration_steps": equilibration_steps,
                                         "timestep_fs": self.timestep_fs, "friction_per_fs": self.friction_per_fs,
                                         **self.thresholds})


def _seconds(hms: str) -> float:
    parts = str(hms).split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if not 1 <= len(values) <= 4 or any(v < 0 for v in values):
        raise ValueError(f"max_time must look like HH:MM:SS (or DD:HH:MM:SS), got {hms!r}")
    scale = [86400.0, 3600.0, 60.0, 1.0][-len(values):]
    return float(sum(v * s for v, s in zip(values, scale)))


# --------------------------------------------------------------------------------------------------
# Bond / angle distributions
# --------------------------------------------------------------------------------------------------
def bond_angle_topology(atoms) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """Bonds of the starting structure and the angles between them, with their type names.

    Bonds as in :class:`eqt.data.polymers.BondGuard` (``d_ij < 1.2 (r_i + r_j)``, covalent radii).

    Returns:
        ``bonds (B, 2)``, bond types (``"C-H"``, symbols sorted), ``angles (A, 3)`` (centre in the
        middle), angle types (``"C-C-H"``, end symbols sorted).
    """
    from ase.data import covalent_radii

    pos, z = atoms.positions, atoms.numbers
    sym = atoms.get_chemical_symbols()
    r = covalent_radii[z]
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    bonded = (d < 1.2 * (r[:, None] + r[None])) & ~np.eye(len(z), dtype=bool)
    i, j = np.nonzero(np.triu(bonded))
    bonds = np.stack([i, j], 1)
    btypes = ["-".join(sorted((sym[a], sym[b]))) for a, b in bonds]
    angles, atypes = [], []
    for c in range(len(z)):
        nb = np.flatnonzero(bonded[c])
        for x in range(len(nb)):
            for y in range(x + 1, len(nb)):
                a, b = nb[x], nb[y]
                angles.append((a, c, b))
                ends = sorted((sym[a], sym[b]))
                atypes.append(f"{ends[0]}-{sym[c]}-{ends[1]}")
    return bonds, btypes, np.asarray(angles, dtype=np.int64).reshape(-1, 3), atypes


class Histograms:
    """Bond-length and angle histograms per (group, type), accumulated over frames.

    ``counts[group][kind][type]`` is an int array over the bins of ``BOND_RANGE`` (kind ``bond``)
    or ``ANGLE_RANGE`` (kind ``angle``); a group is e.g. ``"PVDF@300K"``.
    """

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, dict[str, np.ndarray]]] = {}

    @staticmethod
    def edges(kind: str) -> np.ndarray:
        lo, hi, w = BOND_RANGE if kind == "bond" else ANGLE_RANGE
        return np.linspace(lo, hi, int(round((hi - lo) / w)) + 1)

    def add(self, group: str, kind: str, types: list[str], values: np.ndarray) -> None:
        """Bin ``values`` (one per entry of ``types``; Å or degrees), clipped into the range."""
        edges = self.edges(kind)
        per = self.counts.setdefault(group, {}).setdefault(kind, {})
        bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
        for t in set(types):
            sel = np.fromiter((tt == t for tt in types), bool, len(types))
            h = per.setdefault(t, np.zeros(len(edges) - 1, dtype=np.int64))
            np.add.at(h, bins[sel], 1)

    def add_frame(self, group: str, pos: np.ndarray, topology) -> None:
        """Add one frame ``pos (N, 3)`` of a molecule with ``topology`` from :func:`bond_angle_topology`."""
        bonds, btypes, angles, atypes = topology
        self.add(group, "bond", btypes, np.linalg.norm(pos[bonds[:, 0]] - pos[bonds[:, 1]], axis=-1))
        if len(angles):
            u = pos[angles[:, 0]] - pos[angles[:, 1]]
            v = pos[angles[:, 2]] - pos[angles[:, 1]]
            cos = (u * v).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
            self.add(group, "angle", atypes, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))

    def to_dict(self) -> dict[str, Any]:
        return {g: {k: {t: h.tolist() for t, h in per.items()} for k, per in kinds.items()}
                for g, kinds in self.counts.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histograms:
        h = cls()
        h.counts = {g: {k: {t: np.asarray(v, dtype=np.int64) for t, v in per.items()} for k, per in kinds.items()}
                    for g, kinds in d.items()}
        return h


def _moments(kind: str, h: np.ndarray) -> tuple[float, float]:
    e = Histograms.edges(kind)
    c = 0.5 * (e[1:] + e[:-1])
    n = h.sum()
    if n == 0:
        return float("nan"), float("nan")
    mean = float((c * h).sum() / n)
    return mean, float(np.sqrt(max((((c - mean) ** 2) * h).sum() / n, 0.0)))


def wasserstein1(kind: str, a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 (earth mover's) distance between two histograms on the same bins (Å or °)."""
    if a.sum() == 0 or b.sum() == 0:
        return float("nan")
    e = Histograms.edges(kind)
    cdf = np.cumsum(a / a.sum()) - np.cumsum(b / b.sum())
    return float(np.abs(cdf).sum() * (e[1] - e[0]))


def compare(ml: Histograms, ref: Histograms) -> dict[str, Any]:
    """Per group, kind and type: sample counts, ML and reference mean / std, Wasserstein-1."""
    out: dict[str, Any] = {}
    for group in sorted(set(ml.counts) & set(ref.counts)):
        for kind in ("bond", "angle"):
            a_all, b_all = ml.counts[group].get(kind, {}), ref.counts[group].get(kind, {})
            rows = {}
            for t in sorted(set(a_all) & set(b_all)):
                a, b = a_all[t], b_all[t]
                (ma, sa), (mb, sb) = _moments(kind, a), _moments(kind, b)
                rows[t] = {"n_ml": int(a.sum()), "n_ref": int(b.sum()), "mean_ml": ma, "std_ml": sa,
                           "mean_ref": mb, "std_ref": sb, "w1": wasserstein1(kind, a, b)}
            out.setdefault(group, {})[kind] = rows
    return out


# --------------------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------------------
def _systems(c: PolyGETMDConfig) -> list[dict[str, Any]]:
    """The trajectories: family, n_repeat, temperature, conformer seed (same list on every call)."""
    combos = [(f, n) for f in c.families for n in c.n_repeat]
    out = []
    for temp in c.temperatures:
        for k in range(c.trajectories):
            fam, n = combos[k % len(combos)]
            out.append({"family": fam, "n_repeat": int(n), "temperature_K": temp, "conformer_seed": k,
                        "name": f"{fam}-n{n}-T{temp:g}-{k}"})
    return out


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def run_reference(c: PolyGETMDConfig, log=print) -> tuple[Histograms, list[dict[str, Any]]]:
    """GFN2-xTB MD per (family, n_repeat, temperature), cached under ``out_dir/reference``."""
    import ase.io

    from eqt.data.polymers import build_oligomer, run_trajectory

    hist, records = Histograms(), []
    if c.reference_ps <= 0:
        return hist, records
    ref_dir = Path(c.out_dir) / "reference"
    ref_dir.mkdir(parents=True, exist_ok=True)
    n_frames = max(1, c.steps(c.reference_ps) // c.sample_every)
    cfg = c.sampling_config(n_frames=n_frames, equilibration_steps=c.steps(c.equilibration_ps))
    for temp in c.temperatures:
        for fam in c.families:
            for n in c.n_repeat:
                name = f"{fam}-n{n}-T{temp:g}"
                path, rec_path = ref_dir / f"{name}.xyz", ref_dir / f"{name}.json"
                atoms = build_oligomer(fam, int(n), seed=0)
                if rec_path.exists():
                    rec = json.loads(rec_path.read_text())
                else:
                    log(f"reference GFN2-xTB MD {name}: {cfg.total_steps} steps")
                    res = run_trajectory(atoms, temp, cfg, seed=c.seed, traj_id=name)
                    rec = res.record()
                    if res.frames:
                        _atomic_write(path, lambda p, frames=res.frames: ase.io.write(
                            p, frames, format="extxyz", write_results=False))
                    text = json.dumps(rec, indent=1) + "\n"
                    _atomic_write(rec_path, lambda p, text=text: p.write_text(text))
                    log(f"  {name}: {'ok' if res.ok else res.failure.message}, {res.seconds:.0f} s")
                records.append(rec)
                if path.exists():
                    topo = bond_angle_topology(atoms)
                    for frame in ase.io.read(path, ":"):
                        hist.add_frame(f"{fam}@{temp:g}K", frame.positions, topo)
    return hist, records


def _starting_structures(specs: list[dict[str, Any]], path: Path) -> list:
    """The starting oligomers, built once (RDKit) and kept in ``path``: a resumed or moved run (e.g. to
    a GPU machine without RDKit) reads them back."""
    import ase.io

    if path.exists():
        systems = ase.io.read(path, ":")
        names = [a.info.get("name") for a in systems]
        if names != [s["name"] for s in specs]:
            raise ValueError(f"{path} holds other starting structures than this config asks for; use a new out_dir")
        return systems
    from eqt.data.polymers import build_oligomer

    systems = [build_oligomer(s["family"], s["n_repeat"], seed=s["conformer_seed"]) for s in specs]
    for a, s in zip(systems, specs):
        a.info["name"] = s["name"]
    _atomic_write(path, lambda p: ase.io.write(p, systems, format="extxyz"))
    return ase.io.read(path, ":")  # what every later invocation sees (extxyz rounds to 1e-8 Å)


def _record(f, c: PolyGETMDConfig) -> dict[str, Any]:
    """JSON-ready record of a :class:`eqt.data.polymers.Failure`, with the simulated time in ps."""
    return {**dataclasses.asdict(f), "atoms": list(f.atoms), "time_ps": f.step * c.timestep_fs / 1000.0}


def run_ml_md(c: PolyGETMDConfig, log=print, advance: bool = True) -> dict[str, Any]:
    """The ML trajectories (resumable); returns the per-trajectory records and the histograms.

    With ``advance=False`` only the saved state is read (a report of a run in progress elsewhere).
    """
    from eqt.data.polymers import BondGuard
    from eqt.physics.calculator import Calculator
    from eqt.physics.replicas import ReplicaConfig, ReplicaLangevin

    out = Path(c.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = _systems(c)
    systems = _starting_structures(specs, out / "systems.xyz")
    if not Path(c.model).is_file():
        raise FileNotFoundError(f"model {c.model} not found (train it with `eqt polyget configs/polyget/study.yaml`)")
    calc = Calculator(c.model, device=c.device, dtype=_DTYPES[c.dtype])
    for s, a in zip(specs, systems):
        try:
            calc.check_elements(a.numbers)
        except ValueError as err:
            raise ValueError(f"{s['name']}: {err}") from None
    md = ReplicaLangevin(calc.potential, systems, [s["temperature_K"] for s in specs],
                         ReplicaConfig(timestep_fs=c.timestep_fs, friction_per_fs=c.friction_per_fs, seed=c.seed),
                         dtype=_DTYPES[c.dtype], device=c.device, graphed=c.graphed)
    scfg = c.sampling_config()
    guards = [BondGuard(a, scfg) for a in systems]
    topos = [bond_angle_topology(a) for a in systems]
    hist = Histograms()
    failures: dict[int, dict[str, Any]] = {}
    state_path = out / "md_state.pt"
    run_seconds = 0.0
    precision = [[0, c.dtype]]  # [first step, dtype] of each segment of the run
    for k, g in enumerate(guards):  # starting energies: the reference of the energy-rise check
        f = g.failure(md.positions(k), float(md.energy[k]), md.replica_forces(k), step=0)
        if f is not None:
            failures[k] = _record(f, c)
            md.stop(k)
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state["specs"] != specs:
            raise ValueError(f"{state_path} belongs to another set of trajectories; use a new out_dir")
        md.load_state_dict(state["md"])
        for g, e0 in zip(guards, state["energy0"]):
            g.energy0 = e0
        hist = Histograms.from_dict(state["hist"])
        failures = {int(k): v for k, v in state["failures"].items()}
        run_seconds = float(state["seconds"])
        precision = state.get("precision", [[0, "float64"]])  # runs saved before the option: float64
        if precision[-1][1] != c.dtype:
            precision.append([md.step_count, c.dtype])
        log(f"resumed at step {md.step_count} ({len(failures)} failed)")

    def save() -> None:
        payload = {"specs": specs, "md": md.state_dict(), "energy0": [g.energy0 for g in guards],
                   "hist": hist.to_dict(), "failures": failures, "seconds": run_seconds,
                   "precision": precision}
        _atomic_write(state_path, lambda p: torch.save(payload, p))

    total = c.steps(c.length_ps)
    eq_steps = c.steps(c.equilibration_ps)
    budget = _seconds(c.max_time) if c.max_time else float("inf")
    t0 = time.perf_counter()
    seconds_at_start = run_seconds
    last_log = t0
    stopped_early = False
    while advance and md.step_count < total and bool(md.active.any()):
        s0 = md.step_count  # advance to the next check, sample, checkpoint or the end
        n = min(every - s0 % every for every in (c.check_every, c.sample_every, c.checkpoint_every))
        n = min(n, total - s0)
        md.step(n)
        step = md.step_count
        run_seconds = seconds_at_start + time.perf_counter() - t0
        if step % c.check_every == 0 or step == total:
            md.check_capacity()
            for k in torch.nonzero(md.active).squeeze(-1).tolist():
                f = guards[k].failure(md.positions(k), float(md.energy[k]), md.replica_forces(k), step=step)
                if f is not None:
                    failures[k] = _record(f, c)
                    md.stop(k)
                    log(f"  {specs[k]['name']} failed: {f.message}")
        if step > eq_steps and step % c.sample_every == 0:
            for k in torch.nonzero(md.active).squeeze(-1).tolist():
                s = specs[k]
                hist.add_frame(f"{s['family']}@{s['temperature_K']:g}K", md.positions(k), topos[k])
        if step % c.checkpoint_every == 0:
            save()
        now = time.perf_counter()
        if now - last_log > 300:
            last_log = now
            temps = md.temperature()
            log(f"step {step}/{total} ({step * c.timestep_fs / 1000:.2f} ps), {int(md.active.sum())} running, "
                f"mean T {temps[md.active].mean():.0f} K, {step / max(run_seconds, 1e-9):.2f} steps/s")
        if now - t0 > budget:
            stopped_early = True
            break
    if advance:
        save()
    steps_per_s = md.step_count / max(run_seconds, 1e-9)
    records = []
    for k, s in enumerate(specs):
        steps_done = int(md.stopped_at[k]) if int(md.stopped_at[k]) >= 0 else md.step_count
        records.append({**s, "n_atoms": len(systems[k]), "steps": steps_done,
                        "time_ps": steps_done * c.timestep_fs / 1000.0, "failure": failures.get(k)})
    return {"records": records, "hist": hist, "steps_done": md.step_count, "steps_total": total,
            "stopped_by_max_time": stopped_early, "seconds": run_seconds, "steps_per_s": steps_per_s,
            "atoms": int(sum(len(a) for a in systems)), "precision": precision}


def summarize(c: PolyGETMDConfig, ml: dict[str, Any], ref_hist: Histograms,
              ref_records: list[dict[str, Any]]) -> dict[str, Any]:
    """Failure table per (family, temperature) and the distribution comparison."""
    rows = {}
    for r in ml["records"]:
        key = f"{r['family']}@{r['temperature_K']:g}K"
        row = rows.setdefault(key, {"trajectories": 0, "failures": 0, "checks": {}, "time_ps": 0.0,
                                    "min_time_ps": float("inf")})
        row["trajectories"] += 1
        row["time_ps"] += r["time_ps"]
        row["min_time_ps"] = min(row["min_time_ps"], r["time_ps"])
        if r["failure"] is not None:
            row["failures"] += 1
            ch = r["failure"]["check"]
            row["checks"][ch] = row["checks"].get(ch, 0) + 1
    return {"config": c.to_dict(), "trajectories": ml["records"], "per_group": rows,
            "steps_done": ml["steps_done"], "steps_total": ml["steps_total"],
            "stopped_by_max_time": ml["stopped_by_max_time"], "md_seconds": ml["seconds"],
            "steps_per_s": ml["steps_per_s"], "atoms": ml["atoms"], "precision": ml["precision"],
            "reference": ref_records,
            "distributions": compare(ml["hist"], ref_hist)}


def table(res: dict[str, Any]) -> str:
    """Markdown: failures per family and temperature, then the distribution comparison."""
    c = res["config"]
    lines = [f"ML MD: {res['steps_done']:,} of {res['steps_total']:,} steps of {c['timestep_fs']} fs "
             f"({res['steps_done'] * c['timestep_fs'] / 1000:.2f} ps) on {len(res['trajectories'])} trajectories "
             f"({res['atoms']} atoms in one batch), {res['md_seconds']:.0f} s, {res['steps_per_s']:.2f} steps/s"
             + (" (stopped by max_time)" if res["stopped_by_max_time"] else "")
             + "; model evaluated in " + ", ".join(f"{d} from step {s:,}" for s, d in res.get("precision", [])), "",
             "| family @ T | trajectories | failures | checks failed | simulated (ps, total) | shortest (ps) |",
             "|---|---|---|---|---|---|"]
    for key, r in sorted(res["per_group"].items()):
        checks = ", ".join(f"{k} {v}" for k, v in sorted(r["checks"].items())) or "-"
        lines.append(f"| {key} | {r['trajectories']} | {r['failures']} | {checks} | {r['time_ps']:.2f} | "
                     f"{r['min_time_ps']:.2f} |")
    lines += ["", "Bond lengths (Å) and angles (°), ML MD vs GFN2-xTB MD: mean ± std, Wasserstein-1 distance", "",
              "| family @ T | kind | type | ML | GFN2-xTB | W1 |", "|---|---|---|---|---|---|"]
    for group, kinds in sorted(res["distributions"].items()):
        for kind, rows in kinds.items():
            for t, r in sorted(rows.items(), key=lambda kv: -kv[1]["n_ref"]):
                digits = 3 if kind == "bond" else 1
                lines.append(f"| {group} | {kind} | {t} | {r['mean_ml']:.{digits}f} ± {r['std_ml']:.{digits}f} | "
                             f"{r['mean_ref']:.{digits}f} ± {r['std_ref']:.{digits}f} | {r['w1']:.{digits + 1}f} |")
    return "\n".join(lines)


def plot(ml: Histograms, ref: Histograms, path: Path, label: str = "ML") -> None:
    """Pooled bond-length and angle distributions, ML (solid, ``label``) vs GFN2-xTB (dashed), per
    family and temperature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted(set(ml.counts) & set(ref.counts))
    if not groups:
        return
    fig, axes = plt.subplots(len(groups), 2, figsize=(9, 2.2 * len(groups)), squeeze=False)
    for row, g in enumerate(groups):
        for col, kind in enumerate(("bond", "angle")):
            ax = axes[row, col]
            e = Histograms.edges(kind)
            x = 0.5 * (e[1:] + e[:-1])
            for h, style, name in ((ml, "-", label), (ref, "--", "GFN2-xTB")):
                per = h.counts[g].get(kind, {})
                if not per:
                    continue
                tot = sum(per.values())
                ax.plot(x, tot / tot.sum() / (e[1] - e[0]), style, lw=1.0, label=name)
            ax.set_xlim(*((0.9, 1.7) if kind == "bond" else (85, 150)))
            ax.set_title(f"{g}: {'bond lengths (Å)' if kind == 'bond' else 'angles (°)'}", fontsize=8)
            ax.tick_params(labelsize=7)
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def survival(records: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Survival of trajectories (each followed to its end or its failure, so no censoring before the end).

    Args:
        records: the per-trajectory records (``results.json`` ``trajectories``).

    Returns:
        per ``family@T`` (and ``all@T``): failure times ``(k,)`` ps in increasing order, the fraction
        still running after each ``(k,)``, and the end of the curve (ps): the time the surviving
        trajectories reached, or the last failure when none survived.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        for key in (f"{r['family']}@{r['temperature_K']:g}K", f"all@{r['temperature_K']:g}K"):
            groups.setdefault(key, []).append(r)
    out = {}
    for key, rs in groups.items():
        times = np.sort([r["failure"]["time_ps"] for r in rs if r["failure"] is not None])
        alive = 1.0 - np.arange(1, len(times) + 1) / len(rs)
        end = max((r["time_ps"] for r in rs if r["failure"] is None), default=float(times[-1]) if len(times) else 0.0)
        out[key] = (times, alive, end)
    return out


def plot_survival(runs: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Fraction of trajectories still running vs simulated time, one panel per temperature, one colour
    per run (``runs``: label -> records), a thin line per family and a thick one for all of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {label: survival(recs) for label, recs in runs.items()}
    temps = sorted({k.split("@")[1] for c in curves.values() for k in c}, key=lambda t: float(t[:-1]))
    fig, axes = plt.subplots(1, len(temps), figsize=(4.2 * len(temps), 3.0), squeeze=False)
    for ax, t in zip(axes[0], temps):
        for i, (label, c) in enumerate(curves.items()):
            families = sorted({k.split("@")[0] for k in c} - {"all"})
            for key, (times, alive, end) in sorted(c.items()):
                if not key.endswith("@" + t):
                    continue
                fam = key.split("@")[0]
                prev = np.concatenate([[1.0], alive])[:-1]  # a step down at each failure time
                x = np.concatenate([[0.0], np.repeat(times, 2), [end]])
                y = np.concatenate([[1.0], np.column_stack([prev, alive]).ravel(), [alive[-1] if len(alive) else 1.0]])
                ls = "-" if fam == "all" else (":", "--", "-.", (0, (1, 3)))[families.index(fam) % 4]
                ax.plot(x, y, color=f"C{i}", lw=2.0 if fam == "all" else 0.9, ls=ls, label=f"{label}: {fam}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("simulated time (ps)", fontsize=8)
        ax.set_ylabel("fraction running", fontsize=8)
        ax.set_title(t, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def run_study(c: PolyGETMDConfig, log=print, advance: bool = True) -> dict[str, Any]:
    """ML MD (resumable), reference MD (cached), comparison; writes results.json / .md and the figure.

    ``advance=False`` reports the saved state of the ML MD without running it further.
    """
    out = Path(c.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ml = run_ml_md(c, log, advance=advance)
    ref_hist, ref_records = run_reference(c, log)
    res = summarize(c, ml, ref_hist, ref_records)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    (out / "results.md").write_text(table(res) + "\n")
    label = f"ML ({Path(c.model).parent.name or c.model})"
    plot(ml["hist"], ref_hist, out / "distributions.png", label=label)
    plot_survival({label: ml["records"]}, out / "survival.png")
    return res


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``eqt polyget-md``."""
    p.add_argument("config", nargs="?", help="YAML (see configs/polyget/md.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    p.add_argument("--out", help="output directory (overrides out_dir)")
    p.add_argument("--stage", choices=("all", "md", "reference", "report"), default="all",
                   help="only the ML MD, only the GFN2-xTB reference (e.g. in two processes), or only the "
                        "report of what is saved")
    return p


def run_from_args(a: argparse.Namespace) -> dict[str, Any] | None:
    from eqt.train.config import apply_overrides, read_yaml

    values = read_yaml(a.config) if a.config else {}
    values = apply_overrides(values, list(a.set or []) + ([f"out_dir={a.out}"] if a.out else []))
    c = PolyGETMDConfig.from_dict(values)
    if a.stage == "reference":
        run_reference(c)
        return None
    if a.stage == "md":
        run_ml_md(c)
        return None
    res = run_study(c, advance=a.stage == "all")
    print(table(res))
    return res
