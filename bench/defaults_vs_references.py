"""Each strategy at its defaults against tuned references, all measured in one invocation: SST-2 or TREC, several seeds.

    python bench/defaults_vs_references.py                                          # SST-2, every strategy, seed 42
    python bench/defaults_vs_references.py --dataset trec --strategies feature_extraction,lora,full --seeds 42,43,44
    python bench/defaults_vs_references.py --smoke                                  # 300 / 200 / 200 examples, 1 epoch

Ours: `TextClassifier` on the bundled all-MiniLM-L6-v2 with every setting at the strategy's default
(the seed aside), `fit(train, validation)`, so the best epoch is chosen on validation; accuracy is
reported on test, which nothing here chooses on. Validation: SST-2's 872 validation sentences; TREC has
no validation split, so 10% of its training split (545 questions, stratified, drawn once with seed 0,
the same for every seed) is held out of training for it. Test: SST-2's 1,821 and TREC's 500.

The references, on the same data, seeds and budget (hf_reference.py has the recipes, shared with
hf_vs_nlp_transfer.py):

- `full`: HF Trainer, full fine-tuning, lr 5e-5, 3 epochs;
- `lora`: HF Trainer + peft LoRA r 8 (alpha 16, dropout 0.1, query/value), lr 1e-3, 3 epochs;
  both with dynamic padding + group_by_length, batch 32, max_length 128, 10% warmup, weight decay
  0.01, evaluated each epoch and the best epoch by validation accuracy kept (load_best_model_at_end);
- `feature_extraction`: scikit-learn LogisticRegression on frozen mean-pooled (L2-normalised)
  features, C chosen on validation from (0.1, 1, ..., 10^4) (deterministic: one run serves every seed);
- `partial` and `gradual` have no reference.

Every case runs in its own subprocess (its own seed state and accelerate state), seed by seed, so an
interrupted run has whole seeds. Seconds: the whole fit (training and the per-epoch validation), or
for the logistic regression encoding and the C grid. Writes bench/defaults_<dataset>.json after every
case and prints the table (mean ± std over seeds; diff: the mean of the per-seed differences on test,
± their std). `--resume` continues an interrupted run: it keeps the cases already in the output file
when they were measured by the same code (this script, hf_reference.py, the nlp_transfer package) on
the same data and budget, and runs the rest; each case records when it finished.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("feature_extraction", "partial", "gradual", "lora", "full")
DATA = ROOT.parent / "shared" / "data"
VALIDATION_FRACTION = 0.1  # of TREC's training split, which has no validation split
REFERENCE_OF = {"feature_extraction": "logreg", "partial": None, "gradual": None, "lora": "hf_lora", "full": "hf_full"}
DESCRIPTION = {"logreg": "LogisticRegression, frozen mean-pooled", "hf_lora": "HF Trainer LoRA r8, lr 1e-3",
               "hf_full": "HF Trainer full, lr 5e-5"}
SMOKE_SIZES = {"train": 300, "validation": 200, "test": 200}


def _rows(split: str) -> list[dict]:
    """One split of the benchmark's dataset; TREC's validation is held out of its training split."""
    from hf_reference import read_rows

    data = Path(os.environ["BENCH_DATA"])
    if (data / "validation.jsonl").is_file():
        rows = read_rows(data, split)
    elif split == "test":
        rows = read_rows(data, "test")
    else:
        validation, train = _held_out(read_rows(data, "train"), VALIDATION_FRACTION, seed=0)
        rows = validation if split == "validation" else train
    return rows[:SMOKE_SIZES[split]] if os.environ.get("BENCH_SMOKE") else rows


def _held_out(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(held out, rest): `fraction` of every label's rows, seeded, each part in the file's order."""
    import random

    by_label: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_label.setdefault(row["label"], []).append(index)
    rng, picked = random.Random(seed), set()
    for _, members in sorted(by_label.items()):
        picked |= set(rng.sample(members, round(fraction * len(members))))
    return [r for i, r in enumerate(rows) if i in picked], [r for i, r in enumerate(rows) if i not in picked]


def _ours(strategy: str, seed: int) -> dict:
    from hf_reference import MAX_LENGTH, model_path

    from nlp_transfer import TextClassifier

    clf = TextClassifier.from_pretrained(model_path(), strategy=strategy, max_length=MAX_LENGTH, seed=seed)
    settings = {"epochs": 1} if os.environ.get("BENCH_SMOKE") else {}
    settings["seed"] = seed
    train, validation = _rows("train"), _rows("validation")
    started = time.perf_counter()
    history = clf.fit(train, validation, feature_cache_dir="memory", **settings)  # a cold cache: encoding is timed
    seconds = time.perf_counter() - started
    return {"epochs": clf.training.epochs, "best_epoch": history.best_epoch,
            "validation_accuracy": clf.metrics["accuracy"],  # the best epoch's, the one kept
            "validation_by_epoch": [row["eval_accuracy"] for row in history.epochs],
            "test_accuracy": clf.evaluate(_rows("test"))["accuracy"], "seconds": seconds, **clf.parameter_summary()}


def _hf(strategy: str, seed: int) -> dict:
    from hf_reference import accuracy, train_reference

    epochs = 1 if os.environ.get("BENCH_SMOKE") else 3
    ref = train_reference(strategy, "tuned", _rows("train"), epochs=epochs, validation_rows=_rows("validation"), seed=seed)
    return {"epochs": epochs, "best_epoch": ref.best_epoch, "validation_accuracy": ref.validation_accuracy,
            "validation_by_epoch": ref.validation_by_epoch, "test_accuracy": accuracy(ref.trainer, ref.encode(_rows("test"))),
            "seconds": ref.train_seconds}


def _logreg() -> dict:
    from hf_reference import logistic_regression

    return logistic_regression(_rows("train"), _rows("validation"), _rows("test"))


def run_case(case: str) -> dict:
    """`case` is "<name>@<seed>"."""
    name, seed = case.split("@")
    if name in OURS:
        return _ours(name, int(seed))
    return {"hf_full": lambda: _hf("full", int(seed)), "hf_lora": lambda: _hf("lora", int(seed)), "logreg": _logreg}[name]()


def case_names(strategies: list[str], seeds: list[int]) -> list[str]:
    """Seed by seed, each strategy then its reference; the deterministic logistic regression runs once."""
    names = [_case(name, seed, seeds) for seed in seeds for strategy in strategies
             for name in (strategy, REFERENCE_OF[strategy]) if name]
    return list(dict.fromkeys(names))


def _case(name: str, seed: int, seeds: list[int]) -> str:
    return f"logreg@{seeds[0]}" if name == "logreg" else f"{name}@{seed}"


def report(results: dict[str, dict], seeds: list[int]) -> str:
    """One row per strategy: ours and the reference, mean ± std over the seeds that finished."""
    header = (f"{'strategy':<20}{'seeds':>6}{'best ep':>9}{'val acc':>14}{'test acc':>14}   {'reference':<50}"
              f"{'ref val':>14}{'ref test':>14}{'diff':>14}{'s':>6}{'ref s':>7}")
    lines = [header, "-" * len(header)]
    for strategy in (s for s in OURS if any(f"{s}@{seed}" in results for seed in seeds)):
        ref_name = REFERENCE_OF[strategy]
        ours = [results[f"{strategy}@{seed}"] for seed in seeds if f"{strategy}@{seed}" in results]
        refs = [_reference(results, ref_name, seed, seeds) for seed in seeds if f"{strategy}@{seed}" in results]
        paired = [(o, r) for o, r in zip(ours, refs) if r is not None]
        cells = ["-"] * 5
        if paired:
            refs_only = list({id(r): r for _, r in paired}.values())  # the logistic regression ran once: one value
            chosen = (f"best ep {'/'.join(str(r['best_epoch']) for r in refs_only)}" if "best_epoch" in refs_only[0]
                      else f"C={refs_only[0]['C']:g}")
            cells = [f"{DESCRIPTION[ref_name]} ({chosen})", _spread([r["validation_accuracy"] for r in refs_only]),
                     _spread([r["test_accuracy"] for r in refs_only]),
                     _spread([o["test_accuracy"] - r["test_accuracy"] for o, r in paired], signed=True),
                     f"{statistics.mean(r['seconds'] for r in refs_only):.0f}"]
        epochs = "/".join(str(o["best_epoch"] or "-") for o in ours)
        lines.append(f"{strategy:<20}{len(ours):>6}{epochs:>9}{_spread([o['validation_accuracy'] for o in ours]):>14}"
                     f"{_spread([o['test_accuracy'] for o in ours]):>14}   {cells[0]:<50}{cells[1]:>14}{cells[2]:>14}"
                     f"{cells[3]:>14}{statistics.mean(o['seconds'] for o in ours):>6.0f}{cells[4]:>7}")
    lines.append("best ep: per seed; val acc: the best epoch's validation accuracy (what chose it; for the logistic "
                 "regression, its C); test acc: those weights on the test split; diff: ours minus the reference on "
                 "test, per seed, then mean ± std; s: mean seconds per fit.")
    return "\n".join(lines)


def _reference(results: dict[str, dict], name: str | None, seed: int, seeds: list[int]) -> dict | None:
    return None if name is None else results.get(_case(name, seed, seeds))


def _spread(values: list[float], signed: bool = False) -> str:
    """Percent, mean ± std (std over seeds; none for one)."""
    mean = 100 * statistics.mean(values)
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text + (f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else "")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="sst2", choices=("sst2", "trec"), help="a folder of ../shared/data")
    parser.add_argument("--data", help="another folder with train/test.jsonl (and validation.jsonl) of text, label")
    parser.add_argument("--strategies", default=",".join(OURS), help="comma-separated, with their references")
    parser.add_argument("--seeds", default="42", help="comma-separated seeds, every strategy and reference on each")
    parser.add_argument("--smoke", action="store_true", help="300 / 200 / 200 examples and 1 epoch: checks it runs")
    parser.add_argument("--output", help="default bench/defaults_<dataset>.json (--smoke: .smoke.json)")
    parser.add_argument("--resume", action="store_true", help="keep the cases an interrupted run of the same code finished")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    args.data = args.data or str(DATA / args.dataset)
    strategies, seeds = args.strategies.split(","), [int(seed) for seed in args.seeds.split(",")]
    unknown = [s for s in strategies if s not in OURS]
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {', '.join(OURS)}")
    if not (Path(args.data) / "train.jsonl").is_file():
        parser.error(f"{args.data} has no train.jsonl; pass --data a folder with train.jsonl and test.jsonl")
    env = {**os.environ, "BENCH_DATA": args.data, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench"), os.environ.get("PYTHONPATH", "")]),
           **({"BENCH_SMOKE": "1"} if args.smoke else {})}
    name = Path(args.data).name
    output = Path(args.output or ROOT / "bench" / f"defaults_{name}{'.smoke' if args.smoke else ''}.json")
    results = run_cases(case_names(strategies, seeds), env, output,
                        {"smoke": args.smoke, "data": args.data, "fingerprint": _fingerprint(args)}, args.resume)
    print(report(results, seeds))


def run_cases(cases: list[str], env: dict, output: Path, header: dict, resume: bool) -> dict[str, dict]:
    """Each case in a subprocess, the output file rewritten after each; with `resume`, the cases a run
    with the same header (code, data, budget) already finished are kept."""
    saved = json.loads(output.read_text()) if resume and output.is_file() else {}
    same = all(saved.get(key) == value for key, value in header.items())
    results: dict[str, dict] = dict(saved.get("results", {})) if same else {}
    if resume and saved and not same:
        print(f"{output}: measured by other code, data or budget; starting over", file=sys.stderr, flush=True)
    for name in cases:
        if name in results:
            print(f"{name}: kept (finished {results[name]['finished_at']})", file=sys.stderr, flush=True)
            continue
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(f"{name}: FAILED\n{done.stderr[-3000:]}", file=sys.stderr, flush=True)
            continue
        results[name] = json.loads(done.stdout.strip().splitlines()[-1]) | {
            "finished_at": datetime.datetime.now().isoformat(timespec="seconds")}
        print(f"{name}: {time.perf_counter() - started:.0f}s {json.dumps(results[name])}", file=sys.stderr, flush=True)
        output.write_text(json.dumps({**header, "results": results}, indent=2))
    return results


def _fingerprint(args: argparse.Namespace) -> str:
    """A hash of what the numbers depend on: this script, hf_reference.py, the nlp_transfer sources, the data."""
    digest = hashlib.sha256()
    package = Path(importlib.util.find_spec("nlp_transfer").submodule_search_locations[0])
    for path in [Path(__file__), Path(__file__).with_name("hf_reference.py"), *sorted(package.rglob("*.py"))]:
        digest.update(path.read_bytes())
    for split in ("train", "validation", "test"):
        if (Path(args.data) / f"{split}.jsonl").is_file():
            digest.update((Path(args.data) / f"{split}.jsonl").read_bytes())
    return digest.hexdigest()[:16]


if __name__ == "__main__":
    main()
