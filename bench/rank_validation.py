"""Does the ranking mean something? Rank candidates on SST-2 and TREC, fine-tune each, correlate.

    python bench/rank_validation.py [--data ../shared/data] [--samples 1000] [--epochs 3] [--smoke]

Candidates (all offline): the bundled MiniLM-L6 with mean pooling, with CLS pooling, truncated to
its first 2 and 4 layers, and the same architecture with random weights (the negative control).
Per dataset: `rank_backbones` on a seeded sample of the training split (timed), then full
fine-tuning of every candidate with the same budget (same sample, epochs, learning rate, batch
size, max_length 64), scored on the evaluation split (SST-2: validation; TREC: test), and a
frozen-encoder classifier (feature_extraction with its defaults) on the same sample. Prints per
candidate LogME, probe accuracy and both accuracies, Kendall's tau-b between each score and the
accuracy its target predicts (fine_tuning: the fully fine-tuned model; feature_extraction: the
frozen one), and the ranking's cost against one epoch of full fine-tuning of the best
candidate on the whole training split (estimated from its measured samples/s). Each ranking
readout is TARGET:N, `rank_backbones(target=TARGET, pool_layers=N)`: fine_tuning (token states,
mean-pooled: the default) or feature_extraction (each candidate's own pooling).

``--smoke`` runs everything on 200 examples and one epoch (checks that nothing is broken,
measures nothing). Results go to bench/rank_validation.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CANDIDATES = [MODEL, f"{MODEL}@cls", f"{MODEL}@layers=2", f"{MODEL}@layers=4", f"{MODEL}@random"]
DATASETS = {"sst2": ("train.jsonl", "validation.jsonl"), "trec": ("train.jsonl", "test.jsonl")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    parser.add_argument("--datasets", default="sst2,trec")
    parser.add_argument("--samples", type=int, default=1000, help="training examples (seeded sample) for rank and fine-tuning")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--readouts", default="fine_tuning:4,feature_extraction:4,feature_extraction:1",
                        help="TARGET:N rankings (rank_backbones target and pool_layers), comma-separated; the first "
                             "is rank_backbones' default and is timed against fine-tuning")
    parser.add_argument("--smoke", action="store_true", help="200 examples, 1 epoch: a quick end-to-end check")
    parser.add_argument("--output", default="bench/rank_validation.json")
    args = parser.parse_args()
    if args.smoke:
        args.samples, args.epochs = 200, 1
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("nlp_transfer.selection.ranking").setLevel(logging.INFO)

    results = {}
    for name in args.datasets.split(","):
        results[name] = run_dataset(Path(args.data) / name, *DATASETS[name], args)
        print(report(name, results[name]), flush=True)
    Path(args.output).write_text(json.dumps(results, indent=2))


def run_dataset(folder: Path, train_file: str, eval_file: str, args) -> dict:
    import numpy as np

    from nlp_transfer import rank_backbones
    from nlp_transfer.data.tables import read_table

    table = read_table(folder / train_file, "train")
    rows = [dict(zip(table, values)) for values in zip(*table.values())]
    keep = np.sort(np.random.default_rng(42).choice(len(rows), size=min(args.samples, len(rows)), replace=False))
    sample = [rows[i] for i in keep]
    out = {"train_size": len(rows), "samples": len(sample), "epochs": args.epochs, "rankings": {}, "candidates": []}
    for readout in args.readouts.split(","):
        target, _, pool_layers = readout.partition(":")
        started = time.perf_counter()
        # the ranking sees exactly the sample the candidates are fine-tuned on; a cold cache, so it is timed in full
        ranking = rank_backbones(sample, CANDIDATES, max_length=64, max_samples=None, seed=42, twin=False,
                                 feature_cache_dir="memory", pool_layers=int(pool_layers), target=target)
        out["rankings"][readout] = {"seconds": time.perf_counter() - started, "pool_layers": int(pool_layers),
                                    **ranking.to_dict()}
        print(ranking.table(), flush=True)
    for spec in CANDIDATES:
        accuracy, seconds, samples_per_second = fine_tune(spec, sample, folder / eval_file, args)
        frozen_accuracy, frozen_seconds, _ = fine_tune(spec, sample, folder / eval_file, args, "feature_extraction")
        out["candidates"].append({"candidate": spec, "fine_tuned_accuracy": accuracy, "fine_tune_seconds": seconds,
                                  "train_samples_per_second": samples_per_second, "frozen_accuracy": frozen_accuracy,
                                  "frozen_seconds": frozen_seconds})
        print(json.dumps(out["candidates"][-1]), flush=True)
    return out


def fine_tune(spec: str, sample: list[dict], eval_file: Path, args, strategy: str = "full") -> tuple[float, float, float]:
    """Accuracy, seconds and training samples/s of `strategy`: full with the bench's budget, or
    feature_extraction with its own defaults (20 epochs of the head on cached features)."""
    from nlp_transfer import Candidate, TextClassifier

    candidate = Candidate.parse(spec)
    started = time.perf_counter()
    clf = TextClassifier.from_pretrained(candidate.name, strategy=strategy, pooling=candidate.pooling,
                                         num_layers=candidate.layers, random_init=candidate.random, max_length=64, seed=42)
    budget = {"epochs": args.epochs, "learning_rate": args.learning_rate} if strategy == "full" else {}
    history = clf.fit(sample, batch_size=32, validation_split=0, seed=42, feature_cache_dir="memory", **budget)
    seconds = time.perf_counter() - started
    seen = sum(row["train_samples_per_second"] * row["train_seconds"] for row in history.epochs)
    train_seconds = sum(row["train_seconds"] for row in history.epochs)
    return clf.evaluate(eval_file)["accuracy"], seconds, seen / train_seconds


def report(name: str, result: dict) -> str:
    from scipy.stats import kendalltau

    tuned = {row["candidate"]: row for row in result["candidates"]}
    best = max(result["candidates"], key=lambda row: row["fine_tuned_accuracy"])
    epoch_seconds = result["train_size"] / best["train_samples_per_second"]
    result["one_epoch_seconds_best"] = epoch_seconds
    lines = [f"\n{name}: {result['samples']} training examples (of {result['train_size']}), {result['epochs']} epochs "
             "of full fine-tuning (lr 5e-5, batch 32, max_length 64)"]
    for readout, ranking in result["rankings"].items():
        rows = ranking["candidates"]
        predicted = "fine_tuned_accuracy" if ranking["target"] == "fine_tuning" else "frozen_accuracy"
        accuracy = [tuned[row["candidate"]][predicted] for row in rows]
        tau_logme = kendalltau([row["logme"] for row in rows], accuracy)
        tau_probe = kendalltau([row["probe_accuracy"] for row in rows], accuracy)
        ranking["tau_logme"], ranking["tau_probe"] = tau_logme.statistic, tau_probe.statistic
        lines += [f"\nranked for {ranking['target']}: mean of the top {ranking['pool_layers']} layer(s) (capped at the "
                  "depth), " + ("token states mean-pooled" if ranking["target"] == "fine_tuning" else
                                "each candidate's own pooling"),
                  f"{'candidate':<52}{'LogME':>9}{'probe':>8}{'tuned acc':>11}{'frozen acc':>12}{'rank s':>8}"
                  f"{'tune s':>8}", "-" * 108]
        for row in rows:
            mark = " !" if row["warning"] else ""
            lines.append(f"{row['candidate'] + mark:<52}{row['logme']:>9.4f}{row['probe_accuracy']:>8.4f}"
                         f"{tuned[row['candidate']]['fine_tuned_accuracy']:>11.4f}"
                         f"{tuned[row['candidate']]['frozen_accuracy']:>12.4f}{row['seconds']:>8.1f}"
                         f"{tuned[row['candidate']]['fine_tune_seconds']:>8.1f}")
        lines.append(f"Kendall tau-b vs {predicted.replace('_', ' ')}: LogME {tau_logme.statistic:+.2f} (p={tau_logme.pvalue:.2f}), "
                     f"probe {tau_probe.statistic:+.2f} (p={tau_probe.pvalue:.2f}); ranking took {ranking['seconds']:.0f} s "
                     f"= {ranking['seconds'] / epoch_seconds:.2f} x one epoch of full fine-tuning of the best candidate "
                     f"on all {result['train_size']} examples (~{epoch_seconds:.0f} s at its "
                     f"{best['train_samples_per_second']:.0f} samples/s)")
        lines.append("! flagged below the random twin: " + (", ".join(r["candidate"] for r in rows if r["warning"]) or "none"))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
