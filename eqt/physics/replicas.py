"""Many independent molecules integrated together: one batched energy+force call per MD step.

Stability studies need many trajectories (different molecules, seeds, temperatures). Run one at a
time through ASE, each step is one small model call dominated by overhead; :class:`ReplicaLangevin`
puts all replicas into one batch (the model's ``batch`` index keeps them apart: no edges between
replicas), so a step costs one call over all atoms. A replica that fails a check is frozen
(:meth:`ReplicaLangevin.stop`) and dropped from later calls; the others go on, with the same random
numbers they would have drawn had it not stopped (noise is drawn for every atom at every step).

Integrator: BAOAB Langevin (Leimkuhler & Matthews 2013), the splitting with the smallest
configurational error at a given time step: half kick (B), half drift (A), exact
Ornstein-Uhlenbeck velocity update (O), half drift, force call, half kick. Each replica has its own
thermostat temperature. Positions and velocities are kept in float64 whatever the model's dtype.

Units (ASE's): positions Å, masses amu, energies eV, time ``ase.units.fs`` per fs.

The whole state (positions, velocities, forces, step, which replicas still run, the random
generator) is in :meth:`state_dict`, so a killed run resumes bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eqt.config import Config

__all__ = ["ReplicaConfig", "ReplicaLangevin"]

KB_EV = 8.617333262e-5  # Boltzmann constant, eV/K
FS = 0.09822694788464063  # ase.units.fs: one femtosecond in ASE's time unit Å sqrt(amu/eV)


@dataclasses.dataclass(frozen=True)
class ReplicaConfig(Config):
    """Settings of :class:`ReplicaLangevin`.

    Attributes:
        timestep_fs: time step in fs.
        friction_per_fs: Langevin friction γ in 1/fs (0: velocity Verlet, NVE).
        seed: seed of the initial velocities and the thermostat noise.
    """

    timestep_fs: float = 1.0
    friction_per_fs: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("timestep_fs", "friction_per_fs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"ReplicaConfig.{name} must be a number, got {value!r}")
        if not self.timestep_fs > 0:
            raise ValueError(f"ReplicaConfig.timestep_fs must be > 0, got {self.timestep_fs}")
        if not self.friction_per_fs >= 0:
            raise ValueError(f"ReplicaConfig.friction_per_fs must be >= 0, got {self.friction_per_fs}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"ReplicaConfig.seed must be an integer, got {self.seed!r}")


class ReplicaLangevin:
    """BAOAB Langevin dynamics of ``R`` independent molecules with one batched force call per step.

    Args:
        potential: callable ``potential(z, pos, batch, num_systems=B, validate=False)`` returning a
            dict with ``energy (B,)`` and ``forces (N, 3)`` (e.g.
            :class:`eqt.physics.potential.Potential`).
        systems: the ``R`` molecules (``ase.Atoms``, non-periodic); copied, not modified.
        temperatures: ``(R,)`` thermostat (and initial velocity) temperature of each replica, K.
        config: time step, friction, seed.
        dtype: dtype of the positions handed to the potential (the model's).
        device: where the potential runs.
        graphed: evaluate through :class:`eqt.physics.graphed.GraphedPotential` (fixed-capacity
            neighbour list; on CUDA one captured graph replay per step): ``potential`` must then be
            an :class:`eqt.physics.potential.Potential`. The graph is rebuilt when a replica stops;
            call :meth:`check_capacity` every few steps (one host sync).

    Attributes:
        step_count: MD steps done.
        active: ``(R,)`` bool, replicas still integrated.
        stopped_at: ``(R,)`` int, the step at which each replica was stopped (-1: running).
        energy: ``(R,)`` float64 potential energy of each replica at its current positions (NaN
            once stopped).
    """

    def __init__(self, potential, systems: Sequence[Any], temperatures: Sequence[float],
                 config: ReplicaConfig = ReplicaConfig(), *, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu", graphed: bool = False):
        if not isinstance(config, ReplicaConfig):
            raise TypeError(f"config must be a ReplicaConfig, got {type(config).__name__}")
        if len(systems) == 0:
            raise ValueError("ReplicaLangevin: no systems")
        if len(temperatures) != len(systems):
            raise ValueError(f"ReplicaLangevin: {len(systems)} systems but {len(temperatures)} temperatures")
        for k, a in enumerate(systems):
            if len(a) < 2:
                raise ValueError(f"ReplicaLangevin: system {k} has {len(a)} atom(s); MD needs at least 2")
            if np.any(a.pbc):
                raise ValueError(f"ReplicaLangevin: system {k} is periodic; replicas must be isolated molecules")
            if not np.isfinite(a.positions).all():
                raise ValueError(f"ReplicaLangevin: system {k} has non-finite positions")
        temps = np.asarray(temperatures, dtype=np.float64)
        if not (np.isfinite(temps).all() and (temps >= 0).all()):
            raise ValueError(f"ReplicaLangevin: temperatures must be finite and >= 0 K, got {temps.tolist()}")
        if graphed and not hasattr(potential, "model"):
            raise ValueError("ReplicaLangevin: graphed=True needs an eqt Potential (with .model)")
        self.potential, self.config, self.graphed = potential, config, bool(graphed)
        self._graph = None
        self.dtype, self.device = dtype, torch.device(device)
        self.n_replicas = len(systems)
        self.sizes = torch.tensor([len(a) for a in systems])
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), self.sizes.cumsum(0)])
        self.z = torch.tensor(np.concatenate([a.numbers for a in systems]), dtype=torch.long, device=self.device)
        self.batch = torch.repeat_interleave(torch.arange(self.n_replicas), self.sizes).to(self.device)
        f64 = dict(dtype=torch.float64, device=self.device)
        self.masses = torch.tensor(np.concatenate([a.get_masses() for a in systems]), **f64)
        self.temperatures = torch.tensor(temps, **f64)
        self.pos = torch.tensor(np.concatenate([a.positions for a in systems]), **f64)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.vel = self._maxwell_boltzmann()
        self.active = torch.ones(self.n_replicas, dtype=torch.bool)
        self.stopped_at = torch.full((self.n_replicas,), -1, dtype=torch.long)
        self.step_count = 0
        self._select()
        self.forces = torch.zeros_like(self.pos)
        self.energy = torch.full((self.n_replicas,), float("nan"), **f64)
        self._compute_forces()

    # ------------------------------------------------------------------------------------------
    def _noise(self, shape) -> Tensor:
        return torch.randn(shape, generator=self.generator, dtype=torch.float64, device=self.device)

    def _kT(self) -> Tensor:
        """``(N, 1)`` k_B T of each atom's replica, eV."""
        return (KB_EV * self.temperatures).index_select(0, self.batch).unsqueeze(-1)

    def _maxwell_boltzmann(self) -> Tensor:
        """Velocities at each replica's temperature with zero total momentum per replica."""
        vel = self._noise(self.pos.shape) * (self._kT() / self.masses.unsqueeze(-1)).sqrt()
        mom = torch.zeros(self.n_replicas, 3, dtype=torch.float64, device=self.device)
        mom.index_add_(0, self.batch, vel * self.masses.unsqueeze(-1))
        mass = torch.zeros(self.n_replicas, dtype=torch.float64, device=self.device).index_add_(0, self.batch, self.masses)
        return vel - (mom / mass.unsqueeze(-1)).index_select(0, self.batch)

    def _select(self) -> None:
        """Cache the atoms of the running replicas and their renumbered batch index."""
        keep = self.active.to(self.device).index_select(0, self.batch)
        self._atoms = torch.nonzero(keep).squeeze(-1)
        running = torch.nonzero(self.active).squeeze(-1)
        remap = torch.full((self.n_replicas,), -1, dtype=torch.long)
        remap[running] = torch.arange(len(running))
        self._running = running.to(self.device)
        self._sub_batch = remap.to(self.device).index_select(0, self.batch.index_select(0, self._atoms))
        self._graph = None
        if self.graphed and len(running):
            self._build_graph()

    def _build_graph(self, capacity: int | None = None) -> None:
        from eqt.physics.graphed import GraphedPotential

        idx = self._atoms
        self._graph = GraphedPotential(self.potential.model, self.z.index_select(0, idx), self._sub_batch,
                                       pos=self.pos.index_select(0, idx).to(self.dtype), capacity=capacity)

    def check_capacity(self) -> None:
        """Graphed mode: if the last call overflowed the neighbour list, rebuild it larger and recompute
        the forces at the current positions (the steps since the previous check used a truncated list;
        check often). No-op otherwise."""
        if self._graph is None:
            return
        try:
            self._graph.check()
        except RuntimeError:
            count = int(self._graph._out["count"])
            self._build_graph(capacity=int(1.25 * count) + 16)
            self._compute_forces()

    def _compute_forces(self) -> None:
        if len(self._running) == 0:
            return
        idx = self._atoms
        pos = self.pos.index_select(0, idx).to(self.dtype)
        if self._graph is not None:
            out = self._graph(pos)
        else:
            out = self.potential(self.z.index_select(0, idx), pos, self._sub_batch, num_systems=len(self._running),
                                 validate=False)
        self.forces[idx] = out["forces"].detach().to(torch.float64)
        self.energy[self._running] = out["energy"].detach().to(torch.float64)

    # ------------------------------------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        """Advance the running replicas by ``n`` BAOAB steps (one force call each)."""
        c = self.config
        dt = c.timestep_fs * FS
        gamma = c.friction_per_fs / FS
        c1 = float(np.exp(-gamma * dt))
        c2 = float(np.sqrt(max(1.0 - c1 * c1, 0.0)))
        for _ in range(n):
            idx = self._atoms
            if len(idx) == 0:
                return
            m = self.masses.index_select(0, idx).unsqueeze(-1)
            v = self.vel.index_select(0, idx) + 0.5 * dt * self.forces.index_select(0, idx) / m  # B
            x = self.pos.index_select(0, idx) + 0.5 * dt * v  # A
            if c.friction_per_fs > 0:  # O
                sigma = (self._kT().index_select(0, idx) / m).sqrt()
                # noise for every atom, running or not: a replica's trajectory does not depend on
                # whether another one has stopped
                v = c1 * v + c2 * sigma * self._noise(self.pos.shape).index_select(0, idx)
            x = x + 0.5 * dt * v  # A
            self.pos[idx] = x
            self._compute_forces()
            self.vel[idx] = v + 0.5 * dt * self.forces.index_select(0, idx) / m  # B
            self.step_count += 1

    def stop(self, replica: int) -> None:
        """Freeze a replica (e.g. after a failed check): it keeps its last state and is not integrated."""
        if self.active[replica]:
            self.active[replica] = False
            self.stopped_at[replica] = self.step_count
            self.energy[replica] = float("nan")
            self._select()

    # ------------------------------------------------------------------------------------------
    def positions(self, replica: int) -> np.ndarray:
        """``(n_r, 3)`` positions of one replica, Å."""
        a, b = int(self.offsets[replica]), int(self.offsets[replica + 1])
        return self.pos[a:b].cpu().numpy()

    def replica_forces(self, replica: int) -> np.ndarray:
        """``(n_r, 3)`` forces of one replica at its current positions, eV/Å."""
        a, b = int(self.offsets[replica]), int(self.offsets[replica + 1])
        return self.forces[a:b].cpu().numpy()

    def temperature(self) -> Tensor:
        """``(R,)`` instantaneous kinetic temperature of each replica, K (3N degrees of freedom, ASE's
        convention: the Langevin noise moves the centre of mass too)."""
        ekin = torch.zeros(self.n_replicas, dtype=torch.float64, device=self.device)
        ekin.index_add_(0, self.batch, 0.5 * self.masses * (self.vel * self.vel).sum(-1))
        dof = (3 * self.sizes).to(torch.float64).to(self.device)
        return (2.0 * ekin / (dof * KB_EV)).cpu()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly (plus the sizes, to check a resume)."""
        def copy(t: Tensor) -> Tensor:
            return t.detach().cpu().clone()  # .cpu() of a CPU tensor is the tensor itself

        return {"pos": copy(self.pos), "vel": copy(self.vel), "forces": copy(self.forces), "energy": copy(self.energy),
                "active": self.active.clone(), "stopped_at": self.stopped_at.clone(), "step_count": self.step_count,
                "generator": self.generator.get_state(), "generator_device": self.device.type,
                "sizes": self.sizes.clone(),
                "temperatures": copy(self.temperatures)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` of a run over the same systems and temperatures.

        On the same device type the continuation is bit-identical; a state moved between CPU and
        GPU continues with noise seeded by ``seed + step_count``.

        Raises:
            ValueError: the state belongs to other systems or temperatures.
        """
        if not torch.equal(state["sizes"], self.sizes) or not torch.allclose(state["temperatures"],
                                                                             self.temperatures.cpu()):
            raise ValueError("ReplicaLangevin.load_state_dict: the saved run has other systems or temperatures")
        self.pos = state["pos"].to(self.device).clone()
        self.vel = state["vel"].to(self.device).clone()
        self.forces = state["forces"].to(self.device).clone()
        self.energy = state["energy"].to(self.device).clone()
        self.active, self.stopped_at = state["active"].clone(), state["stopped_at"].clone()
        self.step_count = int(state["step_count"])
        if state.get("generator_device", "cpu") == self.device.type:
            self.generator.set_state(state["generator"])
        else:  # moved between CPU and GPU: fresh noise, seeded by the step (not bit-identical to staying)
            self.generator.manual_seed(self.config.seed + self.step_count)
        self._select()
