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

Both are lower-is-better, and both are in every classification `evaluate` and `compare` result.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CALIBRATION_METRICS", "calibration_metrics", "expected_calibration_error", "reliability_bins"]

CALIBRATION_METRICS = ("ece", "brier")
BINS = 15  # the usual choice since Guo et al.; enough resolution for a few hundred examples and up


def calibration_metrics(task: str, probabilities: np.ndarray, targets: np.ndarray,
                        bins: int = BINS) -> dict[str, float]:
    """``{"ece": ..., "brier": ...}`` for single-label (targets: class ids) or multi-label (multi-hot);
    nothing for tasks without probabilities (regression)."""
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
    return {"ece": expected_calibration_error(confidence, correct, bins), "brier": brier}


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
    # bin i holds (i/bins, (i+1)/bins]; a confidence of exactly 0 goes into the first
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    rows = []
    for i in range(bins):
        members = index == i
        if members.any():
            rows.append((float(confidence[members].mean()), float(correct[members].mean()), int(members.sum())))
    return rows
