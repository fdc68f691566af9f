"""run_md: energy conservation, thermostat, output files, and the safety checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import Calculator as AseCalculator
from ase.calculators.calculator import all_changes
from ase.calculators.lj import LennardJones
from ase.calculators.mixing import SumCalculator
from ase.io import Trajectory

from eqt.ase import Calculator
from eqt.models.et import ET, ETConfig
from eqt.physics.md import MDConfig, MDInstabilityError, run_md

TINY = ETConfig(hidden_channels=16, num_layers=2, num_heads=2, num_rbf=8, cutoff_upper=4.0)


def tiny_calculator(scale: float = 1.0) -> Calculator:
    torch.manual_seed(0)
    model = ET(TINY)
    model.energy_scale.fill_(scale)
    return Calculator(model)


class _Scripted(AseCalculator):
    """Zero forces; after ``fail_after`` calls, NaN forces or a ValueError."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, fail_after: int = 10**9, mode: str = "nan"):
        super().__init__()
        self.calls, self.fail_after, self.mode = 0, fail_after, mode

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        forces = np.zeros((len(self.atoms), 3))
        if self.calls > self.fail_after:
            if self.mode == "raise":
                raise ValueError("atoms 1 and 2 are too close")
            forces[2] = np.nan
        self.results = {"energy": 0.0, "forces": forces}


def test_nve_conserves_energy_and_writes_files(tmp_path):
    # the random tiny model has no short-range repulsion: a soft Lennard-Jones wall keeps atoms apart
    config = MDConfig(integrator="verlet", timestep_fs=0.25, steps=200, log_interval=5)
    atoms = molecule("CH3CH2OH")
    calc = SumCalculator([tiny_calculator(scale=5.0), LennardJones(sigma=1.0, epsilon=0.02, rc=2.0, smooth=True)])
    result = run_md(atoms, calc, config, trajectory=tmp_path / "md.traj", log=tmp_path / "md.csv")
    assert result.steps_done == 200
    assert len(result.energies) == len(result.temperatures) == 41
    ekin = result.energies - result.potential_energies
    assert np.ptp(result.potential_energies) > 0.1  # the dynamics is not free flight
    assert result.energies.std() < 0.05 * ekin.mean()
    drift_over_run = abs(result.drift_eV_per_atom_per_ps) * len(atoms) * 0.05  # eV over the 50 fs (0.05 ps) run
    assert drift_over_run < 0.05 * ekin.mean()
    # files under their final names only, complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md.csv", "md.traj"]
    lines = (tmp_path / "md.csv").read_text().splitlines()
    assert lines[0] == "step,time_fs,epot_eV,ekin_eV,etot_eV,temperature_K"
    rows = np.loadtxt(tmp_path / "md.csv", delimiter=",", skiprows=1)
    assert rows.shape == (41, 6) and rows[-1, 0] == 200 and rows[-1, 1] == pytest.approx(50.0)
    np.testing.assert_allclose(rows[:, 4], result.energies, rtol=1e-8)
    with Trajectory(str(tmp_path / "md.traj")) as traj:
        assert len(traj) == 41
        np.testing.assert_allclose(traj[-1].positions, atoms.positions)
        assert traj[-1].get_potential_energy() == pytest.approx(result.potential_energies[-1])


def test_langevin_temperature():
    # a soft Lennard-Jones wall keeps atoms of the random tiny model apart for the whole run
    calc = SumCalculator([tiny_calculator(), LennardJones(sigma=1.0, epsilon=0.02, rc=2.0, smooth=True)])
    config = MDConfig(integrator="langevin", timestep_fs=0.5, temperature_K=300.0, friction_per_fs=0.1,
                      steps=400, log_interval=10, seed=0)
    result = run_md(molecule("CH3CH2OH"), calc, config)
    assert result.steps_done == 400 and result.trajectory is None and result.log is None
    assert 100.0 < result.mean_temperature_K < 600.0


def test_close_atoms_abort(tmp_path):
    atoms = Atoms("H2", positions=[[0, 0, 0], [0.3, 0, 0]])
    config = MDConfig(steps=10, min_distance=0.5)
    with pytest.raises(MDInstabilityError, match=r"step 0: atoms 0 and 1 are 0\.3 Å apart") as err:
        run_md(atoms, tiny_calculator(), config, trajectory=tmp_path / "md.traj", log=tmp_path / "md.csv")
    assert (err.value.step, err.value.check, err.value.atom_indices) == (0, "min_distance", (0, 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md.csv.aborted", "md.traj.aborted"]
    with Trajectory(str(tmp_path / "md.traj.aborted")) as traj:
        assert len(traj) == 1  # the failing frame


def test_displacement_and_flying_off_checks():
    atoms = molecule("H2O")
    with pytest.raises(MDInstabilityError, match=r"step 1: atom \d moved .* max_displacement_per_step"):
        run_md(atoms, _Scripted(), MDConfig(steps=5, max_displacement_per_step=1e-6))
    with pytest.raises(MDInstabilityError, match=r"atom \d flew off") as err:
        run_md(molecule("H2O"), _Scripted(), MDConfig(integrator="verlet", steps=100, max_distance_growth=0.05,
                                                      temperature_K=1000.0, min_distance=0.0))
    assert err.value.check == "distance_growth" and err.value.step > 0


def test_nan_forces_and_calculator_errors(tmp_path):
    with pytest.raises(MDInstabilityError, match=r"step 3: non-finite force on atom\(s\) 2") as err:
        run_md(molecule("H2O"), _Scripted(fail_after=3), MDConfig(steps=10), trajectory=tmp_path / "a.traj")
    assert err.value.atom_indices == (2,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.traj.aborted"]
    with pytest.raises(MDInstabilityError, match="step 2: the calculator rejected the structure: atoms 1 and 2"):
        run_md(molecule("H2O"), _Scripted(fail_after=2, mode="raise"), MDConfig(steps=10))
    with pytest.raises(MDInstabilityError, match=r"force .* on atom \d exceeds max_force"):
        run_md(molecule("CH3CH2OH"), tiny_calculator(), MDConfig(steps=1, max_force=1e-3))


def test_config():
    with pytest.raises(ValueError, match="unknown key 'timestep' for MDConfig; did you mean 'timestep_fs'"):
        MDConfig.from_dict({"timestep": 1.0})
    assert MDConfig.from_dict({"integrator": "verlet"}).integrator == "verlet"
    with pytest.raises(ValueError, match="integrator"):
        MDConfig(integrator="nose-hoover")
    with pytest.raises(ValueError, match="log_interval"):
        MDConfig(log_interval=0)
    with pytest.raises(ValueError, match="MDConfig.seed must be >= 0"):
        MDConfig(seed=-1)


def test_check_structure():
    """Refused before any model is loaded: empty, non-finite, overlapping (also via a periodic image)."""
    from ase.build import bulk

    from eqt.physics.md import check_structure

    check_structure(molecule("CH3CH2OH"))
    with pytest.raises(ValueError, match="no atoms"):
        check_structure(Atoms())
    with pytest.raises(ValueError, match=r"non-finite position of atom\(s\) 1"):
        check_structure(Atoms("H2", positions=[[0, 0, 0], [0, np.nan, 0]]))
    with pytest.raises(ValueError, match=r"atoms 0 and 1 are 0\.1 Å apart, closer than min_distance=0\.5"):
        check_structure(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.1]]))
    cu = bulk("Cu", "fcc", a=3.6)
    cu.cell = [[0.3, 0, 0], [0, 3.6, 0], [0, 0, 3.6]]
    with pytest.raises(ValueError, match="from its own periodic image"):
        check_structure(cu)
    check_structure(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.1]]), min_distance=0.0)


def test_close_atoms_abort_periodic_and_in_a_long_chain():
    """The distance checks in a periodic cell (vesin, or ASE without it) and in a long chain (k-d
    tree: ASE's neighbor_list, used before, took 4 s per step for a 1,000-atom chain)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from eqt.physics.md import _Checker

    cu = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    cu.positions[1] = cu.positions[0] + [0.0, 0.0, 0.3]
    cu.calc = EMT()
    with pytest.raises(MDInstabilityError, match=r"atoms 0 and 1 are 0\.3 Å apart"):
        run_md(cu, cu.calc, MDConfig(steps=2, min_distance=0.5, max_force=1e9, max_displacement_per_step=1e9))
    chain = Atoms("C" * 3000, positions=np.c_[1.5 * np.arange(3000), np.zeros(3000), np.zeros(3000)])
    chain.calc = SinglePointCalculator(chain, energy=0.0, forces=np.zeros((3000, 3)))
    checker = _Checker(chain, MDConfig())
    checker(chain, 0)  # fine
    chain.positions[2000, 0] = chain.positions[1999, 0] + 0.2
    chain.calc = SinglePointCalculator(chain, energy=0.0, forces=np.zeros((3000, 3)))
    with pytest.raises(MDInstabilityError, match=r"atoms 1999 and 2000 are 0\.2 Å apart"):
        _Checker(chain, MDConfig(max_displacement_per_step=1e9))(chain, 1)
