"""Every shipped YAML config loads and builds its model."""

from pathlib import Path

import pytest

pytest.importorskip("yaml")

from eqt.train.config import load_config  # noqa: E402
from eqt.train.run import build_model  # noqa: E402

ALL = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
STUDIES = [p for p in ALL if p.name.startswith("slmc")]  # eqt slmc study configs
SWEEPS = [p for p in ALL if p.name.startswith("scaling")]  # eqt scaling sweep configs
CONFIGS = [p for p in ALL if p not in STUDIES + SWEEPS]  # eqt train configs


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_and_builds(path):
    config = load_config(path)
    model = build_model(config)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("path", STUDIES, ids=[p.name for p in STUDIES])
def test_study_config_loads_and_builds(path):
    from eqt.models.spin_transformer import SpinTransformer, SpinTransformerConfig
    from eqt.train.slmc import load_study_config

    c = load_study_config(path)
    model = SpinTransformer(SpinTransformerConfig(L=c.physics.L, num_layers=max(c.layers), channels=max(c.widths),
                                                  heads=c.heads, head_channels=c.head_channels,
                                                  qkv_shells=c.qkv_shells, readout_shells=c.readout_shells))
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_sweep_config_loads(path):
    from eqt.train.scaling import grid, load_sweep_config

    assert len(grid(load_sweep_config(path))) >= 27  # at least 3 sizes x 3 step counts x 3 data sizes


def test_polyget_study_config_loads():
    from eqt.train.config import TrainConfig, read_yaml
    from eqt.train.polyget import PolyGETConfig

    c = PolyGETConfig.from_dict(read_yaml(Path(__file__).resolve().parents[1] / "configs" / "polyget" / "study.yaml"))
    model = build_model(TrainConfig.from_dict({**c.train, "objective": "forces", "energy_weight": 0.0}))
    assert sum(p.numel() for p in model.parameters()) > 0


def test_polyget_md_config_loads():
    from eqt.train.config import read_yaml
    from eqt.train.polyget_md import PolyGETMDConfig

    c = PolyGETMDConfig.from_dict(read_yaml(Path(__file__).resolve().parents[1] / "configs" / "polyget" / "md.yaml"))
    assert c.trajectories >= 10 and c.length_ps >= 50 and set(c.temperatures) == {300.0, 500.0}
    assert c.sampling_config().min_distance == 0.5


def test_et_md17_parameter_count_matches_torchmd_net():
    """1,339,906 trainable parameters, as TorchMD-NET's ET-MD17 model (spec: analytic count)."""
    model = build_model(load_config(Path(__file__).resolve().parents[1] / "configs" / "et-md17.yaml"))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 1_339_906


def test_cli_help_for_every_command(capsys):
    from eqt.cli import build_parser

    parser = build_parser()
    for argv in (["--help"], ["train", "--help"], ["test", "--help"], ["md", "--help"], ["data", "sample", "--help"],
                 ["data", "label", "--help"], ["data", "nbody", "--help"], ["nbody", "--help"], ["slmc", "--help"],
                 ["polyget-md", "--help"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_cli_user_error_is_one_line(tmp_path, capsys):
    from eqt.cli import main

    assert main(["test", str(tmp_path / "missing.pt"), str(tmp_path / "x.xyz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eqt: error:") and "\n" not in err and "missing.pt" in err
