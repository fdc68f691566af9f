"""n-body models: every GATr variant is E(3) x permutation equivariant end to end (embed, net, extract)."""

from __future__ import annotations

import pytest
import torch

from eqt.models.nbody import MODEL_NAMES, NBodyModel, NBodyModelConfig
from eqt.reps.groups import E3, SE3
from eqt.testing import Invariant, Permutations, Position, Vector, assert_equivariant

SMALL = dict(num_blocks=2, hidden_mv=4, hidden_s=6, heads=2, head_mv=2, head_s=3, bilinear_mv=2, hidden=16,
             transformer_heads=4)


def _inputs(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(2, n, 1, generator=g, dtype=torch.float64) + 0.1
    x = 2 * torch.randn(2, n, 3, generator=g, dtype=torch.float64)
    v = torch.randn(2, n, 3, generator=g, dtype=torch.float64)
    return m, x, v


@pytest.mark.parametrize("variant", [v for v in MODEL_NAMES if v != "Transformer"])
def test_gatr_variants_are_equivariant(variant):
    """E(3) for E- and C-GATr; SE(3) for P/iP-GATr, whose PGA point embedding is chiral (a reflection
    flips the sign of an embedded point's e123 but not of the mass or velocity added to it; GATr
    issue #3), exactly as in the reference wrapper."""
    torch.manual_seed(0)
    model = NBodyModel(NBodyModelConfig(variant=variant, **SMALL)).double()
    fn = lambda m, x, v: model(torch.cat([m, x, v], dim=-1))  # noqa: E731
    m, x, v = _inputs()
    group = (SE3() if variant in ("P-GATr", "iP-GATr") else E3()) * Permutations(4)
    err = assert_equivariant(fn, group, [(m, Invariant(atom_axis=1)), (x, Position(atom_axis=1)),
                                         (v, Vector(atom_axis=1))],
                             [Position(atom_axis=1), Invariant()], n_samples=6)
    assert err < 1e-9


@pytest.mark.parametrize("variant", ["C-GATr", "Transformer"])
def test_centred_models_are_translation_equivariant(variant):
    torch.manual_seed(0)
    model = NBodyModel(NBodyModelConfig(variant=variant, centre=True, **SMALL)).double()
    fn = lambda m, x, v: model(torch.cat([m, x, v], dim=-1))[0]  # noqa: E731
    m, x, v = _inputs()
    from eqt.reps.groups import Translations

    reps = [(m, Invariant(atom_axis=1)), (x, Position(atom_axis=1)), (v, Vector(atom_axis=1))]
    assert assert_equivariant(fn, Translations() * Permutations(4), reps, [Position(atom_axis=1)]) < 1e-9
    if variant == "C-GATr":
        assert assert_equivariant(fn, E3(), reps, [Position(atom_axis=1)]) < 1e-9


def test_transformer_is_only_permutation_equivariant():
    torch.manual_seed(0)
    model = NBodyModel(NBodyModelConfig(variant="Transformer", **SMALL)).double()
    fn = lambda m, x, v: model(torch.cat([m, x, v], dim=-1))[0]  # noqa: E731
    m, x, v = _inputs()
    reps = [(m, Invariant(atom_axis=1)), (x, Position(atom_axis=1)), (v, Vector(atom_axis=1))]
    assert assert_equivariant(fn, Permutations(4), reps, [Position(atom_axis=1)]) < 1e-12
    with pytest.raises(AssertionError):
        assert_equivariant(fn, E3(), reps, [Position(atom_axis=1)])


def test_bad_inputs_and_names():
    with pytest.raises(ValueError, match="unknown n-body model 'Q-GATr'"):
        NBodyModelConfig(variant="Q-GATr")
    with pytest.raises(ValueError, match=r"\(batch, bodies, 7\)"):
        NBodyModel(NBodyModelConfig(**SMALL))(torch.zeros(2, 4, 6))


def test_pga_embedding_is_chiral():
    """The documented limitation behind the SE(3) test above: reflections break P-GATr's n-body wrapper."""
    torch.manual_seed(0)
    model = NBodyModel(NBodyModelConfig(variant="P-GATr", **SMALL)).double()
    fn = lambda m, x, v: model(torch.cat([m, x, v], dim=-1))[0]  # noqa: E731
    m, x, v = _inputs()
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    assert (fn(m, x @ mirror, v @ mirror) - fn(m, x, v) @ mirror).abs().max() > 1e-9
