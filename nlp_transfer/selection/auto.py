"""`strategy: auto`: the strategy the learning curves favour for this much labelled data.

    from nlp_transfer.selection.auto import choose_strategy
    choice = choose_strategy(["pos", "neg", "pos", ...])
    choice.strategy, choice.reason      # "contrastive", "16 training examples per class (median) ..."

The rule comes from `bench/learning_curve.py` (SST-2 and TREC, MiniLM, 3 seeds, test accuracy;
`bench/RESULTS.md`): at 8 and 16 examples per class `contrastive` had the best mean of every strategy
on both datasets; at 64, and on the full training sets, `full` did (with `train.min_steps`, at a
quarter of contrastive's time). The boundary between the measured 16 and 64 is their geometric
middle, `CONTRASTIVE_UP_TO` = 32. It was measured on single-label classification of single texts
only, so `auto` refuses other tasks, pairs and images, with the choices, rather than guess.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nlp_transfer.errors import ConfigError

__all__ = ["AUTO", "CONTRASTIVE_UP_TO", "StrategyChoice", "choose_strategy", "examples_per_class"]

AUTO = "auto"
# examples per class (median over classes) up to which contrastive is chosen: it led at 8 and 16, full at 64
CONTRASTIVE_UP_TO = 32


@dataclass(frozen=True)
class StrategyChoice:
    """What `auto` chose, and why in one sentence (logged, and saved in the run's metrics)."""

    strategy: str
    examples_per_class: float
    reason: str


def examples_per_class(labels: Sequence[Any], *, per_class_limit: int | None = None, keep_share: float = 1.0) -> float:
    """Median training examples per class: counts capped at `per_class_limit`, times `keep_share` (what a
    validation hold-out leaves of the training split)."""
    counts = [min(count, per_class_limit) if per_class_limit else count for count in Counter(labels).values()]
    if not counts:
        raise ConfigError("strategy auto needs labelled training data, and the training split has no labels.")
    return statistics.median(counts) * keep_share


def choose_strategy(labels: Sequence[Any], *, task: str = "single_label", modality: str = "text", pairs: bool = False,
                    per_class_limit: int | None = None, keep_share: float = 1.0) -> StrategyChoice:
    """The strategy for a training split with these labels (see the module docstring for the rule)."""
    measured = "its rule was measured on single-label classification of single texts (bench/RESULTS.md)"
    if modality != "text":
        raise ConfigError(f"strategy auto chooses for text; {measured}. For images set strategy.name to one of "
                          "feature_extraction, partial, lora, full, gradual, or run `nlp-transfer compare`.")
    if task != "single_label" or pairs:
        what = "sentence pairs" if pairs and task == "single_label" else f"{task} data"
        raise ConfigError(f"strategy auto cannot choose for {what}: {measured}. Set strategy.name (feature_extraction "
                          "for a few hundred examples, full for thousands), or run `nlp-transfer compare`.")
    per_class = examples_per_class(labels, per_class_limit=per_class_limit, keep_share=keep_share)
    if per_class <= CONTRASTIVE_UP_TO:
        return StrategyChoice("contrastive", per_class,
                              f"{per_class:g} training examples per class (median), at most {CONTRASTIVE_UP_TO}: "
                              "contrastive led every strategy at 8 and 16 per class on SST-2 and TREC")
    return StrategyChoice("full", per_class,
                          f"{per_class:g} training examples per class (median), more than {CONTRASTIVE_UP_TO}: full "
                          "fine-tuning led from 64 per class up to the full training sets on SST-2 and TREC")
