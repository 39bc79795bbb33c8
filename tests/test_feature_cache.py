"""The on-disk frozen-feature cache: reused when nothing changed, never when anything in its key did."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import sentiment_rows

from nlp_transfer import TextClassifier


def _fit(model_dir, cache_dir, rows=None, **options):
    fit_settings = {k: options.pop(k) for k in ("mixed_precision", "cache_features") if k in options}
    clf = TextClassifier.from_pretrained(model_dir, strategy="feature_extraction", **{"pooling": "mean", **options})
    calls = {"n": 0}
    forward = clf.backbone.forward

    def counting(*args, **kwargs):
        calls["n"] += 1
        return forward(*args, **kwargs)

    clf.backbone.forward = counting  # counts encoder passes
    clf.fit(rows or sentiment_rows(48), sentiment_rows(16, seed=1), epochs=2, batch_size=16,
            feature_cache_dir=str(cache_dir), **fit_settings)
    return clf, calls["n"]


def test_second_run_reuses_the_features_and_trains_the_same_head(model_dirs, tmp_path):
    first, encoded = _fit(model_dirs["bert"], tmp_path)
    assert encoded > 0 and len(list(tmp_path.glob("*.safetensors"))) == 2  # train and eval sets
    second, encoded_again = _fit(model_dirs["bert"], tmp_path)
    assert encoded_again == 0  # the encoder did not run at all
    texts = [r["text"] for r in sentiment_rows(16, seed=1)]
    np.testing.assert_array_equal(first.predict_proba(texts), second.predict_proba(texts))


def test_disk_cached_run_equals_the_uncached_run(model_dirs, tmp_path):
    _fit(model_dirs["bert"], tmp_path)  # fills the cache
    from_disk, encoded = _fit(model_dirs["bert"], tmp_path)
    uncached, _ = _fit(model_dirs["bert"], tmp_path / "unused", cache_features=False)
    assert encoded == 0
    texts = [r["text"] for r in sentiment_rows(16, seed=1)]
    np.testing.assert_allclose(from_disk.predict_proba(texts), uncached.predict_proba(texts), atol=1e-5)


@pytest.mark.parametrize("change", ["max_length", "pooling", "pool_layers", "data", "weights", "precision"])
def test_any_change_in_the_key_encodes_again(model_dirs, tmp_path, change):
    _fit(model_dirs["bert"], tmp_path)
    options = {"max_length": {"max_length": 5}, "pooling": {"pooling": "cls"}, "pool_layers": {"pool_layers": 1},
               "precision": {"mixed_precision": "bf16"}}.get(change, {})
    rows = sentiment_rows(48, seed=7) if change == "data" else None
    if change == "weights":
        original = TextClassifier.from_pretrained(model_dirs["bert"], strategy="feature_extraction", pooling="mean")
        with torch.no_grad():
            next(original.backbone.encoder.parameters())[0, 0] += 1.0
        changed = tmp_path / "changed-model"
        original.backbone.encoder.save_pretrained(changed)
        original.tokenizer.save_pretrained(changed)
        _, encoded = _fit(changed, tmp_path)
    else:
        _, encoded = _fit(model_dirs["bert"], tmp_path, rows, **options)
    assert encoded > 0


def test_a_damaged_cache_file_is_encoded_again(model_dirs, tmp_path, caplog):
    _fit(model_dirs["bert"], tmp_path)
    for path in tmp_path.glob("*.safetensors"):
        path.write_bytes(path.read_bytes()[:20])  # truncated
    with caplog.at_level(logging.WARNING, logger="nlp_transfer"):
        _, encoded = _fit(model_dirs["bert"], tmp_path)
    assert encoded > 0 and "damaged feature cache" in caplog.text


def test_memory_only_writes_nothing_and_the_default_folder_is_used_otherwise(model_dirs):
    from nlp_transfer.training.features import default_cache_dir

    folder = default_cache_dir()  # the session's private folder (conftest sets NLP_TRANSFER_CACHE)
    before = set(folder.glob("*.safetensors")) if folder.exists() else set()
    rows = sentiment_rows(32, seed=11)
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="feature_extraction", pooling="mean")
    clf.fit(rows, epochs=1, feature_cache_dir="memory")
    assert (set(folder.glob("*.safetensors")) if folder.exists() else set()) == before
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="feature_extraction", pooling="mean")
    clf.fit(rows, epochs=1)
    assert len(set(folder.glob("*.safetensors")) - before) == 2
