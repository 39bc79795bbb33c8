"""Calibration scores: ECE and Brier measure what they claim, and every classification evaluation has them."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import multi_label_rows, sentiment_rows

from nlp_transfer import TextClassifier
from nlp_transfer.training.calibration import calibration_metrics, expected_calibration_error, reliability_bins


def test_a_calibrated_model_has_ece_near_zero_and_an_overconfident_one_does_not():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 200_000)
    honest = rng.uniform(size=confidence.size) < confidence  # right exactly as often as it says
    assert expected_calibration_error(confidence, honest) < 0.005
    sure = np.full(10_000, 0.99)
    right_70 = np.arange(10_000) < 7_000
    assert expected_calibration_error(sure, right_70) == pytest.approx(0.29, abs=1e-9)
    assert reliability_bins(sure, right_70) == [(pytest.approx(0.99), pytest.approx(0.7), 10_000)]


def test_brier_and_ece_on_hand_checked_cases():
    perfect = calibration_metrics("single_label", np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))
    assert perfect == {"ece": 0.0, "brier": 0.0}
    coin = calibration_metrics("single_label", np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([0, 1]))
    assert coin["brier"] == pytest.approx(0.5)
    # three classes, one example: (0.7-1)^2 + 0.2^2 + 0.1^2 = 0.14; confident 0.7 and right: ECE 0.3
    one = calibration_metrics("single_label", np.array([[0.7, 0.2, 0.1]]), np.array([0]))
    assert one["brier"] == pytest.approx(0.14) and one["ece"] == pytest.approx(0.3)
    # multi-label: each (example, label) is a yes/no answer; 0.9 "yes" right, 0.2 (= "no" at 0.8) wrong
    multi = calibration_metrics("multi_label", np.array([[0.9, 0.2]]), np.array([[1, 1]]))
    assert multi["brier"] == pytest.approx((0.01 + 0.64) / 2)
    assert multi["ece"] == pytest.approx((abs(1 - 0.9) + abs(0 - 0.8)) / 2)


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_every_classification_evaluation_reports_calibration(model_dirs, task):
    rows = sentiment_rows(48) if task == "single_label" else multi_label_rows(48)
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full", task=task, pooling="mean")
    history = clf.fit(rows, epochs=1, batch_size=8, learning_rate=3e-3)
    scores = clf.evaluate(rows[:20])
    assert 0.0 <= scores["ece"] <= 1.0 and 0.0 <= scores["brier"] <= 2.0
    if task == "multi_label":
        truth = np.array([[int(label in r["label"]) for label in clf.labels] for r in rows[:20]])
    else:
        truth = np.array([clf.labels.index(r["label"]) for r in rows[:20]])
    expected = calibration_metrics(task, clf.predict_proba(rows[:20]), truth)
    assert scores["ece"] == pytest.approx(expected["ece"], abs=1e-6)
    assert scores["brier"] == pytest.approx(expected["brier"], abs=1e-6)
    assert "eval_ece" in history.epochs[0]


def test_calibration_can_choose_the_best_epoch_and_lower_is_better(model_dirs):
    from nlp_transfer.training.metrics import greater_is_better

    assert not greater_is_better("ece") and not greater_is_better("eval_brier")
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full", pooling="mean")
    history = clf.fit(sentiment_rows(48), sentiment_rows(16, seed=1), epochs=2, batch_size=8, learning_rate=3e-3,
                      metric_for_best_model="ece")
    best = min(history.epochs, key=lambda row: row["eval_ece"])
    assert history.best_epoch == best["epoch"]
