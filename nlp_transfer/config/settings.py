"""Typed settings: one dataclass field, one help text, one place.

No torch import here, so reading and validating settings is instant and fails before anything heavy
is loaded. Validation only raises; it never rewrites a value. Values left as ``None`` mean "the
strategy's default" and are resolved by `resolve_training` into a new object.

    >>> settings = build(TrainingConfig, {"epochs": 3, "batch_size": 16})
    >>> settings.epochs
    3
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from nlp_transfer.errors import ConfigError, did_you_mean

__all__ = [
    "TrainingConfig",
    "DataConfig",
    "build",
    "resolve_training",
    "passes_per_epoch",
    "check_threshold",
]

T = TypeVar("T")


def _f(default: Any, help: str, modality: str | None = None) -> Any:
    """A dataclass field whose help text is stored once, as metadata; `modality` ("text" or
    "vision") marks a setting only that kind of model has (Python keywords follow it)."""
    metadata = {"help": help, **({"modality": modality} if modality else {})}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainingConfig:
    """How `fit` trains. ``None`` means the strategy's default (see `strategies.STRATEGIES`)."""

    epochs: int | None = _f(None, "Passes over the training data. Default depends on the strategy.")
    min_steps: int | None = _f(
        None, "Fewest optimizer steps: on small data each epoch passes over the training set several times (reshuffled "
              "each pass) until the run makes this many; evaluation stays once per epoch. Default: the strategy's when "
              "epochs is unset (text fine-tuning: chosen on few-shot validation splits, bench/RESULTS.md), else 0, so "
              "an explicit epochs means passes over the data.")
    batch_size: int = _f(32, "Training examples per device per optimizer step (before accumulation).")
    eval_batch_size: int = _f(64, "Examples per batch for evaluation and prediction.")
    learning_rate: float | None = _f(None, "Peak learning rate of the encoder's trainable weights.")
    head_learning_rate: float | None = _f(None, "Peak learning rate of the new head.")
    weight_decay: float = _f(0.01, "AdamW weight decay; never applied to biases and LayerNorm (1-D) weights.")
    warmup_ratio: float = _f(0.1, "Share of the optimizer steps spent warming the learning rate up from 0.")
    scheduler: Literal["linear", "cosine", "constant"] = _f("linear", "Learning-rate schedule after warmup.")
    gradient_accumulation_steps: int = _f(1, "Batches accumulated per optimizer step.")
    max_grad_norm: float | None = _f(1.0, "Clip the gradient norm to this value; null turns clipping off.")
    mixed_precision: Literal["no", "bf16", "fp16"] | None = _f(
        None, "Autocast precision: bf16 (CPU or GPU), fp16 (GPU) or no. Unset: the launcher's choice "
              "(accelerate launch --mixed_precision, or an accelerate config file), else no.")
    seed: int = _f(42, "Seed for initialisation, data order and the validation split.")
    seeds: int = _f(1, "How many seeds `compare` runs per strategy: train.seed, train.seed+1, ...; each seed also draws "
                       "the head/adapters, data order, validation hold-out and few-shot sample. `train` runs one seed.")
    early_stopping_patience: int | None = _f(None, "Stop after this many evaluations without improvement.")
    metric_for_best_model: str | None = _f(None, "Metric that selects the best epoch; default: the task's main metric.")
    load_best_model_at_end: bool = _f(True, "Restore the weights of the best evaluation at the end of training.")
    logging_steps: int = _f(50, "Log loss and learning rate every this many optimizer steps.")
    group_by_length: bool = _f(True, "Build training batches of similar length (less padding), shuffled across batches.")
    cache_features: bool = _f(True, "With a frozen encoder, encode the data once and train the head on cached features.")
    feature_cache_dir: str | None = _f(None, "Where cached features are kept for later runs (keyed by weights, pooling, precision "
                                             "and token ids); default ~/.cache/nlp_transfer/features; 'memory' keeps them in memory only.")
    extra_metrics: list[str] = _f([], "Further `evaluate` metric names (need the Hub, so online only).")
    checkpoint_dir: str | None = _f(None, "Folder for resumable checkpoints (none when unset); `fit(resume=True)` or "
                                          "`train --resume` continues from its newest.")
    save_steps: int | None = _f(None, "With checkpoint_dir: also save every this many optimizer steps.")
    save_each_epoch: bool = _f(True, "With checkpoint_dir: save at the end of every epoch.")
    save_total_limit: int = _f(2, "Checkpoints kept: the newest this many, plus the best epoch's.")
    cpu: bool = _f(False, "Train on the CPU even when a GPU is present.")
    report_to: list[str] = _f([], "Experiment trackers, through accelerate: tensorboard, trackio, mlflow, wandb, comet_ml, "
                                  "aim, clearml, dvclive, swanlab. They get the hyperparameters, per-step loss and learning "
                                  "rate, per-epoch metrics and the final metrics, from the main process. Default: none.")
    logging_dir: str | None = _f(None, "Where file-based trackers (tensorboard) write. Default: the run folder's logs/ "
                                       "under `nlp-transfer train`, ./runs for `fit`.")
    num_workers: int | None = _f(None, "DataLoader worker processes that read and preprocess examples while the model "
                                       "computes (images: decode, resize, augment). Default: images min(4, CPU cores - 1), "
                                       "text 0 (tokenised up front). Results do not depend on it.")
    calibration: Literal["auto", "temperature", "none"] = _f(
        "auto", "Single-label: after training, fit a temperature T on the evaluation split (minimum NLL) and fold 1/T "
                "into the output layer, so probabilities mean what they say; accuracy is unchanged. 'auto' applies "
                "T only when it lowers the cross-fitted held-out NLL by over 1%; 'temperature' always; 'none' never. "
                "Other tasks: skipped by 'auto'; 'temperature' is an error.")

    def __post_init__(self) -> None:
        _validate_fields(self)
        _positive(self, "batch_size", "eval_batch_size", "gradient_accumulation_steps", "logging_steps", "save_total_limit",
                  "seeds")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"num_workers must be 0 (read in the training process) or more, got {self.num_workers}.")
        if self.save_steps is not None and self.save_steps < 1:
            raise ConfigError(f"save_steps must be at least 1 (or null), got {self.save_steps}.")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}.")
        if self.min_steps is not None and self.min_steps < 0:
            raise ConfigError(f"min_steps must be 0 (epochs as they are) or more optimizer steps, got {self.min_steps}.")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        for name in ("learning_rate", "head_learning_rate"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}.")


@dataclass
class DataConfig:
    """Where the inputs and labels are in the user's data, and how text becomes tokens and images become tensors."""

    text_column: str = _f("text", "Column with the text (the first sentence for pairs).")
    text_pair_column: str | None = _f("text_pair", "Column with the second sentence of a pair; used when present.")
    label_column: str = _f("label", "Column with the label: a name, a list of names (multi-label) or a number (regression).")
    max_length: int = _f(128, "Longer texts are truncated to this many tokens; at most the model's position limit "
                              "(the default 128 is lowered to a smaller limit, other values past it are errors).")
    validation_split: float = _f(0.1, "Share of train held out (seeded) for evaluation when no eval_data is given; 0 disables.")
    per_class_limit: int | None = _f(None, "Keep at most k training examples per class, drawn with the fit's seed so every "
                                           "seed draws other examples; for learning curves and few-shot runs. Single-label "
                                           "only; applied after the validation hold-out, so evaluation keeps its size.")
    image_column: str = _f("image", "Images: the column with image paths (relative to the data file) or images.")
    augment: bool = _f(True, "Images: light training augmentation (random resized crop of 70-100%); none for evaluation.")
    hflip: bool = _f(True, "Images: with augment, also flip training images left-right (turn off for digits, text, ...).")
    skip_bad_images: bool = _f(False, "Images: leave out files that cannot be decoded, with one warning naming them, instead "
                                      "of stopping with an error. (Files that are not photos by extension, e.g. a .txt or "
                                      ".gif in a class folder, are always skipped with a warning, as torchvision's "
                                      "ImageFolder does.)")
    tokens_column: str = _f("tokens", "Tagging: the column with each sentence's words (a list of strings).", "text")
    tags_column: str = _f("tags", "Tagging: the column with each word's tag (a list as long as the words).", "text")
    tag_scheme: Literal["auto", "iob1", "iob2", "bioes"] = _f(
        "auto", "Tagging: how the tags mark entities; all are read as IOB2. auto: BIOES when S-/E- tags occur, IOB1 when "
                "most entities start with I-, else IOB2 (an I- that cannot continue its predecessor is repaired, with a warning).",
        "text")
    conll_tag_column: int = _f(-1, "Tagging: which column of a CoNLL file holds the tag (0 is the word; -1 the last).", "text")
    label_all_tokens: bool = _f(False, "Tagging: train every sub-token of a word (continuations as I-), not only its first.",
                                "text")
    stride: int = _f(32, "Tagging: sub-tokens shared by consecutive windows of a sentence longer than max_length "
                         "(at most half a window).", "text")

    def __post_init__(self) -> None:
        _validate_fields(self)
        _positive(self, "max_length")
        if self.per_class_limit is not None and self.per_class_limit < 1:
            raise ConfigError(f"per_class_limit must be at least 1 example per class (or null for all), got {self.per_class_limit}.")
        if not 0.0 <= self.validation_split < 1.0:
            raise ConfigError(f"validation_split must be in [0, 1), got {self.validation_split}.")
        if self.stride < 0:
            raise ConfigError(f"stride must be 0 or more sub-tokens, got {self.stride}.")


def resolve_training(settings: TrainingConfig, strategy: str, modality: str = "text") -> TrainingConfig:
    """A copy of `settings` with every ``None`` default filled from the strategy's (and modality's) defaults."""
    from nlp_transfer.strategies import strategy_defaults  # the registry imports this module

    defaults = strategy_defaults(strategy, modality)
    filled = {key: value for key, value in defaults.items() if getattr(settings, key) is None}
    filled["epochs"] = int(filled.get("epochs", settings.epochs))
    if settings.min_steps is None:  # the strategy's floor only stands in for epochs the user did not choose
        filled["min_steps"] = int(defaults.get("min_steps", 0)) if settings.epochs is None else 0
    return dataclasses.replace(settings, **filled)


def passes_per_epoch(settings: TrainingConfig, examples: int, processes: int = 1) -> int:
    """How many shuffled passes over `examples` each epoch makes, so that a resolved `settings`
    trains for at least `min_steps` optimizer steps: 1 unless the data is small."""
    batches = math.ceil(math.ceil(examples / settings.batch_size) / processes)
    steps_per_pass = math.ceil(batches / settings.gradient_accumulation_steps)
    return max(1, math.ceil((settings.min_steps or 0) / (max(steps_per_pass, 1) * int(settings.epochs))))


def build(cls: type[T], values: dict[str, Any], prefix: str = "", source: str = "") -> T:
    """Create `cls` from a mapping; errors name the key path (`prefix` + key) and the `source`.

    Unknown keys get the closest valid one; a wrong type or value names what was expected.
    """
    place = f" in {source}" if source else ""
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            raise ConfigError(f"Unknown setting {prefix + str(key)!r}{place}: "
                              f"{did_you_mean(prefix + str(key), [prefix + n for n in names])}")
    try:
        return cls(**values)
    except ConfigError as error:
        raise ConfigError(f"{prefix}{error}{f' (in {source})' if source else ''}") from None


def _validate_fields(obj: Any) -> None:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not _matches(value, hints[f.name]):
            hint = "."
            if typing.get_origin(hints[f.name]) is Literal and isinstance(value, str):
                close = difflib.get_close_matches(value, [str(a) for a in typing.get_args(hints[f.name])], n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ConfigError(
                f"{f.name} must be {_describe(hints[f.name])}, got {value!r} ({type(value).__name__}){hint}"
            )


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return True
    if origin is Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is dict:
        return "a mapping"
    if args:
        return " or ".join(_describe(a) for a in args) if origin is not list else f"a list of {_describe(args[0])}"
    if annotation is type(None):
        return "null"
    name = annotation.__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def check_threshold(threshold: Any, key: str = "threshold") -> None:
    """The multi-label decision threshold is a probability strictly between 0 and 1."""
    number = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
    if not number or not 0.0 < float(threshold) < 1.0:
        raise ConfigError(
            f"{key}={threshold!r} is outside (0, 1): it is the probability at or above which a label is "
            "predicted (multi-label). Use a value such as 0.5 (higher: fewer, surer labels)."
        )


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        if getattr(obj, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(obj, name)}.")


def _in_unit_interval(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{name} must be in (0, 1], got {value} (1.0 turns layer-wise decay off).")
