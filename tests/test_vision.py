"""The strategy matrix on a tiny timm ResNet, plus image data, timm format and the errors of bad images.

A user relies on the same promises as for text: each strategy trains exactly what it says, frozen
weights and BatchNorm statistics stay as they were, a saved model (and timm itself) reloads it to
the same predictions, and training lowers the loss.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import IMAGE_SIZE, image_folder, square_images
from torch import nn

from nlp_transfer import ImageClassifier, strategies
from nlp_transfer.errors import DataError, ModelLoadError, StrategyError

STRATEGIES = [n for n, spec in strategies.STRATEGIES.items() if "vision" in spec.modalities]  # every registered vision strategy
OPTIONS = {"partial": {"unfreeze_last": 1}, "lora": {"r": 4}}
FAST = dict(epochs=2, batch_size=16, learning_rate=3e-3, head_learning_rate=3e-3, validation_split=0.0,
            feature_cache_dir="memory")


def make(resnet_dir, strategy, **kwargs):
    return ImageClassifier.from_pretrained(resnet_dir, strategy=strategy, image_size=IMAGE_SIZE,
                                           **{**OPTIONS.get(strategy, {}), **kwargs})


def timm_name(name: str) -> str:
    """'backbone.encoder.base_model.model.layer4.0.conv1.base_layer.weight' (LoRA-wrapped) -> 'layer4.0.conv1.weight'."""
    return name.removeprefix("backbone.encoder.").replace("base_model.model.", "").replace(".base_layer", "")


def backbone_state(clf) -> dict[str, torch.Tensor]:
    """Every backbone tensor, BatchNorm running statistics included, by its timm name."""
    return {timm_name(n): t.detach().clone() for n, t in clf.backbone.encoder.state_dict().items() if "lora_" not in n}


# --------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_trainable_parameter_counts(resnet_dir, strategy):
    clf = make(resnet_dir, strategy, labels=["a", "b", "c"])
    base = clf.backbone.base_encoder
    head = 64 * 3 + 3
    own = {n: p.numel() for n, p in base.named_parameters() if "lora_" not in n}
    r = 4
    plain = make(resnet_dir, "full", labels=["a", "b", "c"]).backbone.base_encoder  # before peft wrapped it
    # LoRA on every conv of the top two stages: A is a conv (r x in x k x k), B a 1x1 conv (out x r)
    lora = sum(r * m.in_channels * m.kernel_size[0] * m.kernel_size[1] + m.out_channels * r
               for n, m in plain.named_modules() if n.startswith(("layer3", "layer4")) and isinstance(m, nn.Conv2d))
    expected = {
        "feature_extraction": head,
        "partial": head + sum(v for n, v in own.items() if n.startswith("layer4.")),
        "full": head + sum(own.values()),
        "lora": head + lora,
        "gradual": head,  # before training: the head alone (test_gradual_unfreezes_resnet_stages_top_down: the epochs)
    }[strategy]
    assert lora > 0
    assert clf.parameter_summary()["trainable"] == expected


def test_partial_unfreezes_stages_from_the_top(resnet_dir):
    counts = [make(resnet_dir, "partial", labels=["a", "b"], unfreeze_last=n).parameter_summary()["trainable"] for n in (1, 2)]
    layer3 = sum(p.numel() for n, p in make(resnet_dir, "full", labels=["a", "b"]).backbone.encoder.named_parameters()
                 if n.startswith("layer3."))
    assert counts[1] - counts[0] == layer3
    with pytest.raises(StrategyError, match="4 layers"):
        make(resnet_dir, "partial", labels=["a", "b"], unfreeze_last=5)


# --------------------------------------------------------------------------- what trains
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_frozen_weights_and_batchnorm_statistics_unchanged(resnet_dir, strategy):
    images, labels = square_images(48)
    clf = make(resnet_dir, strategy, labels=["bright", "dark"])  # labels given: the strategy applies now, before fit
    start = {n: p.detach().clone() for n, p in clf.model.named_parameters()}
    clf.fit((images, labels), **FAST)
    before = backbone_state(make(resnet_dir, strategy))
    after = backbone_state(clf)
    frozen = {"feature_extraction": lambda n: True, "lora": lambda n: True, "full": lambda n: False,
              "partial": lambda n: not n.startswith("layer4."),
              "gradual": lambda n: not n.startswith("layer4.")}[strategy]  # FAST: epoch 1 the head, epoch 2 + layer4
    for name, tensor in before.items():
        if frozen(name):
            assert torch.equal(tensor, after[name]), f"{strategy} changed frozen {name}"
    weights = {n: p for n, p in clf.model.named_parameters() if not n.startswith("head.")}
    moved = {n for n, p in weights.items() if not torch.equal(start[n], p.detach())}
    promised = {n for n in weights if ("lora_" in n if strategy == "lora" else not frozen(timm_name(n)))}
    assert moved == promised, f"{strategy}: frozen but moved {sorted(moved - promised)[:3]}, " \
                              f"trainable but unchanged {sorted(promised - moved)[:3]}"
    assert {n for n, p in weights.items() if p.requires_grad} == promised
    if strategy == "partial":  # BatchNorm of the trained stage does learn its statistics
        assert not torch.equal(before["layer4.0.bn1.running_mean"], after["layer4.0.bn1.running_mean"])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_save_load_same_predictions(resnet_dir, strategy, tmp_path):
    images, labels = square_images(40)
    clf = make(resnet_dir, strategy)
    clf.fit((images, labels), **FAST)
    clf.save(tmp_path / "model")
    again = ImageClassifier.load(tmp_path / "model")
    assert again.labels == clf.labels and again.strategy.name == strategy
    np.testing.assert_allclose(again.predict_proba(images[:10]), clf.predict_proba(images[:10]), atol=1e-6)
    assert again.parameter_summary()["total"] == clf.parameter_summary()["total"]
    if strategy != "gradual":  # gradual ends with what its last epoch trained; a loaded model starts over
        assert again.parameter_summary() == clf.parameter_summary()


def test_saved_model_is_a_timm_checkpoint(resnet_dir, tmp_path):
    """timm alone (pretrained_cfg_overlay) loads the saved model to the same logits."""
    import timm
    from conftest import TINY_RESNET

    images, labels = square_images(32)
    clf = make(resnet_dir, "full")
    clf.fit((images, labels), **FAST)
    clf.save(tmp_path / "model")
    model = timm.create_model("resnet18", pretrained=True, num_classes=2, **TINY_RESNET,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "model" / "model.safetensors"), num_classes=2))
    model.eval()
    batch = torch.stack([clf._dataset(clf._examples(images[:6], clf.data_config, "x", False), None)[i]["pixel_values"]
                         for i in range(6)])
    with torch.no_grad():
        theirs = torch.softmax(model(batch), dim=-1).numpy()
    np.testing.assert_allclose(theirs, clf.predict_proba(images[:6]), atol=1e-5)


def test_lora_merged_save_is_plain_timm(resnet_dir, tmp_path):
    images, labels = square_images(32)
    clf = make(resnet_dir, "lora")
    clf.fit((images, labels), **FAST)
    clf.save(tmp_path / "merged", merge_lora=True)
    assert not (tmp_path / "merged" / "adapter").exists()
    again = ImageClassifier.load(tmp_path / "merged")
    np.testing.assert_allclose(again.predict_proba(images[:8]), clf.predict_proba(images[:8]), atol=1e-5)


def test_loss_decreases_on_learnable_images(resnet_dir):
    images, labels = square_images(64)
    clf = make(resnet_dir, "full")
    history = clf.fit((images, labels), **{**FAST, "epochs": 8, "learning_rate": 1e-2, "head_learning_rate": 1e-2, "logging_steps": 1})
    losses = [row["loss"] for row in history.steps]
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])
    assert clf.evaluate(square_images(40, seed=1))["accuracy"] >= 0.9


def test_images_get_cnn_defaults_not_the_text_ones(resnet_dir):
    from nlp_transfer.config.run import load_config, resolve
    from nlp_transfer.strategies import strategy_defaults

    for strategy in STRATEGIES:
        defaults = strategy_defaults(strategy, "vision")
        config = resolve(load_config(None, ["model.type=vision", f"model.name_or_path={resnet_dir}",
                                            f"strategy.name={strategy}"]))
        assert (config.train.epochs, config.train.learning_rate, config.train.head_learning_rate) == (
            defaults["epochs"], defaults["learning_rate"], defaults["head_learning_rate"])
        text = resolve(load_config(None, [f"strategy.name={strategy}"])).train
        assert text.epochs == strategy_defaults(strategy, "text")["epochs"]  # text keeps its own
    history = make(resnet_dir, "feature_extraction").fit(square_images(24), batch_size=16, validation_split=0.0,
                                                         feature_cache_dir="memory")
    assert len(history.epochs) == strategy_defaults("feature_extraction", "vision")["epochs"] == 30


def test_feature_extraction_caches_features(resnet_dir, tmp_path, monkeypatch):
    images, labels = square_images(32)
    settings = {**FAST, "feature_cache_dir": str(tmp_path / "cache")}
    first = make(resnet_dir, "feature_extraction")
    first.fit((images, labels), **settings)
    second = make(resnet_dir, "feature_extraction")
    calls = []
    original = type(second.backbone).forward
    monkeypatch.setattr(type(second.backbone), "forward", lambda self, **b: calls.append(1) or original(self, **b))
    second.fit((images, labels), **settings)
    assert calls == []  # every feature came from the disk cache
    np.testing.assert_allclose(second.model.head.out.weight.detach(), first.model.head.out.weight.detach(), atol=1e-6)


# --------------------------------------------------------------------------- image data
def test_image_folder_and_csv_sources(resnet_dir, tmp_path):
    folder = image_folder(tmp_path / "train", 24)
    clf = make(resnet_dir, "feature_extraction")
    clf.fit(str(folder), **FAST)
    assert clf.labels == ["bright", "dark"]
    rows = ["image,label"] + [f"{p.parent.name}/{p.name},{p.parent.name}" for p in sorted(folder.rglob("*.png"))]
    (folder / "index.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")  # paths relative to the file
    scores = clf.evaluate(str(folder / "index.csv"))
    assert scores == clf.evaluate(str(folder))
    assert clf.predict([str(next(folder.rglob("*.png")))])[0] in ("bright", "dark")


def test_grayscale_rgba_and_palette_images_are_read(resnet_dir, tmp_path):
    from PIL import Image

    images, labels = square_images(12)
    for i, (image, label) in enumerate(zip(images, labels)):
        (tmp_path / label).mkdir(exist_ok=True)
        picture = Image.fromarray(image)
        picture = [picture.convert("L"), picture.convert("RGBA"), picture.convert("P"), picture][i % 4]
        picture.save(tmp_path / label / f"{i}.png")
    clf = make(resnet_dir, "feature_extraction")
    clf.fit(str(tmp_path), **FAST)
    assert len(clf.predict(str(tmp_path / "dark"))) == 6


def test_unreadable_image_is_named(resnet_dir, tmp_path):
    folder = image_folder(tmp_path / "train", 8)
    broken = folder / "dark" / "broken.png"
    broken.write_bytes(b"not an image at all")
    clf = make(resnet_dir, "feature_extraction")
    with pytest.raises(DataError, match="broken.png"):
        clf.fit(str(folder), **FAST)
    assert clf.labels is None  # nothing adopted from data that failed


def test_class_folder_without_images(resnet_dir, tmp_path):
    folder = image_folder(tmp_path / "train", 8)
    (folder / "cats").mkdir()
    (folder / "cats" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="cats.*has no images"):
        make(resnet_dir, "feature_extraction").fit(str(folder), **FAST)


def test_unknown_timm_model_lists_close_matches():
    with pytest.raises(ModelLoadError, match="resnet18"):
        ImageClassifier.from_pretrained("resnet181", random_init=True)


def test_weights_file_without_architecture(resnet_dir, tmp_path):
    import shutil

    shutil.copy(resnet_dir / "model.safetensors", tmp_path / "weights.safetensors")
    with pytest.raises(ModelLoadError, match="architecture="):
        ImageClassifier.from_pretrained(tmp_path / "weights.safetensors")
    with pytest.raises(ModelLoadError, match="missing"):  # the wrong architecture for these weights
        ImageClassifier.from_pretrained(tmp_path / "weights.safetensors", architecture="resnet34")
    with pytest.raises(ModelLoadError, match="does not exist"):
        ImageClassifier.from_pretrained(tmp_path / "nothing.safetensors", architecture="resnet18")


def test_lora_target_not_in_model(resnet_dir):
    with pytest.raises(StrategyError, match="conv9"):
        make(resnet_dir, "lora", labels=["a", "b"], target_modules=["conv9"])
    clf = make(resnet_dir, "lora", labels=["a", "b"], target_modules=["conv2"])  # short names match every stage
    adapted = {n.split(".lora_A")[0] for n, _ in clf.model.named_parameters() if "lora_A" in n}
    assert len(adapted) == 4 and all(n.endswith("conv2") for n in adapted)


# --------------------------------------------------------------------------- gradual, run level, CLI
def test_gradual_unfreezes_resnet_stages_top_down(resnet_dir):
    images, labels = square_images(32)
    clf = make(resnet_dir, "gradual")
    before = backbone_state(make(resnet_dir, "gradual"))
    clf.fit((images, labels), **{**FAST, "epochs": 3})  # epoch 1: head; 2: + layer4; 3: + layer3
    after = backbone_state(clf)
    changed = {name.split(".")[0] for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"layer3", "layer4"}  # the stem, layer1 and layer2 (and their BatchNorm statistics) untouched


def test_cli_train_evaluate_predict_on_an_image_folder(resnet_dir, tmp_path, capsys):
    from nlp_transfer.cli import main

    train = image_folder(tmp_path / "train", 96)
    test = image_folder(tmp_path / "test", 16, seed=3)
    out = tmp_path / "run"
    code = main(["train", "configs/tests/tiny.yaml", "model.type=vision", f"model.name_or_path={resnet_dir}",
                 f"model.image_size={IMAGE_SIZE}", "strategy.name=full", f"data.train={train}", f"data.test={test}",
                 "data.validation=null", "data.validation_split=0", "train.epochs=8", "train.batch_size=16",
                 "train.learning_rate=1e-2", "train.head_learning_rate=1e-2",
                 f"output.dir={out}", "eval.save_predictions=true"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["test"]["accuracy"] >= 0.75
    assert (out / "model" / "config.json").is_file() and (out / "model" / "model.safetensors").is_file()
    assert "image-classification" in (out / "README.md").read_text()
    predictions = [json.loads(line) for line in (out / "predictions-test.jsonl").read_text().splitlines()]
    assert len(predictions) == 16 and predictions[0]["image"].endswith(".png")
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(test), "--output", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] == metrics["final"]["test"]["accuracy"]
    capsys.readouterr()
    image = sorted((test / "bright").glob("*.png"))[0]
    assert main(["predict", str(out), "--image", str(image)]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["image"] == str(image) and set(row["probabilities"]) == {"bright", "dark"}


def test_vision_config_needs_a_vision_model():
    from nlp_transfer.config.run import load_config
    from nlp_transfer.errors import ConfigError

    with pytest.raises(ConfigError, match="timm model"):
        load_config(None, ["model.type=vision"])


@pytest.mark.slow
def test_digits_demo_every_strategy_beats_scratch(tmp_path):
    from nlp_transfer.demos.vision import run_vision_demo

    report = run_vision_demo(tmp_path / "demo")
    compared = json.loads((tmp_path / "demo" / "transfer" / "compare.json").read_text())
    scores = {row["strategy"]: row["metrics"]["accuracy"] for row in compared["strategies"]}
    assert set(scores) == {"feature_extraction", "partial", "lora", "full", "scratch"}
    for strategy in ("feature_extraction", "partial", "lora", "full"):
        assert scores[strategy] > scores["scratch"] + 0.03, (strategy, scores)
    assert "Source task: digits 0-4" in report


def test_datasets_image_dataset(resnet_dir):
    import datasets
    from PIL import Image

    images, labels = square_images(24)
    dataset = datasets.Dataset.from_dict({"image": [Image.fromarray(i) for i in images], "label": labels})
    dataset = dataset.cast_column("image", datasets.Image())
    clf = make(resnet_dir, "feature_extraction")
    clf.fit(dataset, **FAST)
    np.testing.assert_allclose(clf.predict_proba(dataset), clf.predict_proba(images), atol=1e-6)  # PNG is lossless


def test_image_regression_and_multi_label(resnet_dir, tmp_path):
    images, labels = square_images(64)
    brightness = [float(image.mean()) / 25.5 for image in images]  # 0-10
    regressor = make(resnet_dir, "full", task="regression")
    regressor.fit((images, brightness), **{**FAST, "epochs": 8, "learning_rate": 1e-2, "head_learning_rate": 1e-2})
    assert regressor.evaluate((images, brightness))["pearson"] > 0.7
    from nlp_transfer.storage.card import model_card
    from nlp_transfer.storage.model_folder import read_metadata

    scores = regressor.evaluate((images, brightness))
    card = model_card(read_metadata(regressor.save(tmp_path / "regressor")), results={"train": scores})
    assert "| split | pearson | spearman | mse | loss |" in card and "type: pearson" in card  # table and model-index
    tags = [[label] + (["even"] if i % 4 < 2 else []) for i, label in enumerate(labels)]
    tagger = make(resnet_dir, "full", task="multi_label")
    tagger.fit((images, tags), **FAST)
    assert tagger.labels == ["bright", "dark", "even"] and tagger.predict_proba(images[:3]).shape == (3, 3)
    tagger.save(tmp_path / "tagger")
    again = ImageClassifier.load(tmp_path / "tagger")
    assert again.predict(images[:8]) == tagger.predict(images[:8])
