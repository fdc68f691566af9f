"""GraphedPotential: the fixed-capacity, ghost-padded computation equals the plain Potential.

The CUDA-graph capture itself needs a GPU (benchmarks/gpu.sh runs it there); on the CPU the same
fixed-shape computation runs eagerly and is what these tests check.
"""

import pytest
import torch

from eqt.models.equiformer import Equiformer, EquiformerConfig
from eqt.models.et import ET, ETConfig
from eqt.physics.graphed import GraphedPotential
from eqt.physics.potential import Potential
from eqt.primitives.neighbors import candidate_pairs, fixed_radius_graph, radius_graph
from eqt.testing.potential import test_molecule

ET_TINY = ETConfig(hidden_channels=16, num_layers=2, num_heads=2, num_rbf=8, cutoff_upper=3.0)
EQF_TINY = EquiformerConfig(irreps_node="8x0e+4x1o+2x2e", l_max=2, num_layers=2, num_heads=2, num_basis=8,
                            radial_hidden=(16,), irreps_feature="8x0e", cutoff=3.0)


def _batch():
    mols = [test_molecule("CH3CH2OH", seed=1), test_molecule("H2O", seed=2), test_molecule("C6H6", seed=3)]
    z = torch.cat([m[0] for m in mols])
    pos = torch.cat([m[1] for m in mols])
    batch = torch.cat([torch.full((len(m[0]),), b) for b, m in enumerate(mols)])
    return z, pos, batch


def test_fixed_radius_graph_equals_radius_graph():
    z, pos, batch = _batch()
    pairs = candidate_pairs(batch)
    ref, _ = radius_graph(pos, 3.0, batch)
    edges, count = fixed_radius_graph(pos, pairs, 3.0, ref.shape[1] + 7, fill=(-5, -6))
    assert int(count) == ref.shape[1]
    assert torch.equal(edges[:, : ref.shape[1]], ref)  # same edges, same order
    assert (edges[0, ref.shape[1]:] == -5).all() and (edges[1, ref.shape[1]:] == -6).all()
    # too small a capacity: the count says so
    edges, count = fixed_radius_graph(pos, pairs, 3.0, 10, fill=(0, 1))
    assert int(count) == ref.shape[1] > 10 and edges.shape == (2, 10)


@pytest.mark.parametrize("make", [lambda: ET(ET_TINY), lambda: Equiformer(EQF_TINY)], ids=["et", "equiformer"])
def test_graphed_equals_potential(make):
    torch.manual_seed(0)
    model = make().double().eval()
    z, pos, batch = _batch()
    gp = GraphedPotential(model, z, batch, pos=pos, cuda_graph=False)
    assert gp.capacity > 0
    pot = Potential(model)
    for step in range(3):  # positions change between calls, as in MD
        p = pos + 0.05 * step * torch.randn(pos.shape, generator=torch.Generator().manual_seed(step), dtype=pos.dtype)
        ref = pot(z, p, batch)
        out = gp(p)
        gp.check()
        assert torch.allclose(out["energy"], ref["energy"], rtol=0, atol=1e-10)
        assert torch.allclose(out["forces"], ref["forces"], rtol=0, atol=1e-10)


def test_capacity_overflow_is_reported():
    torch.manual_seed(0)
    model = ET(ET_TINY).double().eval()
    z, pos, batch = _batch()
    gp = GraphedPotential(model, z, batch, pos=pos, capacity=5, cuda_graph=False)
    gp(pos)
    with pytest.raises(RuntimeError, match="capacity 5"):
        gp.check()


def test_bad_input():
    model = ET(ET_TINY).double().eval()
    z, pos, batch = _batch()
    with pytest.raises(ValueError, match="expected z"):
        GraphedPotential(model, z, batch, pos=pos[:-1], cuda_graph=False)
    bad = pos.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        GraphedPotential(model, z, batch, pos=bad, cuda_graph=False)
    gp = GraphedPotential(model, z, batch, pos=pos, cuda_graph=False)
    with pytest.raises(ValueError, match="expected pos"):
        gp(pos[:3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graph capture needs a GPU")
def test_cuda_graph_equals_potential():
    torch.manual_seed(0)
    model = ET(ET_TINY).cuda().eval()
    z, pos, batch = (t.cuda() for t in _batch())
    pos = pos.float()
    gp = GraphedPotential(model, z, batch, pos=pos)
    ref = Potential(model)(z, pos, batch)
    out = gp(pos)
    assert torch.allclose(out["energy"], ref["energy"], atol=1e-4)
    assert torch.allclose(out["forces"], ref["forces"], atol=1e-4)
