"""Does temperature scaling help on SST-2? Test ECE / Brier / NLL before and after, per strategy at its defaults.

    python bench/calibration_sst2.py                                    # full, lora, feature_extraction; seed 42
    python bench/calibration_sst2.py --strategies full --seeds 3        # three seeds (42, 43, 44) of one strategy
    python bench/calibration_sst2.py --train-limit 300 --epochs 1       # a quick look (not a result)
    python bench/calibration_sst2.py --smoke                            # 300 / 200 / 200 examples, 1 epoch: checks it runs

Each strategy trains at its defaults on the bundled all-MiniLM-L6-v2 with ``fit(train, validation,
calibration="temperature")``: the best epoch and T are both chosen on the 872 validation sentences;
the scores are on the 1,821 test sentences, which nothing chooses on. One fit gives both columns:
"after" is the model as saved (1/T folded into its output layer), "before" its test logits times T,
which is exactly the model ``calibration="none"`` would have left (same seed, same weights).
"auto" says whether the default setting would have applied T (its cross-fitted rule, re-run on the
validation logits). Accuracy is the same before and after: scaling never moves the argmax.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("full", "lora", "feature_extraction")
SMOKE_SIZES = {"train": 300, "validation": 200, "test": 200}


def run_case(strategy: str, seed: int, data: Path, limits: dict[str, int | None], epochs: int | None) -> dict:
    import numpy as np
    from hf_reference import MAX_LENGTH, model_path, read_rows

    from nlp_transfer import TextClassifier
    from nlp_transfer.training.calibration import calibration_metrics, choose_temperature, negative_log_likelihood

    train, validation, test = (read_rows(data, split, limits[split]) for split in ("train", "validation", "test"))
    clf = TextClassifier.from_pretrained(model_path(), strategy=strategy, max_length=MAX_LENGTH, seed=seed)
    started = time.perf_counter()
    clf.fit(train, validation, seed=seed, calibration="temperature", feature_cache_dir="memory",
            **({"epochs": epochs} if epochs else {}))
    seconds = time.perf_counter() - started
    t = clf.calibration["temperature"]
    truth = np.array([clf.labels.index(row["label"]) for row in test])
    after_logits = clf._predict_logits([row["text"] for row in test])  # the scaled model, as saved
    before_logits = after_logits * t  # undo the fold: the unscaled model's logits
    val_truth = np.array([clf.labels.index(row["label"]) for row in validation])
    auto = choose_temperature(clf._predict_logits([row["text"] for row in validation]) * t, val_truth, "auto", seed=seed)
    row = {"strategy": strategy, "seed": seed, "epochs": clf.training.epochs, "temperature": t, "auto_applies": auto.applied,
           "auto_reason": auto.reason, "test_accuracy": float((after_logits.argmax(axis=1) == truth).mean()),
           "seconds": seconds}
    for name, logits in (("before", before_logits), ("after", after_logits)):
        scores = calibration_metrics("single_label", _softmax(logits), truth)
        row |= {f"test_ece_{name}": scores["ece"], f"test_brier_{name}": scores["brier"],
                f"test_nll_{name}": negative_log_likelihood(logits, truth)}
    return row


def _softmax(logits):
    import numpy as np

    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def report(rows: list[dict]) -> str:
    header = (f"{'strategy':<20}{'seed':>5}{'ep':>4}{'T':>7}{'auto':>6}{'test acc':>10}{'ECE before':>12}{'ECE after':>11}"
              f"{'Brier bef':>11}{'Brier aft':>11}{'NLL bef':>9}{'NLL aft':>9}{'s':>6}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['strategy']:<20}{r['seed']:>5}{r['epochs']:>4}{r['temperature']:>7.3f}"
                     f"{'yes' if r['auto_applies'] else 'no':>6}{100 * r['test_accuracy']:>10.2f}"
                     f"{r['test_ece_before']:>12.4f}{r['test_ece_after']:>11.4f}{r['test_brier_before']:>11.4f}"
                     f"{r['test_brier_after']:>11.4f}{r['test_nll_before']:>9.4f}{r['test_nll_after']:>9.4f}{r['seconds']:>6.0f}")
    lines.append("T fitted on validation (min NLL); before: calibration='none' (the same fit unscaled), after: the "
                 "saved model; auto: whether the default calibration='auto' would apply T; s: the fit's seconds.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sst2"),
                        help="folder with train/validation/test.jsonl (text, label)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds per strategy: 42, 43, ...")
    parser.add_argument("--train-limit", type=int, help="use only the first N training sentences")
    parser.add_argument("--eval-limit", type=int, help="use only the first N validation and test sentences")
    parser.add_argument("--epochs", type=int, help="default: each strategy's own")
    parser.add_argument("--smoke", action="store_true", help="300 / 200 / 200 examples and 1 epoch: checks it runs")
    parser.add_argument("--output", help="also write the rows as JSON here")
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    limits = dict(SMOKE_SIZES) if args.smoke else {"train": args.train_limit, "validation": args.eval_limit,
                                                   "test": args.eval_limit}
    epochs = 1 if args.smoke and not args.epochs else args.epochs
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(ROOT / "bench"))
    rows = []
    for strategy in strategies:
        for seed in range(42, 42 + args.seeds):
            rows.append(run_case(strategy, seed, Path(args.data), limits, epochs))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            if args.output:
                Path(args.output).write_text(json.dumps({"limits": limits, "epochs": epochs, "rows": rows}, indent=2))
    print(report(rows))


if __name__ == "__main__":
    main()
