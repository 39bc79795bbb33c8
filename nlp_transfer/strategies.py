"""The strategy layer: the only place that decides which weights train.

A strategy freezes and unfreezes the backbone's stem and blocks (and, for LoRA, adds adapters);
the head always trains. The same classes drive text encoders and vision backbones, because they
only use the `Backbone` contract (stem, blocks, LoRA targets).

Adding a strategy: one options dataclass in `config.STRATEGY_OPTIONS`, one class here, one entry in
`STRATEGIES`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from nlp_transfer.config.settings import STRATEGY_OPTIONS, build
from nlp_transfer.errors import StrategyError, did_you_mean
from nlp_transfer.modeling.transfer_model import TransferModel

__all__ = ["Strategy", "FeatureExtraction", "Partial", "Full", "Lora", "Gradual", "STRATEGIES", "make_strategy",
           "parameter_groups"]

logger = logging.getLogger(__name__)


class Strategy:
    """Base class. `apply` sets ``requires_grad`` on every parameter of the model."""

    name: str = ""
    frozen_backbone: bool = False  # True: backbone outputs are fixed, so features can be cached

    def __init__(self, options: Any) -> None:
        self.options = options

    def check(self, backbone: nn.Module) -> None:
        """Raise `StrategyError` when the options do not fit this backbone (before anything trains)."""

    def apply(self, model: TransferModel) -> None:
        self.check(model.backbone)
        model.backbone.requires_grad_(False)
        model.head.requires_grad_(True)
        self._unfreeze(model)
        model.keep_in_eval(self._kept_in_eval(model))

    def _unfreeze(self, model: TransferModel) -> None:
        raise NotImplementedError

    def on_epoch_start(self, model: TransferModel, epoch: int) -> bool:
        """Set what trains in `epoch` (1-based); True when the trainable set changed.

        The training loop calls it before every epoch, and then gives the optimizer the newly
        trainable parameters. Only `Gradual` changes anything; a strategy may only add trainable
        parameters during a run, never take them away.
        """
        return False

    def _kept_in_eval(self, model: TransferModel) -> list[nn.Module]:
        return []

    def layer_lr_decay(self) -> float:
        return getattr(self.options, "layer_lr_decay", 1.0)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "options": asdict(self.options)}


class FeatureExtraction(Strategy):
    name = "feature_extraction"
    frozen_backbone = True

    def _unfreeze(self, model: TransferModel) -> None:
        pass

    def _kept_in_eval(self, model: TransferModel) -> list[nn.Module]:
        return [model.backbone]


class Partial(Strategy):
    name = "partial"

    def check(self, backbone: nn.Module) -> None:
        depth, wanted = len(backbone.blocks()), self.options.unfreeze_last
        if wanted > depth:
            raise StrategyError(
                f"unfreeze_last={wanted}, but this model has {depth} layers. Use unfreeze_last between "
                f"1 and {depth}, or strategy='full' to train everything."
            )

    def _unfreeze(self, model: TransferModel) -> None:
        blocks = model.backbone.blocks()
        for block in blocks[len(blocks) - self.options.unfreeze_last :]:
            block.requires_grad_(True)
        _unfreeze_the_rest(model.backbone)

    def _kept_in_eval(self, model: TransferModel) -> list[nn.Module]:
        blocks = model.backbone.blocks()
        return [model.backbone.stem(), *blocks[: len(blocks) - self.options.unfreeze_last]]


class Full(Strategy):
    name = "full"

    def _unfreeze(self, model: TransferModel) -> None:
        model.backbone.requires_grad_(True)


class Lora(Strategy):
    name = "lora"

    def check(self, backbone: nn.Module) -> None:
        if hasattr(backbone.encoder, "peft_config"):
            return
        available = backbone.linear_layer_names()
        missing = [t for t in self._targets(backbone) if t not in available]
        if missing:
            raise StrategyError(
                f"LoRA target module(s) {missing} not found in this {backbone.model_type} model. "
                f"Its Linear layers are: {', '.join(available)}. Set target_modules to some of them."
            )

    def _kept_in_eval(self, model: TransferModel) -> list[nn.Module]:
        # The base weights are frozen, BatchNorm statistics included: the saved adapter must
        # reproduce the model, and a moving running mean is not in it.
        return [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def _targets(self, backbone: nn.Module) -> list[str]:
        return list(self.options.target_modules or backbone.default_lora_targets())

    def _unfreeze(self, model: TransferModel) -> None:
        backbone = model.backbone
        if hasattr(backbone.encoder, "peft_config"):  # adapters already in place (reloaded model)
            _set_lora_trainable(backbone.encoder)
            return
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as error:
            raise StrategyError("strategy='lora' needs peft: pip install peft") from error
        targets = self._targets(backbone)
        config = LoraConfig(r=self.options.r, lora_alpha=self.options.lora_alpha, lora_dropout=self.options.lora_dropout,
                            target_modules=list(targets), bias="none")
        backbone.encoder = get_peft_model(backbone.encoder, config)
        _set_lora_trainable(backbone.encoder)


class Gradual(Strategy):
    """ULMFiT's gradual unfreezing, top down, one layer group at a time.

    Layer groups come from the backbone contract: the blocks from the last to the first, then the
    stem. Epoch 1 trains the head alone (ULMFiT's first stage: the new, random head's large early
    gradients never reach the pretrained layers); each later epoch unfreezes `groups_per_epoch` more
    groups. What sits outside the stem and the blocks (e.g. a final norm) trains with the top group.
    Frozen groups stay in eval mode (no dropout), as in `Partial`. With groups_per_epoch=1 on a
    6-layer encoder (7 groups), epoch 8 is the first to train everything.
    """

    name = "gradual"

    def _unfreeze(self, model: TransferModel) -> None:  # apply(): the state of epoch 1, the head alone
        model.keep_in_eval(self._groups(model.backbone))

    def on_epoch_start(self, model: TransferModel, epoch: int) -> bool:
        groups = self._groups(model.backbone)
        depth = min((epoch - 1) * self.options.groups_per_epoch, len(groups))
        before = [p.requires_grad for p in model.parameters()]
        model.backbone.requires_grad_(False)
        model.head.requires_grad_(True)
        for group in groups[:depth]:
            group.requires_grad_(True)
        if depth:
            _unfreeze_the_rest(model.backbone)
        model.keep_in_eval(groups[depth:])
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info("gradual: epoch %d trains %s (%d of %d groups), %s trainable parameters.", epoch,
                    _describe_depth(depth, len(groups) - 1), depth, len(groups), f"{trainable:,}")
        return before != [p.requires_grad for p in model.parameters()]

    @staticmethod
    def _groups(backbone: nn.Module) -> list[nn.Module]:
        """Layer groups top down: the last block first, the stem last."""
        return [*reversed(backbone.blocks()), backbone.stem()]


def _describe_depth(depth: int, blocks: int) -> str:
    """'the head only', 'the head + layers 5-6', 'the head + layers 1-6 + the stem' (layers count from 1 at the bottom)."""
    if depth == 0:
        return "the head only"
    top = min(depth, blocks)
    layers = f"layer {blocks}" if top == 1 else f"layers {blocks - top + 1}-{blocks}"
    return f"the head + {layers}{' + the stem' if depth > blocks else ''}"


def _unfreeze_the_rest(backbone: nn.Module) -> None:
    """What sits above the blocks (e.g. a final LayerNorm) feeds the head directly: it trains with them."""
    inside = {id(p) for block in backbone.blocks() for p in block.parameters()} | {id(p) for p in backbone.stem().parameters()}
    for parameter in backbone.parameters():
        if id(parameter) not in inside:
            parameter.requires_grad_(True)


def _set_lora_trainable(encoder: nn.Module) -> None:
    for name, parameter in encoder.named_parameters():
        parameter.requires_grad_("lora_" in name)


STRATEGIES: dict[str, type[Strategy]] = {
    "feature_extraction": FeatureExtraction,
    "partial": Partial,
    "full": Full,
    "lora": Lora,
    "gradual": Gradual,
}


def make_strategy(name: str, options: dict[str, Any] | None = None) -> Strategy:
    """The strategy `name` with its options checked (unknown names and options get a "did you mean")."""
    if name not in STRATEGIES:
        raise StrategyError(f"Unknown strategy {name!r}: {did_you_mean(name, STRATEGIES)}")
    return STRATEGIES[name](build(STRATEGY_OPTIONS[name], dict(options or {}), source=f"the {name!r} strategy options"))


def parameter_groups(model: TransferModel, strategy: Strategy, learning_rate: float, head_learning_rate: float,
                     weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups over trainable parameters only.

    Rules: the head gets `head_learning_rate`; block i of L gets ``learning_rate * decay**(L-1-i)``
    and the stem ``learning_rate * decay**L`` (layer-wise decay; 1.0 = off); no weight decay on 1-D
    tensors (biases, norms).
    """
    decay = strategy.layer_lr_decay()
    rates: dict[int, float] = {id(p): head_learning_rate for p in model.head.parameters()}
    if decay != 1.0:
        blocks = model.backbone.blocks()
        for depth, block in enumerate(reversed(blocks)):
            rates.update({id(p): learning_rate * decay**depth for p in block.parameters()})
        rates.update({id(p): learning_rate * decay ** len(blocks) for p in model.backbone.stem().parameters()})
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for parameter in model.parameters():
        if parameter.requires_grad:
            key = (rates.get(id(parameter), learning_rate), weight_decay if parameter.ndim >= 2 else 0.0)
            groups.setdefault(key, []).append(parameter)
    return [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()]
