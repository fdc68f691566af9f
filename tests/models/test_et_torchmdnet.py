"""The port is exact: TorchMD-NET 3.1 ET weights loaded into eqt give the same energies and forces.

Skipped when ``torchmd-net`` is not installed (it is a benchmark-only dependency:
``pip install -c constraints.txt -e '.[bench]'``) or when the rMD17 data are absent.
"""

from __future__ import annotations

import pytest
import torch

torchmdnet_model = pytest.importorskip("torchmdnet.models.model", reason="torchmd-net is not installed "
                                       "(pip install -c constraints.txt -e '.[bench]')")

from eqt.models.et import from_torchmdnet, torchmdnet_args  # noqa: E402
from eqt.physics.potential import Potential  # noqa: E402

MD17_ARGS = torchmdnet_args()  # the ET-MD17 size


def _reference(**overrides):
    torch.manual_seed(0)
    args = {**MD17_ARGS, **overrides}
    ref = torchmdnet_model.create_model(args, mean=torch.tensor(-17.3), std=torch.tensor(0.7))
    with torch.no_grad():  # trained models have non-zero biases; make every parameter matter
        for name, p in ref.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.2)
    return ref.eval()


def _aspirin(shared_data, frames: int):
    ase_io = pytest.importorskip("ase.io")
    atoms = ase_io.read(shared_data / "rmd17" / "aspirin_test.xyz", f":{frames}")
    z = torch.cat([torch.as_tensor(a.numbers) for a in atoms]).long()
    pos = torch.cat([torch.as_tensor(a.positions) for a in atoms]).float()
    batch = torch.repeat_interleave(torch.arange(len(atoms)), torch.tensor([len(a) for a in atoms]))
    return z, pos, batch


# keys / values: the per-block radial filters read the right rows of filter_proj for each layout
@pytest.mark.parametrize("overrides", [{}, {"vector_cutoff": False}, {"distance_influence": "keys"},
                                       {"distance_influence": "values"}])
def test_energies_and_forces_match_torchmdnet(shared_data, overrides):
    ref = _reference(**overrides)
    ours = Potential(from_torchmdnet(ref))
    z, pos, batch = _aspirin(shared_data, 8)
    e_ref, f_ref = ref(z, pos.clone(), batch)
    out = ours(z, pos, batch)
    e_ref, f_ref = e_ref.detach().squeeze(-1), f_ref.detach()
    e_err = ((out["energy"] - e_ref).abs() / e_ref.abs()).max()
    f_err = (out["forces"] - f_ref).abs().max() / f_ref.abs().max()
    print(f"eqt vs torchmd-net: energy rel. error {e_err:.2e}, force rel. error {f_err:.2e}")
    assert e_err < 1e-5, f"energy differs from torchmd-net by {e_err:.2e} (relative)"
    assert f_err < 1e-5, f"forces differ from torchmd-net by {f_err:.2e} (relative to the largest force)"


def test_checkpoint_path_round_trip(tmp_path, shared_data):
    """A Lightning-style checkpoint file (hyper_parameters + state_dict) loads through the path API."""
    ref = _reference()
    hparams = {**{k: v for k, v in MD17_ARGS.items() if k != "check_errors"}, "mean": ref.mean, "std": ref.std, "prior_args": None}
    path = tmp_path / "et.ckpt"
    torch.save({"hyper_parameters": hparams,
                "state_dict": {"model." + k: v for k, v in ref.state_dict().items()}}, path)
    ours = Potential(from_torchmdnet(path))
    z, pos, batch = _aspirin(shared_data, 2)
    e_ref, _ = ref(z, pos.clone(), batch)
    e = ours(z, pos, batch, forces=False)["energy"]
    torch.testing.assert_close(e, e_ref.detach().squeeze(-1), rtol=1e-5, atol=1e-4)


def test_rejects_other_models():
    ref = torchmdnet_model.create_model({**MD17_ARGS, "model": "graph-network", "aggr": "add"})
    with pytest.raises(ValueError, match="TorchMD_ET"):
        from_torchmdnet(ref)
