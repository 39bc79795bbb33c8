"""Tests for token classification (NER) metrics: the bundled seqeval module and compute_token_metrics.

Expected numbers are worked out by hand in the comments (entity = type + exact span; default,
conlleval-style chunking), then checked against calling seqeval directly.
"""

from __future__ import annotations

import json
import random

import pytest

from nlp_transfer.errors import ConfigError, DataError
from nlp_transfer.training.metrics import (
    BUNDLED_METRICS,
    METRIC_NAMES,
    PRIMARY_METRIC,
    compute_metrics,
    compute_token_metrics,
    load_metric,
)

KEYS = {"precision", "recall", "f1", "accuracy", "per_type"}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: the bundled module must load from the package."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    import evaluate

    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)


def scores(result: dict) -> tuple[float, float, float, float]:
    return result["precision"], result["recall"], result["f1"], result["accuracy"]


def test_registered_as_a_task() -> None:
    assert "seqeval" in BUNDLED_METRICS
    assert PRIMARY_METRIC["token_classification"] == "f1"
    assert METRIC_NAMES["token_classification"] == ("f1", "precision", "recall", "accuracy")
    with pytest.raises(ConfigError, match="compute_token_metrics"):
        compute_metrics("token_classification", [["O"]], [["O"]], num_labels=1)


def test_perfect_match() -> None:
    # Gold = predicted = {PER[0:1], LOC[3]}: P = R = F1 = 2/2, every token right.
    tags = [["B-PER", "I-PER", "O", "B-LOC"]]
    r = compute_token_metrics(tags, [list(t) for t in tags])
    assert set(r) == KEYS
    assert scores(r) == (1.0, 1.0, 1.0, 1.0)
    assert r["per_type"] == {
        "LOC": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    }


def test_wrong_boundary_scores_zero() -> None:
    # Gold PER[0:1], predicted PER[0:0]: no exact span match, so TP = 0:
    # P = 0/1, R = 0/1, F1 = 0. Tokens: B-PER ok, I-PER vs O wrong, O ok -> accuracy 2/3.
    r = compute_token_metrics([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]])
    assert scores(r) == pytest.approx((0.0, 0.0, 0.0, 2 / 3))
    assert r["per_type"] == {"PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}}


def test_wrong_type_scores_zero() -> None:
    # Gold PER[0:1], predicted ORG[0:1]: same span, wrong type -> TP = 0, P = 0/1, R = 0/1.
    # Per type: PER predicted 0 times (P = 0/0 -> 0), ORG has no gold entity (support 0).
    # Both tokens differ -> accuracy 0.
    r = compute_token_metrics([["B-PER", "I-PER"]], [["B-ORG", "I-ORG"]])
    assert scores(r) == (0.0, 0.0, 0.0, 0.0)
    assert r["per_type"] == {
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
        "PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
    }


def test_i_after_o_starts_an_entity() -> None:
    # Default (conlleval) mode: the predicted I-PER after O opens PER[1:2], exactly the gold
    # entity -> P = R = F1 = 1. But token 1 is I-PER, not B-PER -> accuracy 3/4.
    r = compute_token_metrics([["O", "B-PER", "I-PER", "O"]], [["O", "I-PER", "I-PER", "O"]])
    assert scores(r) == pytest.approx((1.0, 1.0, 1.0, 3 / 4))


def test_entities_do_not_merge_across_sentences() -> None:
    # Gold: sentence 0 ends with PER[1]; sentence 1 starts with I-PER, which opens a new PER[0]:
    # 2 gold entities. Predicted: B-PER in both places -> the same 2 single-token entities.
    # TP = 2 -> P = R = F1 = 1 (merged, gold would be one 2-token entity and F1 would be 0).
    # Tokens: I-PER vs B-PER differs once in 4 -> accuracy 3/4.
    r = compute_token_metrics([["O", "B-PER"], ["I-PER", "O"]], [["O", "B-PER"], ["B-PER", "O"]])
    assert scores(r) == pytest.approx((1.0, 1.0, 1.0, 3 / 4))
    assert r["per_type"]["PER"]["support"] == 2
    # Control: the same tags in one sentence form one gold entity PER[1:2] vs two predicted -> TP = 0.
    joined = compute_token_metrics([["O", "B-PER", "I-PER", "O"]], [["O", "B-PER", "B-PER", "O"]])
    assert joined["f1"] == 0.0


def test_per_type_support_and_micro_average() -> None:
    refs = [
        ["B-PER", "I-PER", "O", "B-LOC", "O", "B-PER"],
        ["B-ORG", "O", "B-LOC", "I-LOC"],
    ]
    preds = [
        ["B-PER", "I-PER", "O", "B-ORG", "O", "O"],
        ["B-ORG", "O", "B-LOC", "I-LOC"],
    ]
    # Gold: PER x2 (s0 0:1, s0 5), LOC x2 (s0 3, s1 2:3), ORG x1 (s1 0) -> 5 entities.
    # Predicted: PER s0 0:1 (hit), ORG s0 3 (miss), ORG s1 0 (hit), LOC s1 2:3 (hit) -> 4, TP = 3.
    # PER: P = 1/1, R = 1/2, F1 = 2/3.  LOC: P = 1/1, R = 1/2, F1 = 2/3.  ORG: P = 1/2, R = 1/1, F1 = 2/3.
    # Micro: P = 3/4, R = 3/5, F1 = 2 * 0.75 * 0.6 / 1.35 = 2/3.
    # Tokens: 10, wrong at s0[3] (B-LOC vs B-ORG) and s0[5] (B-PER vs O) -> accuracy 8/10.
    r = compute_token_metrics(refs, preds)
    assert scores(r) == pytest.approx((3 / 4, 3 / 5, 2 / 3, 8 / 10))
    assert {t: s["support"] for t, s in r["per_type"].items()} == {"LOC": 2, "ORG": 1, "PER": 2}
    assert r["per_type"]["PER"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert r["per_type"]["LOC"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert r["per_type"]["ORG"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})


def test_token_accuracy_and_entity_f1_differ() -> None:
    # One gold LOC in 10 words, nothing predicted: 9/10 tokens right, but TP = 0 -> F1 = 0
    # (P = 0/0 -> 0, R = 0/1). Why entity F1, not accuracy, is the primary metric.
    refs = [["O"] * 4 + ["B-LOC"] + ["O"] * 5]
    r = compute_token_metrics(refs, [["O"] * 10])
    assert scores(r) == pytest.approx((0.0, 0.0, 0.0, 0.9))
    assert r["per_type"] == {"LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}}


def test_all_o_sentence_has_no_entities() -> None:
    # No gold and no predicted entity: P, R, F1 are 0/0, reported as 0 (seqeval, zero_division=0);
    # all 3 tokens right -> accuracy 1; no entity type at all.
    r = compute_token_metrics([["O", "O", "O"]], [["O", "O", "O"]])
    assert scores(r) == (0.0, 0.0, 0.0, 1.0)
    assert r["per_type"] == {}
    # Beside a sentence with an entity it adds nothing but tokens: TP 1 of 1 -> F1 = 1.
    r = compute_token_metrics([["O", "O"], ["B-PER"]], [["O", "O"], ["B-PER"]])
    assert scores(r) == (1.0, 1.0, 1.0, 1.0)


def test_results_are_json_ready() -> None:
    r = compute_token_metrics([["B-PER", "O"], ["B-LOC"]], [["B-PER", "B-LOC"], ["O"]])
    assert json.loads(json.dumps(r)) == r
    for name in ("precision", "recall", "f1", "accuracy"):
        assert type(r[name]) is float
    for type_scores in r["per_type"].values():
        assert type(type_scores["support"]) is int
        assert all(type(type_scores[k]) is float for k in ("precision", "recall", "f1"))


def test_bad_input_raises_data_error() -> None:
    with pytest.raises(DataError, match=r"sentence 1: references has 3 tags but predictions has 2"):
        compute_token_metrics([["O"], ["B-PER", "I-PER", "O"]], [["O"], ["B-PER", "O"]])
    with pytest.raises(DataError, match=r"references \(2 sentences\) and predictions \(1 sentences\)"):
        compute_token_metrics([["O"], ["O"]], [["O"]])
    with pytest.raises(DataError, match="zero sentences"):
        compute_token_metrics([], [])
    with pytest.raises(DataError, match="zero tokens"):
        compute_token_metrics([[]], [[]])
    with pytest.raises(DataError, match=r"predictions\[0\] must be a list of tag strings"):
        compute_token_metrics([["O"]], ["O"])  # type: ignore[list-item]


def _random_tagging(seed: int) -> tuple[list[list[str]], list[list[str]]]:
    """Noisy predictions of random IOB2 sentences, including ill-formed I- starts."""
    rng = random.Random(seed)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC"]
    refs, preds = [], []
    for _ in range(40):
        ref = [rng.choice(tags) for _ in range(rng.randint(1, 12))]
        refs.append(ref)
        preds.append([t if rng.random() < 0.7 else rng.choice(tags) for t in ref])
    return refs, preds


def test_matches_seqeval_directly() -> None:
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    refs, preds = _random_tagging(0)
    r = compute_token_metrics(refs, preds)
    assert 0.0 < r["f1"] < 1.0  # a meaningful example, not a degenerate one
    assert r["precision"] == pytest.approx(precision_score(refs, preds), abs=1e-12)
    assert r["recall"] == pytest.approx(recall_score(refs, preds), abs=1e-12)
    assert r["f1"] == pytest.approx(f1_score(refs, preds), abs=1e-12)
    assert r["accuracy"] == pytest.approx(accuracy_score(refs, preds), abs=1e-12)
    report = classification_report(refs, preds, output_dict=True, zero_division=0)
    for type_, s in r["per_type"].items():
        assert s["support"] == report[type_]["support"]
        assert s["f1"] == pytest.approx(report[type_]["f1-score"], abs=1e-12)
    assert set(r["per_type"]) == set(report) - {"micro avg", "macro avg", "weighted avg"}


def test_bundled_module_keys_and_strict_mode() -> None:
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    module = load_metric("seqeval")
    out = module.compute(predictions=[["B-PER", "O"]], references=[["B-PER", "I-PER"]])
    assert set(out) == {"PER", "overall_precision", "overall_recall", "overall_f1", "overall_accuracy"}
    assert out["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "number": 1}
    # Strict IOB2: a predicted entity must begin with B-, so I-PER after O is no entity -> F1 0;
    # the default mode accepts it (F1 1).
    refs, preds = [["B-PER", "O"]], [["I-PER", "O"]]
    assert module.compute(predictions=preds, references=refs)["overall_f1"] == 1.0
    strict = module.compute(predictions=preds, references=refs, mode="strict", scheme="IOB2")
    assert strict["overall_f1"] == 0.0 == f1_score(refs, preds, mode="strict", scheme=IOB2)
    with pytest.raises(ValueError, match="needs a scheme"):
        module.compute(predictions=preds, references=refs, mode="strict")
    with pytest.raises(ValueError, match="scheme must be one of"):
        module.compute(predictions=preds, references=refs, mode="strict", scheme="IOB3")
