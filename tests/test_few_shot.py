"""`data.per_class_limit`: k training examples per class, drawn with the fit's seed, after the hold-out."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from conftest import multi_label_rows, sentiment_rows

from nlp_transfer.classifiers.text import TextClassifier
from nlp_transfer.config.run import load_config
from nlp_transfer.config.settings import DataConfig, TrainingConfig
from nlp_transfer.data.tables import per_class_rows
from nlp_transfer.errors import ConfigError


def _examples(model_dir, rows, *, limit, seed=0, split=0.2):
    clf = TextClassifier.from_pretrained(model_dir)
    return clf._train_and_eval_examples(rows, None, TrainingConfig(seed=seed),
                                        DataConfig(per_class_limit=limit, validation_split=split))


def test_exactly_k_per_class_and_the_hold_out_keeps_its_size(model_dirs):
    rows = sentiment_rows(60)
    train, held = _examples(model_dirs["bert"], rows, limit=4)
    assert Counter(train.labels) == {"neg": 4, "pos": 4}
    _, held_in_full = _examples(model_dirs["bert"], rows, limit=None)
    assert len(held) == len(held_in_full) == 12 and held.texts == held_in_full.texts  # evaluation unaffected


def test_the_seed_decides_the_draw(model_dirs):
    rows = sentiment_rows(60)
    first = _examples(model_dirs["bert"], rows, limit=4, seed=1, split=0)[0].texts
    assert _examples(model_dirs["bert"], rows, limit=4, seed=1, split=0)[0].texts == first
    assert _examples(model_dirs["bert"], rows, limit=4, seed=2, split=0)[0].texts != first


def test_rows_are_stratified_and_in_their_original_order():
    labels = ["a", "b"] * 20 + ["c"]
    rows, short = per_class_rows(labels, 3, seed=7)
    assert rows == sorted(rows) and Counter(labels[i] for i in rows) == {"a": 3, "b": 3, "c": 1}
    assert short == {"c": 1}


def test_a_class_with_fewer_than_k_keeps_all_with_one_warning(model_dirs, caplog):
    rows = sentiment_rows(40) + [{"text": "the plot", "label": "meh"}, {"text": "the film", "label": "meh"}]
    with caplog.at_level(logging.INFO, logger="nlp_transfer"):
        train, _ = _examples(model_dirs["bert"], rows, limit=5, split=0)
    assert Counter(train.labels) == {"neg": 5, "pos": 5, "meh": 2}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "per_class_limit" in r.getMessage()]
    assert len(warnings) == 1 and "'meh' (2)" in warnings[0]
    assert any("training on 12 of 42 examples (at most 5 per class)" in r.getMessage() for r in caplog.records)


def test_a_fit_trains_on_the_sample(model_dirs, caplog):
    clf = TextClassifier.from_pretrained(model_dirs["bert"])
    with caplog.at_level(logging.INFO, logger="nlp_transfer"):
        clf.fit(sentiment_rows(40), sentiment_rows(10, seed=1), per_class_limit=3, epochs=1, batch_size=8)
    assert any("per_class_limit=3: training on 6 of 40 examples (3 per class)" in r.getMessage() for r in caplog.records)


def test_multi_label_is_refused_before_training(model_dirs):
    clf = TextClassifier.from_pretrained(model_dirs["bert"], task="multi_label")
    with pytest.raises(ConfigError, match="per_class_limit=2 needs single-label"):
        clf.fit(multi_label_rows(20), per_class_limit=2, epochs=1)
    with pytest.raises(ConfigError, match="model.task is 'multi_label'"):
        load_config(None, ["model.task=multi_label", "data.per_class_limit=2"])


def test_the_limit_is_at_least_one():
    with pytest.raises(ConfigError, match="per_class_limit must be at least 1"):
        DataConfig(per_class_limit=0)
