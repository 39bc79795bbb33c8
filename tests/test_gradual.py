"""Gradual unfreezing: what trains at each epoch, what the optimizer holds, the rates, and resume.

Tiny BERT has 2 layers, so 3 layer groups top down: layer 1, layer 0, the embeddings (the stem).
A recorder wraps the engine's epoch so each epoch's trainable set and optimizer are seen as
training meets them (after the strategy's hook and the optimizer's update).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import interrupted_after_saves, sentiment_rows
from torch import nn

from nlp_transfer import TextClassifier
from nlp_transfer.training import engine
from nlp_transfer.errors import ConfigError

LAYER = "backbone.encoder.encoder.layer.{}."
STEM = "backbone.encoder.embeddings."
FAST = dict(batch_size=16, learning_rate=3e-3, head_learning_rate=3e-3, load_best_model_at_end=False)


def expected_prefixes(epoch: int, per_epoch: int) -> set[str]:
    """What trains in `epoch` of tiny BERT: the head, then layer 1, layer 0, the stem."""
    groups = [LAYER.format(1), LAYER.format(0), STEM]
    return {"head.", *groups[: min((epoch - 1) * per_epoch, len(groups))]}


def trains(name: str, prefixes: set[str]) -> bool:
    return any(name.startswith(prefix) for prefix in prefixes)


@pytest.fixture
def recorder(monkeypatch):
    """Per epoch: trainable names, the optimizer's parameters and groups, and weights before and after."""
    epochs: list[dict] = []
    original = engine._train_epoch

    def recording(model, loader, optimizer, scheduler, settings, accelerator, progress, *args):
        names = {id(p): n for n, p in model.named_parameters()}
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        row = {"epoch": progress.epoch, "trainable": {n for n, p in model.named_parameters() if p.requires_grad},
               "optimizer": [names[id(p)] for g in optimizer.param_groups for p in g["params"]],
               "lr": {names[id(p)]: (g["initial_lr"], g["lr"]) for g in optimizer.param_groups for p in g["params"]},
               "adam_steps": {names[id(p)]: int(optimizer.state[p]["step"]) for g in optimizer.param_groups
                              for p in g["params"] if p in optimizer.state},
               "before": before}
        result = original(model, loader, optimizer, scheduler, settings, accelerator, progress, *args)
        row["after"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        epochs.append(row)
        return result

    monkeypatch.setattr(engine, "_train_epoch", recording)
    return epochs


def gradual(model_dirs, **options) -> TextClassifier:
    return TextClassifier.from_pretrained(model_dirs["bert"], strategy="gradual", pooling="mean", **options)


@pytest.mark.parametrize("per_epoch, epochs", [(1, 4), (2, 3)])
def test_each_epoch_trains_the_head_and_the_next_groups_top_down(model_dirs, recorder, per_epoch, epochs):
    clf = gradual(model_dirs, groups_per_epoch=per_epoch)
    clf.fit(sentiment_rows(32), epochs=epochs, **FAST)
    assert [row["epoch"] for row in recorder] == list(range(1, epochs + 1))
    everything = {n for n, _ in clf.model.named_parameters()}
    for row in recorder:
        prefixes = expected_prefixes(row["epoch"], per_epoch)
        assert row["trainable"] == {n for n in everything if trains(n, prefixes)}, row["epoch"]
    assert recorder[-1]["trainable"] == everything  # both schedules reach the stem by their last epoch


def test_the_optimizer_holds_exactly_the_trainable_parameters_at_every_epoch(model_dirs, recorder):
    clf = gradual(model_dirs)
    clf.fit(sentiment_rows(32), epochs=4, **FAST)
    for row in recorder:
        assert len(row["optimizer"]) == len(set(row["optimizer"])), "a parameter is in two groups"
        assert set(row["optimizer"]) == row["trainable"], row["epoch"]


def test_weights_already_training_keep_their_adam_state(model_dirs, recorder):
    gradual(model_dirs).fit(sentiment_rows(32), epochs=3, **FAST)  # 2 steps per epoch
    third = recorder[2]["adam_steps"]
    assert third["head.out.weight"] == 4  # since epoch 1: not reset when layer 1 and then layer 0 joined
    assert third[LAYER.format(1) + "output.dense.weight"] == 2  # since epoch 2
    assert LAYER.format(0) + "output.dense.weight" not in third  # joined now, no step yet


def test_frozen_groups_do_not_change_and_unfrozen_ones_do(model_dirs, recorder):
    clf = gradual(model_dirs)
    clf.fit(sentiment_rows(32), epochs=4, **FAST)
    for row in recorder:
        for name, before in row["before"].items():
            changed = not torch.equal(before, row["after"][name])
            if name not in row["trainable"]:
                assert not changed, f"frozen {name} changed in epoch {row['epoch']}"
        moved = {n for n in row["trainable"] if not torch.equal(row["before"][n], row["after"][n])}
        # every trainable weight moved, not just one per group
        assert moved == row["trainable"], (row["epoch"], sorted(row["trainable"] - moved)[:5])
        assert len({group_of(n) for n in moved}) == row["epoch"]  # the head, then one more group each epoch


def group_of(name: str) -> str:
    return "head" if name.startswith("head.") else "stem" if name.startswith(STEM) else name.split(".layer.")[1].split(".")[0]


def test_learning_rates_decay_down_the_layers(model_dirs, recorder):
    clf = gradual(model_dirs, layer_lr_decay=0.5)
    clf.fit(sentiment_rows(32), epochs=4, batch_size=16, learning_rate=1e-3, head_learning_rate=1e-2,
            scheduler="constant", warmup_ratio=0.0)
    rates = recorder[-1]["lr"]
    for name, (initial, now) in rates.items():
        expected = (1e-2 if name.startswith("head.") else 1e-3 if name.startswith(LAYER.format(1))
                    else 5e-4 if name.startswith(LAYER.format(0)) else 2.5e-4)
        assert initial == pytest.approx(expected) and now == pytest.approx(expected), name


def test_groups_joining_late_follow_the_schedule(model_dirs, recorder):
    gradual(model_dirs, layer_lr_decay=1.0).fit(sentiment_rows(32), epochs=3, batch_size=16, learning_rate=1e-3,
                                                 head_learning_rate=1e-3, warmup_ratio=0.0)
    # Linear decay to 0 over 6 steps: 2 done at the start of epoch 2, 4 at the start of epoch 3.
    assert recorder[1]["lr"][LAYER.format(1) + "output.dense.weight"] == (1e-3, pytest.approx(1e-3 * 4 / 6))
    assert recorder[2]["lr"][LAYER.format(0) + "output.dense.weight"] == (1e-3, pytest.approx(1e-3 * 2 / 6))
    assert recorder[2]["lr"]["head.out.weight"] == (1e-3, pytest.approx(1e-3 * 2 / 6))


def test_each_epoch_logs_what_trains(model_dirs, caplog):
    with caplog.at_level(logging.INFO, logger="nlp_transfer.strategies"):
        gradual(model_dirs).fit(sentiment_rows(32), epochs=4, **FAST)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("gradual:")]
    assert lines[0].startswith("gradual: epoch 1 trains the head only (0 of 3 groups), 66 trainable parameters")
    assert lines[1].startswith("gradual: epoch 2 trains the head + layer 2 (1 of 3 groups)")
    assert lines[2].startswith("gradual: epoch 3 trains the head + layers 1-2 (2 of 3 groups)")
    assert lines[3].startswith("gradual: epoch 4 trains the head + layers 1-2 + the stem (3 of 3 groups)")


def test_a_second_fit_starts_over_from_the_head(model_dirs, recorder):
    clf = gradual(model_dirs)
    clf.fit(sentiment_rows(32), epochs=3, **FAST)
    assert clf.parameter_summary()["trainable"] > 1000  # ends with what the last epoch trained
    clf.fit(sentiment_rows(32), epochs=2, **FAST)
    assert recorder[3]["trainable"] == {n for n, _ in clf.model.named_parameters() if n.startswith("head.")}


def test_restoring_the_best_epoch_restores_layers_unfrozen_after_it(model_dirs, monkeypatch):
    from nlp_transfer.classifiers import base as classifier

    clf = gradual(model_dirs, labels=["neg", "pos"])
    initial = {n: p.detach().clone() for n, p in clf.model.named_parameters() if not n.startswith("head.")}
    scores = iter([0.9, 0.1, 0.1])  # epoch 1 (the head alone) is the best
    original = classifier.Classifier._score

    def rigged(self, extra, dataset=None):
        score = original(self, extra, dataset)
        return lambda logits, targets: {**score(logits, targets), "accuracy": next(scores)}

    monkeypatch.setattr(classifier.Classifier, "_score", rigged)
    history = clf.fit(sentiment_rows(32), sentiment_rows(16, seed=1), epochs=3, **{**FAST, "load_best_model_at_end": True})
    assert history.best_epoch == 1
    for name, value in clf.model.named_parameters():
        if name in initial:
            assert torch.equal(value.detach(), initial[name]), f"{name} kept a later epoch's value"


@pytest.mark.parametrize("options, message", [
    ({"groups_per_epoch": 0}, "groups_per_epoch must be at least 1, got 0"),
    ({"groups_per_epoch": 1.5}, "groups_per_epoch must be an int, got 1.5"),
    ({"layer_lr_decay": 0.0}, "layer_lr_decay must be in (0, 1], got 0.0"),
    ({"layer_lr_decay": 2.6}, "layer_lr_decay must be in (0, 1], got 2.6"),
    ({"unfreeze_last": 2}, "'unfreeze_last' is an option of strategy partial, but the strategy is 'gradual'"),
])
def test_bad_options_are_config_errors(model_dirs, options, message):
    with pytest.raises(ConfigError) as error:
        gradual(model_dirs, **options)
    assert message in str(error.value)


def test_run_config_has_a_gradual_section():
    from nlp_transfer.config.run import defaults_yaml, load_config, resolve

    config = load_config(None, ["strategy.name=gradual", "strategy.gradual.groups_per_epoch=2"])
    assert config.strategy.options() == {"groups_per_epoch": 2, "layer_lr_decay": 0.9}
    assert resolve(config).train.epochs == 4 and resolve(config).train.learning_rate == 1e-4
    text = defaults_yaml()
    assert "  gradual:  # Gradual unfreezing" in text and "groups_per_epoch: 1  # Layer groups unfrozen" in text
    with pytest.raises(ConfigError, match="strategy.gradual.groups_per_epoch must be at least 1, got 0"):
        load_config(None, ["strategy.name=gradual", "strategy.gradual.groups_per_epoch=0"])


def test_any_backbone_with_stem_and_blocks():
    """The contract alone decides the groups: a ResNet-like backbone (stem, 4 stages, a final norm)."""
    from nlp_transfer.modeling.transfer_model import TransferModel
    from nlp_transfer.strategies import make_strategy

    class Stages(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)) for _ in range(4))
            self.norm = nn.BatchNorm2d(4)

        def stem(self) -> nn.Module:
            return self.conv

        def blocks(self) -> list[nn.Module]:
            return list(self.stages)

    model = TransferModel(Stages(), nn.Linear(4, 2), task=None)
    strategy = make_strategy("gradual", {"groups_per_epoch": 2})
    strategy.apply(model)
    trainable = lambda: {n.split(".")[1] + n.split(".")[2] if n.startswith("backbone.stages") else n.split(".")[1]  # noqa: E731
                         for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")}
    assert trainable() == set()
    assert strategy.on_epoch_start(model, 2) and trainable() == {"stages3", "stages2", "norm"}
    model.train()
    assert model.backbone.stages[3].training and not model.backbone.stages[1].training  # frozen BatchNorm stays fixed
    assert strategy.on_epoch_start(model, 3) and trainable() == {"stages3", "stages2", "stages1", "stages0", "norm"}
    assert strategy.on_epoch_start(model, 4) and "conv" in trainable()
    assert not strategy.on_epoch_start(model, 5)  # nothing left to unfreeze


@pytest.mark.parametrize("interrupt_at, save_steps, best", [(2, None, False), (3, 3, True)],
                         ids=["after-epoch-2", "mid-epoch-2"])
def test_interrupted_and_resumed_equals_uninterrupted(model_dirs, tmp_path, interrupt_at, save_steps, best):
    settings = dict(epochs=4, batch_size=8, learning_rate=3e-3, load_best_model_at_end=best, save_steps=save_steps)

    def fit(folder, resume=False):
        clf = gradual(model_dirs)
        clf.fit(sentiment_rows(32), sentiment_rows(16, seed=1), checkpoint_dir=str(folder), resume=resume, **settings)
        return clf

    whole = fit(tmp_path / "a")
    # 4 batches an epoch: interrupt after epoch 2, or at step 6 of 8 in it
    with interrupted_after_saves(interrupt_at), pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "b")
    resumed = fit(tmp_path / "b", resume=True)
    for (name, a), (_, b) in zip(whole.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(a, b), f"{name} differs after resuming"
    texts = [r["text"] for r in sentiment_rows(16, seed=5)]
    np.testing.assert_array_equal(whole.predict_proba(texts), resumed.predict_proba(texts))
    strip = lambda rows: [{k: v for k, v in row.items() if "second" not in k} for row in rows]  # noqa: E731
    assert strip(resumed.history.epochs) == strip(whole.history.epochs)
