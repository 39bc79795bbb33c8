"""Token classification on CoNLL-2003: every strategy against Hugging Face's run_ner.py recipe, all measured here.

    python bench/conll_ner.py                                  # everything (hours on 2 cores; minutes on a GPU)
    python bench/conll_ner.py --cases full,hf_full --precision fp32,bf16   # a subset, both precisions
    python bench/conll_ner.py --smoke                          # 300 / 100 / 100 sentences, 1 epoch: checks it runs
    python bench/conll_ner.py --resume                         # continue an interrupted run of the same code

Ours: `TokenClassifier` on the bundled all-MiniLM-L6-v2 (max_length 128), `fit(train, validation)`, so
the best epoch is chosen by validation entity F1 and restored; scored on test, which chooses nothing.

- `feature_extraction`: `--fe-epochs` (5) on cached frozen features, in six variants (pool_layers 1
  or 4; with 4, combine_layers mean or concat; pooling first or mean sub-token). The variant with the
  best validation F1 is the one reported on test; every variant's validation F1 is listed.
- `partial`, `gradual`, `lora`, `full`: the strategy's defaults, for its default epochs (read from
  `nlp_transfer.strategies`) unless `--epochs` sets one budget for every fine-tuning case.
- `scratch`: the same architecture with random weights (random_init), full, lr 1e-3, full's epochs.

The references follow transformers' examples/pytorch/token-classification/run_ner.py:
`AutoModelForTokenClassification` on the same folder, labels on each word's first sub-token (-100
elsewhere), truncation at 128 sub-tokens, `DataCollatorForTokenClassification` (dynamic padding, no
length grouping), `Trainer` with batch 32, 10% warmup, weight decay 0.01, an evaluation per epoch with
seqeval entity F1 on words (the -100 positions dropped) and `load_best_model_at_end` on it.
`hf_full` trains everything at lr 5e-5 for full's epochs; `hf_frozen` freezes the encoder
(`model.base_model.requires_grad_(False)`) and trains the linear classifier at lr 1e-3 (a linear
probe: 5e-5 would barely move it in 5 epochs) for `--fe-epochs`. run_ner.py scores only the words
that survive truncation; the result records how many words each split lost (`dropped_words`).

`--precision bf16` (or `fp32,bf16` for both) runs `full` with mixed_precision="bf16" and `hf_full`
with `bf16=True`; the other cases run in fp32. Every case runs in its own subprocess; fit seconds
are the whole fit (encoding, training, per-epoch validation), samples/s the training passes alone,
peak memory `PeakMemory` around the fit (GPU memory on CUDA, else RSS). Writes bench/conll_ner.json
after every case, and the tables to bench/conll_ner.md (--smoke: conll_ner.smoke.json / .md).
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SMOKE_SIZES = {"train": 300, "validation": 100, "test": 100}
FINE_TUNED = ("partial", "gradual", "lora", "full")
# the frozen-feature variants: name -> TokenClassifier settings (pool_layers 1 has nothing to combine)
FE_VARIANTS = {
    f"fe-{layers}-{pooling}": {"pool_layers": int(layers[1]), "combine_layers": layers[2:] or "mean", "pooling": pooling}
    for layers in ("l1", "l4mean", "l4concat") for pooling in ("first", "mean")
}
HF_LEARNING_RATES = {"hf_full": 5e-5, "hf_frozen": 1e-3}
PRECISIONS = ("fp32", "bf16")
WITH_PRECISION = ("full", "hf_full")  # the cases --precision applies to
BASE_CASES = ("feature_extraction", *FINE_TUNED, "scratch", "hf_frozen", "hf_full")


# ----------------------------------------------------------------- one case (in its own subprocess)
def _budget() -> dict[str, Any]:
    return json.loads(os.environ["BENCH_BUDGET"])


def _rows(split: str) -> list[dict]:
    from hf_reference import read_rows

    smoke = _budget()["smoke"]
    return read_rows(Path(os.environ["BENCH_DATA"]), split, SMOKE_SIZES[split] if smoke else None)


def _epochs(strategy: str) -> int:
    """1 for --smoke; else --fe-epochs for frozen cases, --epochs or the strategy's default for the rest."""
    from nlp_transfer.strategies import strategy_defaults

    budget = _budget()
    if budget["smoke"]:
        return 1
    if strategy == "feature_extraction":
        return budget["fe_epochs"]
    return budget["epochs"] or int(strategy_defaults(strategy)["epochs"])


def _split(name: str) -> tuple[str, str]:
    base, _, precision = name.partition("@")
    return base, precision or "fp32"


def _ours(name: str) -> dict:
    from hf_reference import MAX_LENGTH, model_path

    from nlp_transfer.classifiers.tokens import TokenClassifier
    from nlp_transfer.training.memory import PeakMemory

    base, precision = _split(name)
    strategy = "feature_extraction" if base in FE_VARIANTS else "full" if base == "scratch" else base
    model_settings = {**FE_VARIANTS.get(base, {}), **({"random_init": True} if base == "scratch" else {})}
    fit_settings = {"learning_rate": 1e-3} if base == "scratch" else {}
    clf = TokenClassifier.from_pretrained(model_path(), strategy=strategy, max_length=MAX_LENGTH, **model_settings)
    train, validation, test = _rows("train"), _rows("validation"), _rows("test")
    with PeakMemory() as peak:
        started = time.perf_counter()
        history = clf.fit(train, validation, epochs=_epochs(strategy), feature_cache_dir="memory",  # a cold cache
                          mixed_precision="bf16" if precision == "bf16" else "no", **fit_settings)
        seconds = time.perf_counter() - started
    samples = sum(row["train_samples_per_second"] * row["train_seconds"] for row in history.epochs)
    return {"strategy": strategy, "settings": model_settings, "precision": precision, "epochs": clf.training.epochs,
            "learning_rate": clf.training.learning_rate, "head_learning_rate": clf.training.head_learning_rate,
            "selected_by": history.metric_name, "best_epoch": history.best_epoch,
            "validation_f1": history.best_metric, "validation_f1_by_epoch": [row["eval_f1"] for row in history.epochs],
            "test": clf.evaluate(test), "fit_seconds": seconds,
            "train_samples_per_second": samples / sum(row["train_seconds"] for row in history.epochs),
            **_memory(peak), "trainable_parameters": clf.parameter_summary()["trainable"],
            "total_parameters": clf.parameter_summary()["total"]}


def _memory(peak) -> dict:
    return {"peak_mb": peak.megabytes, "peak_increase_mb": peak.increase_megabytes, "memory_kind": peak.kind}


def _word_tags(logits, label_ids, labels: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    """run_ner.py's post-processing: argmax per sub-token, the -100 positions dropped (one tag per word)."""
    import numpy as np

    predicted = np.argmax(logits, axis=-1)
    references, predictions = [], []
    for guess, gold in zip(predicted, label_ids):
        keep = gold != -100
        references.append([labels[i] for i in gold[keep]])
        predictions.append([labels[i] for i in guess[keep]])
    return references, predictions


def seqeval_scores(references: list[list[str]], predictions: list[list[str]]) -> dict[str, Any]:
    """Entity-level micro P/R/F1 (seqeval's default, conlleval mode), word accuracy and per-type scores."""
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    report = classification_report(references, predictions, output_dict=True, zero_division=0)
    per_type = {name: {"precision": float(row["precision"]), "recall": float(row["recall"]), "f1": float(row["f1-score"]),
                       "support": int(row["support"])} for name, row in report.items() if not name.endswith(" avg")}
    return {"f1": float(f1_score(references, predictions, zero_division=0)),
            "precision": float(precision_score(references, predictions, zero_division=0)),
            "recall": float(recall_score(references, predictions, zero_division=0)),
            "accuracy": float(accuracy_score(references, predictions)), "per_type": per_type}


def _hf_encoder(labels: list[str]):
    """rows -> a tokenized `datasets.Dataset` as run_ner.py's tokenize_and_align_labels builds it."""
    from datasets import Dataset
    from hf_reference import MAX_LENGTH, model_path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    index = {tag: i for i, tag in enumerate(labels)}

    def align(batch: dict) -> dict:
        encoded = tokenizer(batch["tokens"], truncation=True, max_length=MAX_LENGTH, is_split_into_words=True)
        encoded["labels"], encoded["dropped_words"] = [], []
        for i, tags in enumerate(batch["tags"]):
            words, previous, row = encoded.word_ids(batch_index=i), None, []
            for word in words:
                row.append(-100 if word is None or word == previous else index[tags[word]])
                previous = word
            encoded["labels"].append(row)
            encoded["dropped_words"].append(len(tags) - 1 - max((w for w in words if w is not None), default=-1))
        return encoded

    def encode(rows: list[dict]):
        table = Dataset.from_dict({"tokens": [r["tokens"] for r in rows], "tags": [r["tags"] for r in rows]})
        return table.map(align, batched=True, remove_columns=["tokens", "tags"])

    encode.tokenizer = tokenizer
    return encode


def _epoch_timer():
    """A callback timing each epoch's training passes (the Trainer evaluates after on_epoch_end)."""
    import torch
    from transformers import TrainerCallback

    class EpochTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.started = 0.0

        def on_epoch_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - self.started)

    return EpochTimer()


def _hf(name: str) -> dict:
    import tempfile

    import torch
    from hf_reference import BATCH, EVAL_BATCH, SEED, model_path
    from transformers import (
        AutoModelForTokenClassification,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    from nlp_transfer.training.memory import PeakMemory

    base, precision = _split(name)
    train, validation, test = _rows("train"), _rows("validation"), _rows("test")
    labels = sorted({tag for row in train for tag in row["tags"]})  # run_ner.py's get_label_list
    encode = _hf_encoder(labels)
    data = {"train": encode(train), "validation": encode(validation), "test": encode(test)}
    torch.manual_seed(SEED)
    model = AutoModelForTokenClassification.from_pretrained(model_path(), num_labels=len(labels),
                                                            id2label=dict(enumerate(labels)),
                                                            label2id={t: i for i, t in enumerate(labels)})
    if base == "hf_frozen":
        model.base_model.requires_grad_(False)
    epochs = _epochs("feature_extraction" if base == "hf_frozen" else "full")
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH,
        learning_rate=HF_LEARNING_RATES[base], num_train_epochs=epochs, warmup_steps=0.1, weight_decay=0.01,
        bf16=precision == "bf16", use_cpu=not torch.cuda.is_available(), report_to="none", seed=SEED,
        dataloader_num_workers=0, disable_tqdm=True, logging_strategy="no", eval_strategy="epoch", save_strategy="epoch",
        load_best_model_at_end=True, metric_for_best_model="f1", greater_is_better=True, save_total_limit=1,
        save_only_model=True)
    timer = _epoch_timer()

    def compute_metrics(prediction) -> dict[str, float]:
        scores = seqeval_scores(*_word_tags(prediction.predictions, prediction.label_ids, labels))
        return {key: scores[key] for key in ("precision", "recall", "f1", "accuracy")}

    trainer = Trainer(model=model, args=args, train_dataset=data["train"], eval_dataset=data["validation"],
                      data_collator=DataCollatorForTokenClassification(encode.tokenizer), compute_metrics=compute_metrics,
                      callbacks=[timer])
    with PeakMemory() as peak:
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    evals = [row for row in trainer.state.log_history if "eval_f1" in row]
    best = max(evals, key=lambda row: row["eval_f1"])  # the first of equals, as the Trainer keeps it
    prediction = trainer.predict(data["test"])
    return {"strategy": base, "precision": precision, "epochs": epochs, "learning_rate": HF_LEARNING_RATES[base],
            "selected_by": "f1", "best_epoch": round(best["epoch"]), "validation_f1": best["eval_f1"],
            "validation_f1_by_epoch": [row["eval_f1"] for row in evals],
            "test": seqeval_scores(*_word_tags(prediction.predictions, prediction.label_ids, labels)),
            "fit_seconds": seconds, "train_samples_per_second": len(data["train"]) * len(timer.seconds) / sum(timer.seconds),
            **_memory(peak), "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total_parameters": sum(p.numel() for p in model.parameters()),
            "dropped_words": {split: int(sum(table["dropped_words"])) for split, table in data.items()}}


def run_case(name: str) -> dict:
    result = _hf(name) if name.startswith("hf_") else _ours(name)
    import torch

    return {**result, "device": "cuda" if torch.cuda.is_available() else "cpu"}


# ----------------------------------------------------------------- the report
def chosen_variant(results: dict[str, dict]) -> str | None:
    """The feature_extraction variant with the best validation F1 (the first of equals, in FE_VARIANTS order)."""
    done = [name for name in FE_VARIANTS if name in results]
    return max(done, key=lambda name: results[name]["validation_f1"]) if done else None


def _f1(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _row(label: str, r: dict) -> str:
    test = r["test"]
    cells = [label, str(r["epochs"]), str(r["best_epoch"] or "-"), _f1(r["validation_f1"]), _f1(test["f1"]),
             f"{_f1(test['precision'])} / {_f1(test['recall'])}", _f1(test["accuracy"]), f"{r['fit_seconds']:.0f}",
             f"{r['train_samples_per_second']:.0f}", f"{r['peak_mb']:.0f}", f"{r['trainable_parameters']:,}"]
    return "| " + " | ".join(cells) + " |"


def _main_table(results: dict[str, dict], fe: str | None) -> list[str]:
    lines = ["| case | epochs | best ep | val F1 | test F1 | test P / R | token acc | fit s | samples/s | peak MB | trainable |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = [("feature_extraction", fe), ("hf_frozen", "hf_frozen"), ("partial", "partial"), ("gradual", "gradual"),
             ("lora", "lora")]
    order += [(name, name) for p in PRECISIONS for name in (f"full@{p}", f"hf_full@{p}")]
    order += [("scratch", "scratch")]
    for label, key in order:
        key = key and key.removesuffix("@fp32")
        if key in results:
            label = f"{label} ({key})" if label == "feature_extraction" else label.replace("@", " ")
            lines.append(_row(label, results[key]))
    return lines


def _variant_table(results: dict[str, dict], fe: str | None) -> list[str]:
    lines = ["| variant | pool_layers | combine_layers | pooling | val F1 (by epoch) | fit s | |", "|---|---:|---|---|---|---:|---|"]
    for name, settings in FE_VARIANTS.items():
        if name in results:
            r = results[name]
            combine = settings["combine_layers"] if settings["pool_layers"] > 1 else "-"
            by_epoch = ", ".join(_f1(v) for v in r["validation_f1_by_epoch"])
            lines.append(f"| {name} | {settings['pool_layers']} | {combine} | {settings['pooling']} | "
                         f"{_f1(r['validation_f1'])} ({by_epoch}) | {r['fit_seconds']:.0f} | {'chosen' if name == fe else ''} |")
    return lines


def _ratios(results: dict[str, dict], fe: str | None) -> list[str]:
    lines = []

    def pair(ours: str | None, ref: str, what: str) -> None:
        if ours in results and ref in results:
            a, b = results[ours], results[ref]
            lines.append(f"- {what}: fit time {a['fit_seconds'] / b['fit_seconds']:.3f}x, "
                         f"test F1 {100 * (a['test']['f1'] - b['test']['f1']):+.2f}")

    if fe in results and "hf_frozen" in results:
        a, b = results[fe], results["hf_frozen"]
        ratio, diff = a["fit_seconds"] / b["fit_seconds"], a["test"]["f1"] - b["test"]["f1"]
        met = "met" if ratio <= 0.2 and diff >= 0 else "NOT met"
        lines.append(f"- feature_extraction ({fe}) / hf_frozen: fit time {ratio:.3f}x, test F1 {100 * diff:+.2f} "
                     f"(target: <= 0.2x at F1 not below: {met})")
    for p in PRECISIONS:
        suffix = "" if p == "fp32" else f"@{p}"
        pair(f"full{suffix}", f"hf_full{suffix}", f"full / hf_full ({p})")
    for p in PRECISIONS:
        suffix = "" if p == "fp32" else f"@{p}"
        pair("lora", f"hf_full{suffix}", f"lora / hf_full ({p})")
    for name in ("full", "hf_full"):
        if name in results and f"{name}@bf16" in results:
            lines.append(f"- {name} bf16 speed-up: {results[name]['fit_seconds'] / results[f'{name}@bf16']['fit_seconds']:.2f}x "
                         "(fp32 fit time / bf16 fit time)")
    return lines


def _per_type(results: dict[str, dict], fe: str | None) -> list[str]:
    ours = [name for name in (fe, *FINE_TUNED, "full@bf16") if name in results]
    if not ours:
        return []
    best = max(ours, key=lambda name: results[name]["validation_f1"])  # chosen on validation, like everything here
    ref = next((results[n] for n in ("hf_full", "hf_full@bf16") if n in results), None)
    lines = [f"Per-type test scores of the best strategy by validation F1: {best}"
             + (" (hf_full's F1 beside)" if ref else ""), "",
             "| type | support | P | R | F1 | hf_full F1 |", "|---|---:|---:|---:|---:|---:|"]
    for name, row in sorted(results[best]["test"]["per_type"].items()):
        other = ref["test"]["per_type"].get(name, {}).get("f1") if ref else None
        lines.append(f"| {name} | {row['support']} | {_f1(row['precision'])} | {_f1(row['recall'])} | {_f1(row['f1'])} "
                     f"| {_f1(other)} |")
    return lines


def report(results: dict[str, dict], header: dict) -> str:
    fe = chosen_variant(results)
    dropped = next((r["dropped_words"] for n, r in results.items() if n.startswith("hf_")), None)
    kinds = sorted({r["memory_kind"] for r in results.values()})
    title = f"CoNLL-2003 NER, all-MiniLM-L6-v2, {'SMOKE (measures nothing), ' if header['smoke'] else ''}"
    legend = ("val F1: the best epoch's validation entity F1 (what chose it); test: those weights on test (micro "
              "entity P/R/F1, word accuracy); fit s: the whole fit; samples/s: training passes only; peak MB: "
              f"PeakMemory around the fit ({', '.join(kinds)}); trainable: parameters that train.")
    lines = [f"{title}fingerprint {header['fingerprint']}", "", *_main_table(results, fe), "", legend, "",
             "Ratios (ours / reference):", *(_ratios(results, fe) or ["- (not enough cases)"]), ""]
    if fe:
        lines += ["feature_extraction variants (the best validation F1 is reported on test):", "",
                  *_variant_table(results, fe), ""]
    lines += _per_type(results, fe)
    if dropped:
        lines += ["", f"Words run_ner.py does not score (cut by truncation at 128 sub-tokens): {dropped}"]
    return "\n".join(lines)


# ----------------------------------------------------------------- the driver
def _cases(selection: str, precisions: list[str], parser: argparse.ArgumentParser) -> list[str]:
    valid = [*BASE_CASES, *FE_VARIANTS]
    cases: list[str] = []
    for name in selection.split(","):
        if name not in valid:
            parser.error(f"unknown case {name!r}; choose from {', '.join(valid)}")
        if name == "feature_extraction":
            cases += list(FE_VARIANTS)
        elif name in WITH_PRECISION:
            cases += [name if p == "fp32" else f"{name}@{p}" for p in precisions]
        else:
            cases.append(name)
    return list(dict.fromkeys(cases))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "conll2003"),
                        help="folder with train/validation/test.jsonl (tokens, tags in IOB2)")
    parser.add_argument("--cases", default=",".join(BASE_CASES),
                        help=f"comma-separated subset of {', '.join(BASE_CASES)} (or single fe-* variants)")
    parser.add_argument("--epochs", type=int, help="one budget for every fine-tuning case (partial, gradual, lora, full, "
                        "scratch, hf_full); default: each strategy's own default (3; gradual 4)")
    parser.add_argument("--fe-epochs", type=int, default=5, help="epochs of feature_extraction and hf_frozen")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or fp32,bf16: for full and hf_full")
    parser.add_argument("--smoke", action="store_true", help="300 / 100 / 100 sentences and 1 epoch: checks it runs")
    parser.add_argument("--output", help="default bench/conll_ner.json (--smoke: bench/conll_ner.smoke.json); .md beside it")
    parser.add_argument("--resume", action="store_true", help="keep the cases an interrupted run of the same code finished")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return 0
    precisions = args.precision.split(",")
    if any(p not in PRECISIONS for p in precisions):
        parser.error(f"--precision {args.precision!r}: use fp32, bf16 or fp32,bf16")
    cases = _cases(args.cases, precisions, parser)
    budget = {"smoke": args.smoke, "epochs": args.epochs, "fe_epochs": args.fe_epochs}
    env = {**os.environ, "BENCH_DATA": args.data, "BENCH_BUDGET": json.dumps(budget), "HF_HUB_OFFLINE": "1",
           "HF_EVALUATE_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench"), os.environ.get("PYTHONPATH", "")])}
    output = Path(args.output or ROOT / "bench" / ("conll_ner.smoke.json" if args.smoke else "conll_ner.json"))
    header = {**budget, "data": args.data, "fingerprint": _fingerprint(args.data)}
    results, failed = run_cases(cases, env, output, header, args.resume)
    text = report(results, header)
    output.with_suffix(".md").write_text(text + "\n")
    print(text)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def run_cases(cases: list[str], env: dict, output: Path, header: dict, resume: bool) -> tuple[dict[str, dict], list[str]]:
    """Each case in a subprocess, the output file rewritten after each; with `resume`, the cases a run
    with the same header (code, data, budget) already finished are kept."""
    saved = json.loads(output.read_text()) if resume and output.is_file() else {}
    same = all(saved.get(key) == value for key, value in header.items())
    results: dict[str, dict] = dict(saved.get("results", {})) if same else {}
    if resume and saved and not same:
        print(f"{output}: measured by other code, data or budget; starting over", file=sys.stderr, flush=True)
    failed = []
    for name in cases:
        if name in results:
            print(f"{name}: kept (finished {results[name]['finished_at']})", file=sys.stderr, flush=True)
            continue
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--case", name], check=False, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(f"{name}: FAILED\n{done.stderr[-3000:]}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        results[name] = json.loads(done.stdout.strip().splitlines()[-1]) | {
            "finished_at": datetime.datetime.now().isoformat(timespec="seconds")}
        r = results[name]
        print(f"{name}: {time.perf_counter() - started:.0f}s, val F1 {_f1(r['validation_f1'])}, test F1 "
              f"{_f1(r['test']['f1'])}, fit {r['fit_seconds']:.0f}s", file=sys.stderr, flush=True)
        output.write_text(json.dumps({**header, "results": results}, indent=2))
    return results, failed


def _fingerprint(data: str) -> str:
    """A hash of what the numbers depend on: this script, hf_reference.py, the nlp_transfer sources, the data."""
    digest = hashlib.sha256()
    package = Path(importlib.util.find_spec("nlp_transfer").submodule_search_locations[0])
    for path in [Path(__file__), Path(__file__).with_name("hf_reference.py"), *sorted(package.rglob("*.py"))]:
        digest.update(path.read_bytes())
    for split in ("train", "validation", "test"):
        digest.update((Path(data) / f"{split}.jsonl").read_bytes())
    return digest.hexdigest()[:16]


if __name__ == "__main__":
    sys.exit(main())
