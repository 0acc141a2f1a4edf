"""The Lightning task that trains a :class:`~geomm.model.network.MultiBranchNet` (torchgeo's
``BaseTask``): per-pixel weighted cross-entropy for segmentation, BCE or CE for scene labels,
validation OA, kappa and macro-F1 from one confusion matrix per epoch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchgeo.trainers import BaseTask

from geomm.metrics import confusion_matrix, scores
from geomm.model.network import ModelConfig, MultiBranchNet

__all__ = ["FusionTask"]


class FusionTask(BaseTask):
    """Semantic segmentation with a :class:`~geomm.model.network.MultiBranchNet` (torchgeo task).

    The loss is cross-entropy weighted per pixel by the dataset's ``weight`` (the class's
    weight, by default 1, and zero on ignored pixels), so unlabelled and held-out pixels never
    count.
    """

    ignore = None
    _val_cm: np.ndarray | None = None
    """Confusion matrix of the validation epoch so far (rows reference, columns prediction)."""

    def __init__(self, model_config: dict[str, Any], lr: float = 3e-3,
                 weight_decay: float = 1e-4, total_steps: int = 1000,
                 ignore_index: int = 255, spectral_aux: float = 0.0) -> None:
        super().__init__()

    def configure_models(self) -> None:
        self.config = ModelConfig.from_dict(self.hparams["model_config"])
        # NHWC: ~10-15 % faster convolutions on CPU (oneDNN), and on GPUs
        self.model = MultiBranchNet(self.config).to(memory_format=torch.channels_last)
        self.keys = [layer.key for layer in self.config.layers]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        spatial, spectral = self.model.forward_parts(
            {k: batch[k].contiguous(memory_format=torch.channels_last) for k in self.keys})
        logits = self.model.combine(spatial, spectral)
        if self.config.head == "classification":  # scene-level targets
            target = batch["target"]
            if self.config.multilabel:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            else:
                loss = torch.nn.functional.cross_entropy(logits, target.argmax(1))
            return loss, logits
        labels = batch["labels"]
        safe = torch.where(labels == self.hparams["ignore_index"], 0, labels)
        ce = torch.nn.functional.cross_entropy(logits, safe, reduction="none")
        aux = float(self.hparams.get("spectral_aux", 0.0))
        if spectral is not None and aux > 0 and self.training:
            # deep supervision: the per-pixel pathway must classify on its own too
            ce = ce + aux * torch.nn.functional.cross_entropy(spectral, safe, reduction="none")
        w = batch["weight"]
        return (ce * w).sum() / w.sum().clamp_min(1e-6), logits

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, logits = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=logits.shape[0])
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, logits = self._loss(batch)
        if self.config.head == "classification":
            self.log("val_loss", loss, prog_bar=True, batch_size=logits.shape[0])
            return
        labels = batch["labels"]
        self.log("val_loss", loss, prog_bar=True, batch_size=labels.shape[0])
        cm = confusion_matrix(labels.cpu().numpy(), logits.argmax(1).cpu().numpy(),
                              self.config.num_classes,
                              ignore_value=int(self.hparams["ignore_index"]))
        self._val_cm = cm if self._val_cm is None else self._val_cm + cm

    def on_validation_epoch_start(self) -> None:
        self._val_cm = None

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's OA, kappa and macro-F1 from all its validation pixels at once."""
        cm, self._val_cm = self._val_cm, None
        if cm is None or not cm.sum():
            return
        s = scores(cm)
        self.log("val_oa", s.overall_accuracy, prog_bar=True)
        self.log("val_kappa", s.kappa)
        self.log("val_macro_f1", s.macro_f1)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams["lr"],
                                weight_decay=self.hparams["weight_decay"])
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=self.hparams["lr"], total_steps=max(2, self.hparams["total_steps"]),
            pct_start=0.1, anneal_strategy="cos")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
