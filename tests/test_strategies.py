"""The strategy matrix: strategies x {tiny BERT, tiny RoBERTa} x tasks.

What a user relies on: each strategy trains exactly the weights it promises, frozen weights really
stay unchanged, a saved model reloads to the same predictions, and training lowers the loss.
"""

from __future__ import annotations

import dataclasses
import numpy as np
import pytest
import torch
from conftest import TASK_DATA, sentiment_rows
from transformers import AutoModel

from nlp_transfer import TextClassifier, strategies

STRATEGIES = [n for n, spec in strategies.STRATEGIES.items() if "text" in spec.modalities]  # every registered text strategy
OPTIONS = {"partial": {"unfreeze_last": 1}, "lora": {"r": 4}}
FAST = dict(epochs=2, batch_size=16, learning_rate=3e-3, head_learning_rate=3e-3)


def make(model_dir, strategy, task="single_label", **kwargs):
    task_name = "single_label" if task == "pairs" else task
    return TextClassifier.from_pretrained(model_dir, strategy=strategy, task=task_name, **{**OPTIONS.get(strategy, {}), **kwargs})


def skip_unsupported(strategy: str, task: str) -> None:
    """The task matrix covers each strategy's own tasks; refusals of the others: test_contrastive.py."""
    if not strategies.supports(strategy, "text", "single_label" if task == "pairs" else task) or (
            task == "pairs" and strategy == "contrastive"):
        pytest.skip(f"{strategy} does not learn {task}")


def head_size(clf) -> int:
    config = clf.model.head.config
    h, c = config.in_features, config.num_outputs
    size = h * c + c
    if config.kind == "mlp":
        size += h * h + h
    if config.normalize:
        size += 2 * h
    return size


def encoder_parameters(model_dir) -> dict[str, int]:
    """Parameter sizes of the plain encoder as transformers loads it, pooler excluded (unused)."""
    encoder = AutoModel.from_pretrained(model_dir)
    return {n: p.numel() for n, p in encoder.named_parameters() if not n.startswith("pooler.")}


# --------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_trainable_parameter_counts(tiny_model, strategy):
    clf = make(tiny_model, strategy, labels=["neg", "pos", "neutral"])
    encoder = encoder_parameters(tiny_model)
    config = clf.backbone.hf_config
    hidden, layers = config.hidden_size, config.num_hidden_layers
    expected = {
        "feature_extraction": head_size(clf),
        "partial": head_size(clf) + sum(v for n, v in encoder.items() if n.startswith(f"encoder.layer.{layers - 1}.")),
        "full": head_size(clf) + sum(encoder.values()),
        # LoRA on query and value: A (r x h) and B (h x r) each, per layer
        "lora": head_size(clf) + layers * 2 * (4 * hidden + hidden * 4),
        "gradual": head_size(clf),  # before training: the head alone (test_gradual.py follows the epochs)
        "contrastive": head_size(clf),  # the head trains; the encoder only in the pair stage before it
    }[strategy]
    extra_lora = layers * 2 * (4 * hidden * 2) if strategy == "lora" else 0
    summary = clf.parameter_summary()
    assert summary == {"trainable": expected, "total": sum(encoder.values()) + head_size(clf) + extra_lora}


def test_partial_counts_grow_with_unfreeze_last(model_dirs):
    counts = [make(model_dirs["bert"], "partial", labels=["a", "b"], unfreeze_last=n).parameter_summary()["trainable"]
              for n in (1, 2)]
    layer = sum(v for n, v in encoder_parameters(model_dirs["bert"]).items() if n.startswith("encoder.layer.0."))
    assert counts[1] - counts[0] == layer


def test_lora_defaults_per_architecture(model_dirs):
    for name, targets in (("bert", {"query", "value"}), ("roberta", {"query", "value"}), ("distilbert", {"q_lin", "v_lin"})):
        clf = TextClassifier.from_pretrained(model_dirs[name], labels=["a", "b"], strategy="lora")
        names = {n.rsplit(".lora_A", 1)[0].rsplit(".", 1)[-1] for n, _ in clf.model.named_parameters() if "lora_A" in n}
        assert names == targets, name


# --------------------------------------------------------------------------- what trains
@pytest.mark.parametrize("task", list(TASK_DATA))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_frozen_weights_unchanged_and_trainable_ones_move(tiny_model, strategy, task):
    skip_unsupported(strategy, task)
    clf = make(tiny_model, strategy, task)
    rows = TASK_DATA[task](48)
    clf.fit(rows, rows[:16], **FAST)  # fit builds the head from the data's labels
    before = {n: p.detach().clone() for n, p in clf.model.named_parameters()}
    frozen = {n for n, p in clf.model.named_parameters() if not p.requires_grad}
    clf.fit(rows, rows[:16], **FAST, load_best_model_at_end=False)
    after = dict(clf.model.named_parameters())
    if strategy == "gradual":  # a second fit starts over from the head: frozen is what its last epoch did not reach
        frozen = {n for n, p in after.items() if not p.requires_grad}
    if strategy == "contrastive":  # every encoder weight trains in the pair stage, frozen only under the head
        frozen = set()
    for name in frozen:
        assert torch.equal(before[name], after[name].detach()), f"frozen {name} changed"
    trainable = {n for n in after if n not in frozen}
    moved = {n for n in trainable if not torch.equal(before[n], after[n].detach())}
    assert moved == trainable, f"{strategy} left trainable weights where they were: {sorted(trainable - moved)[:5]}"
    encoder = {n for n in trainable if not n.startswith("head.")}
    expected = {"feature_extraction": lambda n: False, "full": lambda n: True, "lora": lambda n: "lora_" in n,
                "partial": lambda n: ".layer.1." in n,  # tiny models have 2 layers; unfreeze_last=1
                "gradual": lambda n: ".layer.1." in n,  # epoch 1 the head, epoch 2 + the top layer
                "contrastive": lambda n: True}[strategy]
    assert encoder == {n for n in after if not n.startswith("head.") and expected(n)}, strategy


def test_feature_extraction_keeps_the_encoder_in_eval_mode(model_dirs):
    clf = make(model_dirs["bert"], "feature_extraction", labels=["neg", "pos"])
    clf.model.train()
    assert clf.model.head.training and not clf.model.backbone.training
    assert not any(m.training for m in clf.model.backbone.modules())


def test_partial_keeps_frozen_layers_in_eval_mode(model_dirs):
    clf = make(model_dirs["bert"], "partial", labels=["neg", "pos"])
    clf.model.train()
    blocks = clf.backbone.blocks()
    assert not blocks[0].training and blocks[-1].training and not clf.backbone.stem().training


def test_optimizer_receives_only_trainable_parameters(model_dirs, monkeypatch):
    from nlp_transfer.classifiers import base as classifier

    seen = {}
    original = classifier.train_loop

    def spy(model, param_groups, *args, **kwargs):
        groups = param_groups()
        seen["ids"] = [id(p) for g in groups for p in g["params"]]
        seen["decay"] = {(g["weight_decay"], p.ndim >= 2) for g in groups for p in g["params"]}
        return original(model, param_groups, *args, **kwargs)

    monkeypatch.setattr(classifier, "train_loop", spy)
    clf = make(model_dirs["bert"], "partial", labels=["neg", "pos"])
    clf.fit(sentiment_rows(32), epochs=1, batch_size=16, weight_decay=0.05)
    trainable = [id(p) for p in clf.model.parameters() if p.requires_grad]
    assert sorted(seen["ids"]) == sorted(trainable)
    assert seen["decay"] == {(0.05, True), (0.0, False)}  # no decay on biases and norms


def test_layer_lr_decay_scales_lower_layers(model_dirs):
    from nlp_transfer.strategies import parameter_groups

    clf = make(model_dirs["bert"], "full", labels=["a", "b"], layer_lr_decay=0.5)
    groups = parameter_groups(clf.model, clf.strategy, 1e-3, 1e-2, 0.0)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    blocks = clf.backbone.blocks()
    assert rate[id(next(clf.model.head.parameters()))] == 1e-2
    assert rate[id(next(blocks[-1].parameters()))] == pytest.approx(1e-3)
    assert rate[id(next(blocks[0].parameters()))] == pytest.approx(5e-4)
    assert rate[id(next(clf.backbone.stem().parameters()))] == pytest.approx(2.5e-4)


# --------------------------------------------------------------------------- learning
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_loss_goes_down_on_learnable_data(tiny_model, strategy):
    clf = make(tiny_model, strategy, pooling="mean")
    lr = 1e-2 if strategy == "lora" else 3e-3
    history = clf.fit(sentiment_rows(200), sentiment_rows(50, seed=1), epochs=8, batch_size=16, learning_rate=lr,
                      head_learning_rate=1e-2, warmup_ratio=0.0)
    losses = [row["train_loss"] for row in history.epochs]
    assert losses[-1] < 0.9 * losses[0], losses  # chance level stays at ln 2 = 0.693
    if strategy == "full":
        assert clf.metrics["accuracy"] >= 0.9


def test_feature_cache_gives_the_same_model_as_running_the_encoder(model_dirs):
    rows, held = sentiment_rows(64), sentiment_rows(16, seed=1)
    probabilities = []
    for cache in (True, False):
        clf = make(model_dirs["bert"], "feature_extraction", pooling="mean")
        clf.fit(rows, held, epochs=3, batch_size=16, cache_features=cache)
        probabilities.append(clf.predict_proba([r["text"] for r in held]))
    np.testing.assert_allclose(probabilities[0], probabilities[1], atol=1e-5)


def test_same_seed_same_model(model_dirs):
    results = []
    for _ in range(2):
        clf = make(model_dirs["roberta"], "lora")
        clf.fit(sentiment_rows(48), epochs=2, batch_size=16)
        results.append(clf.predict_proba(["good film", "bad plot"]))
    np.testing.assert_array_equal(results[0], results[1])


def test_best_epoch_is_restored(model_dirs):
    clf = make(model_dirs["bert"], "full", pooling="mean")
    history = clf.fit(sentiment_rows(64), sentiment_rows(32, seed=1), epochs=3, batch_size=16)
    best = max(history.epochs, key=lambda row: row["eval_accuracy"])
    assert history.best_epoch == best["epoch"]
    assert clf.evaluate(sentiment_rows(32, seed=1))["accuracy"] == pytest.approx(best["eval_accuracy"])


def test_early_stopping_stops(model_dirs):
    clf = make(model_dirs["bert"], "feature_extraction")
    history = clf.fit(sentiment_rows(32), sentiment_rows(16, seed=1), epochs=30, learning_rate=1e-7,
                      head_learning_rate=1e-7, early_stopping_patience=2)
    assert history.stopped_early and len(history.epochs) < 30


# --------------------------------------------------------------------------- save and load
@pytest.mark.parametrize("task", list(TASK_DATA))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_save_then_load_gives_identical_predictions(tiny_model, strategy, task, tmp_path):
    skip_unsupported(strategy, task)
    clf = make(tiny_model, strategy, task)
    rows = TASK_DATA[task](48)
    clf.fit(rows, rows[:16], **FAST)
    inputs = [(r["text"], r["text_pair"]) if task == "pairs" else r["text"] for r in rows[:16]]
    clf.save(tmp_path / "model")
    loaded = TextClassifier.load(tmp_path / "model")
    assert loaded.labels == clf.labels and loaded.task.name == clf.task.name
    assert loaded.strategy.name == strategy and loaded.parameter_summary()["total"] == clf.parameter_summary()["total"]
    if strategy != "gradual":  # gradual ends with what its last epoch trained; a loaded model starts over
        assert loaded.parameter_summary() == clf.parameter_summary()
    if task == "regression":  # the transformers layout stores the head in the user's units: W * std / std, 1 ulp
        np.testing.assert_allclose(loaded.predict(inputs), clf.predict(inputs), rtol=1e-6)
    else:
        np.testing.assert_array_equal(loaded.predict_proba(inputs), clf.predict_proba(inputs))
        assert loaded.predict(inputs) == clf.predict(inputs)


def test_lora_saves_adapter_and_head_and_keeps_base_weights(model_dirs, tmp_path):
    clf = make(model_dirs["bert"], "lora", labels=["neg", "pos"])
    base = {n: p.detach().clone() for n, p in clf.model.named_parameters() if "lora_" not in n and not n.startswith("head.")}
    clf.fit(sentiment_rows(48), **FAST)
    for name, value in base.items():
        assert torch.equal(dict(clf.model.named_parameters())[name], value), name
    clf.save(tmp_path / "adapter")
    files = {p.relative_to(tmp_path / "adapter").as_posix() for p in (tmp_path / "adapter").rglob("*") if p.is_file()}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "head.safetensors", "nlp_transfer.json"} <= files
    assert not any(f.endswith((".bin", ".pt")) for f in files)
    loaded = TextClassifier.load(tmp_path / "adapter")
    texts = [r["text"] for r in sentiment_rows(16, seed=3)]
    np.testing.assert_array_equal(loaded.predict_proba(texts), clf.predict_proba(texts))


@pytest.mark.parametrize("model", ["bert", "roberta"])
def test_lora_merged_matches_unmerged(model_dirs, model, tmp_path):
    clf = make(model_dirs[model], "lora", labels=["neg", "pos"])
    clf.fit(sentiment_rows(48), epochs=2, batch_size=16, learning_rate=1e-2)
    clf.save(tmp_path / "merged", merge_lora=True)
    merged = TextClassifier.load(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter").exists()
    texts = [r["text"] for r in sentiment_rows(16, seed=3)]
    np.testing.assert_allclose(merged.predict_proba(texts), clf.predict_proba(texts), atol=1e-5)
    assert hasattr(clf.backbone.encoder, "peft_config")  # saving merged left the live model alone


@pytest.mark.parametrize("model", ["bert", "roberta", "distilbert"])
def test_native_head_loads_in_plain_transformers(model_dirs, model, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    clf = make(model_dirs[model], "full", labels=["neg", "pos"])
    clf.fit(sentiment_rows(48), **FAST)
    clf.save(tmp_path / "hf")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    texts = ["good film", "the plot was awful"]
    with torch.no_grad():
        logits = hf(**tokenizer(texts, return_tensors="pt", padding=True)).logits
    np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), clf.predict_proba(texts), atol=1e-5)
    predictions = pipeline("text-classification", model=str(tmp_path / "hf"))(texts)
    assert [p["label"] for p in predictions] == clf.predict(texts)


def test_mean_pooling_saves_in_our_layout(model_dirs, tmp_path):
    clf = make(model_dirs["bert"], "full", labels=["neg", "pos"], pooling="mean")
    clf.save(tmp_path / "m")
    assert (tmp_path / "m" / "encoder" / "config.json").is_file() and not (tmp_path / "m" / "config.json").exists()


def test_saving_over_a_model_replaces_it_whole(model_dirs, tmp_path):
    first = make(model_dirs["bert"], "lora", labels=["neg", "pos"])
    first.save(tmp_path / "m")
    second = make(model_dirs["bert"], "full", labels=["neg", "pos"])
    second.save(tmp_path / "m")
    assert not (tmp_path / "m" / "adapter").exists()  # no stale files from the first model
    assert TextClassifier.load(tmp_path / "m").strategy.name == "full"


def test_from_pretrained_recognises_a_saved_model(model_dirs, tmp_path):
    clf = make(model_dirs["bert"], "partial", labels=["neg", "pos"])
    clf.save(tmp_path / "m")
    again = TextClassifier.from_pretrained(tmp_path / "m")
    assert again.labels == ["neg", "pos"] and again.strategy.name == "partial"


# --------------------------------------------------------------------------- tasks
def test_multi_label_predicts_lists_and_probabilities_per_label(model_dirs):
    from conftest import multi_label_rows

    clf = make(model_dirs["bert"], "full", "multi_label", pooling="mean")
    clf.fit(multi_label_rows(120), multi_label_rows(30, seed=1), epochs=6, batch_size=16, learning_rate=3e-3,
            head_learning_rate=1e-2, warmup_ratio=0.0)
    probabilities = clf.predict_proba(["goal song", "the film"])
    assert probabilities.shape == (2, 2) and not np.allclose(probabilities.sum(1), 1.0)
    predictions = clf.predict(["goal song", "the film"])
    assert all(isinstance(p, list) for p in predictions)
    assert clf.evaluate(multi_label_rows(30, seed=1))["f1_micro"] > 0.7


def test_regression_predicts_numbers_and_reports_correlation(model_dirs):
    from conftest import regression_rows

    clf = make(model_dirs["bert"], "full", "regression", pooling="mean")
    clf.fit(regression_rows(160), regression_rows(40, seed=1), epochs=8, batch_size=16, learning_rate=3e-3,
            head_learning_rate=1e-2, warmup_ratio=0.0)
    metrics = clf.evaluate(regression_rows(40, seed=1))
    assert {"pearson", "spearman", "mse", "loss"} <= set(metrics) and metrics["pearson"] > 0.5
    assert all(isinstance(v, float) for v in clf.predict(["good great fine"]))


def test_confusion_matrix_in_evaluation(model_dirs):
    clf = make(model_dirs["bert"], "feature_extraction")
    clf.fit(sentiment_rows(32), epochs=1)
    matrix = clf.evaluate(sentiment_rows(20, seed=2))["confusion_matrix"]
    assert len(matrix) == 2 and sum(map(sum, matrix)) == 20


def test_bf16_on_cpu_trains_and_switches_back(model_dirs):
    clf = make(model_dirs["bert"], "lora", pooling="mean")
    clf.fit(sentiment_rows(32), epochs=1, batch_size=16, mixed_precision="bf16")
    assert np.isfinite(clf.predict_proba(["good film"])).all()
    clf.fit(sentiment_rows(32), epochs=1, batch_size=16)  # fp32 again in the same process
    assert clf._accelerator.mixed_precision == "no"


@pytest.mark.parametrize("keep_best", [False, True])
def test_metrics_follow_the_weights_kept(model_dirs, keep_best):
    """The metrics reported for a fitted model are what its weights score: evaluated again, not copied."""
    clf = make(model_dirs["bert"], "full", pooling="mean")
    held = sentiment_rows(32, seed=1)
    history = clf.fit(sentiment_rows(64), held, epochs=3, batch_size=16, load_best_model_at_end=keep_best)
    kept = history.best_epoch if keep_best else 3
    assert clf.metrics["epoch"] == kept
    again = clf.evaluate(held)
    reported = {k: v for k, v in clf.metrics.items() if k != "epoch"}
    assert set(reported) == set(again) and again["confusion_matrix"] == reported.pop("confusion_matrix")
    for key, values in reported.pop("reliability").items():
        assert again["reliability"][key] == pytest.approx(values, abs=1e-6), key
    for name, value in reported.items():  # the loss differs between epochs, so a wrong epoch's row shows
        assert again[name] == pytest.approx(value, abs=1e-6), name


def test_every_registered_strategy_is_complete_and_needs_only_what_backbones_offer():
    # one registry entry is all a strategy takes: options, defaults per modality, card wording and
    # what it uses of a backbone, which must be part of the contract both backbones implement
    from nlp_transfer.backbones import Backbone
    from nlp_transfer.config.run import StrategySection
    from nlp_transfer.storage.card import model_card  # noqa: F401  (the card reads the registry)

    contract = {name for name in dir(Backbone) if not name.startswith("_")} | set(Backbone.__annotations__)
    section = {f.name for f in dataclasses.fields(StrategySection)}
    for name, spec in strategies.STRATEGIES.items():
        assert spec.strategy.name == name and issubclass(spec.strategy, strategies.Strategy)
        assert set(spec.needs) <= contract, (name, set(spec.needs) - contract)
        for modality in spec.modalities:
            keys = set(spec.defaults[modality])
            assert {"epochs", "learning_rate", "head_learning_rate"} <= keys <= {"epochs", "learning_rate",
                                                                              "head_learning_rate", "min_steps"}
        options = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                   for f in dataclasses.fields(spec.options)}
        spec.card.format(**options)  # every {option} in the card wording is one of its options
        assert (name in section) == bool(options)  # a config section exactly for strategies with options
        assert strategies.make_strategy(name, spec.options()).describe() == {"name": name, "options": options}
