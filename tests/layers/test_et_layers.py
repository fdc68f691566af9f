"""Equivariance (float64, O(3) x permutations) of the layers ET is built from."""

from __future__ import annotations

import pytest
import torch

from eqt.layers.embedding import NeighborEmbedding
from eqt.layers.gated import GatedEquivariantBlock
from eqt.layers.radial import ExpNormalBasis
from eqt.layers.vector_attention import EquivariantVectorAttention
from eqt.primitives.neighbors import radius_graph
from eqt.primitives.radial import cosine_cutoff
from eqt.testing import O3, AtomIndex, Invariant, Permutations, Vector, assert_equivariant
from eqt.testing.potential import test_molecule

F = 16


def _graph():
    z, pos = test_molecule()
    edge_index, _ = radius_graph(pos, 4.0)
    vec = pos[edge_index[0]] - pos[edge_index[1]]
    return z, pos, edge_index, vec


def _random_biases(module):
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.normal_()
    return module.double()


@pytest.mark.parametrize("self_loops", [False, True])
def test_vector_attention_equivariant(self_loops):
    z, pos, edge_index, vec = _graph()
    n = len(z)
    d = vec.norm(dim=-1)
    rbf = ExpNormalBasis(8, 4.0).double()(d)
    layer = _random_biases(EquivariantVectorAttention(F, 4, 8))
    torch.manual_seed(1)
    x = torch.randn(n, F, dtype=torch.float64)
    v = torch.randn(n, 3, F, dtype=torch.float64)
    rhat = vec / d.unsqueeze(-1)
    inputs = [(x, Invariant(atom_axis=0)), (v, Vector(spatial_axis=1)), (edge_index, AtomIndex()),
              (rbf, Invariant()), (cosine_cutoff(d, 4.0), Invariant()), (rhat, Vector(atom_axis=None))]
    if self_loops:
        inputs.append((ExpNormalBasis(8, 4.0).double()(torch.zeros(1, dtype=torch.float64))[0], Invariant()))
    err = assert_equivariant(layer, O3() * Permutations(n), inputs,
                             [Invariant(atom_axis=0), Vector(spatial_axis=1)], n_samples=6)
    assert err < 1e-10


def test_gated_block_equivariant():
    block = _random_biases(GatedEquivariantBlock(F, 4, scalar_activation=True))
    torch.manual_seed(2)
    x, v = torch.randn(7, F, dtype=torch.float64), torch.randn(7, 3, F, dtype=torch.float64)
    err = assert_equivariant(block, O3() * Permutations(7), [(x, Invariant(atom_axis=0)), (v, Vector(spatial_axis=1))],
                             [Invariant(atom_axis=0), Vector(spatial_axis=1)])
    assert err < 1e-10


def test_gated_block_zero_vectors_have_finite_gradients():
    block = GatedEquivariantBlock(F, 4).double()
    x = torch.randn(3, F, dtype=torch.float64, requires_grad=True)
    v = torch.zeros(3, 3, F, dtype=torch.float64, requires_grad=True)
    out_x, out_v = block(x, v)
    grads = torch.autograd.grad(out_x.sum() + out_v.sum(), [x, v])
    assert all(torch.isfinite(g).all() for g in grads)


def test_neighbor_embedding_equivariant():
    z, pos, edge_index, vec = _graph()
    n = len(z)
    d = vec.norm(dim=-1)
    rbf = ExpNormalBasis(8, 4.0).double()(d)
    emb = _random_biases(NeighborEmbedding(F, 8, 4.0))
    x = torch.randn(n, F, dtype=torch.float64)
    err = assert_equivariant(emb, O3() * Permutations(n),
                             [(z, Invariant(atom_axis=0)), (x, Invariant(atom_axis=0)), (edge_index, AtomIndex()),
                              (d, Invariant()), (rbf, Invariant())], [Invariant(atom_axis=0)])
    assert err < 1e-10
