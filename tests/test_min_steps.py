"""`train.min_steps`: on few-shot data each epoch passes over the examples several times, so a
fine-tuning run makes enough optimizer steps; an explicit `epochs` keeps one pass per epoch."""

from __future__ import annotations


import pytest
from conftest import sentiment_rows

from nlp_transfer.classifiers.text import TextClassifier
from nlp_transfer.config.run import load_config, resolve
from nlp_transfer.config.settings import TrainingConfig, passes_per_epoch, resolve_training
from nlp_transfer.data.batching import LengthGroupedBatchSampler
from nlp_transfer.errors import ConfigError
from nlp_transfer.strategies import strategy_defaults


def test_the_strategy_floor_applies_only_when_epochs_is_unset():
    floor = strategy_defaults("full")["min_steps"]
    assert floor > 0
    assert resolve_training(TrainingConfig(), "full").min_steps == floor
    assert resolve_training(TrainingConfig(epochs=3), "full").min_steps == 0  # the user's epochs are passes
    assert resolve_training(TrainingConfig(epochs=3, min_steps=40), "full").min_steps == 40
    assert resolve_training(TrainingConfig(), "feature_extraction").min_steps == 0  # a head on cached features
    assert resolve_training(TrainingConfig(), "full", "vision").min_steps == 0  # vision defaults were chosen without it
    resolved = resolve_training(TrainingConfig(), "lora")
    assert resolve_training(resolved, "lora") == resolved  # resolving twice (train then fit) changes nothing


def test_a_resolved_run_config_keeps_the_floor_for_its_rerun():
    config = resolve(load_config(None, ["strategy.name=full"]))
    assert config.train.min_steps == strategy_defaults("full")["min_steps"]
    assert resolve(load_config(None, ["strategy.name=full", "train.epochs=2"])).train.min_steps == 0


@pytest.mark.parametrize("examples, batch, epochs, floor, accumulation, processes, passes", [
    (16, 32, 3, 100, 1, 1, 34),    # one step per pass: 34 passes x 3 epochs = 102 steps
    (128, 32, 3, 100, 1, 1, 9),    # 4 steps per pass
    (6920, 32, 3, 100, 1, 1, 1),   # big data: one pass, as without the floor
    (16, 32, 3, 0, 1, 1, 1),
    (64, 8, 2, 100, 2, 1, 13),     # accumulation: 8 batches are 4 steps per pass
    (64, 8, 2, 100, 1, 2, 13),     # two processes share each pass's 8 batches
])
def test_passes_cover_the_floor(examples, batch, epochs, floor, accumulation, processes, passes):
    settings = TrainingConfig(epochs=epochs, batch_size=batch, min_steps=floor, gradient_accumulation_steps=accumulation)
    assert passes_per_epoch(settings, examples, processes) == passes


def test_negative_floor_is_refused():
    with pytest.raises(ConfigError, match="min_steps must be 0"):
        TrainingConfig(min_steps=-1)


def test_a_multi_pass_epoch_sees_every_example_once_per_pass_in_fresh_orders():
    lengths = [5 + i % 11 for i in range(20)]
    single = LengthGroupedBatchSampler(lengths, 8, seed=3)
    several = LengthGroupedBatchSampler(lengths, 8, seed=3, passes=4)
    batches = list(several)
    assert len(batches) == len(several) == 4 * len(single)
    per_pass = [batches[i * 3:(i + 1) * 3] for i in range(4)]
    assert all(sorted(i for b in p for i in b) == list(range(20)) for p in per_pass)
    assert per_pass[0] == list(single)  # the first pass is the one-pass epoch
    assert len({str(p) for p in per_pass}) == 4  # reshuffled every pass


def test_few_shot_fit_makes_the_floor_and_an_explicit_epochs_makes_one_pass(model_dirs):
    train, held = sentiment_rows(12), sentiment_rows(8, seed=1)
    floored = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full")
    history = floored.fit(train, held, batch_size=8, min_steps=12, epochs=2)  # 2 steps per pass: 3 passes an epoch
    assert [row["step"] for row in history.epochs] == [6, 12]
    assert len(history.epochs) == 2  # evaluation stays once per epoch
    plain = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full")
    assert [row["step"] for row in plain.fit(train, held, batch_size=8, epochs=2).epochs] == [2, 4]
    assert plain.training.min_steps == 0


def test_the_floor_lets_few_shot_fine_tuning_learn(model_dirs):
    """16 learnable examples: 2 optimizer steps (one pass, batch 8) leave the model at chance; with the
    floor's 60 steps it fits them."""
    train = sentiment_rows(16, seed=2)
    losses = {}
    for floor in (0, 60):
        clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full", pooling="mean", seed=0)
        history = clf.fit(train, train, batch_size=8, epochs=1, min_steps=floor, learning_rate=3e-3,
                          head_learning_rate=1e-2, warmup_ratio=0.0, calibration="none")
        losses[floor] = history.epochs[-1]["eval_loss"]
    assert losses[0] > 0.6  # chance is ln 2 = 0.693
    assert losses[60] < 0.5 * losses[0], losses


def test_a_run_interrupted_inside_a_multi_pass_epoch_resumes_exactly(model_dirs, tmp_path):
    import numpy as np
    from conftest import interrupted_after_saves

    # 12 examples, batch 8: 2 batches a pass, 4 passes an epoch; saves every 3 steps fall mid-pass
    settings = dict(epochs=2, batch_size=8, min_steps=16, learning_rate=3e-3, load_best_model_at_end=False, save_steps=3)

    def fit(folder, resume=False):
        clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full", pooling="mean")
        history = clf.fit(sentiment_rows(12), sentiment_rows(8, seed=1), checkpoint_dir=str(folder), resume=resume,
                          **settings)
        return clf, history

    whole, history = fit(tmp_path / "a")
    assert history.epochs[-1]["step"] == 16
    with interrupted_after_saves(2), pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "b")
    resumed, _ = fit(tmp_path / "b", resume=True)
    texts = [r["text"] for r in sentiment_rows(16, seed=5)]
    np.testing.assert_array_equal(whole.predict_proba(texts), resumed.predict_proba(texts))
