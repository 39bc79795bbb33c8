"""The run configuration: one typed tree (model, strategy, data, train, eval, output, run).

It is the single source of truth for a run: YAML recipes fill it, ``section.key=value`` overrides
from the command line change it, and `dump_config` writes it back (with the package version) so
that `load_config` reads an equal tree. No torch import here: a misspelt key fails in milliseconds.

    >>> config = load_config("configs/offline/minilm-intents-lora.yaml", ["train.epochs=3"])
    >>> config.strategy.name
    'lora'
    >>> load_config(None, ["train.epocs=3"])
    Traceback (most recent call last):
    ConfigError: Unknown setting 'train.epocs' in command-line override 'train.epocs=3': did you mean 'train.epochs'? ...
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nlp_transfer.backbones.embedded import DEFAULT_MODEL
from nlp_transfer.config.rank import RankConfig
from nlp_transfer.config.settings import DataConfig, TrainingConfig, _f, _validate_fields, build, check_threshold, resolve_training
from nlp_transfer.errors import ConfigError, did_you_mean

__all__ = [
    "RunConfig",
    "ModelSection",
    "StrategySection",
    "DataSection",
    "EvalSection",
    "OutputSection",
    "RunSection",
    "load_config",
    "with_overrides",
    "dump_config",
    "parse_overrides",
    "resolve",
    "defaults_yaml",
    "VERSION_KEY",
]

VERSION_KEY = "nlp_transfer_version"


@dataclass
class ModelSection:
    """The pretrained model and the head put on it (the arguments of `TextClassifier.from_pretrained`
    or, with type vision, `ImageClassifier.from_pretrained`)."""

    type: Literal["text", "vision"] = _f("text", "text: a Hugging Face encoder (transformers); vision: a timm image model.")
    name_or_path: str = _f(DEFAULT_MODEL, "Hub id or local folder of the pretrained encoder (vision: a timm name, "
                                          "hf-hub: id, timm folder or weights file).")
    task: Literal["single_label", "multi_label", "regression", "token_classification"] = _f(
        "single_label", "What the head predicts; token_classification: a tag per word (named entities, ...).")
    labels: list[Any] | None = _f(None, "Label names in output order; default: the sorted labels of the training data.")
    num_labels: int | None = _f(None, "Number of labels, when they are integer ids 0..n-1 not all present in train.")
    pooling: Literal["auto", "cls", "mean", "first"] = _f(
        "auto", "Token pooling; auto = the checkpoint's own (mean for sentence-transformers). Tagging pools each word's "
                "sub-tokens: first (auto) or mean.", "text")
    pool_layers: int | None = _f(None, "Combine the top N layers' outputs; default 4 with a frozen encoder, else 1.", "text")
    combine_layers: Literal["mean", "concat"] = _f("mean", "How the top pool_layers layers combine: their mean, or "
                                                           "concatenated (pool_layers times wider features).", "text")
    head: Literal["auto", "linear", "mlp"] = _f("auto", "Head shape; auto = the architecture's own, or a normalised MLP when frozen.")
    dropout: float = _f(0.1, "Dropout in the head.")
    threshold: float = _f(0.5, "Multi-label decision threshold on each label's probability.")
    random_init: bool = _f(False, "Same architecture, random weights: the from-scratch control.")
    num_layers: int | None = _f(None, "Keep only the encoder's first N layers (pretrained weights and all); default: all.",
                                "text")
    trust_remote_code: bool = _f(False, "Run model code from the Hub repository (only for sources you trust).", "text")
    allow_pickle: bool = _f(False, "Allow loading .bin/.pt pickle weights (can run code; only for files you trust).")
    image_size: int | None = _f(None, "Vision: input resolution in pixels; default the model's own (e.g. 224).", "vision")
    architecture: str | None = _f(None, "Vision: the timm architecture of a weights file that has no config.json beside it.",
                                  "vision")
    model_args: dict[str, Any] | None = _f(None, "Vision: further timm.create_model arguments for a model name, "
                                                 "e.g. {channels: [32, 64, 128, 256], layers: [1, 1, 1, 1]}.", "vision")

    def __post_init__(self) -> None:
        _validate_fields(self)
        if not self.name_or_path:
            raise ConfigError("name_or_path is empty; give a Hub id or a local model folder.")
        if self.type == "vision" and self.name_or_path == DEFAULT_MODEL:
            raise ConfigError(f"model.type is vision but name_or_path is the default text model {DEFAULT_MODEL!r}; "
                              "set model.name_or_path to a timm model (e.g. resnet50) or a timm weights folder.")
        if self.type == "vision" and self.task == "token_classification":
            raise ConfigError("task=token_classification tags the words of a text; it needs type=text "
                              "(for images use single_label, multi_label or regression).")
        if self.num_layers is not None and self.num_layers < 1:
            raise ConfigError(f"model.num_layers={self.num_layers}; use a number of layers from 1 up, or leave it unset for all.")
        if self.pool_layers is not None and self.pool_layers < 1:
            raise ConfigError(f"model.pool_layers={self.pool_layers}; use a number of top layers from 1 up to the model's "
                              "layer count, or leave it unset (4 with a frozen encoder, else 1).")
        if self.image_size is not None and self.image_size < 16:
            raise ConfigError(f"model.image_size must be an integer of at least 16 pixels, got {self.image_size!r}.")
        check_threshold(self.threshold, "model.threshold")


def _strategy_section() -> type:
    """`StrategySection`, made from the registry: `name`, and one field per strategy that has options.

    Generated, so that registering a strategy is all it takes for ``strategy.<name>.<option>`` to
    exist in YAML, overrides, `show-config --defaults` and the dumped config.
    """
    from nlp_transfer.strategies import STRATEGIES

    names = (*STRATEGIES, "auto")
    fields = [("name", Literal[names], _f("feature_extraction", ", ".join(names[:-1]) + f" or {names[-1]} (`train` "
                                           "chooses from the training data's examples per class; selection/auto.py)."))]
    fields += [(name, spec.options, field(default_factory=spec.options, metadata={"help": spec.options.__doc__}))
               for name, spec in STRATEGIES.items() if dataclasses.fields(spec.options)]

    def options(self) -> dict[str, Any]:
        """The chosen strategy's options as keyword arguments (none for a strategy without options)."""
        section = getattr(self, self.name, None)
        return dataclasses.asdict(section) if section is not None else {}

    return dataclasses.make_dataclass(
        "StrategySection", fields,
        namespace={"__doc__": "Which strategy decides what trains, and each strategy's options (only `name`'s are used).",
                   "__post_init__": lambda self: _validate_fields(self), "options": options})


StrategySection = _strategy_section()
StrategySection.__module__ = __name__  # where it is defined, for pickling and for type hints


@dataclass
class DataSection(DataConfig):
    """Where the data comes from, and its columns. Splits are files, or split names of `dataset`."""

    dataset: str | None = _f(None, "A bundled dataset (support_intents) or a Hub dataset id; then train/validation/test are split names.")
    dataset_config: str | None = _f(None, "The Hub dataset's configuration (e.g. sst2 for nyu-mll/glue).")
    train: str | None = _f(None, "Training data: a .csv/.tsv/.json/.jsonl/.parquet file, or a split name of `dataset`.")
    validation: str | None = _f(None, "Evaluation data for each epoch; default: hold out `validation_split` of train.")
    test: str | None = _f(None, "Held-out data evaluated once at the end.")

    def data_config(self) -> DataConfig:
        """The columns and preprocessing settings a classifier uses (this section without the sources)."""
        return DataConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DataConfig)})


@dataclass
class EvalSection:
    """What is evaluated at the end of a run."""

    splits: list[Literal["validation", "test"]] = _f(["validation", "test"], "Splits scored at the end (those present).")
    save_predictions: bool = _f(False, "Also write each split's predictions to predictions-<split>.jsonl.")

    def __post_init__(self) -> None:
        _validate_fields(self)


@dataclass
class OutputSection:
    """Where the run folder goes and what it holds."""

    dir: str | None = _f(None, "Run folder; default runs/<run.name>.")
    overwrite: bool = _f(False, "Replace an existing non-empty run folder (only once the new run has finished).")
    save_model: bool = _f(True, "Write the trained model to <dir>/model.")
    merge_lora: bool = _f(False, "Save LoRA merged into plain encoder weights instead of as an adapter.")
    push_to_hub: bool = _f(False, "Push the model and its card to the Hugging Face Hub when the run has finished.")
    hub_model_id: str | None = _f(None, "Hub repository to push to, as user/name (or org/name).")
    hub_private: bool = _f(False, "Create the Hub repository as private.")

    def __post_init__(self) -> None:
        _validate_fields(self)
        if self.push_to_hub and not self.hub_model_id:
            raise ConfigError("push_to_hub is true but hub_model_id is not set; set output.hub_model_id=user/name.")


@dataclass
class RunSection:
    """Naming and logging."""

    name: str | None = _f(None, "Run name (model card title, default folder); default <model>-<strategy>.")
    log_level: Literal["debug", "info", "warning", "error"] = _f("info", "Logging verbosity.")

    def __post_init__(self) -> None:
        _validate_fields(self)


@dataclass
class RunConfig:
    """Everything a run needs. Sections are YAML mappings; keys are `section.field`."""

    model: ModelSection = field(default_factory=ModelSection)
    strategy: StrategySection = field(default_factory=StrategySection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalSection = field(default_factory=EvalSection)
    output: OutputSection = field(default_factory=OutputSection)
    run: RunSection = field(default_factory=RunSection)
    rank: RankConfig = field(default_factory=RankConfig)

    def __post_init__(self) -> None:
        _validate_fields(self)
        if self.data.per_class_limit is not None and self.model.task != "single_label":  # before any data is read
            raise ConfigError(f"data.per_class_limit={self.data.per_class_limit} needs single-label data, but "
                              f"model.task is {self.model.task!r}; set data.per_class_limit=null.")


# ----------------------------------------------------------------- loading and dumping
def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML recipe (or start from the defaults), apply ``key.path=value`` overrides, validate."""
    values: dict[str, Any] = {}
    source = "the defaults"
    if path is not None:
        values, source = _read_yaml(Path(path)), str(path)
    for key, value in parse_overrides(overrides):
        _set_dotted(values, key, value, f"command-line override '{key}=...'")
    if overrides:
        source = "command-line overrides" if path is None else f"{source} with command-line overrides"
    return _build_tree(RunConfig, values, "", source)


def with_overrides(config: RunConfig, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """A new config: `config` with ``key.path=value`` overrides applied and validated."""
    if not overrides:
        return config
    values = dataclasses.asdict(config)
    for key, value in parse_overrides(overrides):
        _set_dotted(values, key, value, f"command-line override '{key}=...'")
    return _build_tree(RunConfig, values, "", "command-line overrides")


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, Any]]:
    """``["train.epochs=3", "model.labels=[a, b]"]`` -> ``[("train.epochs", 3), ...]``; values are YAML."""
    import yaml

    parsed = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"Override {item!r} is not key=value; write e.g. train.epochs=3 or strategy.name=lora.")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"Override {item!r}: the value is not valid YAML ({error}).") from None
        parsed.append((key.strip(), value))
    return parsed


def dump_config(config: RunConfig) -> str:
    """YAML that `load_config` reads back to an equal config, stamped with the package version."""
    import yaml

    from nlp_transfer import __version__

    return yaml.safe_dump({VERSION_KEY: __version__, **dataclasses.asdict(config)}, sort_keys=False, allow_unicode=True)


def resolve(config: RunConfig) -> RunConfig:
    """Fill what the defaults leave open: the strategy's epochs and learning rates, run name, folder."""
    if config.strategy.name == "auto":
        raise ConfigError("strategy.name=auto is chosen from the training data when `train` reads it, so this "
                          "config has no strategy yet; `nlp-transfer train` resolves it (compare runs the strategies "
                          "you list instead).")
    name = config.run.name or f"{_short_model_name(config.model.name_or_path)}-{config.strategy.name}"
    return dataclasses.replace(
        config,
        train=resolve_training(config.train, config.strategy.name, config.model.type),
        run=dataclasses.replace(config.run, name=name),
        output=dataclasses.replace(config.output, dir=config.output.dir or f"runs/{name}"),
    )


def defaults_yaml() -> str:
    """Every setting with its default and help text, as a commented YAML recipe."""
    lines = ["# nlp_transfer run configuration: every setting, its default and what it does."]
    for f in dataclasses.fields(RunConfig):
        section = _class_of(RunConfig, f.name)
        lines += ["", f"{f.name}:  # {_first_line(section.__doc__)}", *_field_lines(section, indent="  ")]
    return "\n".join(lines) + "\n"


def _field_lines(cls: type, indent: str) -> list[str]:
    import yaml

    lines = []
    for f in dataclasses.fields(cls):
        nested = _class_of(cls, f.name)
        if nested is not None:
            lines.append(f"{indent}{f.name}:  # {_first_line(nested.__doc__)}")
            lines += _field_lines(nested, indent + "  ") or [f"{indent}  {{}}"]
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        value = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
        lines.append(f"{indent}{f.name}: {value}  # {f.metadata.get('help', '')}")
    return lines


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text else ""


# ----------------------------------------------------------------- internals
def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist. List the recipes with: ls configs/")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (model:, strategy:, data:, ...), got {type(values).__name__}.")
    values.pop(VERSION_KEY, None)  # written by dump_config; informative only
    return values


def _set_dotted(values: dict[str, Any], key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node, cls, prefix = values, RunConfig, ""
    for part in parts[:-1]:
        nested = _class_of(cls, part) if cls is not None else None
        if nested is None:
            names = [prefix + f.name for f in dataclasses.fields(cls)] if cls is not None else []
            raise ConfigError(f"Unknown section {prefix + part!r} in {source}: {did_you_mean(prefix + part, names)}")
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{prefix + part} is not a mapping in the config file, so {key} cannot be set.")
        node, cls, prefix = child, nested, prefix + part + "."
    last = parts[-1]
    names = [f.name for f in dataclasses.fields(cls)]
    if last not in names:
        raise _unknown_key(key, [prefix + n for n in names], source)
    if _class_of(cls, last) is not None and not isinstance(value, dict):
        raise ConfigError(f"{key} is a section; set one of its keys, e.g. {key}.{dataclasses.fields(_class_of(cls, last))[0].name}=...")
    node[last] = value


def _build_tree(cls: type, values: Any, prefix: str, source: str):
    """Build a dataclass (and its nested sections) from a mapping, with key paths in every error."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"{where} in {source} must be a mapping of settings, got {values!r}.")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            raise _unknown_key(prefix + str(key), [prefix + n for n in names], source)
    built = {}
    for key, value in values.items():
        nested = _class_of(cls, key)
        built[key] = _build_tree(nested, value, f"{prefix}{key}.", source) if nested else _parse_scalar(cls, key, value)
    return build(cls, built, prefix, source)


def _unknown_key(key: str, valid: list[str], source: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return ConfigError(f"Unknown setting {key!r} in {source}: did you mean {close[0]!r}? "
                           "Every setting: nlp-transfer show-config --defaults")
    return ConfigError(f"Unknown setting {key!r} in {source}: {did_you_mean(key, valid)}")


_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _parse_scalar(cls: type, key: str, value: Any) -> Any:
    # PyYAML reads 1e-3 (no dot) as a string; a float setting takes it as the number it means.
    annotation = typing.get_type_hints(cls)[key]
    accepts_float = annotation is float or float in typing.get_args(annotation)
    if accepts_float and isinstance(value, str) and _FLOAT.match(value.strip()):
        return float(value)
    # and YAML 1.1 reads `no` as false: a choice that has "no" among its words (mixed_precision) means the word
    if isinstance(value, bool) and not value and "no" in _choices(annotation):
        return "no"
    return value


def _choices(annotation: Any) -> tuple[Any, ...]:
    """The words of a Literal (also inside Optional), else nothing."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return tuple(word for arg in typing.get_args(annotation) for word in _choices(arg))


def _class_of(cls: type, name: str) -> type | None:
    """The dataclass type of field `name` of `cls`, when it is a nested section."""
    annotation = typing.get_type_hints(cls).get(name)
    return annotation if dataclasses.is_dataclass(annotation) else None


def _short_model_name(name_or_path: str) -> str:
    return Path(name_or_path.rstrip("/")).name or "model"
