"""The offline vision demo: real source-to-target transfer on scikit-learn's handwritten digits.

`nlp-transfer demo --vision`:

1. writes the 1,797 8x8 digit images that ship with scikit-learn as PNG folders (one per class);
2. pre-trains a small ResNet from random weights on digits 0-4 (the source task) and saves it in
   timm's format;
3. transfers it to digits 5-9 from a few examples per class (the target task) with every strategy,
   against the same ResNet trained from scratch on the same examples, scored on the remaining 5-9s.

The images are upsampled to the network's input by the model's own preprocessing (timm's).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from nlp_transfer.config.run import RunConfig, load_config

__all__ = ["SOURCE_CONFIG", "TARGET_CONFIG", "DigitSplits", "write_digits", "run_vision_demo"]

logger = logging.getLogger(__name__)

RECIPES = Path(__file__).parent / "recipes"
SOURCE_CONFIG = RECIPES / "digits-source.yaml"
TARGET_CONFIG = RECIPES / "digits-target.yaml"
SOURCE_DIGITS = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class DigitSplits:
    """The folders `write_digits` made, each laid out as <folder>/<digit>/<n>.png."""

    source_train: Path
    source_test: Path
    target_train: Path
    target_test: Path


def write_digits(folder: str | Path, shots: int = 3, seed: int = 0) -> DigitSplits:
    """scikit-learn's digits as image folders: source 0-4 (80/20 split), target 5-9 (`shots` per class to train on)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images / 16.0 * 255).round().astype(np.uint8)  # 17 grey levels -> 8-bit
    rng = np.random.default_rng(seed)
    root = Path(folder)
    splits = DigitSplits(root / "source" / "train", root / "source" / "test", root / "target" / "train", root / "target" / "test")
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(digits.target == digit))
        if digit in SOURCE_DIGITS:
            cut = int(len(rows) * 0.8)
            parts = ((splits.source_train, rows[:cut]), (splits.source_test, rows[cut:]))
        else:
            parts = ((splits.target_train, rows[:shots]), (splits.target_test, rows[shots:]))
        for split, chosen in parts:
            (split / str(digit)).mkdir(parents=True, exist_ok=True)
            for row in chosen:
                Image.fromarray(pixels[row], mode="L").save(split / str(digit) / f"{row}.png")
    return splits


def run_vision_demo(output: str | Path = "runs/demo-vision", shots: int = 3, overrides: tuple[str, ...] = ()) -> str:
    """Pre-train on digits 0-4, transfer to 5-9 with every strategy and the scratch control; return the report.

    `overrides` change the transfer runs (e.g. ``train.epochs=100``), not the pre-training.
    """
    import shutil

    from nlp_transfer.api import train
    from nlp_transfer.selection.comparison import compare

    output = Path(output)
    shutil.rmtree(output / "data", ignore_errors=True)
    splits = write_digits(output / "data", shots)
    logger.info("Wrote the digits to %s: source 0-4, target 5-9 with %d examples per class", output / "data", shots)
    source = train(source_config(output))
    source_accuracy = source.metrics["test"]["accuracy"]
    comparison = compare(target_config(output, overrides))
    count = sum(1 for _ in splits.target_train.rglob("*.png"))
    lines = [f"Source task: digits 0-4, a {source.config.model.name_or_path} from random weights, test accuracy "
             f"{100 * source_accuracy:.1f} ({source.fit_seconds:.0f} s); saved in timm format in {source.path / 'model'}.",
             f"Target task: digits 5-9 from {count} images ({shots} per class), scored on the other "
             f"{sum(1 for _ in splits.target_test.rglob('*.png'))}.", "", comparison.table()]
    return "\n".join(lines)


def source_config(output: Path) -> RunConfig:
    data = output / "data" / "source"
    return load_config(SOURCE_CONFIG, [f"data.train={data / 'train'}", f"data.test={data / 'test'}",
                                       f"output.dir={output / 'source'}"])


def target_config(output: Path, overrides: tuple[str, ...] = ()) -> RunConfig:
    data = output / "data" / "target"
    return load_config(TARGET_CONFIG, [f"model.name_or_path={output / 'source' / 'model' / 'model.safetensors'}",
                                       f"data.train={data / 'train'}", f"data.test={data / 'test'}",
                                       f"output.dir={output / 'transfer'}", *overrides])
