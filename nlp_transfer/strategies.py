"""The strategy layer: the only place that decides which weights train, and the registry of strategies.

A strategy freezes and unfreezes the backbone's stem and blocks (and, for LoRA, adds adapters);
the head always trains. The same classes drive text encoders and vision backbones, because they
only use the backbone contract (`nlp_transfer.backbones.Backbone`).

Adding a strategy is one class (with its options dataclass beside it) and one `STRATEGIES` entry:
the config section, the CLI, the defaults, the model card and the test matrices read the registry.

No torch import at module level: the config layer reads the registry (names, options, defaults)
and must stay instant for ``--help``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, is_dataclass
from typing import TYPE_CHECKING, Any

from nlp_transfer.config.settings import _f, _in_unit_interval, _positive, _validate_fields, build
from nlp_transfer.errors import ConfigError, StrategyError, did_you_mean

if TYPE_CHECKING:
    import torch
    from torch import nn

    from nlp_transfer.backbones import Backbone
    from nlp_transfer.modeling.transfer_model import TransferModel

__all__ = ["Strategy", "FeatureExtraction", "Partial", "Full", "Lora", "Gradual", "Contrastive", "StrategySpec",
           "STRATEGIES", "FeatureExtractionOptions", "PartialOptions", "FullOptions", "LoraOptions", "GradualOptions",
           "ContrastiveOptions",
           "make_strategy", "strategy_spec", "supports", "strategy_defaults", "parameter_groups"]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------- options (one small dataclass per strategy)
@dataclass
class FeatureExtractionOptions:
    """Freeze the whole encoder (kept in eval mode, no dropout); only the new head trains."""


@dataclass
class PartialOptions:
    """Train the top `unfreeze_last` encoder layers and the head; embeddings and lower layers stay frozen."""

    unfreeze_last: int = _f(2, "How many of the top encoder layers train.")
    layer_lr_decay: float = _f(1.0, "Learning rate multiplier per layer going down (1.0 = off).")

    def __post_init__(self) -> None:
        _validate_fields(self)
        _positive(self, "unfreeze_last")
        _in_unit_interval(self, "layer_lr_decay")


@dataclass
class FullOptions:
    """Train every weight."""

    layer_lr_decay: float = _f(1.0, "Learning rate multiplier per layer going down (1.0 = off, 0.9 is common).")

    def __post_init__(self) -> None:
        _validate_fields(self)
        _in_unit_interval(self, "layer_lr_decay")


@dataclass
class LoraOptions:
    """Low-rank adapters (peft LoRA) in the encoder; the base weights stay frozen, the head trains."""

    r: int = _f(8, "Rank of the LoRA update matrices.")
    lora_alpha: int = _f(16, "LoRA scaling numerator (the update is scaled by lora_alpha / r).")
    lora_dropout: float = _f(0.1, "Dropout on the LoRA input (named as in peft, apart from the head's dropout).")
    target_modules: list[str] | None = _f(None, "Linear layer names to adapt; default chosen per architecture.")

    def __post_init__(self) -> None:
        _validate_fields(self)
        _positive(self, "r", "lora_alpha")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        if self.target_modules is not None and not self.target_modules:
            raise ConfigError("target_modules is empty; give layer names or leave it unset for the default.")


@dataclass
class GradualOptions:
    """Gradual unfreezing (ULMFiT): the head alone first, then more layers from the top each epoch."""

    groups_per_epoch: int = _f(1, "Layer groups unfrozen at each epoch after the first (the embeddings are the last group).")
    layer_lr_decay: float = _f(0.9, "Learning rate multiplier per layer going down (1.0 = off; ULMFiT's 1/2.6 = 0.38).")

    def __post_init__(self) -> None:
        _validate_fields(self)
        _positive(self, "groups_per_epoch")
        _in_unit_interval(self, "layer_lr_decay")


@dataclass
class ContrastiveOptions:
    """SetFit: the encoder tuned on same/different-label sentence pairs first, then frozen; a head on its embeddings."""

    num_iterations: int = _f(20, "Rounds of pair sampling: each round gives every example one positive and one negative "
                                 "pair (SetFit's default 20).")
    max_pairs: int | None = _f(4000, "At most this many pairs (a seeded random subset), so larger training sets stay "
                                     "affordable; null: all of them.")
    pair_epochs: int = _f(1, "Passes over the pairs.")
    pair_batch_size: int = _f(16, "Pairs per optimizer step while tuning the encoder.")

    def __post_init__(self) -> None:
        _validate_fields(self)
        _positive(self, "num_iterations", "pair_epochs", "pair_batch_size")
        if self.max_pairs is not None:
            _positive(self, "max_pairs")


# ----------------------------------------------------------------- strategies
class Strategy:
    """Base class. `apply` sets ``requires_grad`` on every parameter of the model."""

    name: str = ""
    frozen_backbone: bool = False  # True: backbone outputs are fixed while the head trains, so features can be cached
    tunes_backbone_first: bool = False  # True: `tune_backbone` trains the encoder before the head (contrastive)

    def __init__(self, options: Any) -> None:
        self.options = options

    def check(self, backbone: Backbone) -> None:
        """Raise `StrategyError` when the options do not fit this backbone (before anything trains)."""

    def check_task(self, task: str, pairs: bool = False) -> None:
        """Raise `StrategyError` when the strategy cannot learn this task (or sentence pairs)."""

    def tune_backbone(self, model: TransferModel, train_set: Any, collate: Any, seed: int, learning_rate: float,
                      accelerator: Any) -> dict[str, Any] | None:
        """A stage that trains the backbone before the head, where the strategy has one; what it did."""
        return None

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

    def check(self, backbone: Backbone) -> None:
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

    def check(self, backbone: Backbone) -> None:
        if backbone.has_adapters:
            return
        available = backbone.linear_layer_names()
        missing = [t for t in self._targets(backbone) if t not in available]
        if missing:
            raise StrategyError(
                f"LoRA target module(s) {missing} not found in this {backbone.model_type} model. "
                f"Its Linear layers are: {', '.join(available)}. Set target_modules to some of them."
            )

    def _kept_in_eval(self, model: TransferModel) -> list[nn.Module]:
        from torch import nn

        # The base weights are frozen, BatchNorm statistics included: the saved adapter must
        # reproduce the model, and a moving running mean is not in it.
        return [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def _targets(self, backbone: Backbone) -> list[str]:
        return list(self.options.target_modules or backbone.default_lora_targets())

    def _unfreeze(self, model: TransferModel) -> None:
        backbone = model.backbone
        if backbone.has_adapters:  # adapters already in place (reloaded model)
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
    def _groups(backbone: Backbone) -> list[nn.Module]:
        """Layer groups top down: the last block first, the stem last."""
        return [*reversed(backbone.blocks()), backbone.stem()]


class Contrastive(Strategy):
    """SetFit (Tunstall et al. 2022): contrastive tuning of the encoder on pairs of labelled examples,
    then the encoder frozen and a new head trained on its embeddings (cached, as in feature_extraction).

    The tuning stage trains every encoder weight at the encoder learning rate (`train.learning_rate`);
    the head then trains for `train.epochs` at `train.head_learning_rate`, its best epoch chosen on
    the evaluation data. Single-label classification of single texts: a pair's label says whether
    two examples belong together, which needs one class per example.
    """

    name = "contrastive"
    frozen_backbone = True
    tunes_backbone_first = True

    def check(self, backbone: Backbone) -> None:
        if getattr(backbone, "hf_config", None) is None:  # text backbones carry their transformers config
            raise StrategyError("strategy 'contrastive' tunes a sentence encoder on text pairs; for images use "
                                "feature_extraction, partial, full or lora.")

    def check_task(self, task: str, pairs: bool = False) -> None:
        if task != "single_label":
            raise StrategyError(f"strategy 'contrastive' needs single-label classification (its pairs are 'same label' "
                                f"or 'different label'), not task {task!r}. Use feature_extraction or lora for it.")
        if pairs:
            raise StrategyError("strategy 'contrastive' embeds single texts, so it cannot take sentence pairs "
                                "(text_pair). Use lora or full for pair tasks.")

    def _unfreeze(self, model: TransferModel) -> None:
        pass

    def _kept_in_eval(self, model: TransferModel) -> list[nn.Module]:
        return [model.backbone]

    def tune_backbone(self, model: TransferModel, train_set: Any, collate: Any, seed: int, learning_rate: float,
                      accelerator: Any) -> dict[str, Any]:
        from nlp_transfer.training.contrastive import PairSettings, sample_pairs, tune_encoder

        options = self.options
        labels = train_set.targets.numpy()
        pairs = sample_pairs(labels, options.num_iterations, seed, options.max_pairs)
        settings = PairSettings(num_iterations=options.num_iterations, max_pairs=options.max_pairs,
                                epochs=options.pair_epochs, batch_size=options.pair_batch_size, learning_rate=learning_rate)
        with torch_fork_rng(seed):
            done = tune_encoder(model.backbone, train_set, collate, pairs, settings, accelerator, seed)
        model.keep_in_eval(self._kept_in_eval(model))  # frozen again for the head
        return done


def torch_fork_rng(seed: int):
    """A seeded random state for a stage (dropout while tuning), the global one untouched."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def forked():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield

    return forked()


def _describe_depth(depth: int, blocks: int) -> str:
    """'the head only', 'the head + layers 5-6', 'the head + layers 1-6 + the stem' (layers count from 1 at the bottom)."""
    if depth == 0:
        return "the head only"
    top = min(depth, blocks)
    layers = f"layer {blocks}" if top == 1 else f"layers {blocks - top + 1}-{blocks}"
    return f"the head + {layers}{' + the stem' if depth > blocks else ''}"


def _unfreeze_the_rest(backbone: Backbone) -> None:
    """What sits above the blocks (e.g. a final LayerNorm) feeds the head directly: it trains with them."""
    inside = {id(p) for block in backbone.blocks() for p in block.parameters()} | {id(p) for p in backbone.stem().parameters()}
    for parameter in backbone.parameters():
        if id(parameter) not in inside:
            parameter.requires_grad_(True)


def _set_lora_trainable(encoder: nn.Module) -> None:
    for name, parameter in encoder.named_parameters():
        parameter.requires_grad_("lora_" in name)


@dataclass(frozen=True)
class StrategySpec:
    """One registered strategy: everything the rest of the package needs to know about it."""

    strategy: type[Strategy]
    options: type  # its options dataclass: the `strategy.<name>` config section, checked keywords in Python
    # epochs, encoder and head learning rate when none are set, per modality (README "How defaults are chosen"),
    # and where few-shot data needs it a floor of optimizer steps (min_steps)
    defaults: dict[str, dict[str, float]]
    card: str  # how the model card says what trained; {option} names are filled from the saved options
    needs: tuple[str, ...] = ()  # backbone members it relies on beyond the forward pass (see backbones.Backbone)
    modalities: tuple[str, ...] = ("text", "vision")  # backbones it is tested on (the strategy x backbone matrix)
    # tasks it can learn (check_task refuses the others with the reason); None: every task
    tasks: tuple[str, ...] | None = None


# Text defaults measured on SST-2 with MiniLM-L6 (bench/defaults_vs_references.py). Vision defaults chosen on
# a validation split (49 of the 244 training photos) by bench/vision_ants_bees.py: ImageNet
# EfficientNet-Lite0 on ants vs bees, the common case of a CNN with ImageNet weights on a few hundred
# photos; the fine-tuning strategies peak within 1-5 of the 8 epochs, at rates 3-10x below what a
# CNN pre-trained on digits wanted (bench/vision_defaults.py, which the digits demo's recipes follow).
# bench/RESULTS.md has the sweeps.
# Text fine-tuning on few-shot data: at least this many optimizer steps (each epoch passes over the
# examples several times), chosen on the few-shot validation splits (bench/learning_curve.py --min-steps).
FEW_SHOT_MIN_STEPS = 100

STRATEGIES: dict[str, StrategySpec] = {
    "feature_extraction": StrategySpec(
        FeatureExtraction, FeatureExtractionOptions,
        {"text": {"epochs": 20, "learning_rate": 1e-3, "head_learning_rate": 1e-3},
         "vision": {"epochs": 30, "learning_rate": 1e-2, "head_learning_rate": 1e-2}},
        "the encoder frozen; only a new head was trained on its pooled features"),
    "partial": StrategySpec(
        Partial, PartialOptions,
        {"text": {"epochs": 3, "learning_rate": 1e-4, "head_learning_rate": 1e-3, "min_steps": FEW_SHOT_MIN_STEPS},
         "vision": {"epochs": 8, "learning_rate": 1e-4, "head_learning_rate": 1e-2}},
        "the top {unfreeze_last} encoder layers and a new head trained; the rest frozen", needs=("stem", "blocks")),
    "full": StrategySpec(
        Full, FullOptions,
        {"text": {"epochs": 3, "learning_rate": 5e-5, "head_learning_rate": 1e-3, "min_steps": FEW_SHOT_MIN_STEPS},
         "vision": {"epochs": 8, "learning_rate": 3e-4, "head_learning_rate": 1e-2}},
        "every weight trained", needs=("stem", "blocks")),
    "lora": StrategySpec(
        Lora, LoraOptions,
        {"text": {"epochs": 3, "learning_rate": 1e-3, "head_learning_rate": 1e-3, "min_steps": FEW_SHOT_MIN_STEPS},
         "vision": {"epochs": 8, "learning_rate": 3e-4, "head_learning_rate": 1e-2}},
        "LoRA adapters (r={r}, alpha={lora_alpha}) trained in the encoder, with a new head; the base weights frozen",
        needs=("encoder", "default_lora_targets", "linear_layer_names")),
    "gradual": StrategySpec(
        Gradual, GradualOptions,
        # text: not measured on SST-2: partial's rates (the top layer trains first, as in partial),
        # and 4 epochs, the head and then the top 3 layers, about partial's depth in one epoch more;
        {"text": {"epochs": 4, "learning_rate": 1e-4, "head_learning_rate": 1e-3},
         "vision": {"epochs": 8, "learning_rate": 1e-4, "head_learning_rate": 1e-2}},
        "gradual unfreezing: a new head first, then {groups_per_epoch} more encoder layer group(s) from the top "
        "each epoch, with layer-wise learning-rate decay {layer_lr_decay}", needs=("stem", "blocks")),
    "contrastive": StrategySpec(
        Contrastive, ContrastiveOptions,
        # SetFit's body learning rate (2e-5); the head's epochs and rate chosen on SST-2 / TREC validation
        # splits at 8-64 examples per class (bench/learning_curve.py)
        {"text": {"epochs": 20, "learning_rate": 2e-5, "head_learning_rate": 1e-2}},
        "the encoder tuned contrastively (SetFit) on up to {max_pairs} same/different-label pairs "
        "({num_iterations} rounds), then frozen; a new head trained on its embeddings",
        modalities=("text",), tasks=("single_label",)),
}


def supports(name: str, modality: str, task: str) -> bool:
    """Whether strategy `name` runs on this modality and task (the test matrices and compare read it)."""
    spec = strategy_spec(name)
    return modality in spec.modalities and (spec.tasks is None or task in spec.tasks)


def strategy_spec(name: str) -> StrategySpec:
    """The registry entry of `name`; an unknown name is a StrategyError with a "did you mean"."""
    if name == "auto":  # a run setting, resolved from the data before any model is built
        raise StrategyError("strategy 'auto' is chosen from the training data by a run: `nlp-transfer train` or "
                            "`nlp_transfer.train(config)` with strategy.name: auto. In Python, "
                            "`nlp_transfer.selection.auto.choose_strategy(train_labels)` returns the name to pass here.")
    if name not in STRATEGIES:
        raise StrategyError(f"Unknown strategy {name!r}: {did_you_mean(name, STRATEGIES)}")
    return STRATEGIES[name]


def make_strategy(name: str, options: dict[str, Any] | Any = None) -> Strategy:
    """The strategy `name` with its options checked: a mapping (unknown names get a "did you mean")
    or the strategy's own options dataclass, e.g. ``make_strategy("lora", LoraOptions(r=16))``."""
    spec = strategy_spec(name)
    if is_dataclass(options) and not isinstance(options, type):
        if not isinstance(options, spec.options):
            raise ConfigError(f"strategy {name!r} takes {spec.options.__name__}, got {type(options).__name__}.")
        return spec.strategy(options)
    return spec.strategy(build(spec.options, dict(options or {}), source=f"the {name!r} strategy options"))


def strategy_defaults(name: str, modality: str = "text") -> dict[str, float]:
    """Epochs, encoder and head learning rates a strategy gets when none are set, per modality."""
    return strategy_spec(name).defaults[modality]


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
