"""Negative transfer: say plainly when pretrained weights did not help, and what to try instead.

Four checks, one wording:

- a trained run that does not beat always predicting the most frequent label (`train`, `compare`);
- a transfer strategy that does not beat the from-scratch control (`compare`);
- a backbone whose transferability score is below that of its randomly initialised twin (`rank`);
- a run trained on random weights (`model.random_init`), where nothing can have been transferred.

    >>> majority_baseline({"confusion_matrix": [[8, 1], [1, 0]]})
    0.9
    >>> baseline_warning("test", "accuracy", 0.905, 0.9)
    "test: accuracy 0.9050 is not 2.0 points above always predicting the most frequent label (0.9000) ..."
"""

from __future__ import annotations

from typing import Any

__all__ = ["NEGATIVE_TRANSFER_MARGIN", "majority_baseline", "baseline_warning", "scratch_warning", "twin_warning",
           "random_init_warning"]

# "A clear margin": 2 points of accuracy. On the few hundred evaluation examples typical here, the
# standard error of an accuracy near 80% is 1.4 points (872 examples) to 1.8 points (500), so a
# smaller gain is within the noise of one seed and shows no benefit from pretraining.
NEGATIVE_TRANSFER_MARGIN = 0.02

_TRY_INSTEAD = ("Try instead: a model pretrained on data closer to yours (compare candidates with "
                "`nlp-transfer rank`), another strategy or learning rate, more epochs or more labelled data.")


def majority_baseline(metrics: dict[str, Any]) -> float | None:
    """Accuracy of always predicting the split's most frequent label, from its confusion matrix
    (rows are the true labels); None when the metrics have none (multi-label, regression)."""
    matrix = metrics.get("confusion_matrix")
    if not matrix:
        return None
    counts = [sum(row) for row in matrix]
    return max(counts) / sum(counts) if sum(counts) else None


def baseline_warning(where: str, metric: str, value: float, baseline: float) -> str | None:
    """A warning when `value` (an accuracy) is not a clear margin above the majority-class baseline."""
    if value >= baseline + NEGATIVE_TRANSFER_MARGIN:
        return None
    return (f"{where}: {metric} {value:.4f} is not {100 * NEGATIVE_TRANSFER_MARGIN:.1f} points above always "
            f"predicting the most frequent label ({baseline:.4f}): the model learnt next to nothing from this "
            f"data. {_TRY_INSTEAD}")


def scratch_warning(strategy: str, metric: str, value: float, control: float, higher_is_better: bool = True) -> str | None:
    """A warning when a transfer strategy is not a clear margin better than the from-scratch control."""
    gain = value - control if higher_is_better else control - value
    if gain >= NEGATIVE_TRANSFER_MARGIN:
        return None
    return (f"{strategy}: {metric} {value:.4f} is not {100 * NEGATIVE_TRANSFER_MARGIN:.1f} points better than the "
            f"from-scratch control's ({control:.4f}): the pretrained weights did not help on this data (negative "
            f"transfer). {_TRY_INSTEAD}")


def twin_warning(candidate: str, score: float, twin: str, twin_score: float, pooling_matters: bool = True) -> str | None:
    """A warning when a pretrained backbone scores below the same architecture with random weights.

    `pooling_matters`: the score read the candidate's own pooling (a frozen encoder), so the other
    pooling is worth trying; for fine-tuning it is not advice (the pooling is learnt)."""
    if score > twin_score:
        return None
    options = ["a model pretrained on data closer to yours", "more layers (drop @layers=N)"]
    options += ["the other pooling (@cls or @mean)"] if pooling_matters else []
    return (f"{candidate}: LogME {score:.4f} is not above its randomly initialised twin's ({twin}: {twin_score:.4f}): "
            "its pretrained features say less about these labels than random ones (negative transfer). Try instead: "
            f"{', '.join(options[:-1])}, or {options[-1]}.")


def random_init_warning(model: str) -> str:
    """The run's backbone is the random twin: its numbers are a from-scratch control, not transfer."""
    return (f"model.random_init is on: {model} was trained from random weights, so nothing was transferred; these "
            "numbers are a from-scratch control. Turn it off to fine-tune the pretrained weights, and compare both "
            "with `nlp-transfer compare`.")
