"""Reading photo folders as a user has them: stray files, broken files, camera orientation, big JPEGs,
renamed files and worker processes.

A user relies on: only photos are read and what was skipped is said once; a broken file stops the
run by name (or is left out when asked); a phone photo is upright; a large JPEG decodes fast but
looks the same to the model; renaming files does not throw the feature cache away (and editing one
does); more DataLoader workers give the same model.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from conftest import IMAGE_SIZE, image_folder

from nlp_transfer import ImageClassifier
from nlp_transfer.classifiers import base as classifier_base
from nlp_transfer.config.settings import DataConfig, TrainingConfig
from nlp_transfer.data.images import ImageColumns, open_rgb
from nlp_transfer.errors import ConfigError, DataError

FAST = {"epochs": 1, "batch_size": 8, "learning_rate": 3e-3, "head_learning_rate": 3e-3, "validation_split": 0.0,
            "feature_cache_dir": "memory", "num_workers": 0}


def make(resnet_dir, strategy="feature_extraction", **kwargs):
    return ImageClassifier.from_pretrained(resnet_dir, strategy=strategy, image_size=IMAGE_SIZE, **kwargs)


def warnings_naming(caplog, *names):
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and all(name in r.getMessage() for name in names)]


# --------------------------------------------------------------------------- what a folder holds
def test_only_photos_are_read_and_the_rest_is_named_once(resnet_dir, tmp_path, caplog):
    from PIL import Image

    folder = image_folder(tmp_path / "train", 8)
    (folder / "dark" / "notes.txt").write_text("taken on holiday")
    Image.new("RGB", (8, 8), (255, 0, 0)).save(folder / "bright" / "placeholder.gif")
    with caplog.at_level(logging.WARNING, logger="nlp_transfer"):
        columns = ImageColumns.from_source(str(folder), DataConfig(), "train", need_labels=True)
    assert len(columns) == 8 and all(path.endswith(".png") for path in columns.images)
    assert len(warnings_naming(caplog, "notes.txt", "placeholder.gif")) == 1
    assert len(warnings_naming(caplog, "skipped")) == 1

    caplog.clear()
    clf = make(resnet_dir)
    with caplog.at_level(logging.WARNING, logger="nlp_transfer"):
        clf.fit(str(folder), **FAST)
    assert clf.labels == ["bright", "dark"]
    assert len(warnings_naming(caplog, "notes.txt", "placeholder.gif")) == 1, caplog.text  # one fit, one warning


def test_a_broken_photo_stops_the_run_by_name_or_is_left_out(resnet_dir, tmp_path, caplog):
    folder = image_folder(tmp_path / "train", 8)
    (folder / "dark" / "broken.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match=r"broken\.jpg.*skip_bad_images"):
        ImageColumns.from_source(str(folder), DataConfig(), "train", need_labels=True)
    clf = make(resnet_dir)
    with pytest.raises(DataError, match=r"broken\.jpg"):
        clf.fit(str(folder), **FAST)

    with caplog.at_level(logging.WARNING, logger="nlp_transfer"):
        columns = ImageColumns.from_source(str(folder), DataConfig(skip_bad_images=True), "train", need_labels=True)
    assert len(columns) == 8 and not any(path.endswith("broken.jpg") for path in columns.images)
    assert len(warnings_naming(caplog, "broken.jpg")) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nlp_transfer"):
        clf.fit(str(folder), **FAST, skip_bad_images=True)
    assert len(warnings_naming(caplog, "broken.jpg")) == 1, caplog.text


def test_a_truncated_jpeg_is_named_before_training(resnet_dir, tmp_path):
    from PIL import Image

    folder = image_folder(tmp_path / "train", 8)
    photo = folder / "dark" / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(photo)
    photo.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])  # a copy or download that stopped halfway
    with pytest.raises(DataError, match=r"cut\.jpg.*truncated"):
        ImageColumns.from_source(str(folder), DataConfig(), "train", need_labels=True)
    columns = ImageColumns.from_source(str(folder), DataConfig(skip_bad_images=True), "train", need_labels=True)
    assert not any(path.endswith("cut.jpg") for path in columns.images)


def test_a_folder_of_nothing_but_broken_photos_is_an_error_even_when_skipping(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match="no image could be read"):
        ImageColumns.from_source(str(tmp_path), DataConfig(skip_bad_images=True), "train", need_labels=True)


# --------------------------------------------------------------------------- decoding
def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high, as the sensor wrote it
    stored[:8, :8] = (255, 0, 0)  # a red marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = open_rgb(str(tmp_path / "phone.jpg"))
    assert upright.size == (20, 40)  # width and height swapped
    pixels = np.asarray(upright).astype(int)
    assert pixels[:8, -8:, 0].mean() > 200 and pixels[:8, -8:, 1:].mean() < 40  # the marker is now top-right
    assert pixels[:8, :8].mean() < 40 and pixels[-8:, -8:].mean() < 40
    same = open_rgb((tmp_path / "phone.jpg").read_bytes())  # the same from bytes
    assert same.size == (20, 40) and np.array_equal(np.asarray(same), np.asarray(upright))


def test_a_large_jpeg_decodes_small_but_looks_the_same(tmp_path):
    from PIL import Image

    height, width = 1500, 2000
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1).astype(np.uint8)
    smooth[300:900, 400:1200] = (250, 250, 20)  # a block with sharp edges
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=90)
    fast = open_rgb(str(tmp_path / "big.jpg"), min_side=256)
    assert 256 <= min(fast.size) < 1500
    assert fast.size[0] / fast.size[1] == pytest.approx(width / height, rel=0.01)
    full = open_rgb(str(tmp_path / "big.jpg")).resize(fast.size, Image.BILINEAR)
    difference = np.abs(np.asarray(fast).astype(int) - np.asarray(full).astype(int))
    assert difference.mean() < 3, difference.mean()
    assert open_rgb(str(tmp_path / "big.jpg"), min_side=2000).size == (width, height)  # never below min_side


# --------------------------------------------------------------------------- feature cache keyed on content
def test_feature_cache_follows_file_content_not_names(resnet_dir, tmp_path, monkeypatch):
    from PIL import Image

    folder = image_folder(tmp_path / "train", 12)
    cache = str(tmp_path / "cache")
    calls = []
    encode = classifier_base.encode_features
    monkeypatch.setattr(classifier_base, "encode_features", lambda *a, **k: calls.append(1) or encode(*a, **k))
    settings = {**FAST, "feature_cache_dir": cache}

    first = make(resnet_dir)
    first.fit(str(folder), **settings)
    assert len(calls) == 1
    before = dict(zip(content_of(folder), first.features(str(folder), feature_cache_dir=cache)))
    assert len(calls) == 1  # the features of the fit were reused

    bright = sorted((folder / "bright").glob("*.png"))
    bright[0].rename(folder / "bright" / "zz_moved.png")  # a new name, and a new place in the sorted order
    second = make(resnet_dir)
    second.fit(str(folder), **settings)
    assert len(calls) == 1  # renaming changed nothing the model sees
    restored = second.features(str(folder), feature_cache_dir=cache)
    assert len(calls) == 1
    fresh = second.features(str(folder), feature_cache_dir="memory")
    torch.testing.assert_close(restored, fresh)  # cached rows in the renamed folder's order
    for key, row in zip(content_of(folder), restored):
        torch.testing.assert_close(row, before[key])
    reference = make(resnet_dir)
    reference.fit(str(folder), **FAST)  # encoded afresh: the head trained on the cache must match it
    torch.testing.assert_close(second.model.head.out.weight, reference.model.head.out.weight)
    calls.clear()

    edited = bright[1]
    pixels = np.asarray(Image.open(edited)).copy()
    pixels[:4, :4] = 255 - pixels[:4, :4]
    Image.fromarray(pixels).save(edited)
    make(resnet_dir).fit(str(folder), **settings)
    assert len(calls) == 1  # an edited photo is another example: encoded again


def content_of(folder):
    """The bytes of each photo, in the order an image folder reads them."""
    return [path.read_bytes() for label in sorted(p for p in folder.iterdir() if p.is_dir())
            for path in sorted(label.rglob("*.png"))]


# --------------------------------------------------------------------------- worker processes
def test_negative_num_workers_is_an_error(resnet_dir, tmp_path):
    with pytest.raises(ConfigError, match="num_workers"):
        TrainingConfig(num_workers=-1)
    folder = image_folder(tmp_path / "train", 8)
    with pytest.raises(ConfigError, match="num_workers"):
        make(resnet_dir, "full").fit(str(folder), **{**FAST, "num_workers": -1})


def test_worker_processes_do_not_change_the_model(resnet_dir, tmp_path):
    folder = image_folder(tmp_path / "train", 16)
    shutil.copytree(folder, tmp_path / "copy")  # the same photos; each run reads its own files
    weights = []
    for workers, source in ((0, folder), (2, tmp_path / "copy")):
        clf = make(resnet_dir, "full", labels=["bright", "dark"])
        clf.fit(str(source), **{**FAST, "epochs": 2, "num_workers": workers, "augment": True})
        weights.append({n: t.detach().clone() for n, t in clf.model.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, rtol=0, atol=1e-6, msg=name)
    untrained = make(resnet_dir, "full", labels=["bright", "dark"]).model.state_dict()
    assert not torch.equal(untrained["head.out.weight"], weights[0]["head.out.weight"])


def test_a_16_bit_grey_png_keeps_its_brightness(tmp_path):
    """PIL's own convert("RGB") clips 16-bit values to white; the reader scales them as it does uint16 arrays."""
    from PIL import Image

    grey = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "scan.png")
    pixels = np.asarray(open_rgb(str(tmp_path / "scan.png"))).astype(float)
    assert pixels.shape == (64, 64, 3)
    assert abs(pixels.mean() - 127.5) < 2 and pixels.min() == 0 and pixels.max() == 255
