"""Backbones: what every encoder (text or vision) offers the strategy layer, the head, the feature
cache and saving.

A backbone is an `nn.Module` that turns a batch into pooled features and says how its weights are
grouped. The shared code (strategies, head, feature cache, saving) only ever talks to `Backbone`,
which is what lets the same feature extraction, partial, full and LoRA code drive a BERT or a
ResNet. Modality-specific extras (text: ``hf_config``, ``max_positions()``; vision:
``architecture``, ``model_args``, ``pretrained_cfg``, ``data_config()``) live on the
implementations and are documented there.

    >>> from nlp_transfer.backbones.text import load_text_backbone
    >>> tokenizer, backbone = load_text_backbone("path/to/bert")
    >>> isinstance(backbone, Backbone), backbone.feature_size, len(backbone.blocks())   # (True, 768, 12)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # the contract costs no torch import: config reads the default model's name from here
    import torch
    from torch import nn

__all__ = ["Backbone"]


@runtime_checkable
class Backbone(Protocol):
    """The contract every backbone implements (`TextBackbone`, `VisionBackbone`).

    A backbone is also an `nn.Module`: the shared code calls it, freezes it (``requires_grad_``),
    moves it (``.to``) and hashes its ``state_dict`` for the feature cache. `isinstance(x, Backbone)`
    checks that every member below is present. Implementations expose ``encoder`` as a property
    (not only a registered submodule) so that the check also holds where `isinstance` looks
    members up statically (Python >= 3.12).
    """

    feature_size: int
    """Width of the pooled features the head receives: ``forward(...)`` returns ``[batch, feature_size]``."""

    pooling: str
    """How token / spatial features become one vector ("cls", "mean", "avg", ...); part of the feature cache key."""

    pool_layers: int
    """How many top layers are averaged before pooling (1: the last only); part of the feature cache key."""

    @property
    def encoder(self) -> nn.Module:
        """The wrapped transformers / timm model: what LoRA wraps with peft (replacing it) and saving writes."""

    @encoder.setter
    def encoder(self, module: nn.Module) -> None: ...

    @property
    def base_encoder(self) -> nn.Module:
        """The plain transformers / timm model under ``encoder``, also when peft has wrapped it."""

    @property
    def model_type(self) -> str:
        """The architecture's name ("bert", "resnet18"): chooses default LoRA targets and native heads, names errors."""

    @property
    def has_adapters(self) -> bool:
        """True when ``encoder`` is a peft model (LoRA adapters in place, to train, merge or save)."""

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[batch, feature_size]`` for a collated batch (tokens or ``pixel_values``)."""

    def stem(self) -> nn.Module:
        """The module below the first block (embeddings, or a CNN stem); it shares no parameter with the blocks."""

    def blocks(self) -> list[nn.Module]:
        """The ordered blocks, bottom to top (transformer layers, CNN stages): what partial and gradual unfreeze."""

    def default_lora_targets(self) -> list[str]:
        """The layer names LoRA adapts when ``target_modules`` is unset; a subset of ``linear_layer_names()``."""

    def linear_layer_names(self) -> list[str]:
        """The layer names LoRA can adapt, listed when a requested target is not found."""
