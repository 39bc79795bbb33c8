"""The contrastive (SetFit) strategy: its pairs, what its pair stage teaches the encoder, what it refuses.

The strategy matrix (test_strategies.py) covers it like every strategy on single-label data:
parameter counts, what moves, loss, save and reload.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import pair_rows, sentiment_rows

from nlp_transfer import TextClassifier
from nlp_transfer.errors import StrategyError
from nlp_transfer.training.contrastive import sample_pairs

FAST = dict(epochs=2, batch_size=16, head_learning_rate=1e-2)


def test_pairs_are_balanced_seeded_and_say_whether_the_labels_match():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    pairs = sample_pairs(labels, num_iterations=5, seed=3)
    first, second, target = pairs[:, 0].astype(int), pairs[:, 1].astype(int), pairs[:, 2]
    assert len(pairs) == 2 * 5 * len(labels)  # one positive and one negative per example and round
    assert (target == 1).sum() == (target == 0).sum()
    np.testing.assert_array_equal(target, (labels[first] == labels[second]).astype(float))
    assert not np.any(first == second)  # never an example with itself
    np.testing.assert_array_equal(pairs, sample_pairs(labels, 5, seed=3))
    assert not np.array_equal(pairs, sample_pairs(labels, 5, seed=4))
    assert len(sample_pairs(labels, 5, seed=3, max_pairs=7)) == 7


def test_a_class_with_one_example_still_gets_negative_pairs_and_one_label_is_refused():
    pairs = sample_pairs(np.array([0, 1, 1]), num_iterations=2, seed=0)
    lonely = pairs[pairs[:, 0] == 0]
    assert len(lonely) == 2 and (lonely[:, 2] == 0).all()
    with pytest.raises(Exception, match="at least two labels"):
        sample_pairs(np.array([1, 1, 1]), 2, seed=0)


def _similarity_gap(clf, rows) -> float:
    """Mean cosine of same-label pairs minus that of different-label pairs, on pooled features."""
    features = torch.nn.functional.normalize(clf.features([r["text"] for r in rows], feature_cache_dir="memory"), dim=-1)
    labels = np.array([r["label"] for r in rows])
    cosine = (features @ features.T).numpy()
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(rows), dtype=bool)
    return float(cosine[same & off_diagonal].mean() - cosine[~same].mean())


def test_the_pair_stage_pulls_same_label_texts_together(model_dirs):
    # the pair stage is the point of the strategy: afterwards texts of one label embed closer to each
    # other than to the other label's, on texts it never saw
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="contrastive", pooling="mean", seed=0)
    held = sentiment_rows(40, seed=7)
    before = _similarity_gap(clf, held)
    history = clf.fit(sentiment_rows(32, seed=1), sentiment_rows(16, seed=2), **{**FAST, "epochs": 8}, learning_rate=1e-3)
    after = _similarity_gap(clf, held)
    assert after > before + 0.1, (before, after)  # measured: 0.004 -> 0.20
    tuning = history.backbone_tuning
    assert tuning["pairs"] == 2 * 20 * 32 and tuning["last_loss"] < tuning["first_loss"]
    assert clf.metrics["accuracy"] >= 0.85  # of 16: on a GPU (other dropout draws) 14 of 16 were seen


def test_the_tuned_encoder_is_saved_and_the_card_says_how_it_trained(model_dirs, tmp_path):
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="contrastive", num_iterations=2, seed=0)
    clf.fit(sentiment_rows(24, seed=1), sentiment_rows(8, seed=2), **FAST, learning_rate=1e-3)
    folder = clf.save(tmp_path / "model")
    loaded = TextClassifier.load(folder)
    texts = [r["text"] for r in sentiment_rows(12, seed=3)]
    np.testing.assert_array_equal(loaded.predict_proba(texts), clf.predict_proba(texts))
    assert loaded.strategy.name == "contrastive" and loaded.strategy.options.num_iterations == 2
    card = (folder / "README.md").read_text()
    assert "tuned contrastively (SetFit)" in card


@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_tasks_without_one_label_per_example_are_refused_before_anything_loads_data(model_dirs, task):
    with pytest.raises(StrategyError, match="single-label"):
        TextClassifier.from_pretrained(model_dirs["bert"], strategy="contrastive", task=task)


def test_sentence_pairs_are_refused_before_training(model_dirs):
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="contrastive")
    with pytest.raises(StrategyError, match="sentence pairs"):
        clf.fit(pair_rows(16), epochs=1)
    assert clf.history is None


def test_images_are_refused(resnet_dir):
    from nlp_transfer.classifiers.image import ImageClassifier

    with pytest.raises(StrategyError, match="text pairs"):
        ImageClassifier.from_pretrained(str(resnet_dir), strategy="contrastive", labels=["a", "b"])


def test_tagging_is_refused(model_dirs):
    from nlp_transfer.classifiers.tokens import TokenClassifier

    with pytest.raises(StrategyError, match="single-label"):
        TokenClassifier.from_pretrained(model_dirs["bert"], strategy="contrastive", labels=["O", "B-X", "I-X"])

