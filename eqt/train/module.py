"""Lightning module for energy + force training of any :class:`eqt.models.base.EnergyModel`.

Loss ``w_E MSE(E) + w_F MSE(F)`` (``objective: forces`` is force-only training, PolyGET style: the
energy term is dropped and the data need no energies); AdamW with a
linear warm-up then ReduceLROnPlateau on the validation loss; optional EMA of the weights, which
then also evaluates the validation set and is what gets exported. Validation needs gradients for
the forces, so the trainer runs with ``inference_mode=False``.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from eqt.physics.potential import Potential
from eqt.train.config import TrainConfig

__all__ = ["PotentialModule"]


class PotentialModule(L.LightningModule):
    """Train a potential on batches from :func:`eqt.data.dataset.collate_atoms`.

    Args:
        model: the energy model.
        config: the training config.
    """

    def __init__(self, model: torch.nn.Module, config: TrainConfig):
        super().__init__()
        self.model, self.config = model, config
        self._loss_ema: dict[str, dict[str, Tensor]] = {"train": {}, "val": {}}
        self.ema = None
        if config.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)

    def eval_model(self) -> torch.nn.Module:
        """The weights used for evaluation and export (the EMA ones when enabled)."""
        return self.ema.module if self.ema is not None else self.model

    def _losses(self, model: torch.nn.Module, batch: dict, train: bool, stage: str | None = None) -> dict[str, Tensor]:
        c = self.config
        # forces are evaluated (and reported) at validation too, when the data have them
        need_forces = "forces" in batch and (c.forces_weight > 0 or not train)
        if c.forces_weight > 0 and "forces" not in batch:
            raise ValueError("forces_weight > 0 but the data have no forces (set forces_weight=0 to train on energies)")
        out = Potential(model)(batch["z"], batch["pos"], batch["batch"], cell=batch.get("cell"), pbc=batch.get("pbc"),
                               num_systems=batch["num_systems"], forces=need_forces, create_graph=train,
                               validate=False)
        m: dict[str, Tensor] = {}
        if "energy" in batch:  # reported in force-only training too (meaningful once offsets are fitted)
            e_err = out["energy"] - batch["energy"]
            m.update(energy_mse=e_err.pow(2).mean(), energy_mae=e_err.abs().mean())
        if need_forces:
            f_err = out["forces"] - batch["forces"]
            m.update(forces_mse=f_err.pow(2).mean(), forces_mae=f_err.abs().mean())
        stage = stage or ("train" if train else "val")
        loss = out["energy"].new_zeros(())
        if c.objective != "forces":
            loss = loss + c.energy_weight * self._smooth(stage, "energy", m["energy_mse"])
        if "forces_mse" in m:
            loss = loss + c.forces_weight * self._smooth(stage, "forces", m["forces_mse"])
        m["loss"] = loss
        return m

    def _smooth(self, stage: str, key: str, value: Tensor) -> Tensor:
        """TorchMD-NET's loss EMA: ``alpha * loss + (1 - alpha) * previous`` (previous detached).

        With ``alpha < 1`` the gradient of that term is scaled by ``alpha`` and the validation loss
        (which drives the scheduler, early stopping and the best checkpoint) is smoothed over epochs.
        """
        alpha = getattr(self.config, f"loss_ema_alpha_{key}")
        if stage not in self._loss_ema or not 0 < alpha < 1 or self.trainer.sanity_checking:
            return value
        prev = self._loss_ema[stage].get(key)
        value = alpha * value + (1 - alpha) * (value.detach() if prev is None else prev.to(value))
        self._loss_ema[stage][key] = value.detach()
        return value

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["loss_ema"] = {st: {k: float(v) for k, v in d.items()} for st, d in self._loss_ema.items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("loss_ema", {})
        self._loss_ema = {st: {k: torch.tensor(v) for k, v in saved.get(st, {}).items()} for st in ("train", "val")}

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        m = self._losses(self.model, batch, train=True)
        self.log_dict({f"train_{k}": v.detach() for k, v in m.items()}, batch_size=batch["num_systems"],
                      on_step=True, on_epoch=True, prog_bar=False)
        return m["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        m = self._losses(self.eval_model(), batch, train=False)
        self.log_dict({f"val_{k}": v.detach() for k, v in m.items()}, batch_size=batch["num_systems"],
                      on_epoch=True, prog_bar=True)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        m = self._losses(self.eval_model(), batch, train=False, stage="test")
        self.log_dict({f"test_{k}": v.detach() for k, v in m.items()}, batch_size=batch["num_systems"], on_epoch=True)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def configure_optimizers(self):
        c = self.config
        opt = torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=c.lr_factor, patience=c.lr_patience,
                                                             min_lr=c.lr_min)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": "val_loss", "interval": "epoch"}}

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        c = self.config
        if c.lr_warmup_steps > 0 and self.trainer.global_step < c.lr_warmup_steps:
            scale = (self.trainer.global_step + 1) / c.lr_warmup_steps
            for group in optimizer.param_groups:
                group["lr"] = scale * c.lr
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

