"""Calibration scores: ECE and Brier measure what they claim, and every classification evaluation has them;
temperature scaling recovers a known temperature, "auto" applies it only where it helps, and a scaled
model saves, reloads and loads in plain transformers with the scaled probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import multi_label_rows, sentiment_rows

from nlp_transfer import TextClassifier
from nlp_transfer.errors import ConfigError
from nlp_transfer.training.calibration import (
    calibration_metrics,
    check_calibration,
    choose_temperature,
    expected_calibration_error,
    fit_temperature,
    fold_temperature,
    reliability_bins,
)


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
    assert {k: perfect[k] for k in ("ece", "brier")} == {"ece": 0.0, "brier": 0.0}
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
    if task == "multi_label":  # "auto" skips what temperature scaling is not for
        assert clf.calibration is None
    else:  # "auto" is the default; 5 held-out examples cannot show that a temperature helps
        assert not clf.calibration["applied"] and "too few" in clf.calibration["reason"]


def test_calibration_can_choose_the_best_epoch_and_lower_is_better(model_dirs):
    from nlp_transfer.training.metrics import greater_is_better

    assert not greater_is_better("ece") and not greater_is_better("eval_brier")
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full", pooling="mean")
    history = clf.fit(sentiment_rows(48), sentiment_rows(16, seed=1), epochs=2, batch_size=8, learning_rate=3e-3,
                      metric_for_best_model="ece")
    best = min(history.epochs, key=lambda row: row["eval_ece"])
    assert history.best_epoch == best["epoch"]


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _calibrated_sample(n: int, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a perfectly calibrated model: each label is drawn from softmax(logits)."""
    rng = np.random.default_rng(seed)
    logits = 2.0 * rng.normal(size=(n, classes))
    cumulative = _softmax(logits).cumsum(axis=1)
    labels = (rng.uniform(size=(n, 1)) > cumulative).sum(axis=1)
    return logits, labels


def test_every_single_label_evaluation_carries_the_full_reliability_table():
    import json

    rng = np.random.default_rng(1)
    probabilities = _softmax(rng.normal(size=(300, 2)))
    truth = rng.integers(0, 2, 300)
    table = calibration_metrics("single_label", probabilities, truth)["reliability"]
    assert [len(table[k]) for k in ("confidence", "accuracy", "count")] == [15, 15, 15]
    assert sum(table["count"]) == 300 and table["count"][:7] == [0] * 7  # two classes: confidence >= 0.5
    shown = [(c, a, n) for c, a, n in zip(table["confidence"], table["accuracy"], table["count"]) if n]
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    assert shown == reliability_bins(confidence, correct)
    json.dumps(table)  # plain Python numbers, ready for metrics.json
    assert "reliability" not in calibration_metrics("multi_label", np.array([[0.9, 0.2]]), np.array([[1, 1]]))


@pytest.mark.parametrize("temperature", [0.5, 2.5])
def test_the_fitted_temperature_recovers_a_known_one(temperature):
    logits, labels = _calibrated_sample(40_000)
    # a model whose logits are the calibrated ones times T needs exactly T to be calibrated again
    assert fit_temperature(logits * temperature, labels) == pytest.approx(temperature, rel=0.05)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, rel=0.05)


def test_auto_applies_to_an_overconfident_model_and_declines_a_calibrated_one():
    logits, labels = _calibrated_sample(2_000, seed=2)
    sure = choose_temperature(logits * 3.0, labels, "auto")
    assert sure.applied and sure.temperature == pytest.approx(3.0, rel=0.15)
    assert sure.validation_ece_after < sure.validation_ece_before and sure.validation_nll_after < sure.validation_nll_before
    honest = choose_temperature(logits, labels, "auto")
    assert not honest.applied and "does not help" in honest.reason
    assert choose_temperature(logits, labels, "temperature").applied  # asked for: applied anyway
    few = choose_temperature(logits[:10] * 3.0, labels[:10], "auto")
    assert not few.applied and "too few" in few.reason


def test_folding_the_temperature_keeps_the_argmax_and_gives_softmax_of_z_over_t():
    torch.manual_seed(0)
    layer, x = torch.nn.Linear(8, 4), torch.randn(64, 8)
    with torch.no_grad():
        before = layer(x).numpy()
        fold_temperature(layer, 1.7)
        after = layer(x).numpy()
    np.testing.assert_allclose(_softmax(after), _softmax(before / 1.7), atol=1e-6)
    assert (after.argmax(axis=1) == before.argmax(axis=1)).all()


@pytest.mark.parametrize("strategy", ["full", "lora"])  # full: the transformers layout; lora: adapter + head.safetensors
def test_a_temperature_scaled_model_saves_reloads_and_loads_in_plain_transformers(model_dirs, tmp_path, strategy):
    import json

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train, valid = sentiment_rows(48), sentiment_rows(24, seed=1)
    texts = [r["text"] for r in sentiment_rows(12, seed=2)]
    fitted = {}
    for choice in ("none", "temperature"):  # the same seeded fit, with and without scaling
        clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy=strategy)
        clf.fit(train, valid, epochs=1, batch_size=8, learning_rate=3e-3, calibration=choice)
        fitted[choice] = clf
    plain, scaled = fitted["none"], fitted["temperature"]
    assert plain.calibration is None and scaled.calibration["applied"]
    t = scaled.calibration["temperature"]
    assert t != pytest.approx(1.0, abs=1e-3)
    # the scaled logits are exactly the unscaled ones over T; decisions and history do not move
    np.testing.assert_allclose(scaled._predict_logits(texts) * t, plain._predict_logits(texts), rtol=1e-4, atol=1e-5)
    assert scaled.predict(texts) == plain.predict(texts)
    assert scaled.history.epochs[0]["eval_ece"] == pytest.approx(plain.history.epochs[0]["eval_ece"], abs=1e-6)
    # the final metrics describe the model as it now predicts
    assert scaled.metrics["ece"] == pytest.approx(scaled.evaluate(valid)["ece"], abs=1e-6)
    assert scaled.metrics["ece"] == pytest.approx(scaled.calibration["validation_ece_after"], abs=1e-6)
    assert scaled.metrics["accuracy"] == plain.metrics["accuracy"]
    probabilities = scaled.predict_proba(texts)
    folder = scaled.save(tmp_path / "model")
    meta = json.loads((folder / "nlp_transfer.json").read_text())
    assert meta["layout"] == ("transformers" if strategy == "full" else "adapter")
    assert meta["temperature_scaling"]["temperature"] == pytest.approx(t)
    assert "Temperature scaling: T=" in (folder / "README.md").read_text()
    again = TextClassifier.load(folder)
    np.testing.assert_allclose(again.predict_proba(texts), probabilities, atol=1e-6)
    assert again.calibration == scaled.calibration
    if strategy == "full":
        hf = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        with torch.no_grad():
            logits = hf(**AutoTokenizer.from_pretrained(folder)(texts, return_tensors="pt", padding=True)).logits
        np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), probabilities, atol=1e-5)


@pytest.mark.parametrize("task, why", [("multi_label", "threshold"), ("regression", "not probabilities")])
def test_temperature_where_it_does_not_apply_is_a_config_error_before_training(model_dirs, task, why):
    from conftest import multi_label_rows, regression_rows

    rows = multi_label_rows(24) if task == "multi_label" else regression_rows(24)
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full", task=task)
    with pytest.raises(ConfigError, match=why):
        clf.fit(rows, epochs=1, calibration="temperature")
    assert clf.history is None  # nothing trained


def test_temperature_without_evaluation_data_is_a_config_error(model_dirs):
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full")
    with pytest.raises(ConfigError, match="validation_split"):
        clf.fit(sentiment_rows(24), epochs=1, calibration="temperature", validation_split=0.0)


def test_temperature_on_tagging_is_refused_and_auto_never_is():
    with pytest.raises(ConfigError, match="not built for tagging"):
        check_calibration("temperature", "token_classification", True)
    for task in ("multi_label", "regression", "token_classification"):
        check_calibration("auto", task, False)  # skipped quietly, whatever the task
