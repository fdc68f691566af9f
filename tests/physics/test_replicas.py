"""ReplicaLangevin: thermostat statistics, NVE energy conservation, independence of replicas, resume,
agreement of the graphed path with the plain one."""

import numpy as np
import pytest
import torch
from ase import Atoms

from eqt.models.et import ET, ETConfig
from eqt.physics.potential import Potential
from eqt.physics.replicas import KB_EV, ReplicaConfig, ReplicaLangevin


class PairSprings:
    """E = sum over same-system pairs of k/2 (d_ij - r0)^2: an analytic potential for the integrator."""

    def __init__(self, k: float = 5.0, r0: float = 1.2):
        self.k, self.r0 = k, r0

    def __call__(self, z, pos, batch, num_systems, validate=False):
        with torch.enable_grad():
            pos = pos.detach().requires_grad_(True)
            i, j = torch.triu_indices(len(z), len(z), 1)
            same = batch[i] == batch[j]
            i, j = i[same], j[same]
            d = (pos[i] - pos[j]).norm(dim=-1)
            e_pair = 0.5 * self.k * (d - self.r0) ** 2
            energy = torch.zeros(num_systems, dtype=pos.dtype).index_add_(0, batch[i], e_pair)
            (grad,) = torch.autograd.grad(energy.sum(), pos)
        return {"energy": energy.detach(), "forces": -grad}


def triangle(symbol="H", shift=0.0):
    return Atoms(symbol * 3, positions=[[0, 0, 0], [1.2, 0, 0], [0.6, 1.04, 0.0 + shift]])


def test_thermostat_reaches_each_replicas_temperature():
    systems = [triangle() for _ in range(8)]
    temps = [200.0] * 4 + [600.0] * 4
    md = ReplicaLangevin(PairSprings(), systems, temps, ReplicaConfig(timestep_fs=0.5, friction_per_fs=0.05, seed=3),
                         dtype=torch.float64)
    md.step(400)  # equilibrate
    samples = []
    for _ in range(300):
        md.step(10)
        samples.append(md.temperature().numpy())
    mean = np.mean(samples, axis=0)
    # 9 degrees of freedom per replica: T fluctuates by ~47 %; ~4 x 300 weakly correlated samples per group
    assert mean[:4].mean() == pytest.approx(200.0, rel=0.08)
    assert mean[4:].mean() == pytest.approx(600.0, rel=0.08)


def test_nve_conserves_energy():
    systems = [triangle(), triangle("C", 0.1)]
    md = ReplicaLangevin(PairSprings(), systems, [300.0, 300.0], ReplicaConfig(timestep_fs=0.25, friction_per_fs=0.0),
                         dtype=torch.float64)

    def total():
        kin = torch.zeros(2, dtype=torch.float64).index_add_(0, md.batch, 0.5 * md.masses * (md.vel ** 2).sum(-1))
        return (kin + md.energy).numpy()

    e0 = total()
    md.step(2000)
    scale = 3 * 3 * KB_EV * 300.0  # the kinetic energy scale
    assert np.abs(total() - e0).max() < 1e-3 * scale


def test_a_stopped_replica_does_not_change_the_others():
    systems = [triangle(), triangle(shift=0.2), triangle(shift=-0.1)]
    cfg = ReplicaConfig(timestep_fs=0.5, friction_per_fs=0.02, seed=1)
    a = ReplicaLangevin(PairSprings(), systems, [300.0] * 3, cfg, dtype=torch.float64)
    b = ReplicaLangevin(PairSprings(), systems, [300.0] * 3, cfg, dtype=torch.float64)
    a.step(20)
    b.step(5)
    b.stop(1)
    frozen = b.positions(1).copy()
    b.step(15)
    for k in (0, 2):
        np.testing.assert_allclose(b.positions(k), a.positions(k), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(b.positions(1), frozen)
    assert b.stopped_at.tolist() == [-1, 5, -1] and b.active.tolist() == [True, False, True]
    assert np.isnan(float(b.energy[1])) and np.isfinite(float(b.energy[0]))


def test_resume_is_bit_identical():
    systems = [triangle(), triangle("C", 0.1)]
    cfg = ReplicaConfig(timestep_fs=0.5, friction_per_fs=0.01, seed=7)
    full = ReplicaLangevin(PairSprings(), systems, [300.0, 500.0], cfg, dtype=torch.float64)
    full.step(30)
    first = ReplicaLangevin(PairSprings(), systems, [300.0, 500.0], cfg, dtype=torch.float64)
    first.step(12)
    first.stop(1)
    state = first.state_dict()
    resumed = ReplicaLangevin(PairSprings(), systems, [300.0, 500.0], cfg, dtype=torch.float64)
    resumed.load_state_dict(state)
    resumed.step(18)
    first.step(18)
    assert torch.equal(resumed.pos, first.pos) and torch.equal(resumed.vel, first.vel)
    assert resumed.step_count == 30 and resumed.stopped_at.tolist() == [-1, 12]
    np.testing.assert_array_equal(resumed.positions(0), full.positions(0))
    with pytest.raises(ValueError, match="other systems or temperatures"):
        ReplicaLangevin(PairSprings(), systems, [300.0, 400.0], cfg, dtype=torch.float64).load_state_dict(state)


def test_graphed_path_equals_the_plain_one():
    torch.manual_seed(0)
    model = ET(ETConfig(hidden_channels=16, num_layers=2, num_heads=2, num_rbf=8, cutoff_upper=3.0)).double().eval()
    systems = [Atoms("CH4", positions=[[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63],
                                       [0.63, -0.63, -0.63]]),
               Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])]
    cfg = ReplicaConfig(timestep_fs=0.2, friction_per_fs=0.01, seed=2)
    plain = ReplicaLangevin(Potential(model), systems, [300.0, 300.0], cfg, dtype=torch.float64)
    graphed = ReplicaLangevin(Potential(model), systems, [300.0, 300.0], cfg, dtype=torch.float64, graphed=True)
    for md in (plain, graphed):
        md.step(10)
        md.check_capacity()
        md.stop(0)
        md.step(10)
    np.testing.assert_allclose(graphed.pos.numpy(), plain.pos.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(graphed.energy.numpy(), plain.energy.numpy(), rtol=0, atol=1e-10, equal_nan=True)


def test_bad_input_is_reported():
    good = [triangle()]
    with pytest.raises(ValueError, match="1 systems but 2 temperatures"):
        ReplicaLangevin(PairSprings(), good, [300.0, 300.0])
    with pytest.raises(ValueError, match="system 0 has 1 atom"):
        ReplicaLangevin(PairSprings(), [Atoms("H")], [300.0])
    with pytest.raises(ValueError, match="periodic"):
        ReplicaLangevin(PairSprings(), [Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]], cell=[5, 5, 5], pbc=True)],
                        [300.0])
    with pytest.raises(ValueError, match="non-finite"):
        ReplicaLangevin(PairSprings(), [Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]])], [300.0])
    with pytest.raises(ValueError, match="temperatures must be finite"):
        ReplicaLangevin(PairSprings(), good, [-1.0])
    with pytest.raises(ValueError, match="timestep_fs must be > 0"):
        ReplicaConfig(timestep_fs=0.0)
    with pytest.raises(ValueError, match="needs an eqt Potential"):
        ReplicaLangevin(PairSprings(), good, [300.0], graphed=True)
