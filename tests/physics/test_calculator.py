"""The ASE calculator: agreement with Potential and finite differences, checkpoints, I/O, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.io import read, write
from ase.optimize import BFGS

from eqt.ase import Calculator
from eqt.checkpoint import save_checkpoint
from eqt.models.et import ET, ETConfig
from eqt.physics.potential import Potential

TINY = ETConfig(hidden_channels=16, num_layers=2, num_heads=2, num_rbf=8, cutoff_upper=4.0)


def tiny_model(scale: float = 1.0) -> ET:
    """A seeded tiny ET (fresh each call: the calculator casts its model in place)."""
    torch.manual_seed(0)
    model = ET(TINY)
    model.energy_scale.fill_(scale)
    model.atomref[1], model.atomref[6], model.atomref[8] = -13.6, -1029.0, -2041.0
    return model


def ethanol(rattle: float = 0.05) -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.rattle(rattle, seed=3)
    return atoms


def test_matches_potential():
    model = tiny_model()
    atoms = ethanol()
    atoms.calc = Calculator(model)
    pot = Potential(model).eval()
    z = torch.as_tensor(atoms.numbers, dtype=torch.long)
    out = {k: v.detach() for k, v in pot(z, torch.as_tensor(atoms.positions)).items()}
    assert atoms.get_potential_energy() == pytest.approx(float(out["energy"][0]), rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), out["forces"].numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(atoms.get_potential_energies(), out["atom_energy"].numpy(), rtol=1e-10)
    assert atoms.get_potential_energies().sum() == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    assert atoms.calc.model is model and model.atomref.dtype == torch.float64
    with pytest.raises(PropertyNotImplementedError, match="periodic in all 3"):
        atoms.get_stress()


@pytest.mark.filterwarnings("ignore:Please use:FutureWarning")
def test_forces_match_numerical():
    atoms = ethanol()
    calc = Calculator(tiny_model(scale=5.0))
    atoms.calc = calc
    forces = atoms.get_forces()
    numerical = calc.calculate_numerical_forces(atoms, d=1e-4)
    assert np.abs(forces).max() > 0.1
    assert np.abs(forces - numerical).max() < 1e-6 * np.abs(forces).max() + 1e-9


@pytest.mark.filterwarnings("ignore:Please use:FutureWarning")
def test_stress_matches_numerical():
    atoms = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    calc = Calculator(tiny_model(scale=5.0))
    atoms.calc = calc
    stress = atoms.get_stress()
    assert stress.shape == (6,)
    numerical = calc.calculate_numerical_stress(atoms, d=1e-5)
    assert np.abs(stress).max() > 1e-5
    np.testing.assert_allclose(stress, numerical, rtol=1e-5, atol=1e-5 * np.abs(stress).max())
    assert np.isfinite(atoms.get_forces()).all()


def test_slab_partially_periodic():
    atoms = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    atoms.pbc = [True, True, False]
    atoms.calc = Calculator(tiny_model())
    assert np.isfinite(atoms.get_potential_energy()) and np.isfinite(atoms.get_forces()).all()
    with pytest.raises(PropertyNotImplementedError, match=r"pbc=\[True, True, False\]"):
        atoms.get_stress()


def test_float32():
    atoms = ethanol()
    e64 = Calculator(tiny_model()).get_potential_energy(atoms)
    calc32 = Calculator(tiny_model(), dtype=torch.float32)
    assert calc32.model.atomref.dtype == torch.float32
    assert calc32.get_potential_energy(atoms) == pytest.approx(e64, abs=1e-3)
    assert calc32.get_forces(atoms).dtype == np.float64
    with pytest.raises(ValueError, match="dtype"):
        Calculator(tiny_model(), dtype=torch.float16)


def test_bfgs_lowers_energy():
    atoms = ethanol(rattle=0.1)
    atoms.calc = Calculator(tiny_model(scale=5.0))
    e0 = atoms.get_potential_energy()
    BFGS(atoms, logfile=None).run(fmax=1e-3, steps=5)
    assert atoms.get_potential_energy() < e0


def test_checkpoint_path_and_elements(tmp_path):
    model = tiny_model()
    path = save_checkpoint(tmp_path / "model.pt", model, extra={"elements": [1, 6, 8]})
    calc = Calculator(str(path))
    assert calc.elements == [1, 6, 8]
    atoms = ethanol()
    assert calc.get_potential_energy(atoms) == pytest.approx(Calculator(model).get_potential_energy(atoms), rel=1e-12)
    chloro = molecule("CH3CH2Cl")
    cl = int(np.flatnonzero(chloro.numbers == 17)[0])
    with pytest.raises(ValueError, match=rf"not seen in training: Cl \(atom {cl}\)"):
        calc.get_potential_energy(chloro)
    # a bare model knows no element list: only its max_z range is checked
    assert np.isfinite(Calculator(tiny_model()).get_potential_energy(chloro))


def test_bad_input():
    calc = Calculator(tiny_model())
    with pytest.raises(ValueError, match=r"atoms [01] and [01] .* closer than min_distance"):
        calc.get_potential_energy(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.01]]))
    with pytest.raises(ValueError, match="atomic number 100 at atom 1"):
        calc.get_potential_energy(Atoms([1, 100], positions=[[0, 0, 0], [0, 0, 1.0]]))
    with pytest.raises(TypeError, match="EnergyModel or a checkpoint path"):
        Calculator(torch.nn.Linear(3, 1))


def test_bad_checkpoints_and_devices(tmp_path):
    """One-line errors naming the file, before any structure is seen: empty, truncated, not an
    energy model; and devices this machine lacks."""
    from eqt.checkpoint import CheckpointError, load_energy_model
    from eqt.models.gatr import GATr, GATrConfig
    from eqt.physics.calculator import check_device

    path = save_checkpoint(tmp_path / "model.pt", tiny_model())
    raw = path.read_bytes()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "half.pt").write_bytes(raw[: len(raw) // 2])
    save_checkpoint(tmp_path / "gatr.pt", GATr(GATrConfig()))
    with pytest.raises(CheckpointError, match=r"empty\.pt is empty \(0 bytes\)"):
        Calculator(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match=rf"half\.pt is truncated or corrupt \({len(raw) // 2} bytes"):
        Calculator(tmp_path / "half.pt")
    with pytest.raises(CheckpointError, match=r"gatr\.pt holds a GATr model, but the ASE calculator \(eqt md\) "
                                              r"needs an energy model \(ET, Equiformer\)"):
        Calculator(str(tmp_path / "gatr.pt"))
    with pytest.raises(CheckpointError, match="holds a GATr model, but eqt test needs"):
        load_energy_model(tmp_path / "gatr.pt", user="eqt test")
    with pytest.raises(ValueError, match="unknown device 'gpu0': use cpu, cuda or cuda:N"):
        Calculator(tiny_model(), device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device 'cuda': CUDA is not available on this machine \(torch "):
            Calculator(tiny_model(), device="cuda")
    else:
        with pytest.raises(ValueError, match="CUDA device"):
            check_device(f"cuda:{torch.cuda.device_count()}")
    assert check_device("cpu") == torch.device("cpu")


def test_extxyz_round_trip(tmp_path):
    atoms = ethanol()
    atoms.calc = Calculator(tiny_model())
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    write(tmp_path / "out.xyz", atoms, format="extxyz")
    back = read(tmp_path / "out.xyz", format="extxyz")
    assert back.get_potential_energy() == pytest.approx(energy, rel=1e-9)
    np.testing.assert_allclose(back.get_forces(), forces, rtol=1e-6, atol=1e-7)  # extxyz: 8 decimals


def test_graphed_matches_plain_along_md_and_rebuilds():
    """graphed=True (the CUDA-graph path; eager fixed-shape on CPU) gives the plain calculator's
    energies and forces along a short MD, rebuilds when the atoms change or the capacity overflows."""
    from ase import units
    from ase.md.verlet import VelocityVerlet
    from ase.md import velocitydistribution

    atoms = ethanol()
    plain = Calculator(tiny_model())
    graphed = Calculator(tiny_model(), graphed=True)
    atoms.calc = graphed
    thermalize = getattr(velocitydistribution, "thermalize_momenta",  # ASE >= 3.29; same draws
                         getattr(velocitydistribution, "MaxwellBoltzmannDistribution", None))
    thermalize(atoms, temperature_K=600, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    for _ in range(5):
        dyn.run(2)
        ref = atoms.copy()
        ref.calc = plain
        assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), atol=1e-10)
    first = graphed._graph
    graphed._graph.capacity = 3  # pretend the capacity was too small: the next call must rebuild
    atoms.positions[0, 0] += 1e-3
    e = atoms.get_potential_energy()
    ref = atoms.copy()
    ref.calc = plain
    assert graphed._graph is not first and e == pytest.approx(ref.get_potential_energy(), abs=1e-10)
    water = molecule("H2O")
    water.calc = graphed
    ref = water.copy()
    ref.calc = plain
    assert water.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-10)
    with pytest.raises(PropertyNotImplementedError, match="per-atom"):
        water.get_potential_energies()
    slab = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    slab.calc = Calculator(tiny_model(), graphed=True)
    with pytest.raises(ValueError, match="non-periodic"):
        slab.get_potential_energy()
