"""Backbones: what every encoder (text or vision) offers the strategy layer and the head.

A backbone is an `nn.Module` that turns a batch into pooled features and says how its weights are
grouped. The strategies only ever talk to this contract, which is what lets the same feature
extraction, partial, full and LoRA code drive a BERT or a ResNet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # the contract costs no torch import: config reads the default model's name from here
    import torch
    from torch import nn

__all__ = ["Backbone"]


@runtime_checkable
class Backbone(Protocol):
    """The contract a backbone implements.

    - ``feature_size``: width of the pooled features the head receives.
    - ``forward(**batch)``: pooled features ``[batch, feature_size]``.
    - ``stem()``: the module below the first block (embeddings, or a CNN stem).
    - ``blocks()``: the ordered blocks, bottom to top (transformer layers, ResNet stages).
    - ``default_lora_targets()``: Linear/conv layer names LoRA adapts by default.
    - ``linear_layer_names()``: candidate names, listed when a LoRA target is not found.
    """

    feature_size: int

    def forward(self, **batch: torch.Tensor) -> torch.Tensor: ...

    def stem(self) -> nn.Module: ...

    def blocks(self) -> list[nn.Module]: ...

    def default_lora_targets(self) -> list[str]: ...

    def linear_layer_names(self) -> list[str]: ...
