"""Which epochs and learning rates should a CNN get when the user sets none? A sweep on the digits transfer task.

    python bench/vision_defaults.py [--shots 10,50] [--seed 1] [--output bench/vision_defaults.json]

The text defaults (config.STRATEGY_DEFAULTS: 3 epochs, head lr 1e-3, measured on SST-2) were chosen
for thousands of sentences through a pretrained transformer; an image folder of a few hundred
pictures gives a CNN a handful of optimizer steps per epoch. This sweep measures what a CNN needs,
on the only real images available offline: scikit-learn's digits, with the demo's source model (a
narrow ResNet-10 pre-trained on digits 0-4) transferred to digits 5-9 from `shots` images per
class (drawn with `--seed`, not the demo's seed 0), scored on the remaining 5-9 images. Batch 16,
no flips, one seed per cell. Prints, per strategy and shot count, the accuracy of every
(epochs, learning rate, head learning rate) cell, the text defaults marked.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import tempfile
import time
from pathlib import Path

EPOCHS = (10, 30)
RATES = {  # encoder learning rates per strategy (feature extraction has no encoder rate)
    "feature_extraction": (None,),
    "partial": (1e-4, 3e-4, 1e-3),
    "lora": (1e-4, 3e-4, 1e-3),
    "full": (1e-4, 3e-4, 1e-3),
}
HEAD_RATES = (1e-3, 1e-2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", default="10,50", help="images per target class, comma-separated")
    parser.add_argument("--seed", type=int, default=1, help="which target images are drawn for training")
    parser.add_argument("--output", default="bench/vision_defaults.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from nlp_transfer.api import train
    from nlp_transfer.config import STRATEGY_DEFAULTS
    from nlp_transfer.vision_demo import source_config, write_digits

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_digits(root / "data", 3, seed=0)  # the source split is the demo's: pre-train exactly its model
        source = train(source_config(root))
        weights = source.path / "model" / "model.safetensors"
        print(f"source model: digits 0-4, test accuracy {source.metrics['test']['accuracy']:.4f}", flush=True)
        for shots in [int(s) for s in args.shots.split(",")]:
            splits = write_digits(root / f"shots{shots}", shots, seed=args.seed)
            for strategy, rates in RATES.items():
                for epochs, rate, head_rate in itertools.product(EPOCHS, rates, HEAD_RATES):
                    results.append(cell(weights, splits, shots, strategy, epochs, rate, head_rate))
                    print(json.dumps(results[-1]), flush=True)
                text = STRATEGY_DEFAULTS[strategy]  # the text defaults as they are, for the side-by-side
                results.append(cell(weights, splits, shots, strategy, int(text["epochs"]),
                                    None if strategy == "feature_extraction" else text["learning_rate"],
                                    text["head_learning_rate"]) | {"text_defaults": True})
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(report(results))


def cell(weights: Path, splits, shots: int, strategy: str, epochs: int, rate: float | None, head_rate: float) -> dict:
    """One sweep cell: fit on the target images, score on the held-out ones. A frozen backbone has no
    encoder rate (`rate` None): the head's is passed for both."""
    from nlp_transfer import ImageClassifier

    started = time.perf_counter()
    clf = ImageClassifier.from_pretrained(weights, strategy=strategy, image_size=32, seed=42)
    clf.fit(splits.target_train, epochs=epochs, batch_size=16, validation_split=0, hflip=False, seed=42,
            feature_cache_dir="memory", learning_rate=head_rate if rate is None else rate, head_learning_rate=head_rate)
    return {"shots": shots, "strategy": strategy, "epochs": epochs, "learning_rate": rate, "head_learning_rate": head_rate,
            "accuracy": clf.evaluate(splits.target_test)["accuracy"], "seconds": time.perf_counter() - started}


def report(results: list[dict]) -> str:
    lines = [f"{'shots':>5}  {'strategy':<20}{'epochs':>7}{'lr':>8}{'head lr':>9}{'accuracy':>10}{'s':>7}"]
    for row in results:
        lr = "-" if row["learning_rate"] is None else f"{row['learning_rate']:.0e}"
        mark = "  <- text defaults" if row.get("text_defaults") else ""
        lines.append(f"{row['shots']:>5}  {row['strategy']:<20}{row['epochs']:>7}{lr:>8}{row['head_learning_rate']:>9.0e}"
                     f"{row['accuracy']:>10.4f}{row['seconds']:>7.1f}{mark}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
