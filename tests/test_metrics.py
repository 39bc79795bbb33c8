"""Tests for nlp_transfer.training.metrics and the bundled evaluate modules (offline, hand-computed values)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from nlp_transfer.training.metrics import (
    BUNDLED_METRICS,
    PRIMARY_METRIC,
    MetricLoadError,
    bundled_metric_path,
    compute_metrics,
    greater_is_better,
    load_metric,
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every test run as if there were no network: Hub lookups must not be attempted."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    import evaluate  # a hard dependency: missing must fail, not skip
    # evaluate reads HF_EVALUATE_OFFLINE once, at import time.
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)


# 3 classes. Confusion matrix (rows = true, cols = predicted):
#   true 0: [2, 0, 0]
#   true 1: [1, 1, 0]
#   true 2: [0, 1, 1]
# accuracy = 4/6; per-class P = [2/3, 1/2, 1], R = [1, 1/2, 1/2], F1 = [4/5, 1/2, 2/3].
SINGLE_REFS = np.array([0, 0, 1, 1, 2, 2])
SINGLE_PREDS = np.array([0, 0, 0, 1, 1, 2])


def test_single_label_hand_computed() -> None:
    r = compute_metrics("single_label", SINGLE_PREDS, SINGLE_REFS, num_labels=3)
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["f1_micro"] == pytest.approx(4 / 6)  # micro F1 == accuracy for single-label
    assert r["f1_macro"] == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert r["f1_macro"] != pytest.approx(r["accuracy"])
    assert r["precision_macro"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert r["recall_macro"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)
    assert r["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 1, 1]]
    # MCC from the confusion matrix: c=4, s=6, t=[2,2,2], p=[3,2,1]
    c, s, t, p = 4, 6, np.array([2, 2, 2]), np.array([3, 2, 1])
    mcc = (c * s - t @ p) / math.sqrt((s**2 - p @ p) * (s**2 - t @ t))
    assert r["mcc"] == pytest.approx(mcc)
    assert set(r) == {
        "accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro", "mcc", "confusion_matrix"
    }


def test_confusion_matrix_includes_absent_classes_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = compute_metrics("single_label", np.array([0, 0]), np.array([0, 0]), num_labels=3)
    assert r["confusion_matrix"] == [[2, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert r["accuracy"] == 1.0
    assert r["mcc"] == 0.0


def test_single_label_rejects_out_of_range_ids() -> None:
    with pytest.raises(ValueError, match="outside"):
        compute_metrics("single_label", np.array([0, 3]), np.array([0, 1]), num_labels=3)


def test_multi_label_hand_computed() -> None:
    refs = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    preds = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1]])
    r = compute_metrics("multi_label", preds, refs, num_labels=3)
    # Rows 0 and 3 match exactly.
    assert r["subset_accuracy"] == pytest.approx(2 / 4)
    # TP=5, FP=1, FN=1 over all cells.
    assert r["precision_micro"] == pytest.approx(5 / 6)
    assert r["recall_micro"] == pytest.approx(5 / 6)
    assert r["f1_micro"] == pytest.approx(5 / 6)
    # Per label: l0 TP2 -> F1 1; l1 TP1 FN1 -> 2/3; l2 TP2 FP1 -> 4/5.
    assert r["f1_macro"] == pytest.approx((1 + 2 / 3 + 4 / 5) / 3)
    assert "accuracy" not in r
    assert set(r) == {"subset_accuracy", "f1_micro", "f1_macro", "precision_micro", "recall_micro"}


def test_multi_label_shape_checked() -> None:
    with pytest.raises(ValueError, match="shape"):
        compute_metrics("multi_label", np.zeros((2, 2), int), np.zeros((2, 2), int), num_labels=3)


def test_regression_monotone_nonlinear() -> None:
    refs = np.arange(1, 8, dtype=float)
    preds = refs**3  # strictly increasing but not linear
    r = compute_metrics("regression", preds, refs, num_labels=1)
    assert r["spearman"] == pytest.approx(1.0)
    assert r["pearson"] < 0.99
    from scipy.stats import pearsonr

    assert r["pearson"] == pytest.approx(pearsonr(refs, preds)[0])
    assert r["mse"] == pytest.approx(np.mean((preds - refs) ** 2))
    assert r["mae"] == pytest.approx(np.mean(np.abs(preds - refs)))


def test_regression_constant_input_is_nan_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = compute_metrics("regression", np.full(4, 2.0), np.array([1.0, 2.0, 3.0, 4.0]), num_labels=1)
    assert math.isnan(r["pearson"]) and math.isnan(r["spearman"])
    assert r["mse"] == pytest.approx((1 + 0 + 1 + 4) / 4)
    assert r["mae"] == pytest.approx((1 + 0 + 1 + 2) / 4)


@pytest.mark.parametrize(
    ("task", "preds", "refs", "num_labels"),
    [
        ("single_label", SINGLE_PREDS, SINGLE_REFS, 3),
        ("multi_label", np.array([[1, 0], [0, 1]]), np.array([[1, 0], [1, 1]]), 2),
        ("regression", np.array([0.1, 0.4, 0.3], dtype=np.float32), np.array([0.0, 0.5, 0.2]), 1),
    ],
)
def test_results_are_json_serialisable_python_types(task, preds, refs, num_labels) -> None:
    r = compute_metrics(task, preds, refs, num_labels=num_labels)
    json.dumps(r)

    def check(value: object) -> None:
        if isinstance(value, list):
            for v in value:
                check(v)
        else:
            assert type(value) in (float, int), (value, type(value))

    for value in r.values():
        check(value)


@pytest.mark.parametrize("name", BUNDLED_METRICS)
def test_bundled_modules_load_offline(name: str) -> None:
    assert (bundled_metric_path(name) / f"{name}.py").is_file()
    module = load_metric(name)
    assert module is load_metric(name)  # cached


def test_bundled_modules_direct_use() -> None:
    assert load_metric("accuracy").compute(predictions=[0, 1, 1], references=[0, 1, 0]) == {
        "accuracy": pytest.approx(2 / 3)
    }
    ml = load_metric("f1", "multilabel").compute(
        predictions=[[1, 0], [0, 1]], references=[[1, 0], [1, 1]], average=None
    )
    assert ml["f1"] == pytest.approx([2 / 3, 1.0])
    pr = load_metric("pearsonr").compute(predictions=[1.0, 2.0, 3.0], references=[1.0, 2.0, 3.5], return_pvalue=True)
    assert set(pr) == {"pearsonr", "p-value"}


def test_extra_bundled_metric_is_merged_and_ours_win() -> None:
    r = compute_metrics(
        "single_label", SINGLE_PREDS, SINGLE_REFS, num_labels=3, extra=["matthews_correlation", "accuracy"]
    )
    assert r["matthews_correlation"] == pytest.approx(r["mcc"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    # The bundled f1 gets its "multilabel" config for multi-hot inputs; label 1 never occurs
    # and scores 0 (zero_division=0), so the macro average is 0.5.
    r = compute_metrics("multi_label", np.array([[1, 0]]), np.array([[1, 0]]), num_labels=2, extra=["f1"])
    assert r["f1"] == pytest.approx(0.5)
    assert r["f1_micro"] == pytest.approx(1.0)


def test_unknown_extra_metric_raises_metric_load_error() -> None:
    with pytest.raises(MetricLoadError, match="no_such_metric_xyz") as info:
        compute_metrics("single_label", SINGLE_PREDS, SINGLE_REFS, num_labels=3, extra=["no_such_metric_xyz"])
    message = str(info.value)
    assert "Hugging Face Hub" in message and "offline" in message
    for name in BUNDLED_METRICS:
        assert name in message
    assert isinstance(info.value, ValueError)


def test_unknown_task_and_bad_lengths() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        compute_metrics("ranking", SINGLE_PREDS, SINGLE_REFS, num_labels=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="length"):
        compute_metrics("single_label", SINGLE_PREDS[:3], SINGLE_REFS, num_labels=3)


def test_primary_metric_and_direction() -> None:
    assert PRIMARY_METRIC == {"single_label": "accuracy", "multi_label": "f1_micro", "regression": "pearson",
                              "token_classification": "f1"}
    for task in ("single_label", "multi_label", "regression", "token_classification"):
        assert greater_is_better(PRIMARY_METRIC[task])
    assert not greater_is_better("eval_loss")
    assert not greater_is_better("mse") and not greater_is_better("mae")
    assert greater_is_better("f1_macro")
