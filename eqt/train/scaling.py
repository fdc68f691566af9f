"""Scaling sweeps on the rigid-body task ("Does equivariance matter at scale?"): model size x steps x data.

``run_sweep(SweepConfig(...))`` trains every point of the grid ``families x sizes x steps x n_train x
seeds`` as one :func:`eqt.train.rigid.train_run` in its own folder ``{out}/runs/{name}`` and collects
the finished runs into one table, ``{out}/results.csv`` and ``{out}/results.json`` (one row per run,
:func:`collect`). The fits and the report are in :mod:`eqt.train.scaling_fit`.

Choices:

- **Families.** ``"gatr"``, ``"transformer"`` and ``"transformer+aug"`` (the transformer trained with
  E(3) augmentation, ``augment=True``). ``sizes`` maps a family to its ``(width, depth)`` list;
  ``"transformer+aug"`` uses the transformer's list unless it has its own.
- **Resumable.** Every run is a checkpointed, resumable ``train_run``. A run whose ``result.json``
  is finished and was made with the same settings is skipped without loading anything; a killed
  run resumes from its ``last.pt``. The table is rewritten (atomically) after every finished run,
  so an interrupted sweep leaves a valid table of what finished. Before anything is trained, all
  run folders are checked: one that holds a run with other settings (say, a changed learning rate)
  stops the sweep with one error listing them, instead of failing half-way.
- **Impossible sizes are errors before anything runs**: widths/depths/steps/data sizes that are not
  positive ints, duplicates, a data size above the training split or below the batch size, and
  models whose weights plus Adam state alone (16 bytes per parameter) exceed this machine's memory
  (counted on the ``meta`` device, without allocating).
- **Scaling out** (what is implemented): *run-level* parallelism, since one run of these models is
  small next to a GPU. (1) ``workers`` local processes (``spawn``), each with ``threads`` torch
  threads, worker ``k`` training on ``devices[k % len(devices)]`` (``["cuda:0", "cuda:1", ...]``
  puts one run on each GPU at a time). (2) ``shard = "i/n"``: ``n`` machines started with the same
  config each take the grid points whose index is ``i`` mod ``n`` (an exact partition; the index is
  the grid order, independent of the execution order). With a shared ``out`` folder the last shard
  to finish writes the whole table; otherwise copy the run folders together and call
  :func:`collect` (``--collect``). (3) ``launcher = "fabric"``: Lightning Fabric launches one
  process per device (``fabric: {accelerator, devices, num_nodes, strategy}``; ``strategy: ddp``
  launches them itself, under SLURM or ``torchrun`` across nodes), and every process takes the shard
  ``global_rank / world_size`` (composed with ``shard``) on its own device. Processes do not
  communicate (no barrier that could time out during a long sweep); each rewrites the table when it
  finishes. **Not implemented**: data-parallel training of *one* run over several GPUs
  (``train_run`` is single-device); runs that need more than one GPU's memory are out of scope.
- **Compute** (:func:`corrected_flops`): ``train_run`` measures FLOPs per step with
  ``torch.utils.flop_counter``, which counts eqt's sparse geometric product and join
  (:mod:`eqt.primitives.clifford`: ``((x @ L) * (y @ R)) @ S`` with one-hot selection matrices) as
  dense matrix products, ~48x their arithmetic. The corrected count replaces, for every one of these
  products, the counted FLOPs of its selection-matrix GEMMs by the true arithmetic
  ``2 x nonzero table entries x rows`` (rows = tokens x channels x batch) per contraction: one in
  the forward pass, one per operand that needs a gradient in the backward pass. The table reports
  both (``*_flops*`` and ``*_flops*_true``); the fits use the corrected numbers. The rest of the
  count is kept as is (GATr's ``EquiLinear`` is one dense GEMM of ``16 x 16`` blocks per channel
  pair, which is how it is computed here and in the reference GATr).
- **Order** of execution within a shard: ``"cheap-first"`` (default; an interrupted sweep has the
  most complete grid), ``"expensive-first"`` (better load balance with many workers) or ``"grid"``,
  by corrected FLOPs per step x steps.

Command line (``python -m eqt.train.scaling``, also ``eqt scaling``)::

    python -m eqt.train.scaling configs/scaling.yaml --set out=/work/runs/scaling --plan
    python -m eqt.train.scaling configs/scaling.yaml --shard 0/2     # on machine 0 of 2
    python -m eqt.train.scaling configs/scaling.yaml --collect --report docs/figures
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from eqt.config import Config
from eqt.models.rigid import RigidBodyModel
from eqt.primitives import clifford
from eqt.primitives.pga import PGA
from eqt.train import rigid as rigid_train
from eqt.train.rigid import RigidRunConfig, train_run

__all__ = ["FAMILIES", "ORDERS", "SweepConfig", "GridPoint", "grid", "shard_points", "plan", "run_sweep",
           "collect", "load_results", "corrected_flops", "SparseProductCounter", "load_sweep_config", "add_arguments",
           "run_from_args", "main"]

FAMILIES = ("gatr", "transformer", "transformer+aug")
ORDERS = ("cheap-first", "expensive-first", "grid")
LAUNCHERS = ("local", "fabric")
#: RigidRunConfig fields the grid sets (not allowed in ``SweepConfig.run``).
_GRID_FIELDS = ("data", "out", "family", "width", "depth", "steps", "n_train", "n_val", "n_test", "augment",
                "seed", "device", "threads")
_FABRIC_KEYS = ("accelerator", "devices", "num_nodes", "strategy")
_BYTES_PER_PARAM = 16  # float32 weight, gradient and two Adam moments
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def _positive_ints(name: str, values: Any, minimum: int = 1) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"SweepConfig: {name} must be a non-empty list, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise ValueError(f"SweepConfig: every entry of {name} must be an int >= {minimum}, "
                             f"got {v!r} in {list(values)}")
    dup = sorted({int(v) for v in values if list(values).count(v) > 1})
    if dup:
        raise ValueError(f"SweepConfig: {name} lists {', '.join(map(str, dup))} more than once")
    return tuple(int(v) for v in values)


@dataclasses.dataclass(frozen=True)
class SweepConfig(Config):
    """A grid of rigid-body runs and how to execute it.

    Grid: ``families`` (of :data:`FAMILIES`) x ``sizes[family]`` (``(width, depth)`` pairs of
    :class:`~eqt.models.rigid.RigidModelConfig`; ``"transformer+aug"`` falls back to
    ``sizes["transformer"]``) x ``steps`` x ``n_train`` (training samples, the first ``n`` of the
    split, so data sets are nested) x ``seeds``. Every run evaluates on the first ``n_val`` /
    ``n_test`` samples (0: the whole split) of ``data`` (written by :func:`eqt.data.rigid.generate`).
    ``run`` holds the other :class:`~eqt.train.rigid.RigidRunConfig` settings shared by all runs
    (``batch_size``, ``lr``, ``val_every``, ...). Runs go to ``{out}/runs/{name}``.

    Execution: ``workers`` processes with ``threads`` torch threads each on ``devices``;
    ``shard = "i/n"``; ``max_runs`` > 0 stops after that many trained runs (0: all); ``order``
    (:data:`ORDERS`); ``launcher`` ``"local"`` or ``"fabric"`` with ``fabric`` keyword arguments
    of ``lightning.fabric.Fabric`` (``accelerator``, ``devices``, ``num_nodes``, ``strategy``).
    See the module docstring.
    """

    data: str = "data/rigid"
    out: str = "runs/scaling"
    families: tuple = FAMILIES
    sizes: dict = dataclasses.field(default_factory=lambda: {"gatr": ((1, 1), (1, 2), (2, 2)),
                                                             "transformer": ((1, 1), (1, 2), (2, 2))})
    steps: tuple = (250, 500, 1000)
    n_train: tuple = (250, 1000, 4000)
    seeds: tuple = (0,)
    n_val: int = 0
    n_test: int = 0
    run: dict = dataclasses.field(default_factory=dict)
    workers: int = 1
    threads: int = 1
    devices: tuple = ("cpu",)
    shard: str = "0/1"
    max_runs: int = 0
    order: str = "cheap-first"
    launcher: str = "local"
    fabric: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        fams = self.families
        if isinstance(fams, str) or not isinstance(fams, Sequence) or not fams:
            raise ValueError(f"SweepConfig: families must be a non-empty list of {', '.join(FAMILIES)}, got {fams!r}")
        for f in fams:
            if f not in FAMILIES:
                raise ValueError(f"SweepConfig: unknown family {f!r} (choose from {', '.join(FAMILIES)})")
        if len(set(fams)) != len(fams):
            raise ValueError(f"SweepConfig: families lists a family more than once: {list(fams)}")
        object.__setattr__(self, "families", tuple(fams))
        if not isinstance(self.sizes, Mapping):
            raise ValueError(f"SweepConfig: sizes must map a family to [[width, depth], ...], got {self.sizes!r}")
        sizes = {}
        for fam, pairs in self.sizes.items():
            if fam not in FAMILIES:
                raise ValueError(f"SweepConfig: sizes has unknown family {fam!r} (choose from {', '.join(FAMILIES)})")
            if isinstance(pairs, str) or not isinstance(pairs, Sequence) or not pairs:
                raise ValueError(f"SweepConfig: sizes[{fam!r}] must be a non-empty list of [width, depth], "
                                 f"got {pairs!r}")
            out = []
            for k, pair in enumerate(pairs):
                if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
                    raise ValueError(f"SweepConfig: sizes[{fam!r}][{k}] must be [width, depth], got {pair!r}")
                for what, v in zip(("width", "depth"), pair):
                    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                        raise ValueError(f"SweepConfig: sizes[{fam!r}][{k}] = {list(pair)}: {what} must be an int "
                                         f">= 1, got {v!r}")
                out.append((int(pair[0]), int(pair[1])))
            if len(set(out)) != len(out):
                raise ValueError(f"SweepConfig: sizes[{fam!r}] lists a (width, depth) more than once: {out}")
            sizes[fam] = tuple(out)
        for fam in self.families:
            if fam not in sizes and _base(fam) not in sizes:
                raise ValueError(f"SweepConfig: no sizes for family {fam!r} "
                                 f"(add sizes: {{{_base(fam)}: [[w, d], ...]}})")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "steps", _positive_ints("steps", self.steps))
        object.__setattr__(self, "n_train", _positive_ints("n_train", self.n_train))
        object.__setattr__(self, "seeds", _positive_ints("seeds", self.seeds, minimum=0))
        for name in ("n_val", "n_test", "max_runs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"SweepConfig: {name} must be an int >= 0, got {v!r}")
        for name in ("workers", "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "workers" else 0):
                raise ValueError(f"SweepConfig: {name} must be an int >= {1 if name == 'workers' else 0}, got {v!r}")
        devices = (self.devices,) if isinstance(self.devices, str) else tuple(self.devices)
        if not devices or any(not isinstance(d, str) or not _DEVICE.match(d) for d in devices):
            raise ValueError(f"SweepConfig: devices must be a non-empty list like ['cpu'] or ['cuda:0', 'cuda:1'], "
                             f"got {self.devices!r}")
        object.__setattr__(self, "devices", devices)
        self.shard_index()
        if self.order not in ORDERS:
            raise ValueError(f"SweepConfig: order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"SweepConfig: launcher must be one of {', '.join(LAUNCHERS)}, got {self.launcher!r}")
        if not isinstance(self.fabric, Mapping) or any(k not in _FABRIC_KEYS for k in self.fabric):
            raise ValueError(f"SweepConfig: fabric takes only {', '.join(_FABRIC_KEYS)}, got {self.fabric!r}")
        object.__setattr__(self, "fabric", dict(self.fabric))
        if not isinstance(self.run, Mapping):
            raise ValueError(f"SweepConfig: run must be a mapping of RigidRunConfig settings, got {self.run!r}")
        owned = sorted(k for k in self.run if k in _GRID_FIELDS)
        if owned:
            raise ValueError(f"SweepConfig: run sets {', '.join(owned)}, which the sweep sets itself "
                             f"(use data, out, families, sizes, steps, n_train, n_val, n_test, seeds, devices, "
                             f"threads)")
        object.__setattr__(self, "run", dict(self.run))
        base = self.base_run()  # validates the shared settings (unknown keys, bad values)
        small = min(self.n_train)
        if base.batch_size > small:
            raise ValueError(f"SweepConfig: n_train {small} is smaller than batch_size {base.batch_size} (every step "
                             f"would see the whole set); raise n_train or lower run.batch_size")
        for fam in self.families:  # validates every model size
            for width, depth in _sizes_of(self, fam):
                base.replace(family=_base(fam), width=width, depth=depth)

    def base_run(self) -> RigidRunConfig:
        """The shared run settings (``run`` on top of :class:`RigidRunConfig`'s defaults)."""
        try:
            return RigidRunConfig.from_dict({**self.run, "data": self.data, "n_val": self.n_val,
                                             "n_test": self.n_test, "threads": self.threads})
        except ValueError as exc:
            raise ValueError(f"SweepConfig.run: {exc}") from exc

    def shard_index(self) -> tuple[int, int]:
        """``(i, n)`` of ``shard = "i/n"``."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(self.shard))
        if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
            raise ValueError(f"SweepConfig: shard must be 'i/n' with 0 <= i < n, got {self.shard!r}")
        return int(m.group(1)), int(m.group(2))


def _base(family: str) -> str:
    return family.split("+")[0]


def _sizes_of(config: SweepConfig, family: str) -> tuple[tuple[int, int], ...]:
    return config.sizes.get(family) or config.sizes[_base(family)]


@dataclasses.dataclass(frozen=True)
class GridPoint:
    """One run of the grid: ``index`` in grid order, its ``name`` (folder) and :class:`RigidRunConfig`."""

    index: int
    family: str
    width: int
    depth: int
    steps: int
    n_train: int
    seed: int
    name: str
    config: RigidRunConfig


def grid(config: SweepConfig) -> list[GridPoint]:
    """Every run of the sweep, in grid order (families, sizes, steps, n_train, seeds; the last varies fastest)."""
    base = config.base_run()
    points = []
    combos = ((f, s, st, n, seed) for f in config.families for s in _sizes_of(config, f)
              for st, n, seed in itertools.product(config.steps, config.n_train, config.seeds))
    for index, (fam, (width, depth), steps, n, seed) in enumerate(combos):
        name = f"{fam.replace('+', '-')}_w{width}_d{depth}_s{steps}_n{n}_seed{seed}"
        run = base.replace(out=str(Path(config.out) / "runs" / name), family=_base(fam), width=width, depth=depth,
                           steps=steps, n_train=n, seed=seed, augment=fam.endswith("+aug"))
        points.append(GridPoint(index, fam, width, depth, steps, n, seed, name, run))
    return points


def shard_points(points: Sequence[GridPoint], index: int, count: int) -> list[GridPoint]:
    """The grid points of shard ``index`` of ``count``: those with ``point.index % count == index``."""
    if not (isinstance(count, int) and count >= 1 and isinstance(index, int) and 0 <= index < count):
        raise ValueError(f"shard must satisfy 0 <= index < count, got {index}/{count}")
    return [p for p in points if p.index % count == index]


# --------------------------------------------------------------------------------------------
# Compute: FLOPs with eqt's sparse bilinear products counted at their true arithmetic
# --------------------------------------------------------------------------------------------
def _selection_storages(algebras: Sequence[clifford.Algebra], dtype: torch.dtype,
                        device: torch.device) -> dict[int, tuple[str, int, bool]]:
    """``{storage pointer: (kind, nonzero entries P, is_reduce)}`` of the cached ``L, R, S`` of every sparse table."""
    found = {}
    for alg in algebras:
        for kind in (*clifford.TABLE_KINDS, "join"):
            try:
                if not clifford._is_sparse(alg, kind):
                    continue
                sel_left, sel_right, reduce = clifford._sparse_bilinear(alg, kind, dtype, device)
            except (KeyError, ValueError):
                continue
            p = reduce.shape[0]
            for t, is_reduce in ((sel_left, False), (sel_right, False), (reduce, True)):
                found[t.untyped_storage().data_ptr()] = (kind, p, is_reduce)
    return found


class SparseProductCounter(TorchDispatchMode):
    """Counts the GEMMs of eqt's sparse bilinear products (:mod:`eqt.primitives.clifford`) as they run.

    Every ``aten.mm`` whose right operand is one of the cached selection matrices ``L``, ``R``
    (``(dim, P)``) or ``S`` (``(P, dim)``), or a transpose of one, is recognised by its storage.
    ``dense`` adds what :class:`~torch.utils.flop_counter.FlopCounterMode` counts for it
    (``2 m k n``); ``true`` adds the product's arithmetic: a GEMM that contracts the ``P`` pairs
    (``@ S`` in the forward pass, ``@ L.T`` / ``@ R.T`` for the gradients) does one multiply and one
    add per nonzero entry and row, ``2 m P``; the gathers (``@ L``, ``@ R``, ``@ S.T``) are free
    (their signs fold into the multiply). So a product over ``m`` rows costs ``2 m P`` forward and
    ``2 m P`` per operand that needs a gradient backward.

    Args:
        algebras: the algebras whose tables to recognise (default: G(3,0,1)).
        dtype, device: of the products' inputs (the selection matrices are cached per both).
    """

    def __init__(self, algebras: Sequence[clifford.Algebra] = (PGA,), dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self._storages = _selection_storages(tuple(algebras), dtype, torch.device(device))
        self.dense = 0
        self.true = 0
        self.gemms = 0
        self.by_kind: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.mm.default:
            a, b = args[0], args[1]
            hit = self._storages.get(b.untyped_storage().data_ptr())
            if hit is not None:
                kind, p, is_reduce = hit
                m, k = a.shape
                n = b.shape[1]
                self.dense += 2 * m * k * n
                contracts = is_reduce == b.is_contiguous()  # S as is, or L.T / R.T
                if contracts:
                    self.true += 2 * m * p
                    self.by_kind[kind] = self.by_kind.get(kind, 0) + 2 * m * p
                self.gemms += 1
        return out


def _algebras(model: torch.nn.Module) -> tuple[clifford.Algebra, ...]:
    found = {PGA}
    for module in model.modules():
        alg = getattr(module, "algebra", None)
        if isinstance(alg, clifford.Algebra):
            found.add(alg)
    return tuple(sorted(found, key=repr))


def corrected_flops(model: torch.nn.Module, loss_fn: Callable, batch: dict[str, Tensor]) -> dict[str, int]:
    """FLOPs of one training step as counted and with sparse bilinear products at their true cost.

    Measured like :func:`eqt.train.rigid.flops_per_step` (a copy of the model in training mode,
    forward + backward of ``loss_fn`` on ``batch``; then a forward pass without gradients).

    Args:
        model: the model (e.g. a :class:`~eqt.models.rigid.RigidBodyModel`).
        loss_fn: ``(model, batch) -> (loss, metrics)``.
        batch: one training batch.

    Returns:
        ``{"step", "step_true", "forward", "forward_true", "sparse_step_counted", "sparse_step_true",
        "sparse_forward_counted", "sparse_forward_true", "sparse_gemms"}``: ``step`` equals
        ``flops_per_step``'s first value; ``*_true = counted - sparse_counted + sparse_true``.
    """
    import copy

    m = copy.deepcopy(model).train()
    param = next(m.parameters())
    algs = _algebras(m)
    with FlopCounterMode(display=False) as counter, SparseProductCounter(algs, param.dtype, param.device) as sparse:
        loss, _ = loss_fn(m, batch)
        loss.backward()
    step, s_dense, s_true, gemms = int(counter.get_total_flops()), sparse.dense, sparse.true, sparse.gemms
    with torch.no_grad(), FlopCounterMode(display=False) as counter, \
            SparseProductCounter(algs, param.dtype, param.device) as sparse_fwd:
        loss_fn(m, batch)
    fwd = int(counter.get_total_flops())
    return {"step": step, "step_true": step - s_dense + s_true, "forward": fwd,
            "forward_true": fwd - sparse_fwd.dense + sparse_fwd.true, "sparse_step_counted": s_dense,
            "sparse_step_true": s_true, "sparse_forward_counted": sparse_fwd.dense,
            "sparse_forward_true": sparse_fwd.true, "sparse_gemms": gemms}


# --------------------------------------------------------------------------------------------
# Planning: validate against the data and the machine, measure sizes
# --------------------------------------------------------------------------------------------
def _split_sizes(root: Path) -> dict[str, int]:
    meta = root / "meta.json"
    if not meta.exists():
        raise FileNotFoundError(f"no rigid-body data at {root} (meta.json missing); make it with "
                                f"python -m eqt.data.rigid {root} --n-train N --n-val N --n-test N")
    splits = json.loads(meta.read_text()).get("splits", {})
    missing = [s for s in ("train", "val", "test") if s not in splits or not (root / f"{s}.npz").exists()]
    if missing:
        raise FileNotFoundError(f"{root}: split(s) {', '.join(missing)} missing; "
                                f"regenerate with python -m eqt.data.rigid")
    return {s: int(splits[s]["size"]) for s in ("train", "val", "test")}


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _param_count(run: RigidRunConfig, history: int) -> int:
    RigidBodyModel(run.model_config(history).replace(width=1, depth=1))  # caches the basis maps on the CPU
    with torch.device("meta"):
        model = RigidBodyModel(run.model_config(history))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _check_data(config: SweepConfig) -> dict[str, int]:
    root = Path(config.data)
    have = _split_sizes(root)
    need = {"train": max(config.n_train), "val": config.n_val, "test": config.n_test}
    for split, n in need.items():
        if n > have[split]:
            raise ValueError(f"sweep needs {n} {split} samples but {root}/{split}.npz has {have[split]} "
                             f"(lower {'n_train' if split == 'train' else 'n_' + split} or generate more)")
    return have


def _size_table(config: SweepConfig, points: Sequence[GridPoint], history: int,
                first: dict[str, Tensor] | None) -> dict[tuple, dict[str, int]]:
    """``{(family, width, depth): {"params", "step", "step_true", ...}}`` (FLOPs when a batch is given)."""
    table: dict[tuple, dict[str, int]] = {}
    budget = _memory_bytes()
    for p in points:
        key = (p.family, p.width, p.depth)
        if key in table:
            continue
        params = _param_count(p.config, history)
        if budget and params * _BYTES_PER_PARAM > budget:
            raise ValueError(f"{p.family} width {p.width} depth {p.depth} has {params:,} parameters: weights, "
                             f"gradients and Adam state alone need {params * _BYTES_PER_PARAM / 1e9:.3g} GB, more "
                             f"than this machine's {budget / 1e9:.3g} GB; use a smaller width or depth")
        entry = {"params": params}
        if first is not None:
            torch.manual_seed(0)
            model = RigidBodyModel(p.config.model_config(history))
            entry.update(corrected_flops(model, rigid_train._Loss(p.config), first))
        table[key] = entry
    return table


def _first_batch(config: SweepConfig) -> tuple[dict[str, Tensor], int]:
    train = rigid_train._split(Path(config.data), "train", config.base_run().batch_size, "sweep")
    return rigid_train._tensors(train, "cpu"), int(train["pos"].shape[1])


def _status(point: GridPoint) -> str:
    """``"done"`` (finished, same settings), ``"partial"`` (a checkpoint), ``"new"``, or ``"conflict"``."""
    out = Path(point.config.out)
    want = rigid_train._run_fields(point.config)
    config_path = out / "run_config.json"
    if config_path.exists():
        old = json.loads(config_path.read_text())
        if old != json.loads(json.dumps(want)):
            return "conflict"
    result = out / "result.json"
    if result.exists():
        try:
            done = json.loads(result.read_text())
            same = rigid_train._run_fields(RigidRunConfig.from_dict(done["config"])) == want
        except (ValueError, KeyError):
            same, done = False, {}
        if done.get("finished") and same:
            return "done"
        if not same:
            return "conflict"
    return "partial" if (out / "last.pt").exists() else "new"


def plan(config: SweepConfig, measure: bool = True) -> dict[str, Any]:
    """Validate the sweep against the data and this machine; the runs of this shard with their status.

    Args:
        config: the sweep.
        measure: measure FLOPs per step of every size (loads one batch; False: parameters only).

    Returns:
        ``{"points": [GridPoint of this shard], "status": {name: "done"|"partial"|"new"},
        "sizes": {(family, width, depth): {"params", "step", "step_true", ...}}, "data": split sizes}``.

    Raises:
        FileNotFoundError: the data are missing.
        ValueError: a data size exceeds the data, a model does not fit in memory, or a run folder
            holds a run with other settings.
    """
    have = _check_data(config)
    points = grid(config)
    mine = shard_points(points, *config.shard_index())
    status = {p.name: _status(p) for p in mine}
    conflicts = [n for n, s in status.items() if s == "conflict"]
    if conflicts:
        raise ValueError(f"{len(conflicts)} run folder(s) under {config.out}/runs hold runs with other settings "
                         f"({', '.join(conflicts[:3])}{', ...' if len(conflicts) > 3 else ''}); use another out "
                         f"folder or delete them")
    first, history = _first_batch(config) if measure else (None, _history(config))
    sizes = _size_table(config, points, history, first)
    return {"points": mine, "status": status, "sizes": sizes, "data": have}


def _history(config: SweepConfig) -> int:
    meta = json.loads((Path(config.data) / "meta.json").read_text())
    return int(meta["splits"]["train"]["config"]["history"])


def _cost(point: GridPoint, sizes: Mapping[tuple, Mapping[str, int]]) -> float:
    entry = sizes[(point.family, point.width, point.depth)]
    return float(entry.get("step_true", entry["params"])) * point.steps


# --------------------------------------------------------------------------------------------
# Results table
# --------------------------------------------------------------------------------------------
_COLUMNS = ("name", "family", "base_family", "augment", "width", "depth", "params", "steps", "n_train", "seed",
            "batch_size", "samples_seen", "epochs", "flops_per_step", "flops_per_step_true", "train_flops",
            "train_flops_true", "flops_forward_per_sample", "flops_forward_per_sample_true", "train_seconds",
            "val_loss", "test_loss", "test_e3_loss", "best_step", "best_val_loss", "best_test_loss",
            "best_test_e3_loss", "test_pos_rmse_mm", "test_angle_deg", "best_test_pos_rmse_mm",
            "best_test_angle_deg", "static_test_loss", "device")


def _row(point: GridPoint, result: Mapping[str, Any], size: Mapping[str, int]) -> dict[str, Any]:
    counted, true = result["flops_per_step"], result["flops_per_step"]
    if "step" in size:  # the correction measured now, applied to the count the run recorded
        true = counted - size["sparse_step_counted"] + size["sparse_step_true"]
    fwd = result["flops_forward_per_sample"]
    fwd_true = fwd - (size.get("sparse_forward_counted", 0) - size.get("sparse_forward_true", 0)) / max(
        1, min(result["batch_size"], result["n_train"]))
    samples = result["steps"] * result["batch_size"]
    best = result["best"]
    return {
        "name": point.name, "family": point.family, "base_family": result["family"], "augment": result["augment"],
        "width": result["width"], "depth": result["depth"], "params": result["params"], "steps": result["steps"],
        "n_train": result["n_train"], "seed": point.seed, "batch_size": result["batch_size"],
        "samples_seen": samples, "epochs": samples / result["n_train"], "flops_per_step": counted,
        "flops_per_step_true": true, "train_flops": counted * result["steps"],
        "train_flops_true": true * result["steps"], "flops_forward_per_sample": fwd,
        "flops_forward_per_sample_true": fwd_true, "train_seconds": result["train_seconds"],
        "val_loss": result["val_loss"], "test_loss": result["test_loss"], "test_e3_loss": result["test_e3_loss"],
        "best_step": best["step"], "best_val_loss": best["val"]["loss"], "best_test_loss": best["test"]["loss"],
        "best_test_e3_loss": best["test_e3"]["loss"],
        "test_pos_rmse_mm": 1e3 * math.sqrt(result["test"]["pos_mse"]),
        "test_angle_deg": math.degrees(result["test"]["angle"]),
        "best_test_pos_rmse_mm": 1e3 * math.sqrt(best["test"]["pos_mse"]),
        "best_test_angle_deg": math.degrees(best["test"]["angle"]),
        "static_test_loss": result["static_test_loss"], "device": result["device"],
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def collect(config: SweepConfig, sizes: Mapping[tuple, Mapping[str, int]] | None = None) -> list[dict[str, Any]]:
    """Gather every finished run of the whole grid (all shards) into ``{out}/results.csv`` and ``results.json``.

    Args:
        config: the sweep.
        sizes: the size table of :func:`plan` (measured here when None and a run is found).

    Returns:
        One row per finished run whose settings match the grid point, in grid order (columns:
        ``name, family, ..., train_flops, train_flops_true, ..., test_loss, best_test_loss, ...``).
    """
    rows, found = [], []
    for point in grid(config):
        path = Path(point.config.out) / "result.json"
        if path.exists() and _status(point) == "done":
            found.append((point, json.loads(path.read_text())))
    if found and (sizes is None or any((p.family, p.width, p.depth) not in sizes or "step" not in
                                       sizes[(p.family, p.width, p.depth)] for p, _ in found)):
        first, history = _first_batch(config)
        sizes = _size_table(config, [p for p, _ in found], history, first)
    for point, result in found:
        rows.append(_row(point, result, sizes[(point.family, point.width, point.depth)]))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [",".join(_COLUMNS)]
    for r in rows:
        lines.append(",".join(f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c]) for c in _COLUMNS))
    _write_atomic(out / "results.csv", "\n".join(lines) + "\n")
    _write_atomic(out / "results.json", json.dumps({"sweep": config.to_dict(), "rows": rows}, indent=1) + "\n")
    return rows


def load_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``results.json`` (or of the ``results.json`` in a sweep folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.exists():
        raise FileNotFoundError(f"no results table at {p} (run the sweep or --collect first)")
    return json.loads(p.read_text())["rows"]


# --------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------
def _file_log(path: Path, echo: Callable[[str], None] | None) -> Callable[[str], None]:
    def log(line: str) -> None:
        with path.open("a") as f:
            f.write(line + "\n")
        if echo is not None:
            echo(line)
    return log


def _train_one(config_dict: dict[str, Any], device: str | None = None, echo: bool = False) -> tuple[str, str | None]:
    """Train one run (in this process); ``(out, None)`` or ``(out, error message)``."""
    config = RigidRunConfig.from_dict(config_dict)
    if device is not None:
        config = config.replace(device=device)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        train_run(config, log=_file_log(out / "train.log", print if echo else None))
    except (ValueError, FloatingPointError, RuntimeError, FileNotFoundError) as exc:
        (out / "error.txt").write_text(f"{type(exc).__name__}: {exc}\n")
        return config.out, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return config.out, None


_WORKER_DEVICE: str | None = None


def _init_worker(queue, threads: int) -> None:
    global _WORKER_DEVICE
    _WORKER_DEVICE = queue.get()
    if threads:
        torch.set_num_threads(threads)


def _worker(config_dict: dict[str, Any]) -> tuple[str, str | None]:
    return _train_one(config_dict, _WORKER_DEVICE)


def _execute(config: SweepConfig, todo: Sequence[GridPoint], devices: Sequence[str], sizes: Mapping,
             log: Callable[[str], None] | None) -> tuple[list[str], dict[str, str]]:
    trained, failed = [], {}
    names = {str(Path(p.config.out)): p.name for p in todo}

    def done(out: str, error: str | None, k: int) -> None:
        name = names[str(Path(out))]
        if error is None:
            trained.append(name)
        else:
            failed[name] = error
        collect(config, sizes)
        if log:
            log(f"[{k}/{len(todo)}] {name}: {'done' if error is None else 'FAILED ' + error}")

    if config.workers == 1:
        for k, p in enumerate(todo, 1):
            if log:
                log(f"[{k}/{len(todo)}] {p.name}: training on {devices[0]}")
            out, error = _train_one(p.config.to_dict(), devices[0])
            done(out, error, k)
        return trained, failed
    import concurrent.futures as cf
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    for k in range(config.workers):
        queue.put(devices[k % len(devices)])
    with cf.ProcessPoolExecutor(config.workers, mp_context=ctx, initializer=_init_worker,
                                initargs=(queue, config.threads)) as pool:
        futures = [pool.submit(_worker, p.config.to_dict()) for p in todo]
        for k, fut in enumerate(cf.as_completed(futures), 1):
            done(*fut.result(), k)
    return trained, failed


def _fabric_shard(config: SweepConfig) -> tuple[int, int, str]:
    """Launch Lightning Fabric's processes; this process's ``(rank, world size, device)``."""
    from lightning.fabric import Fabric

    fabric = Fabric(**{"strategy": "ddp", **config.fabric})
    fabric.launch()
    device = fabric.device
    return fabric.global_rank, fabric.world_size, str(device) if device.type != "cuda" else f"cuda:{device.index or 0}"


def run_sweep(config: SweepConfig, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train the runs of this shard that are not finished, then write the table (see the module docstring).

    Args:
        config: the sweep.
        log: progress printer (None: silent); each run also logs to ``{run}/train.log``.

    Returns:
        ``{"grid": runs in the whole grid, "shard": "i/n", "skipped": names already finished,
        "trained": names trained now, "failed": {name: error}, "pending": names left (``max_runs``),
        "rows": finished runs in the table, "results": path of results.csv}``.

    Raises:
        FileNotFoundError, ValueError: see :func:`plan` (nothing is trained then).
    """
    t0 = time.perf_counter()
    devices = config.devices
    shard_i, shard_n = config.shard_index()
    if config.launcher == "fabric":
        rank, world, device = _fabric_shard(config)
        shard_i, shard_n, devices = shard_i * world + rank, shard_n * world, (device,)
        config = config.replace(shard=f"{shard_i}/{shard_n}", devices=devices, launcher="local", workers=1)
    if any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        raise ValueError(f"devices {list(devices)} need CUDA, which this machine does not have")
    info = plan(config)
    points, status = info["points"], info["status"]
    skipped = [p.name for p in points if status[p.name] == "done"]
    todo = [p for p in points if status[p.name] != "done"]
    if config.order != "grid":
        todo.sort(key=lambda p: _cost(p, info["sizes"]), reverse=config.order == "expensive-first")
    pending = []
    if config.max_runs:
        todo, pending = todo[: config.max_runs], [p.name for p in todo[config.max_runs:]]
    if log:
        total = len(grid(config))
        log(f"sweep {config.out}: {total} runs in the grid, shard {shard_i}/{shard_n} has {len(points)}: "
            f"{len(skipped)} finished, {len(todo)} to train" + (f", {len(pending)} left for later" if pending else ""))
    trained, failed = _execute(config, todo, devices, info["sizes"], log)
    rows = collect(config, info["sizes"])
    if log:
        log(f"sweep {config.out}: {len(trained)} trained, {len(failed)} failed, "
            f"{len(rows)} in {config.out}/results.csv "
            f"({time.perf_counter() - t0:.0f} s)")
    return {"grid": len(grid(config)), "shard": f"{shard_i}/{shard_n}", "skipped": skipped, "trained": trained,
            "failed": failed, "pending": pending, "rows": len(rows), "results": str(Path(config.out) / "results.csv")}


# --------------------------------------------------------------------------------------------
# Configuration files and the command line
# --------------------------------------------------------------------------------------------
def load_sweep_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> SweepConfig:
    """A :class:`SweepConfig` from a YAML file (or the defaults) and ``key=value`` overrides (values in YAML).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: unknown keys or bad values, in one line naming the key.
    """
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"sweep config {p} not found")
        values = yaml.safe_load(p.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{p}: a sweep config must be a mapping of SweepConfig keys")
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must be key=value")
        key, text = item.split("=", 1)
        value = yaml.safe_load(text)
        if "." in key:  # run.lr=1e-3, fabric.devices=4
            head, sub = key.split(".", 1)
            values[head] = {**(values.get(head) or {}), sub: value}
        else:
            values[key.strip()] = value
    return SweepConfig.from_dict(values)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``eqt scaling``: a YAML config, overrides, and what to do."""
    p.add_argument("config", nargs="?", help="YAML sweep config (see configs/scaling.yaml); default: SweepConfig()")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key (repeatable), e.g. out=/tmp/sweep, steps=[100,200], run.lr=1e-3")
    p.add_argument("--shard", help="run shard i/n of the grid (n machines, one shard each)")
    p.add_argument("--workers", type=int, help="local worker processes")
    p.add_argument("--max-runs", type=int, help="stop after training this many runs")
    p.add_argument("--plan", action="store_true", help="list the runs, sizes, FLOPs and status; train nothing")
    p.add_argument("--collect", action="store_true", help="only rebuild results.csv/json from the run folders")
    p.add_argument("--report", metavar="DIR", help="after the sweep, fit and write report.md and figures to DIR")
    return p


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run the sweep (or ``--plan`` / ``--collect``) from :func:`add_arguments` options; prints a summary."""
    overrides = list(args.set or [])
    for key in ("shard", "workers", "max_runs"):
        value = getattr(args, key, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    config = load_sweep_config(args.config, overrides)
    out: dict[str, Any]
    if args.plan:
        info = plan(config)
        print(f"{'run':44s} {'status':8s} {'params':>9s} {'FLOPs/step':>10s} {'true':>10s} {'train FLOPs':>11s}")
        for p in info["points"]:
            s = info["sizes"][(p.family, p.width, p.depth)]
            print(f"{p.name:44s} {info['status'][p.name]:8s} {s['params']:9,d} {s['step']:10.3g} "
                  f"{s['step_true']:10.3g} "
                  f"{s['step_true'] * p.steps:11.3g}")
        out = {"runs": len(info["points"]), "status": info["status"]}
    elif args.collect:
        rows = collect(config)
        print(f"{len(rows)} finished runs in {Path(config.out) / 'results.csv'}")
        out = {"rows": len(rows)}
    else:
        out = run_sweep(config)
        print(json.dumps({k: v for k, v in out.items() if k not in ("skipped", "trained")}, indent=2))
    if args.report:
        from eqt.train import scaling_fit

        rows = load_results(config.out)
        text = scaling_fit.report(rows, figures=args.report)
        path = Path(args.report) / "report.md"
        path.write_text(text)
        print(f"report: {path}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eqt.train.scaling", description=__doc__.splitlines()[0])
    try:
        out = run_from_args(add_arguments(parser).parse_args(argv))
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc).splitlines()[0])
    return 1 if out.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
