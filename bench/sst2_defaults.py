"""Each strategy at its defaults against tuned references, all measured in this one invocation: SST-2.

    python bench/sst2_defaults.py                                   # everything, about 30-45 minutes on 2 cores
    python bench/sst2_defaults.py --strategies lora,full            # a subset (and only their references)
    python bench/sst2_defaults.py --smoke                           # 300 / 200 / 200 examples, 1 epoch: checks it runs

Ours: `TextClassifier` on the bundled all-MiniLM-L6-v2 with every setting at the strategy's default,
`fit(train, validation)`, so the best epoch is chosen on the 872 validation sentences; accuracy is
reported on the 1,821 test sentences, which nothing here chooses on. The references, on the same
data and budget (hf_reference.py has the recipes, shared with hf_vs_nlp_transfer.py):

- `full`: HF Trainer, full fine-tuning, lr 5e-5, 3 epochs;
- `lora`: HF Trainer + peft LoRA r 8 (alpha 16, dropout 0.1, query/value), lr 1e-3, 3 epochs;
  both with dynamic padding + group_by_length, batch 32, max_length 128, 10% warmup, weight decay
  0.01, evaluated each epoch and the best epoch by validation accuracy kept (load_best_model_at_end);
- `feature_extraction`: scikit-learn LogisticRegression on frozen mean-pooled (L2-normalised)
  features, C chosen on validation from (0.1, 1, 10, 100);
- `partial` has no reference.

Every case runs in its own subprocess (its own seed state and accelerate state). Seconds: the whole
fit (training and the per-epoch validation), or for the logistic regression encoding and the C grid.
Writes bench/sst2_defaults.json after every case and prints the table (see RESULTS.md). `--resume`
continues an interrupted run: it keeps the cases already in the output file when they were measured
by the same code (this script, hf_reference.py, the nlp_transfer package) on the same data and
budget, and runs the rest; each case records when it finished.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("feature_extraction", "partial", "gradual", "lora", "full")
REFERENCE_OF = {"feature_extraction": "logreg", "partial": None, "gradual": None, "lora": "hf_lora", "full": "hf_full"}
DESCRIPTION = {"logreg": "LogisticRegression, frozen mean-pooled", "hf_lora": "HF Trainer LoRA r8, lr 1e-3",
               "hf_full": "HF Trainer full, lr 5e-5"}
SMOKE_SIZES = {"train": 300, "validation": 200, "test": 200}


def _rows(split: str) -> list[dict]:
    from hf_reference import read_rows

    return read_rows(Path(os.environ["BENCH_DATA"]), split, SMOKE_SIZES[split] if os.environ.get("BENCH_SMOKE") else None)


def _ours(strategy: str) -> dict:
    from hf_reference import MAX_LENGTH, model_path

    from nlp_transfer import TextClassifier

    clf = TextClassifier.from_pretrained(model_path(), strategy=strategy, max_length=MAX_LENGTH)
    settings = {"epochs": 1} if os.environ.get("BENCH_SMOKE") else {}
    train, validation = _rows("train"), _rows("validation")
    started = time.perf_counter()
    history = clf.fit(train, validation, feature_cache_dir="memory", **settings)  # a cold cache: encoding is timed
    seconds = time.perf_counter() - started
    return {"epochs": clf.training.epochs, "best_epoch": history.best_epoch,
            "validation_accuracy": clf.metrics["accuracy"],  # the best epoch's, the one kept
            "validation_by_epoch": [row["eval_accuracy"] for row in history.epochs],
            "test_accuracy": clf.evaluate(_rows("test"))["accuracy"], "seconds": seconds, **clf.parameter_summary()}


def _hf(strategy: str) -> dict:
    from hf_reference import accuracy, train_reference

    epochs = 1 if os.environ.get("BENCH_SMOKE") else 3
    ref = train_reference(strategy, "tuned", _rows("train"), epochs=epochs, validation_rows=_rows("validation"))
    return {"epochs": epochs, "best_epoch": ref.best_epoch, "validation_accuracy": ref.validation_accuracy,
            "validation_by_epoch": ref.validation_by_epoch, "test_accuracy": accuracy(ref.trainer, ref.encode(_rows("test"))),
            "seconds": ref.train_seconds}


def _logreg() -> dict:
    from hf_reference import logistic_regression

    return logistic_regression(_rows("train"), _rows("validation"), _rows("test"))


def run_case(name: str) -> dict:
    if name in OURS:
        return _ours(name)
    return {"hf_full": lambda: _hf("full"), "hf_lora": lambda: _hf("lora"), "logreg": _logreg}[name]()


def report(results: dict[str, dict]) -> str:
    header = (f"{'strategy':<20}{'best ep':>8}{'val acc':>9}{'test acc':>9}   {'reference':<48}{'ref val':>8}"
              f"{'ref test':>9}{'diff':>7}{'s':>7}{'ref s':>7}")
    lines = [header, "-" * len(header)]
    for strategy in (s for s in OURS if s in results):
        row, ref_name = results[strategy], REFERENCE_OF[strategy]
        ref = results.get(ref_name) if ref_name else None
        cells = ["-"] * 5
        if ref is not None:
            chosen = f"best ep {ref['best_epoch']}" if "best_epoch" in ref else f"C={ref['C']:g}"
            cells = [f"{DESCRIPTION[ref_name]} ({chosen})", _pct(ref["validation_accuracy"]), _pct(ref["test_accuracy"]),
                     f"{100 * (row['test_accuracy'] - ref['test_accuracy']):+.2f}", f"{ref['seconds']:.0f}"]
        lines.append(f"{strategy:<20}{row['best_epoch'] or '-':>8}{_pct(row['validation_accuracy']):>9}"
                     f"{_pct(row['test_accuracy']):>9}   {cells[0]:<48}{cells[1]:>8}{cells[2]:>9}{cells[3]:>7}"
                     f"{row['seconds']:>7.0f}{cells[4]:>7}")
    lines.append("val acc: the best epoch's validation accuracy (what chose it; for the logistic regression, its C); "
                 "test acc: those weights on the test split; diff: test acc minus the reference's.")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sst2"),
                        help="folder with train/validation/test.jsonl (text, label)")
    parser.add_argument("--strategies", default=",".join(OURS), help="comma-separated, with their references")
    parser.add_argument("--smoke", action="store_true", help="300 / 200 / 200 examples and 1 epoch: checks it runs")
    parser.add_argument("--output", help="default bench/sst2_defaults.json (--smoke: bench/sst2_defaults.smoke.json)")
    parser.add_argument("--resume", action="store_true", help="keep the cases an interrupted run of the same code finished")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    strategies = args.strategies.split(",")
    unknown = [s for s in strategies if s not in OURS]
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {', '.join(OURS)}")
    cases = [c for s in strategies for c in (s, REFERENCE_OF[s]) if c]
    env = {**os.environ, "BENCH_DATA": args.data, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench"), os.environ.get("PYTHONPATH", "")]),
           **({"BENCH_SMOKE": "1"} if args.smoke else {})}
    output = Path(args.output or ROOT / "bench" / ("sst2_defaults.smoke.json" if args.smoke else "sst2_defaults.json"))
    results = run_cases(cases, env, output, {"smoke": args.smoke, "data": args.data, "fingerprint": _fingerprint(args)},
                        args.resume)
    print(report(results))


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
        digest.update((Path(args.data) / f"{split}.jsonl").read_bytes())
    return digest.hexdigest()[:16]


if __name__ == "__main__":
    main()
