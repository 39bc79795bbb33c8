"""Backbone + head + task loss: the one module every strategy, modality and loop works on."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nlp_transfer.backbones import Backbone
from nlp_transfer.modeling.heads import ClassificationHead
from nlp_transfer.tasks import Task

__all__ = ["TransferModel"]


class TransferModel(nn.Module):
    """Pooled backbone features -> head logits (-> loss when labels are given).

    A batch may carry precomputed ``features`` instead of raw inputs: with a frozen backbone the
    training loop then never runs the backbone again (see `features.py`).
    """

    def __init__(self, backbone: Backbone, head: ClassificationHead, task: Task) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.task = task
        self._kept_in_eval: list[nn.Module] = []

    def forward(self, labels: torch.Tensor | None = None, features: torch.Tensor | None = None, **inputs: Any):
        inputs.pop("index", None)
        inputs.pop("output_lengths", None)  # how many of a row's positions are real: for inference, not the model
        pooled = features if features is not None else self.backbone(**inputs)
        logits = self.head(pooled)
        loss = self.task.loss(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}

    def keep_in_eval(self, modules: list[nn.Module]) -> None:
        """Frozen parts stay in eval mode during training: no dropout noise, BatchNorm statistics fixed."""
        self._kept_in_eval = list(modules)
        self.train(self.training)

    def train(self, mode: bool = True) -> TransferModel:
        super().train(mode)
        for module in self._kept_in_eval:
            module.eval()
        return self
