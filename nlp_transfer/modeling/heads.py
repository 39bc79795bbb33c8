"""The new head that sits on pooled backbone features.

With ``normalize``, a LayerNorm comes first (useful on frozen features, whose scale is arbitrary).
Two shapes cover the standard heads of the architectures we know: ``linear`` (dropout, linear) and
``mlp`` (dropout, dense, activation, dropout, linear; BERT's pooler, RoBERTa's and DistilBERT's
classification heads all have this shape), so a head trained here can be exported to the
architecture's own ``*ForSequenceClassification`` layout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

__all__ = ["HeadConfig", "ClassificationHead"]


@dataclass(frozen=True)
class HeadConfig:
    """What a head looks like; saved with the model so it is rebuilt identically."""

    in_features: int
    num_outputs: int
    kind: Literal["linear", "mlp"] = "linear"
    activation: Literal["tanh", "relu", "gelu"] = "tanh"
    dropout: float = 0.1
    normalize: bool = False  # LayerNorm on the features first: frozen features come in any scale

    def to_dict(self) -> dict:
        return asdict(self)


_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}


class ClassificationHead(nn.Module):
    """Pooled features [batch, in_features] -> logits [batch, num_outputs]."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.dropout)
        if config.normalize:
            self.norm = nn.LayerNorm(config.in_features)
        if config.kind == "mlp":
            self.dense = nn.Linear(config.in_features, config.in_features)
            self.activation = _ACTIVATIONS[config.activation]()
        self.out = nn.Linear(config.in_features, config.num_outputs)
        # Small initial logits: every class starts equally likely, so early steps do not fight a
        # random bias (the same init std as BERT's).
        nn.init.normal_(self.out.weight, std=0.02)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.norm(features) if self.config.normalize else features)
        if self.config.kind == "mlp":
            x = self.dropout(self.activation(self.dense(x)))
        return self.out(x)
