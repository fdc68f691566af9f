"""Polymer data (PolyGET): oligomer building, GFN2-xTB sampling with blow-up records, extxyz output."""

from __future__ import annotations

import argparse
import json
from collections import Counter

import ase.io
import numpy as np
import pytest

pytest.importorskip("rdkit", reason="building oligomers needs RDKit: pip install rdkit (extra eqt[polymers])")

from eqt.data import polymers as P  # noqa: E402

CAP_FORMULA = {"H": {"H": 1}, "CH3": {"C": 1, "H": 3}}


def _needs_tblite():
    pytest.importorskip("tblite.ase", reason="GFN2-xTB sampling needs tblite: pip install tblite")


def _formula(atoms) -> Counter:
    return Counter(atoms.get_chemical_symbols())


def _bond_graph(atoms, factor: float = 1.2) -> np.ndarray:
    from ase.data import covalent_radii

    r = covalent_radii[atoms.numbers]
    d = atoms.get_all_distances()
    return (d < factor * (r[:, None] + r[None, :])) & ~np.eye(len(atoms), dtype=bool)


def _n_components(adjacency: np.ndarray) -> int:
    seen, count = set(), 0
    for start in range(len(adjacency)):
        if start in seen:
            continue
        count += 1
        stack = [start]
        while stack:
            i = stack.pop()
            if i not in seen:
                seen.add(i)
                stack.extend(np.flatnonzero(adjacency[i]).tolist())
    return count


# --------------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------------
def test_registry_has_at_least_ten_families():
    assert len(P.FAMILIES) >= 10
    for name in ("PE", "PP", "PS", "PVC", "PTFE", "PEO", "PMMA", "nylon-6", "PET", "PAN"):
        assert name in P.FAMILIES
    assert P.repeat_unit_formula("PE") == {"C": 2, "H": 4}
    assert P.repeat_unit_formula("PS") == {"C": 8, "H": 8}
    assert P.repeat_unit_formula("nylon-6") == {"C": 6, "H": 11, "N": 1, "O": 1}


@pytest.mark.parametrize("name", list(P.FAMILIES))
def test_every_family_builds_a_valid_molecule(name):
    unit = Counter(P.repeat_unit_formula(name))
    by_n = {}
    for n in (1, 2):
        atoms = P.build_oligomer(name, n, cap="H", seed=0)
        by_n[n] = _formula(atoms)
        # n units plus two caps
        assert by_n[n] == Counter({k: n * v for k, v in unit.items()}) + Counter({"H": 2}), (name, n)
        assert atoms.info["family"] == name and atoms.info["n_repeat"] == n and atoms.info["cap"] == "H"
        assert int(atoms.numbers.sum()) % 2 == 0  # closed shell, neutral
        d = atoms.get_all_distances() + 10 * np.eye(len(atoms))
        assert d.min() > 0.9, (name, n, d.min())  # no overlapping atoms
        bonds = _bond_graph(atoms)
        assert _n_components(bonds) == 1, name  # one molecule
        degree = bonds.sum(axis=1)
        assert (degree[atoms.numbers == 1] == 1).all(), name
        assert (degree[atoms.numbers == 6] <= 4).all(), name
    # composition grows by one repeat unit per unit
    assert by_n[2] - by_n[1] == unit and not (by_n[1] - by_n[2])
    methyl = P.build_oligomer(name, 2, cap="CH3", seed=0)
    assert _formula(methyl) == Counter({k: 2 * v for k, v in unit.items()}) + Counter({"C": 2, "H": 6})


def test_family_names_are_forgiving_and_custom_units_work():
    assert P.get_family("polyethylene") is P.FAMILIES["PE"]
    assert P.get_family("Nylon6") is P.FAMILIES["nylon-6"]
    assert P.get_family("pvc") is P.FAMILIES["PVC"]
    pvf = P.PolymerFamily("PVF", "poly(vinyl fluoride)", "[*]CC(F)[*]")
    atoms = P.build_oligomer(pvf, 3, cap="CH3", seed=0)
    assert _formula(atoms) == Counter({"C": 8, "H": 15, "F": 3})


def test_build_is_reproducible_per_seed():
    a = P.build_oligomer("PP", 3, seed=5)
    b = P.build_oligomer("PP", 3, seed=5)
    c = P.build_oligomer("PP", 3, seed=6)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.numbers, c.numbers)
    assert not np.allclose(a.positions, c.positions)


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------
def test_unknown_family_suggests_and_lists():
    with pytest.raises(ValueError, match=r"unknown polymer family 'polyethylen'; did you mean 'PE'.*Known families: PE, PP"):
        P.build_oligomer("polyethylen", 3)
    with pytest.raises(ValueError, match=r"unknown polymer family 'kevlar'\. Known families: .*nylon-6"):
        P.get_family("kevlar")


def test_bad_smiles_and_attachment_points():
    with pytest.raises(ValueError, match=r"SMILES '\[\*\]C\(C\[\*\]' of family 'broken' does not parse"):
        P.build_oligomer(P.PolymerFamily("broken", "broken", "[*]C(C[*]"), 2)
    with pytest.raises(ValueError, match="exactly two attachment points.*found 1"):
        P.build_oligomer(P.PolymerFamily("one", "one", "[*]CC"), 2)
    with pytest.raises(ValueError, match="exactly two attachment points.*found 3"):
        P.build_oligomer(P.PolymerFamily("three", "three", "[*]CC([*])[*]"), 2)
    with pytest.raises(ValueError, match="single bond"):
        P.build_oligomer(P.PolymerFamily("dbl", "dbl", "[*]=CC[*]"), 2)
    with pytest.raises(ValueError, match="not a neutral closed-shell molecule"):
        P.build_oligomer(P.PolymerFamily("ion", "ion", "[*]C[N+](C)(C)[*]"), 2)


def test_too_short_and_bad_cap():
    with pytest.raises(ValueError, match="n_repeat=0 is too short to cap"):
        P.build_oligomer("PE", 0)
    with pytest.raises(ValueError, match="n_repeat=-2 is too short to cap"):
        P.build_oligomer("PE", -2)
    with pytest.raises(ValueError, match="n_repeat must be an integer"):
        P.build_oligomer("PE", 2.5)
    with pytest.raises(ValueError, match="unknown end cap 'OH'; use one of H, CH3"):
        P.build_oligomer("PE", 2, cap="OH")
    with pytest.raises(ValueError, match="too short to cap"):
        P.generate("unused.xyz", ["PE"], [0, 3], [300.0])


def test_parse_lengths_and_config_errors():
    assert P.parse_lengths(["3-6"]) == [3, 4, 5, 6]
    assert P.parse_lengths(["8,10", "12", "10"]) == [8, 10, 12]
    for bad in ("6-3", "x", "3-"):
        with pytest.raises(ValueError, match="--lengths expects"):
            P.parse_lengths([bad])
    with pytest.raises(ValueError, match="SamplingConfig.timestep_fs must be a number > 0"):
        P.SamplingConfig(timestep_fs=0.0)
    with pytest.raises(ValueError, match="unknown key 'timestep' for SamplingConfig; did you mean 'timestep_fs'"):
        P.SamplingConfig().replace(timestep=1.0)


def test_cli_reports_errors_in_one_line(capsys):
    assert P.main(["out.xyz", "--families", "PE", "teflon"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eqt: error: unknown polymer family 'teflon'")
    assert P.main(["out.xyz", "--custom", "X=[*]C(C[*]"]) == 2
    assert "does not parse" in capsys.readouterr().err
    assert P.main([]) == 2
    assert "give the output file" in capsys.readouterr().err
    assert P.main(["--list"]) == 0
    table = capsys.readouterr().out
    assert "| PE | polyethylene | `[*]CC[*]` | 6 | C2H4 |" in table


# --------------------------------------------------------------------------------------------------
# sampling and labels
# --------------------------------------------------------------------------------------------------
TINY = P.SamplingConfig(n_frames=3, stride=2, equilibration_steps=2)


def test_labels_equal_a_direct_tblite_call():
    _needs_tblite()
    from tblite.ase import TBLite

    from eqt.physics.reference import _openmp_threads

    atoms = P.build_oligomer("PEO", 1, cap="H", seed=0)  # ethylene glycol-like, 10 atoms
    res = P.run_trajectory(atoms, 400.0, TINY, seed=3, traj_id="t")
    assert res.ok and len(res.frames) == 3 and res.steps_done == TINY.total_steps
    for k, frame in enumerate(res.frames):
        assert frame.info["step"] == TINY.equilibration_steps + (k + 1) * TINY.stride
        assert frame.info["family"] == "PEO" and frame.info["temperature"] == 400.0 and frame.info["traj_id"] == "t"
        fresh = frame.copy()
        fresh.calc = TBLite(method="GFN2-xTB", verbosity=0)
        with _openmp_threads(1):
            energy, forces = fresh.get_potential_energy(), fresh.get_forces()
        assert frame.info["energy"] == pytest.approx(energy, abs=1e-6)
        np.testing.assert_allclose(frame.arrays["forces"], forces, atol=2e-3)
        assert np.abs(forces).max() > 0.05
    assert len({f.info["energy"] for f in res.frames}) == 3


def test_trajectories_are_reproducible():
    _needs_tblite()
    atoms = P.build_oligomer("PE", 1, cap="H", seed=0)
    a = P.run_trajectory(atoms, 300.0, TINY, seed=11)
    b = P.run_trajectory(atoms, 300.0, TINY, seed=11)
    c = P.run_trajectory(atoms, 300.0, TINY, seed=12)
    for fa, fb in zip(a.frames, b.frames):
        np.testing.assert_array_equal(fa.positions, fb.positions)
        assert fa.info["energy"] == fb.info["energy"]
    assert not np.allclose(a.frames[-1].positions, c.frames[-1].positions)


@pytest.mark.parametrize("timestep_fs", [5.0, 50.0])
def test_blown_up_md_is_a_failure_record(timestep_fs):
    _needs_tblite()
    atoms = P.build_oligomer("PE", 1, cap="H", seed=0)
    config = P.SamplingConfig(n_frames=20, stride=5, equilibration_steps=0, timestep_fs=timestep_fs)
    res = P.run_trajectory(atoms, 600.0, config, seed=0)
    assert not res.ok and res.frames == []
    assert res.failure.check in ("bond_broken", "bond_formed", "min_distance", "energy_rise", "max_force",
                                 "non_finite", "calculator")
    assert res.failure.message.startswith(f"MD step {res.failure.step}: ")
    assert res.steps_done < config.total_steps
    record = res.record()
    json.dumps(record)
    assert record["ok"] is False and record["n_frames"] == 0 and record["failure"]["check"] == res.failure.check


def test_sample_conformations_one_run_per_temperature():
    _needs_tblite()
    atoms = P.build_oligomer("POM", 1, cap="H", seed=0)
    runs = P.sample_conformations(atoms, (300.0, 600.0), TINY.replace(n_frames=1), seed=4)
    assert [r.temperature_K for r in runs] == [300.0, 600.0]
    assert [r.traj_id for r in runs] == ["POM-n1-T300-0", "POM-n1-T600-1"]
    assert all(r.ok and len(r.frames) == 1 for r in runs)


def test_generate_writes_readable_extxyz_and_summary(tmp_path):
    _needs_tblite()
    from eqt.data.readers import read_frames

    cfg = P.SamplingConfig(n_frames=2, stride=1, equilibration_steps=1)
    out = tmp_path / "poly.xyz"
    summary = P.generate(out, ["PE", "POM"], [1, 2], [300.0], config=cfg, cap="H", seed=7, progress=False)
    assert summary["n_frames"] == 8 and summary["failures"] == 0
    assert summary["frames_per_family"] == {"PE": 4, "POM": 4}
    on_disk = json.loads((tmp_path / "poly.summary.json").read_text())
    assert on_disk["n_frames"] == 8 and len(on_disk["trajectories"]) == 4
    assert not (tmp_path / "poly.xyz.partial").exists()

    frames = read_frames(out, require_energy=True)
    images = ase.io.read(out, ":")
    assert len(frames) == len(images) == 8
    for k, image in enumerate(images):
        assert image.info["family"] in ("PE", "POM") and image.info["n_repeat"] in (1, 2)
        assert image.info["cap"] == "H" and image.info["temperature"] == 300.0
        assert image.info["traj_id"] == f"{image.info['family']}-n{image.info['n_repeat']}-T300-0"
        # ASE moves the energy/forces keys into a SinglePointCalculator on reading
        assert frames.energy[k] == pytest.approx(image.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(frames.forces[k], image.get_forces(), atol=1e-9)
    np.testing.assert_array_equal(frames.num_atoms, [8, 8, 14, 14, 6, 6, 10, 10])

    # same seed: same data; a run's seed depends only on its own settings
    again = P.generate(tmp_path / "pe.xyz", ["PE"], [2], [300.0], config=cfg, cap="H", seed=7, progress=False)
    assert again["n_frames"] == 2
    pe2 = read_frames(tmp_path / "pe.xyz")
    np.testing.assert_array_equal(pe2.pos[0], frames.pos[2])
    np.testing.assert_array_equal(pe2.energy, frames.energy[2:4])


def test_generate_records_blown_up_runs_and_keeps_going(tmp_path):
    _needs_tblite()
    cfg = P.SamplingConfig(n_frames=5, stride=2, equilibration_steps=0, timestep_fs=40.0)
    summary = P.generate(tmp_path / "bad.xyz", ["POM"], [1], [300.0, 600.0], config=cfg, cap="H", progress=False)
    assert summary["failures"] == 2 and summary["n_frames"] == 0
    assert all(not r["ok"] and r["failure"]["message"] for r in summary["trajectories"])
    assert (tmp_path / "bad.xyz").exists()


def test_run_from_args_uses_the_cli_options(tmp_path, capsys):
    _needs_tblite()
    parser = P.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args([str(tmp_path / "c.xyz"), "--families", "POM", "--lengths", "1", "--temperatures",
                              "350", "--frames", "1", "--stride", "1", "--equilibration", "0", "--cap", "H"])
    summary = P.run_from_args(args)
    assert summary["n_frames"] == 1 and summary["settings"]["temperatures"] == [350.0]
    assert "1 frames, 0 failed trajectories" in capsys.readouterr().out


def test_generate_refuses_an_existing_output_before_any_work(tmp_path):
    from eqt.files import OutputError

    out = tmp_path / "old.xyz"
    out.write_text("earlier data\n")
    with pytest.raises(OutputError, match="old.xyz exists; pass --force"):
        P.generate(out, ["PE"], [1], [300.0], config=P.SamplingConfig(n_frames=1, stride=1, equilibration_steps=1),
                   cap="H", progress=False)
    assert out.read_text() == "earlier data\n" and not (tmp_path / "old.xyz.partial").exists()
