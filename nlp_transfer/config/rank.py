"""How `nlp-transfer rank` / `rank_backbones` rank candidate backbones: the ``rank:`` section.

One dataclass for the three ways in: the YAML ``rank:`` section and ``rank.folds=3`` overrides,
the CLI's ``--folds 3`` (its flags are generated from these fields), and ``rank_backbones(...,
folds=3)``. The data, columns, max_length and seed come from the run's other sections.

    >>> RankConfig(folds=3, target="feature_extraction").max_samples
    1000
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nlp_transfer.config.settings import _f, _validate_fields
from nlp_transfer.errors import ConfigError

__all__ = ["RankConfig", "Target"]

Target = Literal["fine_tuning", "feature_extraction"]


@dataclass
class RankConfig:
    """Which backbones `rank` scores, on how many examples, and for what use."""

    candidates: list[str] | None = _f(None, "Backbones to rank, each NAME[@cls|@mean|@layers=N|@random] (comma-separated "
                                            "on the command line); default: the config's model.")
    max_samples: int | None = _f(1000, "Score a seeded sample of this many training examples; 0 or null scores them all.")
    folds: int = _f(5, "Folds of the linear probe (the second opinion beside LogME).")
    twin: bool = _f(True, "Add the random twin of the best candidate (the negative-transfer control) unless one is listed.")
    target: Target = _f("fine_tuning", "What the winner is for: fine_tuning (full, partial, lora, gradual) scores mean-pooled "
                                       "token states; feature_extraction each candidate's own pooling.")
    pool_layers: int | None = _f(None, "Average each candidate's top this many layers (capped at its depth) before pooling; "
                                       "default: feature extraction's readout, the top 4.")

    def __post_init__(self) -> None:
        _validate_fields(self)
        if self.candidates is not None and not self.candidates:
            raise ConfigError("candidates is empty; list some (e.g. [bert-base-uncased, roberta-base@mean]) "
                              "or leave it unset to rank the config's model.")
        if self.max_samples is not None and self.max_samples < 0:
            raise ConfigError(f"max_samples must be 0 or more (0 or null: every example), got {self.max_samples}.")
        if self.folds < 2:
            raise ConfigError(f"folds must be at least 2 (a k-fold probe needs a held-out fold), got {self.folds}.")
        if self.pool_layers is not None and self.pool_layers < 1:
            raise ConfigError(f"pool_layers must be at least 1 (or null for the default), got {self.pool_layers}.")
