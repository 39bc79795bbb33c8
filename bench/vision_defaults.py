"""Which epochs and learning rates should a CNN get when the user sets none? A sweep on the digits transfer task.

    python bench/vision_defaults.py [--shots 10,50] [--seed 1] [--output bench/vision_defaults.json]   # ~10 min on 2 cores

The text defaults (strategy_defaults(name, "text"): 3 epochs, head lr 1e-3, measured on SST-2) were chosen
for thousands of sentences through a pretrained transformer; an image folder of a few hundred
pictures gives a CNN a handful of optimizer steps per epoch. This sweep measures what a CNN needs,
on the only real images available offline: scikit-learn's digits, with the demo's source model (a
narrow ResNet-10 pre-trained on digits 0-4) transferred to digits 5-9 from `shots` images per
class (drawn with `--seed`, not the demo's seed 0). Batch 16, no flips, one seed per cell.

Choose on validation, report on test: 30% of each class's training images (3 of 10, 15 of 50) are
held out as the validation split; every cell trains on the rest, and is scored on validation and on
the test images (the remaining 5-9 images, which choose nothing). Per strategy the chosen cell is the
one with the best validation accuracy averaged over the shot counts (one default serves both; the
first in sweep order among equals: fewer epochs, lower rates). Prints every cell's validation and
test accuracy, the text defaults marked, then per strategy the chosen cell against the current
vision defaults (strategy_defaults(name, "vision")), with their test accuracies. The output file is rewritten after every cell;
`--resume` keeps the cells of an interrupted run of the same code, shots and seed (every cell is
seeded, so a kept cell is the one a fresh run would measure).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import shutil
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
VALIDATION_SHARE = 0.3  # of each class's training images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", default="10,50", help="images per target class, comma-separated")
    parser.add_argument("--seed", type=int, default=1, help="which target images are drawn for training")
    parser.add_argument("--output", default="bench/vision_defaults.json")
    parser.add_argument("--resume", action="store_true",
                        help="keep the cells an interrupted run of the same code, shots and seed finished")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from nlp_transfer.strategies import strategy_defaults

    output = Path(args.output)
    header = {"shots": args.shots, "seed": args.seed, "fingerprint": _fingerprint()}
    saved = json.loads(output.read_text()) if args.resume and output.is_file() else {}
    results = saved.get("cells", []) if all(saved.get(k) == v for k, v in header.items()) else []

    def keep(row: dict) -> None:  # saved after every cell, so a killed sweep can be resumed
        results.append(row)
        print(json.dumps(row), flush=True)
        output.write_text(json.dumps({**header, "cells": results}, indent=2))

    sweep([int(s) for s in args.shots.split(",")], args.seed, {_cell_id(row) for row in results}, keep)
    chosen = choose(results, {name: strategy_defaults(name, "vision") for name in RATES})
    output.write_text(json.dumps({**header, "cells": results, "chosen": chosen}, indent=2))
    print(report(results))
    print()
    print(report_choice(chosen))


def sweep(shot_counts: list[int], seed: int, done: set[tuple], keep) -> None:
    """Pre-train the source model, then every cell not in `done` per shot count, each passed to `keep`."""
    from nlp_transfer.api import train
    from nlp_transfer.strategies import strategy_defaults
    from nlp_transfer.demos.vision import source_config, write_digits

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_digits(root / "data", 3, seed=0)  # the source split is the demo's: pre-train exactly its model
        source = train(source_config(root))  # seeded: the same model on every start
        weights = source.path / "model" / "model.safetensors"
        print(f"source model: digits 0-4, test accuracy {source.metrics['test']['accuracy']:.4f}", flush=True)
        for shots in shot_counts:
            splits = write_digits(root / f"shots{shots}", shots, seed=seed)
            fit, validation = carve_validation(splits.target_train, root / f"shots{shots}" / "carved", seed)
            for strategy, rates in RATES.items():
                text = strategy_defaults(strategy, "text")  # the text defaults as they are, for the side-by-side
                specs = [(epochs, rate, head_rate, False) for epochs, rate, head_rate in
                         itertools.product(EPOCHS, rates, HEAD_RATES)]
                specs.append((int(text["epochs"]), None if strategy == "feature_extraction" else text["learning_rate"],
                              text["head_learning_rate"], True))
                for epochs, rate, head_rate, text_defaults in specs:
                    if (shots, strategy, epochs, rate, head_rate, text_defaults) not in done:
                        row = cell(weights, fit, validation, splits.target_test, shots, strategy, epochs, rate, head_rate)
                        keep(row | ({"text_defaults": True} if text_defaults else {}))


def _cell_id(row: dict) -> tuple:
    return (row["shots"], row["strategy"], row["epochs"], row["learning_rate"], row["head_learning_rate"],
            bool(row.get("text_defaults")))


def _fingerprint() -> str:
    """A hash of what the cells depend on: this script and the nlp_transfer sources."""
    import hashlib
    import importlib.util

    digest = hashlib.sha256(Path(__file__).read_bytes())
    for path in sorted(Path(importlib.util.find_spec("nlp_transfer").submodule_search_locations[0]).rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def carve_validation(train: Path, folder: Path, seed: int) -> tuple[Path, Path]:
    """Copy each class's training images into fit/ and validation/ (VALIDATION_SHARE of them, seeded)."""
    fit, validation = folder / "fit", folder / "validation"
    for label in sorted(p for p in train.iterdir() if p.is_dir()):
        images = sorted(label.glob("*.png"))
        random.Random(f"{seed}-{label.name}").shuffle(images)
        held = max(1, round(VALIDATION_SHARE * len(images)))
        for target, part in ((validation, images[:held]), (fit, images[held:])):
            (target / label.name).mkdir(parents=True, exist_ok=True)
            for image in part:
                shutil.copy(image, target / label.name / image.name)
    return fit, validation


def cell(weights: Path, fit: Path, validation: Path, test: Path, shots: int, strategy: str, epochs: int,
         rate: float | None, head_rate: float) -> dict:
    """One sweep cell: fit on the training images left after carving, score on validation and test. A
    frozen backbone has no encoder rate (`rate` None): the head's is passed for both."""
    from nlp_transfer import ImageClassifier

    started = time.perf_counter()
    clf = ImageClassifier.from_pretrained(weights, strategy=strategy, image_size=32, seed=42)
    clf.fit(fit, epochs=epochs, batch_size=16, validation_split=0, hflip=False, seed=42,
            feature_cache_dir="memory", learning_rate=head_rate if rate is None else rate, head_learning_rate=head_rate)
    return {"shots": shots, "strategy": strategy, "epochs": epochs, "learning_rate": rate, "head_learning_rate": head_rate,
            "validation_accuracy": clf.evaluate(validation)["accuracy"], "test_accuracy": clf.evaluate(test)["accuracy"],
            "seconds": time.perf_counter() - started}


def _key(row: dict) -> tuple:
    return row["strategy"], row["epochs"], row["learning_rate"], row["head_learning_rate"]


def choose(results: list[dict], current: dict[str, dict[str, float]]) -> list[dict]:
    """Per strategy: the swept cell with the best validation accuracy averaged over the shot counts,
    and the current default's cell, each with its validation and test accuracy per shot count."""
    cells: dict[tuple, list[dict]] = {}
    for row in results:
        if not row.get("text_defaults"):
            cells.setdefault(_key(row), []).append(row)
    out = []
    for strategy in [s for s in RATES if any(key[0] == s for key in cells)]:
        mine = [rows for key, rows in cells.items() if key[0] == strategy]
        best = max(mine, key=lambda rows: sum(r["validation_accuracy"] for r in rows) / len(rows))  # first of equals
        now = current[strategy]
        now_key = (strategy, int(now["epochs"]), None if strategy == "feature_extraction" else now["learning_rate"],
                   now["head_learning_rate"])
        out.append({"strategy": strategy, "chosen": _summary(best),
                    "current": _summary(cells[now_key]) if now_key in cells else None, "same": _key(best[0]) == now_key})
    return out


def _summary(rows: list[dict]) -> dict:
    return {"epochs": rows[0]["epochs"], "learning_rate": rows[0]["learning_rate"],
            "head_learning_rate": rows[0]["head_learning_rate"],
            "mean_validation_accuracy": sum(r["validation_accuracy"] for r in rows) / len(rows),
            "validation": {r["shots"]: r["validation_accuracy"] for r in rows},
            "test": {r["shots"]: r["test_accuracy"] for r in rows}}


def report(results: list[dict]) -> str:
    lines = [f"{'shots':>5}  {'strategy':<20}{'epochs':>7}{'lr':>8}{'head lr':>9}{'val acc':>9}{'test acc':>10}{'s':>7}"]
    for row in results:
        mark = "  <- text defaults" if row.get("text_defaults") else ""
        lines.append(f"{row['shots']:>5}  {row['strategy']:<20}{row['epochs']:>7}{_rate(row['learning_rate']):>8}"
                     f"{row['head_learning_rate']:>9.0e}{row['validation_accuracy']:>9.4f}{row['test_accuracy']:>10.4f}"
                     f"{row['seconds']:>7.1f}{mark}")
    return "\n".join(lines)


def report_choice(chosen: list[dict]) -> str:
    shots = "/".join(str(n) for n in chosen[0]["chosen"]["test"]) if chosen else ""
    lines = [f"{'strategy':<20}{'cell':<10}{'epochs':>7}{'lr':>8}{'head lr':>9}{'mean val':>10}  "
             f"{'val acc (' + shots + ' shots)':<22}{'test acc (' + shots + ' shots)':<22}"]
    for item in chosen:
        for which in [w for w in ("chosen", "current") if item[w]]:
            cell = item[which]
            per = lambda split: " / ".join(f"{v:.4f}" for v in cell[split].values())  # noqa: E731
            lines.append(f"{item['strategy'] if which == 'chosen' else '':<20}{which:<10}{cell['epochs']:>7}"
                         f"{_rate(cell['learning_rate']):>8}{cell['head_learning_rate']:>9.0e}"
                         f"{cell['mean_validation_accuracy']:>10.4f}  {per('validation'):<22}{per('test'):<22}")
        lines.append(f"{'':<20}{'(the same cell)' if item['same'] else '(validation picks another cell)'}")
    return "\n".join(lines)


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0e}"


if __name__ == "__main__":
    main()
