"""Ray-space reconstruction experiment: I/I, I/SO3 and SO3/SO3 IoU of the equivariant model and a transformer.

``python -m eqt.train.rays --out /work/runs/rays`` generates the procedural scenes
(:mod:`eqt.data.scenes`, cached under ``--data``), trains :class:`~eqt.models.rays.RayOccupancyModel`
``equivariant`` and ``transformer`` each in the canonical frame (``I``) and with random SE(3)
augmentation (``SO3``) under the same step budget with :func:`eqt.train.steps.fit`, evaluates the
best-validation model on the canonical test scenes and on randomly rotated and translated copies
(scene, cameras and points moved together), and writes ``results.json``, ``results.md`` and a
figure of reconstructions ``reconstructions.png`` under ``--out``. Every run resumes from its
checkpoint, and a finished run is not redone (as :mod:`eqt.train.nbody`).

Protocol (spec ``rays.md`` §A.6):

- **Canonical frame ``I``**: the first camera's frame (camera 0 at the origin looking along +z),
  the natural frame when only the cameras' relative poses are known. The scene generator draws
  cameras uniformly on a sphere and primitives with Haar-random rotations, so the world frame of
  the generator has no preferred orientation; the first camera's frame has one, which a
  non-equivariant network can learn and which a rotation of the test scenes breaks.
- **``SO3``** (rotation and translation): ``x -> R x + t`` with ``R`` Haar-random and
  ``t ~ N(0, translation_std^2 I)``, applied to the rays, camera centres and query points; depth,
  masks, colours and labels are unchanged (:func:`eqt.data.scenes.apply_se3`). Training with
  ``SO3`` draws a fresh element per (scene, pass over the data); the ``SO3`` test set draws one
  fixed element per test scene.
- **Inputs per step**: ``batch_size`` scenes, all ``V`` views' rays (``V x H x W``), and
  ``points_per_scene`` query points drawn from a fixed subset of ``train_points`` points of each
  training scene (half near the surface, half uniform), whose ``rays_per_view`` nearest rays per
  view are computed once in the canonical frame (the choice is SE(3)-invariant, so it holds for
  every augmented copy). Evaluation recomputes the neighbours from the moved inputs.
- **Loss and metric**: binary cross-entropy on the occupancy logits; IoU of ``logit > 0`` against
  the labels over all ``n_points`` query points of each test scene, averaged over scenes.
- **Optimisation** (:class:`eqt.train.steps.StepConfig`): Adam, lr decayed exponentially by
  ``lr_decay`` over the run, gradient clipping, model selection on the validation loss (validation
  in the training frame: canonical for ``I`` runs, fixed random SE(3) for ``SO3`` runs).

The sample table given to :func:`~eqt.train.steps.fit` holds, per training sample, the scene
index, its rigid motion and a seed for its point subset, so every step is a deterministic function
of the batch and a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from eqt.checkpoint import load_model
from eqt.config import Config
from eqt.data import scenes
from eqt.layers.rays import ray_neighbours
from eqt.models.rays import VARIANTS, RayModelConfig, RayOccupancyModel, camera_inputs
from eqt.primitives.rays import transform_rays
from eqt.train.steps import StepConfig, fit

__all__ = ["AUGMENTATIONS", "ExperimentConfig", "haar_se3", "canonical_frame", "scene_store", "sample_table",
           "with_neighbours", "make_loss", "predict", "iou", "evaluate_store", "run", "collect", "table",
           "plot_reconstructions",
           "add_arguments", "run_from_args", "main"]

AUGMENTATIONS = ("I", "SO3")
_TEST_SEED, _VAL_SEED = 7_331, 5_113


@dataclasses.dataclass(frozen=True)
class ExperimentConfig(Config):
    """Sizes and optimisation of the experiment (defaults: the run reported in docs/rays.md).

    Attributes:
        n_train, n_val, n_test: scenes per split.
        steps, batch_size: optimisation steps and scenes per step (every run gets the same budget).
        points_per_scene: query points per scene and step.
        train_points: points of each training scene that are ever used (their neighbours are precomputed).
        val_points: query points per validation scene.
        lr, lr_decay, grad_clip: Adam learning rate, its total exponential decay, gradient clipping.
        translation_std: scale of the random translations (scene units; objects have radius ~1).
        val_every: steps between validations (and checkpoints).
        seed: base seed of data, initialisation and sampling.
    """

    n_train: int = 400
    n_val: int = 40
    n_test: int = 50
    steps: int = 1600
    batch_size: int = 4
    points_per_scene: int = 128
    train_points: int = 1024
    val_points: int = 512
    lr: float = 1e-3
    lr_decay: float = 0.05
    grad_clip: float = 1.0
    translation_std: float = 1.0
    val_every: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "n_test", "steps", "batch_size", "points_per_scene", "train_points",
                     "val_points", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"ExperimentConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.points_per_scene > self.train_points:
            raise ValueError(f"ExperimentConfig: points_per_scene ({self.points_per_scene}) exceeds train_points "
                             f"({self.train_points})")


# ----------------------------------------------------------------------------------------------- data


def haar_se3(n: int, rng: np.random.Generator, translation_std: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rigid motions: Haar rotations ``(n, 3, 3)`` (uniform unit quaternions), normal translations ``(n, 3)``."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    rot = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                    2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                    2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1).reshape(n, 3, 3)
    return rot, translation_std * rng.standard_normal((n, 3))


def canonical_frame(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A batch of scenes moved so that camera 0 of each sits at the origin with identity rotation.

    Adds ``scene_centre (N, 3)``: where the generator's world origin (the centre of the scene's
    bounding ball) lands.
    """
    pose = np.asarray(sample["cam_to_world"], dtype=np.float64)[:, 0]  # (N, 4, 4)
    rot = np.swapaxes(pose[:, :3, :3], -1, -2)
    shift = -np.einsum("nij,nj->ni", rot, pose[:, :3, 3])
    return {**scenes.apply_se3(sample, rot, shift), "scene_centre": shift}


def scene_store(sample: dict[str, np.ndarray], rays_per_view: int, n_points: int | None = None,
                dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """Model inputs of a batch of (canonical) scenes as tensors, with each point's nearest rays.

    Args:
        sample: arrays of :func:`eqt.data.scenes.load` (``rays`` not needed).
        rays_per_view: neighbours per view (the model's ``rays_per_view``).
        n_points: keep this many query points per scene, evenly strided (so near-surface and
            uniform points stay balanced); None: all.
        dtype: floating dtype.

    Returns:
        ``rays (N, V, P, 6)``, ``origins (N, V, 3)``, ``depth``, ``mask``, ``colour``, ``points (N, Q, 3)``,
        ``occupancy (N, Q)`` float, ``neighbours (N, Q, V k)``.
    """
    h, w = (int(s) for s in sample["image_size"])
    inputs = camera_inputs(torch.as_tensor(sample["intrinsics"]), torch.as_tensor(sample["cam_to_world"]),
                           torch.as_tensor(sample["depth"]), torch.as_tensor(sample["mask"]),
                           torch.as_tensor(sample["colour"]), (h, w))
    store = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
    points, occ = np.asarray(sample["points"]), np.asarray(sample["occupancy"])
    if n_points is not None and n_points < points.shape[1]:
        index = np.linspace(0, points.shape[1] - 1, n_points).round().astype(np.int64)
        points, occ = points[:, index], occ[:, index]
    store["points"] = torch.as_tensor(points).to(dtype)
    store["occupancy"] = torch.as_tensor(occ).to(dtype)
    return with_neighbours(store, rays_per_view)


def with_neighbours(store: dict[str, Tensor], rays_per_view: int) -> dict[str, Tensor]:
    """``store`` plus ``neighbours (N, Q, V k)``: each point's nearest rays per view, from the store's own inputs."""
    k = min(rays_per_view, store["rays"].shape[2])
    nb = [ray_neighbours(store["points"][i:i + 16], store["rays"][i:i + 16], k)
          for i in range(0, len(store["points"]), 16)]
    return {**store, "neighbours": torch.cat(nb)}


def _move(store: dict[str, Tensor], rot: Tensor, trans: Tensor) -> dict[str, Tensor]:
    """Scenes moved by ``x -> R x + t`` (``R (N, 3, 3)``, ``t (N, 3)``): rays, centres and points.

    Neighbour indices are dropped (recompute them from the moved inputs with :func:`with_neighbours`).
    """
    out = {k: v for k, v in store.items() if k != "neighbours"}
    out["rays"] = transform_rays(rot[:, None, None], trans[:, None, None], store["rays"])
    out["origins"] = torch.einsum("nij,nvj->nvi", rot, store["origins"]) + trans[:, None]
    out["points"] = torch.einsum("nij,nqj->nqi", rot, store["points"]) + trans[:, None]
    return out


def sample_table(n_scenes: int, samples: int, augmentation: str, seed: int, translation_std: float,
                 split: int = 0) -> dict[str, Tensor]:
    """Training (or validation) samples for :func:`~eqt.train.steps.fit`: scene, rigid motion and point seed.

    ``samples`` rows cycle through the scenes; ``augmentation`` ``"I"`` gives identities, ``"SO3"``
    a Haar rotation and normal translation per row; ``split`` tags the rows with the store they
    index (see :func:`make_loss`).
    """
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation '{augmentation}' (choose from {', '.join(AUGMENTATIONS)})")
    rng = np.random.default_rng([seed, 1])
    scene = np.arange(samples) % n_scenes
    if augmentation == "SO3":
        rot, trans = haar_se3(samples, rng, translation_std)
    else:
        rot, trans = np.broadcast_to(np.eye(3), (samples, 3, 3)), np.zeros((samples, 3))
    return {"scene": torch.as_tensor(scene), "rotation": torch.as_tensor(np.array(rot), dtype=torch.float32),
            "translation": torch.as_tensor(trans, dtype=torch.float32),
            "seed": torch.as_tensor(rng.integers(0, 2**62, samples)), "split": torch.full((samples,), split)}


def make_loss(stores: dict[int, tuple[dict[str, Tensor], int]]):
    """``loss_fn(model, batch)`` for :func:`~eqt.train.steps.fit`: BCE on a seeded point subset of moved scenes.

    Args:
        stores: ``{split: (store, points per scene)}``; a batch's ``split`` column (one value per
            batch, as :func:`sample_table` writes) picks the store its ``scene`` indices refer to,
            so one function serves the training and the validation tables.

    Metrics: ``bce``, ``accuracy`` and ``iou`` (of the batch's points, pooled).
    """
    def loss_fn(model: torch.nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        split = int(batch["split"][0])
        if bool((batch["split"] != split).any()) or split not in stores:
            raise ValueError(f"a batch must come from one known split, got {batch['split'].unique().tolist()}")
        store, per_scene = stores[split]
        n_points = store["points"].shape[1]
        scene = batch["scene"]
        picks = torch.stack([torch.randperm(n_points, generator=torch.Generator().manual_seed(int(s)))[:per_scene]
                             for s in batch["seed"]])  # (B, q)
        sub = {k: v[scene] for k, v in store.items() if k not in ("points", "occupancy", "neighbours")}
        sub["points"] = store["points"][scene.unsqueeze(1), picks]
        sub = _move(sub, batch["rotation"], batch["translation"])
        labels = store["occupancy"][scene.unsqueeze(1), picks]
        neighbours = store["neighbours"][scene.unsqueeze(1), picks]
        logits = model(sub["rays"], sub["origins"], sub["depth"], sub["mask"], sub["colour"], sub["points"], neighbours)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        pred = logits.detach() > 0
        truth = labels > 0.5
        inter, union = (pred & truth).sum(), (pred | truth).sum()
        metrics = {"bce": loss.detach(), "accuracy": (pred == truth).float().mean(),
                   "iou": inter.float() / union.clamp(min=1).float()}
        return loss, metrics

    return loss_fn


@torch.no_grad()
def predict(model: torch.nn.Module, store: dict[str, Tensor], scene: int, points: Tensor, neighbours: Tensor | None,
            chunk: int = 2048) -> Tensor:
    """Logits ``(Q,)`` of one scene's ``points (Q, 3)`` (neighbours ``(Q, K)`` or None: computed here), in chunks."""
    model.eval()
    inputs = [store[k][scene:scene + 1] for k in ("rays", "origins", "depth", "mask", "colour")]
    k = model.config.rays_per_view
    out = []
    for start in range(0, len(points), chunk):
        pts = points[start:start + chunk].unsqueeze(0)
        nb = ray_neighbours(pts, inputs[0], min(k, inputs[0].shape[2])) if neighbours is None \
            else neighbours[start:start + chunk].unsqueeze(0)
        out.append(model(*inputs, pts, nb)[0])
    return torch.cat(out)


def iou(logits: Tensor, labels: Tensor) -> float:
    """IoU of ``logits > 0`` and ``labels > 0.5`` (1 when both are empty)."""
    pred, truth = logits > 0, labels > 0.5
    union = int((pred | truth).sum())
    return 1.0 if union == 0 else int((pred & truth).sum()) / union


def evaluate_store(model: torch.nn.Module, store: dict[str, Tensor]) -> dict[str, float]:
    """Mean per-scene IoU and accuracy over every query point of every scene of ``store`` (with ``neighbours``)."""
    ious, accs = [], []
    for i in range(store["points"].shape[0]):
        logits = predict(model, store, i, store["points"][i], store["neighbours"][i])
        labels = store["occupancy"][i]
        ious.append(iou(logits, labels))
        accs.append(float(((logits > 0) == (labels > 0.5)).float().mean()))
    return {"iou": float(np.mean(ious)), "accuracy": float(np.mean(accs))}


# ----------------------------------------------------------------------------------------------- the experiment


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _load_split(data_dir: Path, split: str) -> dict[str, np.ndarray]:
    return canonical_frame(scenes.load(data_dir, split, rays=False))


def run(out: str | Path, data_dir: str | Path, config: ExperimentConfig = ExperimentConfig(),
        scene_config: scenes.SceneConfig = scenes.SceneConfig(), model_config: RayModelConfig = RayModelConfig(),
        models: tuple[str, ...] = VARIANTS, augmentations: tuple[str, ...] = AUGMENTATIONS, figure: bool = True,
        log=print) -> dict:
    """Train and evaluate every ``model x augmentation``; returns :func:`collect`'s ``{run: result}``.

    ``model_config`` gives the sizes (its ``variant`` is replaced per run). Each run's result goes
    to ``out/<model>-<aug>/result.json``; ``out/results.{json,md}`` collect all runs found under
    ``out``; with ``figure``, ``out/reconstructions.png`` shows test scenes reconstructed by the
    ``I``-trained models on canonical and moved inputs.
    """
    out, data_dir = Path(out), Path(data_dir)
    c = config
    scenes.generate(data_dir, c.n_train, c.n_val, c.n_test, scene_config, seed=c.seed)
    k = model_config.rays_per_view
    log(f"loading {data_dir} and finding each point's {k} nearest rays per view")
    train = scene_store(_load_split(data_dir, "train"), k, c.train_points)
    val = scene_store(_load_split(data_dir, "val"), k, c.val_points)
    test_raw = _load_split(data_dir, "test")
    test = scene_store(test_raw, k)
    rot, trans = haar_se3(c.n_test, np.random.default_rng([c.seed, _TEST_SEED]), c.translation_std)
    test_moved = with_neighbours(_move(test, torch.as_tensor(rot, dtype=torch.float32),
                                       torch.as_tensor(trans, dtype=torch.float32)), k)  # from the moved inputs
    samples = math.ceil(c.steps * c.batch_size / c.n_train) * c.n_train
    step_config = StepConfig(steps=c.steps, batch_size=c.batch_size, lr=c.lr, lr_decay=c.lr_decay,
                             grad_clip=c.grad_clip, val_every=c.val_every, val_batch_size=8,
                             checkpoint_every=c.val_every, seed=c.seed)
    loss_fn = make_loss({0: (train, c.points_per_scene), 1: (val, c.val_points)})
    for variant in models:
        for aug in augmentations:
            name = f"{variant}-{aug}"
            run_dir = out / name
            result_path = run_dir / "result.json"
            config_v = model_config.replace(variant=variant)
            done = json.loads(result_path.read_text()) if result_path.exists() else {}
            same = done.get("experiment") == c.to_dict() and done.get("config") == config_v.to_dict()
            if done.get("finished") and same:
                log(f"{name}: done already ({result_path})")
                continue
            torch.manual_seed(c.seed)
            model = RayOccupancyModel(config_v)
            log(f"{name}: {_n_params(model):,} parameters, {c.steps} steps of {c.batch_size} scenes x "
                f"{c.points_per_scene} points, {c.n_train} training scenes")
            table_train = sample_table(c.n_train, samples, aug, c.seed, c.translation_std)
            table_val = sample_table(c.n_val, c.n_val, aug, c.seed + _VAL_SEED, c.translation_std, split=1)
            cpu = time.process_time()
            summary = fit(model, loss_fn, table_train, table_val, step_config, run_dir, log=log)
            cpu = time.process_time() - cpu
            best = load_model(run_dir / "best.pt")
            entry = {"model": variant, "augmentation": aug, "params": _n_params(model),
                     "config": best.config.to_dict(), "experiment": c.to_dict(), "finished": summary["finished"],
                     "seconds": summary["seconds"], "cpu_seconds": cpu, "threads": torch.get_num_threads(),
                     "best_step": summary["best_step"], "test_I": evaluate_store(best, test),
                     "test_SO3": evaluate_store(best, test_moved)}
            result_path.write_text(json.dumps(entry, indent=2) + "\n")
            log(table({name: entry}))
    results = collect(out)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(table(results) + "\n")
    if figure and all((out / f"{v}-I" / "best.pt").exists() for v in models):
        path = plot_reconstructions(out / "reconstructions.png", {v: load_model(out / f"{v}-I" / "best.pt")
                                                                  for v in models},
                                    test_raw, test, scene_config, seed=c.seed, translation_std=c.translation_std)
        log(f"figure: {path}")
    return results


def collect(out: str | Path) -> dict:
    """``{run: result}`` from every ``out/<model>-<aug>/result.json``, in table order."""
    found = {p.parent.name: json.loads(p.read_text()) for p in Path(out).glob("*/result.json")}
    order = [f"{v}-{a}" for v in VARIANTS for a in AUGMENTATIONS]
    return {name: found[name] for name in order if name in found}


def table(results: dict) -> str:
    """Markdown table: rows are models, columns the train/test protocols (IoU), parameters and CPU time."""
    lines = ["| model | params | I/I | I/SO3 | SO3/SO3 | SO3/I | steps | training CPU s (I, SO3) |",
             "|---|---|---|---|---|---|---|---|"]
    by_model: dict[str, dict[str, dict]] = {}
    for r in results.values():
        by_model.setdefault(r["model"], {})[r["augmentation"]] = r

    def cell(runs: dict, train: str, test: str) -> str:
        r = runs.get(train)
        return f"{r[f'test_{test}']['iou']:.3f}" if r else "–"

    for model, runs in by_model.items():
        first = next(iter(runs.values()))
        secs = ", ".join(f"{runs[a].get('cpu_seconds', runs[a]['seconds']):.0f}" if a in runs else "–"
                         for a in AUGMENTATIONS)
        lines.append(f"| {model} | {first['params']:,} | {cell(runs, 'I', 'I')} | {cell(runs, 'I', 'SO3')} | "
                     f"{cell(runs, 'SO3', 'SO3')} | {cell(runs, 'SO3', 'I')} | {first['experiment']['steps']} | "
                     f"{secs} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- figure


def plot_reconstructions(path: str | Path, models: dict[str, torch.nn.Module], raw: dict[str, np.ndarray],
                         store: dict[str, Tensor], scene_config: scenes.SceneConfig, n_scenes: int = 3,
                         grid: int = 24, seed: int = 0, translation_std: float = 1.0) -> Path:
    """PNG of test scenes: view 0, the true occupancy on a grid, and each model's on canonical and moved inputs.

    Predictions on moved inputs (a random SE(3) per scene, applied to rays, centres and grid points)
    are drawn at the canonical grid positions, so an invariant model draws the same shape twice.

    Args:
        path: output PNG.
        models: ``{name: model}`` (trained in the canonical frame).
        raw: the canonical test split (:func:`canonical_frame` of :func:`eqt.data.scenes.load`).
        store: its :func:`scene_store`.
        scene_config: for the image size and the bounding radius.
        n_scenes: rows.
        grid: grid points per axis of the scene's bounding cube.
        seed: seed of the rigid motions.
        translation_std: their translation scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_scenes = min(n_scenes, store["points"].shape[0])
    rng = np.random.default_rng([seed, 99])
    rot, trans = haar_se3(n_scenes, rng, translation_std)
    cols = 2 + 2 * len(models)
    fig = plt.figure(figsize=(2.0 * cols, 2.1 * n_scenes))
    h, w = scene_config.height, scene_config.width
    half = scene_config.bounding_radius
    axis = np.linspace(-half, half, grid)
    local = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    for row in range(n_scenes):
        pts = local + raw["scene_centre"][row]
        one = {k: raw[k][row] for k in ("prim_kind", "prim_params", "prim_rotation", "prim_translation", "prim_albedo")}
        truth = scenes.occupancy(one, pts)
        ax = fig.add_subplot(n_scenes, cols, row * cols + 1)
        ax.imshow(np.clip(raw["colour"][row, 0].reshape(h, w, 3), 0, 1))
        ax.set_axis_off()
        if row == 0:
            ax.set_title("input view 0 (of 8)", fontsize=8)
        panels = [("truth", truth)]
        pts_t = torch.as_tensor(pts, dtype=store["points"].dtype)
        r = torch.as_tensor(rot[row:row + 1], dtype=pts_t.dtype)
        t = torch.as_tensor(trans[row:row + 1], dtype=pts_t.dtype)
        one_store = {k: v[row:row + 1] for k, v in store.items()}
        moved = _move({**one_store, "points": pts_t.unsqueeze(0)}, r, t)
        for name, model in models.items():
            panels.append((f"{name} I/I", predict(model, one_store, 0, pts_t, None).numpy() > 0))
            panels.append((f"{name} I/SO3", predict(model, moved, 0, moved["points"][0], None).numpy() > 0))
        occupied = local[truth] if truth.any() else local
        centre = 0.5 * (occupied.min(0) + occupied.max(0))
        span = 0.6 * (occupied.max(0) - occupied.min(0)).max() + 2 * half / grid  # zoom on the true shape
        for j, (title, occ) in enumerate(panels):
            ax = fig.add_subplot(n_scenes, cols, row * cols + 2 + j, projection="3d")
            sel = local[occ]
            # camera axes (x right, y down, z forward) drawn as x, z, -y: the view from above the camera
            ax.scatter(sel[:, 0], sel[:, 2], -sel[:, 1], s=5, c=-sel[:, 1], cmap="viridis", depthshade=False,
                       linewidths=0, vmin=-centre[1] - span, vmax=-centre[1] + span)
            ax.set_xlim(centre[0] - span, centre[0] + span)
            ax.set_ylim(centre[2] - span, centre[2] + span)
            ax.set_zlim(-centre[1] - span, -centre[1] + span)
            ax.set_box_aspect((1, 1, 1), zoom=1.25)
            ax.set_axis_off()
            ax.view_init(elev=25, azim=-60)
            union = int((occ | truth).sum())
            score = 1.0 if union == 0 else int((occ & truth).sum()) / union
            ax.text2D(0.5, 0.0, "" if j == 0 else f"grid IoU {score:.2f}", transform=ax.transAxes, ha="center",
                      fontsize=7)
            if row == 0:
                ax.set_title(title, fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.93, bottom=0.02, wspace=0.02, hspace=0.08)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The experiment's options (shared by ``python -m eqt.train.rays`` and ``eqt rays``)."""
    d = ExperimentConfig()
    p.add_argument("--out", default="runs/rays")
    p.add_argument("--data", default="runs/rays_data", help="cache folder of the generated scenes")
    p.add_argument("--models", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--augmentations", nargs="+", default=list(AUGMENTATIONS), choices=AUGMENTATIONS)
    for f in dataclasses.fields(ExperimentConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(d, f.name)), default=getattr(d, f.name))
    p.add_argument("--rays-per-view", type=int, default=RayModelConfig().rays_per_view)
    p.add_argument("--no-figure", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    return p


def run_from_args(a: argparse.Namespace) -> dict:
    """Run the experiment from parsed :func:`add_arguments` options and print the table."""
    torch.set_num_threads(a.threads)
    config = ExperimentConfig(**{f.name: getattr(a, f.name) for f in dataclasses.fields(ExperimentConfig)})
    res = run(a.out, a.data, config, model_config=RayModelConfig(rays_per_view=a.rays_per_view),
              models=tuple(a.models), augmentations=tuple(a.augmentations), figure=not a.no_figure)
    print(table(res))
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eqt.train.rays", description=__doc__.splitlines()[0])
    run_from_args(add_arguments(parser).parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
