"""Do the predicted probabilities mean what they say? Calibration scores for classification.

- ``ece``, expected calibration error (Guo et al., 2017): predictions are put into `bins` equal-width
  bins by confidence, and |accuracy - mean confidence| of each bin is averaged, weighted by its
  size. 0 when a model that says 80% is right 80% of the time; a model that says 99% and is right
  70% of the time scores about 0.29. Single-label: the confidence is the top class's probability.
  Multi-label: every (example, label) is a yes/no prediction whose confidence is the probability of
  the answer it gives.
- ``brier``: the mean squared distance between the probabilities and the one-hot truth, summed over
  classes (Brier, 1950): 0 is perfect, 0.5 is a 50/50 guess between two classes, at most 2.
  Multi-label: the mean over labels of the per-label squared error.

Both are lower-is-better, and both are in every classification `evaluate` and `compare` result;
single-label results also carry ``reliability`` (the 15 bins of a reliability diagram).

Temperature scaling (Guo et al., 2017) fixes over-confidence after training: one number T divides
the logits, fitted on the validation split by minimising the negative log-likelihood. Folded into
the output layer (weight / T, bias / T), softmax(z / T) is what every saved layout and export
predicts, and the argmax (accuracy) does not move. `choose_temperature` fits and decides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["CALIBRATION_METRICS", "TemperatureFit", "calibration_metrics", "check_calibration", "choose_temperature",
           "expected_calibration_error", "fit_temperature", "fold_temperature", "negative_log_likelihood",
           "reliability_bins"]

CALIBRATION_METRICS = ("ece", "brier")
BINS = 15  # the usual choice since Guo et al.; enough resolution for a few hundred examples and up


def calibration_metrics(task: str, probabilities: np.ndarray, targets: np.ndarray,
                        bins: int = BINS) -> dict[str, Any]:
    """``{"ece": ..., "brier": ...}`` for single-label (targets: class ids) or multi-label (multi-hot);
    nothing for tasks without probabilities (regression). Single-label adds ``"reliability"``:
    ``{"confidence": [...], "accuracy": [...], "count": [...]}``, one entry per bin in order (an
    empty bin has count 0 and 0.0 for the others), for drawing the diagram; not a scalar."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if task == "single_label":
        truth = np.asarray(targets).astype(np.int64).reshape(-1)
        onehot = np.eye(probabilities.shape[1])[truth]
        confidence = probabilities.max(axis=1)
        correct = probabilities.argmax(axis=1) == truth
        brier = float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))
    elif task == "multi_label":
        truth = np.asarray(targets).astype(np.float64)
        says_yes = probabilities >= 0.5
        confidence = np.where(says_yes, probabilities, 1.0 - probabilities).reshape(-1)
        correct = (says_yes == (truth > 0.5)).reshape(-1)
        brier = float(np.mean((probabilities - truth) ** 2))
    else:
        return {}
    scores: dict[str, Any] = {"ece": expected_calibration_error(confidence, correct, bins), "brier": brier}
    if task == "single_label":
        scores["reliability"] = _reliability_table(confidence, correct, bins)
    return scores


def _reliability_table(confidence: np.ndarray, correct: np.ndarray, bins: int) -> dict[str, list]:
    """Every bin, empty ones included, as plain lists (JSON-ready)."""
    table: dict[str, list] = {"confidence": [0.0] * bins, "accuracy": [0.0] * bins, "count": [0] * bins}
    index = _bin_index(confidence, bins)
    for i, (mean_confidence, accuracy, count) in zip(sorted(set(index.tolist())), reliability_bins(confidence, correct, bins)):
        table["confidence"][i], table["accuracy"][i], table["count"][i] = mean_confidence, accuracy, count
    return table


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Size-weighted mean of |accuracy - confidence| over equal-width confidence bins."""
    rows = reliability_bins(confidence, correct, bins)
    total = sum(count for _, _, count in rows)
    gaps = sum(count * abs(accuracy - mean_confidence) for mean_confidence, accuracy, count in rows)
    return float(gaps / max(total, 1))


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, count) of every non-empty bin: the points of a reliability diagram."""
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    index = _bin_index(confidence, bins)
    rows = []
    for i in range(bins):
        members = index == i
        if members.any():
            rows.append((float(confidence[members].mean()), float(correct[members].mean()), int(members.sum())))
    return rows


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    # bin i holds (i/bins, (i+1)/bins]; a confidence of exactly 0 goes into the first
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    return np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)


# ----------------------------------------------------------------- temperature scaling
TEMPERATURE_RANGE = (0.05, 20.0)  # beyond this a model is broken, not over- or under-confident
# "auto" applies T when the cross-fitted held-out NLL is more than this much (relative) lower than
# at T=1. An already calibrated model's cross-fitted T lands a little off 1 by noise and scores a
# little *worse* held out; fine-tuned transformers are typically 10-50% above their calibrated NLL.
# 1% keeps the first away and lets the second through, with room for noise on a few hundred examples.
AUTO_MARGIN = 0.01
AUTO_MIN_EXAMPLES = 20  # fewer: each half's T is too noisy to tell help from luck


@dataclass(frozen=True)
class TemperatureFit:
    """What `choose_temperature` found: T, whether to apply it and why, and the validation scores."""

    temperature: float
    applied: bool
    reason: str
    examples: int
    validation_nll_before: float
    validation_nll_after: float
    validation_ece_before: float
    validation_ece_after: float
    method: str = "temperature"

    def record(self) -> dict[str, Any]:
        """The JSON record saved in the model's metadata."""
        return asdict(self)

    def summary(self) -> str:
        return (f"Temperature scaling: T={self.temperature:.2f} fitted on {self.examples} validation examples, "
                f"ECE {self.validation_ece_before:.3f} -> {self.validation_ece_after:.3f}, "
                f"{'applied' if self.applied else 'not applied'} ({self.reason})")


def check_calibration(choice: str, task: str, has_eval: bool) -> None:
    """Raise when ``calibration="temperature"`` is asked where it cannot run ("auto" just skips)."""
    from nlp_transfer.errors import ConfigError

    if choice != "temperature":
        return
    why = {"multi_label": "one temperature would move the per-label decisions made at the threshold "
                          "(sigmoid(z/T) >= threshold is another rule than sigmoid(z) >= threshold)",
           "regression": "regression predicts numbers, not probabilities",
           "token_classification": "temperature scaling is not built for tagging"}.get(task)
    if why:
        raise ConfigError(f"calibration='temperature' is for single-label classification, but task={task!r}: {why}. "
                          "Set calibration='none' (or leave it at 'auto', which skips such tasks).")
    if not has_eval:
        raise ConfigError("calibration='temperature' fits T on evaluation data, and this fit has none: pass "
                          "eval_data or set validation_split > 0, or set calibration='none'.")


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean cross-entropy of softmax(logits / temperature) against class ids."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled).sum(axis=1))
    truth = np.asarray(targets).astype(np.int64).reshape(-1)
    return float(np.mean(log_norm - scaled[np.arange(len(truth)), truth]))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, bounds: tuple[float, float] = TEMPERATURE_RANGE) -> float:
    """The T in `bounds` minimising the NLL of softmax(logits / T): a golden-section search on log T.

    The NLL is convex in 1/T, so it has one minimum along log T and the search finds it (deterministic,
    no optimizer state, exact to ~1e-6 in log T)."""
    def loss(log_t: float) -> float:
        return negative_log_likelihood(logits, targets, float(np.exp(log_t)))

    low, high = np.log(bounds[0]), np.log(bounds[1])
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = low + (1 - ratio) * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    while high - low > 1e-6:
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = low + (1 - ratio) * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return float(np.exp((low + high) / 2))


def choose_temperature(logits: np.ndarray, targets: np.ndarray, choice: str = "auto",
                       seed: int = 0) -> TemperatureFit:
    """Fit T on the whole evaluation split; "temperature" applies it, "auto" only when it helps held out.

    "auto" cross-fits in two seeded halves (T fitted on one, NLL measured on the other, both ways) and
    applies when that held-out NLL beats T=1 by more than `AUTO_MARGIN` (relative): an in-sample NLL
    always improves a little, so it cannot tell."""
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets).astype(np.int64).reshape(-1)
    if not np.isfinite(logits).all():  # a diverged model: no temperature makes NaN mean anything
        return _fit_report(logits, targets, 1.0, False, "the validation logits are not all finite")
    temperature = fit_temperature(logits, targets)
    if choice == "temperature":
        applied, reason = True, "calibration='temperature'"
    else:
        applied, reason = _helps_held_out(logits, targets, seed)
    return _fit_report(logits, targets, temperature, applied, reason)


def _helps_held_out(logits: np.ndarray, targets: np.ndarray, seed: int) -> tuple[bool, str]:
    n = len(targets)
    if n < AUTO_MIN_EXAMPLES:
        return False, f"auto: {n} validation examples are too few to tell (need {AUTO_MIN_EXAMPLES})"
    order = np.random.default_rng(seed).permutation(n)
    halves = (order[: n // 2], order[n // 2:])
    before = after = 0.0
    for fit_on, test_on in (halves, halves[::-1]):
        t = fit_temperature(logits[fit_on], targets[fit_on])
        before += negative_log_likelihood(logits[test_on], targets[test_on]) * len(test_on)
        after += negative_log_likelihood(logits[test_on], targets[test_on], t) * len(test_on)
    gain = (before - after) / before if before > 0 else 0.0
    verdict = "helps" if gain > AUTO_MARGIN else "does not help enough"
    return gain > AUTO_MARGIN, (f"auto: cross-fitted held-out NLL {before / n:.4f} -> {after / n:.4f} "
                                f"({100 * gain:+.1f}%; {verdict}, margin {100 * AUTO_MARGIN:.0f}%)")


def _fit_report(logits: np.ndarray, targets: np.ndarray, temperature: float, applied: bool, reason: str) -> TemperatureFit:
    def ece(t: float) -> float:
        scaled = logits / t
        probabilities = np.exp(scaled - scaled.max(axis=1, keepdims=True))
        return calibration_metrics("single_label", probabilities / probabilities.sum(axis=1, keepdims=True), targets)["ece"]

    return TemperatureFit(temperature=temperature, applied=applied, reason=reason, examples=len(targets),
                          validation_nll_before=negative_log_likelihood(logits, targets),
                          validation_nll_after=negative_log_likelihood(logits, targets, temperature),
                          validation_ece_before=ece(1.0), validation_ece_after=ece(temperature))


def fold_temperature(layer, temperature: float) -> None:
    """Divide a `torch.nn.Linear` output layer by T in place: its logits become z / T exactly."""
    import torch

    with torch.no_grad():
        layer.weight.div_(temperature)
        if layer.bias is not None:
            layer.bias.div_(temperature)
