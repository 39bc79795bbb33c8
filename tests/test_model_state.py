"""The model a user gets back is the model the numbers describe: restored best epochs (BatchNorm
statistics included), seeds that really seed, and reloaded models that save back to themselves."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from conftest import IMAGE_SIZE, sentiment_rows, square_images
from test_hub import hub  # noqa: F401  (the fake Hub fixture: only the network is replaced)

from nlp_transfer import ImageClassifier, TextClassifier
from nlp_transfer.classifiers.base import Classifier


@contextmanager
def best_at_first_epoch():
    """Rig the selection metric so that epoch 1 is the best, whatever the model learns; loss stays real."""
    score, calls = Classifier._score, {"n": 0}

    def rigged(self, extra, dataset=None):
        real = score(self, extra, dataset)

        def scored(logits, targets):
            calls["n"] += 1
            return {**real(logits, targets), "accuracy": 1.0 if calls["n"] == 1 else 0.0}

        return scored

    Classifier._score = rigged
    try:
        yield
    finally:
        Classifier._score = score


def _text(model_dirs, strategy="full"):
    return TextClassifier.from_pretrained(model_dirs["bert"], strategy=strategy, pooling="mean")


def _vision(resnet_dir, strategy="full", **kwargs):
    return ImageClassifier.from_pretrained(resnet_dir, strategy=strategy, image_size=IMAGE_SIZE, **kwargs)


@pytest.mark.parametrize("modality", ["text", "vision"])
def test_restored_best_epoch_reproduces_its_metrics_on_reevaluation(model_dirs, resnet_dir, modality):
    if modality == "text":
        clf, train, evaluation = _text(model_dirs), sentiment_rows(48), sentiment_rows(16, seed=1)
    else:  # full fine-tuning moves every BatchNorm layer's running statistics
        clf, train, evaluation = _vision(resnet_dir), square_images(48), square_images(16, seed=1)
    with best_at_first_epoch():
        history = clf.fit(train, evaluation, epochs=3, batch_size=8, learning_rate=3e-3, head_learning_rate=3e-3,
                          feature_cache_dir="memory")
    assert history.best_epoch == 1
    first, last = history.epochs[0]["eval_loss"], history.epochs[-1]["eval_loss"]
    assert abs(first - last) > 1e-4, "the epochs must differ for the test to mean anything"
    again = clf.evaluate(evaluation)
    assert again["loss"] == pytest.approx(first, abs=1e-6)
    assert clf.metrics["epoch"] == 1 and clf.metrics["loss"] == pytest.approx(again["loss"], abs=1e-6)


def test_nan_evaluations_are_never_the_best_epoch(model_dirs, caplog):
    from conftest import regression_rows

    score, calls = Classifier._score, {"n": 0}

    def nan_first(self, extra, dataset=None):
        real = score(self, extra, dataset)

        def scored(logits, targets):
            calls["n"] += 1
            found = real(logits, targets)
            return {**found, "pearson": float("nan")} if calls["n"] == 1 else found

        return scored

    clf = TextClassifier.from_pretrained(model_dirs["bert"], task="regression", strategy="full", pooling="mean")
    Classifier._score = nan_first
    try:
        with caplog.at_level("WARNING"):
            history = clf.fit(regression_rows(48), regression_rows(16, seed=1), epochs=3, batch_size=8,
                              learning_rate=3e-3, early_stopping_patience=2)
    finally:
        Classifier._score = score
    assert history.best_epoch in (2, 3) and not np.isnan(history.best_metric)
    assert len(history.epochs) == 3  # the NaN epoch did not trigger early stopping of the others
    assert sum("is NaN" in r.message for r in caplog.records) == 1


def test_epochs_that_tie_on_the_metric_are_told_apart_by_the_evaluation_loss(model_dirs):
    """A small validation split ties on accuracy for many epochs; the one kept is the lowest loss of them."""
    score = Classifier._score

    def constant_accuracy(self, extra, dataset=None):
        real = score(self, extra, dataset)
        return lambda logits, targets: {**real(logits, targets), "accuracy": 0.5}

    clf = _text(model_dirs)
    Classifier._score = constant_accuracy
    try:
        history = clf.fit(sentiment_rows(48), sentiment_rows(16, seed=1), epochs=4, batch_size=8, learning_rate=3e-3,
                          early_stopping_patience=2)
    finally:
        Classifier._score = score
    losses = [row["eval_loss"] for row in history.epochs]
    assert len(losses) == 3  # a tie is no progress: patience 2 stops after the first and two ties
    assert history.best_epoch == 1 + int(np.argmin(losses))
    assert clf.metrics["loss"] == pytest.approx(min(losses), rel=1e-5)  # the restored weights are that epoch's


def test_two_identical_vision_fits_in_one_process_are_identical(resnet_dir):
    """Augmentation draws from its own generator: a draw from Python's global `random` during the
    first fit only (as a library imported lazily at the first evaluation makes) changes nothing."""
    import random

    score, fits = Classifier._score, {"n": 0}

    def drawing(self, extra, dataset=None):
        fits["n"] += 1
        real = score(self, extra, dataset)
        return lambda logits, targets: (random.random() if fits["n"] == 1 else None, real(logits, targets))[1]

    images, evaluation = square_images(32), square_images(8, seed=1)
    Classifier._score = drawing
    try:
        models = []
        for _ in range(2):
            models.append(_vision(resnet_dir))
            models[-1].fit(images, evaluation, epochs=3, batch_size=8, load_best_model_at_end=False)
    finally:
        Classifier._score = score
    np.testing.assert_array_equal(models[0].predict_proba(images[0][:8]), models[1].predict_proba(images[0][:8]))


@pytest.mark.parametrize("explicit", [None, "no"])
def test_the_launchers_precision_is_used_unless_the_config_sets_one(model_dirs, tmp_path, monkeypatch, caplog, explicit):
    """`accelerate launch --mixed_precision bf16` exports ACCELERATE_MIXED_PRECISION; an unset
    train.mixed_precision follows it, an explicit one wins; runs record what actually ran."""
    import json

    from conftest import sentiment_rows

    from nlp_transfer import load_config, train

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    for split, rows in {"train": sentiment_rows(32), "validation": sentiment_rows(8, seed=1),
                        "test": sentiment_rows(8, seed=2)}.items():
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = [f"model.name_or_path={model_dirs['bert']}", f"output.dir={tmp_path / 'run'}", "train.epochs=1",
                 "strategy.name=feature_extraction", f"train.feature_cache_dir={tmp_path / 'cache'}",
                 *(f"data.{split}={tmp_path / split}.jsonl" for split in ("train", "validation", "test"))]
    if explicit:
        overrides.append(f"train.mixed_precision={explicit}")
    with caplog.at_level("INFO"):
        result = train(load_config("configs/tests/tiny.yaml", overrides))
    ran = explicit or "bf16"
    assert result.classifier.training.mixed_precision == ran
    assert json.loads((tmp_path / "run" / "environment.json").read_text())["mixed_precision"] == ran
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["mixed_precision"] == ran
    assert any(f"precision {ran}." in r.message for r in caplog.records)
    # the cached features are filed under the precision they were computed in
    clf = result.classifier
    held = clf._dataset(clf._examples(tmp_path / "validation.jsonl", clf.data_config, "x", True), None)
    settings = clf.training
    assert (tmp_path / "cache" / f"{clf._feature_cache(settings).key(held)}.safetensors").is_file()


def test_evaluate_and_features_use_the_max_length_they_are_given(model_dirs):
    clf = TextClassifier.from_pretrained(model_dirs["bert"], labels=["neg", "pos"], pooling="mean", max_length=32)
    rows = [{"text": " ".join(["good movie plot"] * 8), "label": "pos"}, {"text": "bad film", "label": "neg"}]
    full, short = clf.features(rows, feature_cache_dir="memory"), clf.features(rows, feature_cache_dir="memory", max_length=4)
    assert torch.equal(full[1], short[1]) and not torch.allclose(full[0], short[0])  # only the long text is cut
    assert clf.evaluate(rows)["loss"] != clf.evaluate(rows, max_length=4)["loss"]
    assert clf.max_length == 32  # a call's setting is that call's


@pytest.mark.parametrize("strategy", ["feature_extraction", "lora"])
def test_the_seed_of_fit_draws_the_head_and_the_adapters(model_dirs, strategy):
    def fitted(fit_seed, built_with=42):
        clf = TextClassifier.from_pretrained(model_dirs["bert"], labels=["neg", "pos"], strategy=strategy, pooling="mean",
                                             seed=built_with)
        clf.fit(sentiment_rows(16), epochs=1, seed=fit_seed, validation_split=0.0, feature_cache_dir="memory")
        return clf.predict_proba([r["text"] for r in sentiment_rows(8, seed=3)])

    one = fitted(1)
    np.testing.assert_array_equal(one, fitted(1))
    assert not np.allclose(one, fitted(2))
    # the initial head and adapters come from the fit's seed, whatever seed built the untrained model
    np.testing.assert_array_equal(one, fitted(1, built_with=1))


# --------------------------------------------------------------------------- reload -> save -> reload
TEXT_LAYOUTS = {  # layout -> (from_pretrained settings, save settings)
    "transformers": (dict(strategy="full", pooling="cls"), {}),
    "encoder": (dict(strategy="full", pooling="mean"), {}),
    "adapter": (dict(strategy="lora", pooling="mean"), {}),
    "merged": (dict(strategy="lora", pooling="cls"), {"merge_lora": True}),
}


def _trained_text(model_dirs, settings):
    clf = TextClassifier.from_pretrained(model_dirs["bert"], **settings)
    clf.fit(sentiment_rows(32), epochs=2, batch_size=8, learning_rate=1e-2, validation_split=0.0)
    return clf


@pytest.mark.parametrize("layout", list(TEXT_LAYOUTS))
def test_a_reloaded_text_model_saves_back_to_itself(model_dirs, tmp_path, layout):
    settings, save = TEXT_LAYOUTS[layout]
    texts = [r["text"] for r in sentiment_rows(8, seed=4)]
    original = _trained_text(model_dirs, settings)
    original.save(tmp_path / "one", **save)
    first = TextClassifier.load(tmp_path / "one")
    assert not hasattr(first.backbone.encoder, "peft_config") if layout == "merged" else True
    first.save(tmp_path / "two")
    second = TextClassifier.load(tmp_path / "two")
    expected = original.predict_proba(texts)
    np.testing.assert_allclose(first.predict_proba(texts), expected, atol=1e-5)
    np.testing.assert_allclose(second.predict_proba(texts), expected, atol=1e-5)
    assert (tmp_path / "two" / "adapter").exists() == (layout == "adapter")


@pytest.mark.parametrize("merge", [False, True])
def test_a_reloaded_vision_model_saves_back_to_itself(resnet_dir, tmp_path, merge):
    images = square_images(32)
    original = _vision(resnet_dir, "lora", r=4)
    original.fit(images, epochs=2, batch_size=8, learning_rate=1e-2, validation_split=0.0)
    original.save(tmp_path / "one", merge_lora=merge)
    first = ImageClassifier.load(tmp_path / "one")
    first.save(tmp_path / "two")
    second = ImageClassifier.load(tmp_path / "two")
    expected = original.predict_proba(images[0][:8])
    np.testing.assert_allclose(second.predict_proba(images[0][:8]), expected, atol=1e-5)
    assert (tmp_path / "two" / "adapter").exists() == (not merge)


def test_training_a_merged_model_further_adds_new_adapters_and_saves_them_merged(model_dirs, tmp_path):
    texts = [r["text"] for r in sentiment_rows(8, seed=4)]
    _trained_text(model_dirs, dict(strategy="lora", pooling="mean")).save(tmp_path / "merged", merge_lora=True)
    loaded = TextClassifier.load(tmp_path / "merged")
    loaded.fit(sentiment_rows(32, seed=9), epochs=1, batch_size=8, learning_rate=1e-2, validation_split=0.0)
    assert hasattr(loaded.backbone.encoder, "peft_config")  # fit applied its strategy: fresh adapters on the merged weights
    loaded.save(tmp_path / "again")
    assert not (tmp_path / "again" / "adapter").exists()  # an adapter file would name the original base
    np.testing.assert_allclose(TextClassifier.load(tmp_path / "again").predict_proba(texts), loaded.predict_proba(texts),
                               atol=1e-5)


def test_from_pretrained_on_a_saved_model_applies_or_refuses_its_arguments(model_dirs, tmp_path):
    from nlp_transfer.errors import ConfigError

    texts = [r["text"] for r in sentiment_rows(8, seed=4)]
    full = _trained_text(model_dirs, dict(strategy="full", pooling="mean"))
    full.save(tmp_path / "full")
    same = TextClassifier.from_pretrained(tmp_path / "full")
    assert same.strategy.name == "full" and same.max_length == full.max_length
    # continue from the fine-tuned weights with LoRA: same predictions to start with, only adapters train
    lora = TextClassifier.from_pretrained(tmp_path / "full", strategy="lora", r=4, max_length=16, threshold=0.3)
    assert lora.strategy.name == "lora" and lora.strategy.options.r == 4 and lora.max_length == 16 and lora.threshold == 0.3
    np.testing.assert_allclose(lora.predict_proba(texts), full.predict_proba(texts), atol=1e-5)
    assert all("lora_" in n or n.startswith("head.") for n, p in lora.model.named_parameters() if p.requires_grad)
    lora.fit(sentiment_rows(32, seed=9), epochs=1, batch_size=8, learning_rate=1e-2, validation_split=0.0)
    lora.save(tmp_path / "lora")
    np.testing.assert_allclose(TextClassifier.load(tmp_path / "lora").predict_proba(texts), lora.predict_proba(texts),
                               atol=1e-5)
    with pytest.raises(ConfigError, match="labels=.*cannot make it"):
        TextClassifier.from_pretrained(tmp_path / "full", labels=["a", "b", "c"])
    with pytest.raises(ConfigError, match="pooling='mean'"):
        TextClassifier.from_pretrained(tmp_path / "full", pooling="cls")


def test_the_saved_tokenizer_cuts_long_texts_where_predict_does(model_dirs, tmp_path):
    from transformers import pipeline

    clf = _trained_text(model_dirs, dict(strategy="full", pooling="cls", max_length=8))
    clf.save(tmp_path / "hf")
    long = [" ".join(r["text"] for r in sentiment_rows(6, seed=s)) for s in range(4)]  # 24+ tokens each
    classify = pipeline("text-classification", model=str(tmp_path / "hf"), truncation=True, top_k=None)
    theirs = [{d["label"]: d["score"] for d in row} for row in classify(long)]
    ours = clf.predict_proba(long)
    np.testing.assert_allclose([[row[label] for label in clf.labels] for row in theirs], ours, atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])  # cls + full: the transformers layout; mean: encoder + head
def test_regression_targets_far_from_zero_are_learnt_and_saved_in_the_users_units(model_dirs, tmp_path, pooling):
    from conftest import regression_rows
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    shift = lambda rows: [{**r, "label": 1000.0 + 50.0 * r["label"]} for r in rows]  # noqa: E731
    train, test = shift(regression_rows(96)), shift(regression_rows(32, seed=1))
    clf = TextClassifier.from_pretrained(model_dirs["bert"], task="regression", strategy="full", pooling=pooling)
    clf.fit(train, epochs=6, batch_size=8, learning_rate=3e-3, head_learning_rate=3e-3, validation_split=0.0)
    scores = clf.evaluate(test)
    predictions = np.array(clf.predict([r["text"] for r in test]))
    assert predictions.std() > 10 and scores["pearson"] > 0.5  # not a constant near 0, nor near the mean
    assert abs(predictions.mean() - 1075) < 40
    clf.save(tmp_path / "m")
    again = TextClassifier.load(tmp_path / "m")
    np.testing.assert_allclose(again.predict([r["text"] for r in test]), predictions, rtol=1e-5)
    if pooling == "cls":  # a plain transformers model predicts in the user's units too
        model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
        tokens = AutoTokenizer.from_pretrained(tmp_path / "m")([r["text"] for r in test[:4]], return_tensors="pt", padding=True)
        with torch.no_grad():
            theirs = model(**tokens).logits[:, 0].numpy()
        np.testing.assert_allclose(theirs, predictions[:4], rtol=1e-4)


def test_constant_regression_targets_are_refused(model_dirs):
    from nlp_transfer.errors import DataError

    clf = TextClassifier.from_pretrained(model_dirs["bert"], task="regression", pooling="mean")
    with pytest.raises(DataError, match="every regression target is 3"):
        clf.fit([{"text": r["text"], "label": 3.0} for r in sentiment_rows(16)], epochs=1)


def test_a_merged_lora_model_reloaded_and_pushed_uploads_the_merged_weights(model_dirs, tmp_path, hub):
    """Only the network is replaced (see test_hub.py): what would be uploaded is checked and loaded back."""
    texts = [r["text"] for r in sentiment_rows(8, seed=4)]
    trained = _trained_text(model_dirs, dict(strategy="lora", pooling="mean"))
    trained.save(tmp_path / "merged", merge_lora=True)
    TextClassifier.load(tmp_path / "merged").push_to_hub("me/merged", token="hf_x")
    uploaded = hub.folder("me/merged")
    assert not (uploaded / "adapter").exists() and (uploaded / "encoder").is_dir()
    assert "merged" in (uploaded / "nlp_transfer.json").read_text()
    np.testing.assert_allclose(TextClassifier.from_pretrained("me/merged").predict_proba(texts),
                               trained.predict_proba(texts), atol=1e-5)
