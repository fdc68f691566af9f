"""PolyGET headline: force-only training beats joint training on forces at equal budget (seen chemistry).

Guards docs/polyget.md, "The study: force-only vs joint, unseen families, long chains": on the
training families' test frames the force-only model's force MAE is 47 % below the joint model's
(61.3 vs 114.7 meV/Å after 55 CPU-minutes each; an earlier 2-epoch run gave 318 vs 556), and 43 %
below on chains longer than any in training (66.0 vs 115.0; early run 297 vs 503). The other
PolyGET headline, that force-only training leaves the energy labels unused, is already proven
exactly by ``tests/train/test_train.py::test_force_only_training_ignores_energies_and_fits_offsets``
(scrambled energies give bit-identical weights). Full budget:

    eqt data polymers runs/polymers/train.xyz --families PE PP PS PVC PTFE PVDF PEO POM PVA PAN PLA \
        --lengths 3-6 --temperatures 300 600 --frames 20 --stride 10 --cap CH3 --seed 0
    OMP_NUM_THREADS=1 eqt polyget configs/polyget/study.yaml --set "objectives=[forces]" &
    OMP_NUM_THREADS=1 eqt polyget configs/polyget/study.yaml --set "objectives=[energy+forces]" &
    wait; eqt polyget configs/polyget/study.yaml
"""

from __future__ import annotations

import pytest

pytest.importorskip("rdkit", reason="the polymer builder needs the 'polymers' extra (rdkit)")
pytest.importorskip("tblite", reason="GFN2-xTB labels need tblite")
pytest.importorskip("lightning", reason="training needs the 'train' extra")

from eqt.data.polymers import SamplingConfig, generate  # noqa: E402
from eqt.train.polyget import PolyGETConfig, run_study  # noqa: E402

TRAIN = {"model": {"hidden_channels": 32, "num_layers": 2, "num_heads": 4, "num_rbf": 16, "cutoff_upper": 4.0,
                   "max_z": 20},
         "train_size": 0.75, "val_size": 0.05, "test_size": 0.2, "max_epochs": 4, "batch_size": 8, "lr": 1e-3,
         "lr_warmup_steps": 10, "progress_bar": False, "seed": 0, "inference_batch_size": 64}


def test_force_only_beats_joint_on_forces_of_training_families_and_longer_chains(tmp_path):
    """GFN2-xTB MD of PE, POM and PEO dimers (CH3 caps) at 300 and 600 K, 24 frames each (144
    frames), and of PE and PEO tetramers at 300 K, 8 frames each (the long chains: twice the
    training length); then the same ET (32 channels, 2 layers) trained 4 epochs per objective by
    the study driver. Force MAE on the 20 % test split and on the tetramers. About 20 s on one
    thread (7 s of it xTB).

    Measured (seed s for the data and the training, s + 100 for the tetramers; force MAE in
    meV/Å over all frames of the set):

    =====================  =====  =====  =====
    set, objective          s0     s1     s2
    =====================  =====  =====  =====
    test split, force-only 349.1  361.4  329.3
    test split, joint      418.0  422.2  429.1
    ratio                  0.835  0.856  0.767
    tetramers, force-only  296.0  313.0  254.3
    tetramers, joint       348.9  369.0  315.6
    ratio                  0.848  0.848  0.806
    =====================  =====  =====  =====

    Force-only was ahead on each family of the test split in every seed (closest: PEO, seed 1,
    370.8 vs 414.2). Margins asserted: force-only / joint <= 0.93 on the test split (seen
    0.77-0.86) and on the tetramers (seen 0.81-0.85), and force-only below joint on each family
    of the test split. The unseen-family finding (joint ahead after 20 epochs, force-only ahead
    after 2) is not tested: the doc reports it flipping with the budget.
    """
    data, long = tmp_path / "train.xyz", tmp_path / "long.xyz"
    generate(data, ["PE", "POM", "PEO"], [2], [300.0, 600.0], config=SamplingConfig(n_frames=24, stride=3,
             equilibration_steps=20), seed=0, progress=False)
    generate(long, ["PE", "PEO"], [4], [300.0], config=SamplingConfig(n_frames=8, stride=3, equilibration_steps=20),
             seed=100, progress=False)
    c = PolyGETConfig(data=str(data), size_test=str(long), unseen_families=(), train=TRAIN,
                      out_dir=str(tmp_path / "study"))
    res = run_study(c, log=lambda *_: None)
    for test_set in ("training families (test split)", "long chains"):
        f_only, joint = res["runs"]["force-only"][test_set], res["runs"]["joint"][test_set]
        values = {fam: (round(f_only[fam]["forces_mae"], 1), round(joint[fam]["forces_mae"], 1)) for fam in f_only}
        assert f_only["all"]["forces_mae"] <= 0.93 * joint["all"]["forces_mae"], (test_set, values)
    f_only = res["runs"]["force-only"]["training families (test split)"]
    joint = res["runs"]["joint"]["training families (test split)"]
    for fam in f_only:
        assert f_only[fam]["forces_mae"] < joint[fam]["forces_mae"], (fam, f_only[fam], joint[fam])
