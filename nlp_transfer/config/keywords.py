"""Python keywords onto config fields: the one mapping, so each setting is declared only once, in its dataclass.

`from_pretrained(**settings)` and `fit(**settings)` take the fields of the config sections as
keywords; this module says which field each keyword is, rejects unknown names with a "did you
mean", and builds the typed sections. Defaults, types and help come from the fields themselves.

    >>> chosen = model_settings("text", "bert-base-uncased", {"strategy": "lora", "r": 16, "max_length": 64})
    >>> chosen.strategy.lora.r, chosen.max_length, sorted(chosen.given)
    (16, 64, ['max_length', 'r', 'strategy'])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nlp_transfer.config.run import ModelSection, StrategySection
from nlp_transfer.config.settings import DataConfig, TrainingConfig, build
from nlp_transfer.errors import ConfigError, did_you_mean

__all__ = ["ModelSettings", "model_keywords", "model_settings", "fit_settings"]

# keyword -> (section, field) besides the model section's own fields
_MODEL_EXTRAS = {"strategy": (StrategySection, "name"), "max_length": (DataConfig, "max_length"),
                 "seed": (TrainingConfig, "seed")}
_NOT_KEYWORDS = {"type", "name_or_path"}  # the modality is the class; the model is the first argument


@dataclass(frozen=True)
class ModelSettings:
    """What `from_pretrained` was asked for, as typed sections, and which settings the caller chose."""

    model: ModelSection
    strategy: StrategySection
    max_length: int | None  # None: the default (128, lowered to the model's position limit)
    seed: int
    given: frozenset[str]  # chosen by the caller: the keywords passed, or typed values off their defaults

    def chose(self, name: str) -> bool:
        return name in self.given


def model_keywords(modality: str) -> dict[str, tuple[type, str]]:
    """Every `from_pretrained` keyword of this modality -> (the config section, the field it sets).

    The chosen strategy's options (``r=16``, ``unfreeze_last=2``) are keywords too; they map to
    ``StrategySection.<strategy>.<option>``.
    """
    keywords = {f.name: (ModelSection, f.name) for f in dataclasses.fields(ModelSection)
                if f.name not in _NOT_KEYWORDS and f.metadata.get("modality") in (None, modality)}
    keywords.update({k: v for k, v in _MODEL_EXTRAS.items() if not (k == "max_length" and modality != "text")})
    return keywords


def model_settings(modality: str, name_or_path: str, keywords: dict[str, Any], *, model: ModelSection | None = None,
                   strategy: Any = None) -> ModelSettings:
    """Typed sections from `from_pretrained`'s arguments: a `ModelSection` and a strategy (a name,
    a `StrategySection`, or a strategy's options dataclass), with keywords on top."""
    from nlp_transfer.strategies import STRATEGIES

    allowed = model_keywords(modality)
    strategy_name, options, given = _strategy_choice(strategy, keywords.pop("strategy", None))
    option_fields = {f.name for f in dataclasses.fields(STRATEGIES[strategy_name].options)}
    unknown = [k for k in keywords if k not in allowed and k not in option_fields]
    owners = [name for name, spec in STRATEGIES.items() if unknown and unknown[0] in
              {f.name for f in dataclasses.fields(spec.options)}]
    if owners:
        raise ConfigError(f"{unknown[0]!r} is an option of strategy {' / '.join(owners)}, but the strategy is "
                          f"{strategy_name!r}; pass strategy={owners[0]!r} with it, or leave {unknown[0]!r} out.")
    if unknown:
        raise ConfigError(f"Unknown from_pretrained setting {unknown[0]!r} for a {modality} model (strategy "
                          f"{strategy_name!r}): {did_you_mean(unknown[0], [*allowed, *option_fields])}")
    section_values = {k: v for k, v in keywords.items() if allowed.get(k, (None,))[0] is ModelSection}
    base = dataclasses.asdict(model) if model is not None else {}
    base.update(type=modality, name_or_path=name_or_path)
    built = build(ModelSection, {**base, **section_values}, "model.", "from_pretrained")
    merged = {**options, **{k: v for k, v in keywords.items() if k in option_fields}}
    chosen_options = build(STRATEGIES[strategy_name].options, merged, f"strategy.{strategy_name}.", "from_pretrained")
    has_section = strategy_name in {f.name for f in dataclasses.fields(StrategySection)}
    chosen_strategy = StrategySection(name=strategy_name, **({strategy_name: chosen_options} if has_section else {}))
    off_default = {f.name for f in dataclasses.fields(ModelSection) if f.name not in _NOT_KEYWORDS
                   and model is not None and getattr(model, f.name) != _default(f)}
    given |= set(keywords) | off_default
    return ModelSettings(built, chosen_strategy, keywords.get("max_length"), keywords.get("seed", TrainingConfig.seed),
                         frozenset(given))


def _strategy_choice(strategy: Any, keyword: Any) -> tuple[str, dict[str, Any], set[str]]:
    """(name, options, given) from the `strategy` argument: None, a name, a StrategySection or an options object."""
    from nlp_transfer.strategies import STRATEGIES, strategy_spec

    value = strategy if strategy is not None else keyword
    if value is None:
        return StrategySection.__dataclass_fields__["name"].default, {}, set()
    if isinstance(value, str):
        strategy_spec(value)  # an unknown name fails here, with the registry's "did you mean"
        return value, {}, {"strategy"}
    if isinstance(value, StrategySection):
        return value.name, value.options(), {"strategy"}
    for name, spec in STRATEGIES.items():
        if isinstance(value, spec.options):
            return name, dataclasses.asdict(value), {"strategy"}
    raise ConfigError(f"strategy must be a strategy name ({', '.join(STRATEGIES)}), a StrategySection or a strategy's "
                      f"options (e.g. LoraOptions(r=16)); got {type(value).__name__}.")


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def fit_settings(keywords: dict[str, Any], *, training: TrainingConfig | None, data: DataConfig) -> tuple[TrainingConfig, DataConfig]:
    """`fit`'s typed sections: `training` (or the defaults) and `data` (the model's, from
    `from_pretrained` and earlier fits), with keywords on top; every keyword is one field of one."""
    training_fields = {f.name for f in dataclasses.fields(TrainingConfig)}
    data_fields = {f.name for f in dataclasses.fields(DataConfig)}
    unknown = [k for k in keywords if k not in training_fields | data_fields]
    if unknown:
        raise ConfigError(f"Unknown fit setting {unknown[0]!r}: {did_you_mean(unknown[0], training_fields | data_fields)}")
    base_training = dataclasses.asdict(training) if training is not None else {}
    built_training = build(TrainingConfig, {**base_training, **{k: v for k, v in keywords.items() if k in training_fields}},
                           source="fit")
    base_data = {f: getattr(data, f) for f in data_fields}
    built_data = build(DataConfig, {**base_data, **{k: v for k, v in keywords.items() if k in data_fields}}, source="fit")
    return built_training, built_data
