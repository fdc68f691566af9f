"""``PotentialContract``: the physics every energy model of eqt must obey, as a pytest mixin.

Use it by subclassing in a test module and providing ``make_model``::

    class TestET(PotentialContract):
        def make_model(self):
            return ET(ETConfig(hidden_channels=16, num_layers=2, num_heads=2, cutoff_upper=4.0))

The model is cast to float64. The checks (nequip's ``EnergyModelTestsMixin`` in spirit):
forces equal ``-dE/dpos`` by central finite differences; stress equals the finite-strain
derivative; the energy is continuous where an atom crosses the cutoff; E is invariant and F
equivariant under rotations, reflections, translations and permutations (through
:func:`eqt.testing.assert_equivariant`); a molecule alone equals the same molecule inside a batch;
far-apart fragments add up; an isolated atom has a finite energy and zero force.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.build import bulk, molecule

from eqt.reps.actions import Invariant, Position, Vector
from eqt.reps.groups import E3, Permutations
from eqt.testing.equivariance import assert_equivariant

__all__ = ["PotentialContract", "test_molecule"]


def test_molecule(name: str = "CH3CH2OH", seed: int = 0, rattle: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """A small real molecule (ASE geometry) with a seeded rattle, float64.

    Returns:
        ``z (N,)`` int64 and ``pos (N, 3)`` float64.
    """
    atoms = molecule(name)
    rng = np.random.default_rng(seed)
    pos = atoms.positions + rattle * rng.standard_normal(atoms.positions.shape)
    return torch.as_tensor(atoms.numbers, dtype=torch.long), torch.as_tensor(pos, dtype=torch.float64)


test_molecule.__test__ = False  # not a pytest test


class PotentialContract:
    """Mixin of contract tests for :class:`eqt.models.base.EnergyModel` subclasses."""

    #: relative tolerance of finite-difference checks (float64, step 1e-5 Å)
    fd_rtol = 1e-6

    def make_model(self) -> torch.nn.Module:
        """Return a fresh energy model with non-trivial weights (any dtype; it is cast to float64)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- helpers
    def _potential(self):
        from eqt.physics.potential import Potential

        torch.manual_seed(0)
        model = self.make_model().to(torch.float64).eval()
        with torch.no_grad():  # make biases and references non-zero so nothing is trivially invariant
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.add_(0.1 * torch.randn_like(p))
            model.atomref.normal_()
        return Potential(model)

    def _energy(self, pot, z, pos, batch=None, **kw):
        return pot(z, pos, batch, forces=False, **kw)["energy"]

    # ------------------------------------------------------------------ tests
    def test_forces_are_minus_energy_gradient(self):
        pot = self._potential()
        z, pos = test_molecule()
        out = pot(z, pos)
        h = 1e-5
        fd = torch.zeros_like(pos)
        for i in range(pos.shape[0]):
            for a in range(3):
                p, m = pos.clone(), pos.clone()
                p[i, a] += h
                m[i, a] -= h
                fd[i, a] = -(self._energy(pot, z, p) - self._energy(pot, z, m)).sum() / (2 * h)
        err = (out["forces"] - fd).abs().max() / out["forces"].abs().max()
        assert err < self.fd_rtol, f"forces differ from -dE/dpos by finite differences: rel. error {err:.2e}"

    def test_stress_is_strain_derivative(self):
        pot = self._potential()
        atoms = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
        rng = np.random.default_rng(1)
        atoms.positions += 0.1 * rng.standard_normal(atoms.positions.shape)
        z = torch.as_tensor(atoms.numbers, dtype=torch.long)
        pos = torch.as_tensor(atoms.positions, dtype=torch.float64)
        cell = torch.as_tensor(atoms.cell.array, dtype=torch.float64).unsqueeze(0)
        out = pot(z, pos, cell=cell, stress=True)
        # fourth-order central differences: the energy of a rattled crystal bends sharply in strain
        # (pairs near the cutoff), so second order at h = 1e-5 left a truncation error of 8.7e-6
        # against the 1e-5 bound (Equiformer); fourth order at the same h leaves 1.2e-9
        h, vol = 1e-5, float(torch.linalg.det(cell[0]))
        fd = torch.zeros(3, 3, dtype=torch.float64)
        for a in range(3):
            for b in range(3):
                energies = {}
                for k in (2, 1, -1, -2):
                    eps = torch.zeros(3, 3, dtype=torch.float64)
                    eps[a, b] += k * h / 2
                    eps[b, a] += k * h / 2
                    one = torch.eye(3, dtype=torch.float64) + eps
                    energies[k] = self._energy(pot, z, pos @ one, cell=cell @ one).sum()
                fd[a, b] = (-energies[2] + 8 * energies[1] - 8 * energies[-1] + energies[-2]) / (12 * h) / vol
        err = (out["stress"][0] - fd).abs().max() / fd.abs().max().clamp(min=1e-12)
        assert err < 1e-5, f"stress differs from the finite-strain derivative: rel. error {err:.2e}"

    def test_energy_continuous_at_cutoff(self):
        pot = self._potential()
        rc = pot.model.cutoff
        z = torch.tensor([6, 8, 1])
        base = torch.tensor([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0]], dtype=torch.float64)
        energies = []
        for d in (rc - 1e-7, rc + 1e-7):  # the hydrogen enters / leaves the carbon's cutoff sphere
            pos = torch.cat([base, torch.tensor([[-d, 0.0, 0.0]], dtype=torch.float64)])
            energies.append(float(self._energy(pot, z, pos).detach()))
        jump = abs(energies[0] - energies[1])
        assert jump < 1e-8, f"energy jumps by {jump:.2e} eV when an atom crosses the cutoff {rc} Å"

    def test_invariance_and_equivariance(self):
        pot = self._potential()
        z, pos = test_molecule()

        def fn(p, zz):
            out = pot(zz, p)
            return out["energy"], out["forces"]

        group = E3() * Permutations(pos.shape[0])
        err = assert_equivariant(fn, group, [(pos, Position()), (z, Invariant(atom_axis=0))],
                                 [Invariant(), Vector()], n_samples=6, grad=True)
        assert err < 1e-10

    def test_batch_independence(self):
        pot = self._potential()
        mols = [test_molecule("CH3CH2OH", seed=1), test_molecule("H2O", seed=2), test_molecule("C6H6", seed=3)]
        z = torch.cat([m[0] for m in mols])
        pos = torch.cat([m[1] for m in mols])
        batch = torch.cat([torch.full((len(m[0]),), i) for i, m in enumerate(mols)])
        together = pot(z, pos, batch)
        forces_alone = torch.cat([pot(*m)["forces"] for m in mols])
        energy_alone = torch.cat([pot(*m)["energy"] for m in mols])
        torch.testing.assert_close(together["energy"], energy_alone, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(together["forces"], forces_alone, rtol=1e-10, atol=1e-12)

    def test_far_fragments_add_up(self):
        pot = self._potential()
        (za, pa), (zb, pb) = test_molecule("CH3CH2OH", seed=4), test_molecule("H2O", seed=5)
        far = pb + torch.tensor([4.0 * pot.model.cutoff + 10.0, 0.0, 0.0], dtype=torch.float64)
        both = pot(torch.cat([za, zb]), torch.cat([pa, far]))
        ea, eb = pot(za, pa), pot(zb, pb)
        shift = pot.model.energy_shift
        torch.testing.assert_close(both["energy"] - shift, ea["energy"] + eb["energy"] - 2 * shift,
                                   rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(both["forces"], torch.cat([ea["forces"], eb["forces"]]), rtol=1e-10, atol=1e-12)

    def test_isolated_atom(self):
        pot = self._potential()
        pot.train()
        z = torch.tensor([8])
        pos = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
        out = pot(z, pos, create_graph=True)
        assert torch.isfinite(out["energy"]).all(), "isolated atom: energy is not finite"
        assert out["forces"].abs().max() == 0, "isolated atom: non-zero force"
        loss = out["energy"].sum() + out["forces"].pow(2).sum()
        grads = torch.autograd.grad(loss, [p for p in pot.parameters() if p.requires_grad], allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grads), "isolated atom: NaN parameter gradient"
