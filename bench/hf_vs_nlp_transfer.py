"""nlp_transfer against the plain Hugging Face way, side by side in one run, with ratios.

    python bench/hf_vs_nlp_transfer.py                       # everything, about 25 minutes on 2 cores
    python bench/hf_vs_nlp_transfer.py --only predict,fe     # a subset (groups: matmul, full, lora, fe, predict)

Same model (the bundled all-MiniLM-L6-v2), data (SST-2 train 6,920 / test 1,821 from ../shared/data/sst2),
batch size 32, max_length 128 and epochs on both sides. Every case runs in its own subprocess, so its
peak RSS is its own. The Hugging Face side is the `Trainer` twice: as `run_glue.py` runs it (padding
every example to max_length), and tuned (dynamic padding and `group_by_length`); its recipes live in
hf_reference.py (shared with defaults_vs_references.py). Nothing is chosen on any split here (fixed epochs, the
last epoch's weights on both sides), so accuracy is on the test split. Writes
bench/hf_vs_nlp_transfer.json and prints the table (see RESULTS.md).

The frozen-encoder peer is our feature_extraction model (the mean of the top 4 layers, token states
mean-pooled, our LayerNorm + dense + GELU + linear head) trained by the Trainer through the frozen
encoder every step: the two sides compute the same function, so their ratio is the feature cache's
speed-up, not a better head. Prediction: our `predict` and `pipeline` both at batch 32.

Budget: full and LoRA train one epoch on each side; the run_glue-style Trainer (padding to 128, the
slowest) runs a fixed 40 steps and its per-epoch time is extrapolated from them (its steps all cost the
same: every batch is 32 x 128 tokens). Frozen encoders train 5 epochs on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hf_reference import BATCH, MAX_LENGTH, accuracy, model_path, read_rows, train_reference

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"
FE_EPOCHS = 5
RUNGLUE_STEPS = 4 if os.environ.get("BENCH_SMOKE") else 40

# case -> (group, description)
CASES = {
    "matmul": ("matmul", "matmul peak, fp32 and bf16"),
    "hf_full_runglue": ("full", "HF Trainer, full, pad to 128 (run_glue)"),
    "hf_full_tuned": ("full", "HF Trainer, full, dynamic padding + group_by_length"),
    "ours_full_fp32": ("full", "nlp_transfer full, fp32"),
    "ours_full_bf16": ("full", "nlp_transfer full, bf16"),
    "hf_lora_runglue": ("lora", "HF Trainer + peft LoRA r8, pad to 128"),
    "hf_lora_tuned": ("lora", "HF Trainer + peft LoRA r8, tuned"),
    "ours_lora_fp32": ("lora", "nlp_transfer lora r8, fp32"),
    "ours_lora_bf16": ("lora", "nlp_transfer lora r8, bf16"),
    "hf_frozen_runglue": ("fe", "HF Trainer, frozen, our pooling+head, pad to 128"),
    "hf_frozen_tuned": ("fe", "HF Trainer, frozen, our pooling+head, tuned"),
    "ours_fe_fp32": ("fe", "nlp_transfer feature_extraction, fp32 (cache cold)"),
    "ours_fe_bf16": ("fe", "nlp_transfer feature_extraction, bf16 (cache cold)"),
    "hf_pipeline_bs32": ("predict", "pipeline('text-classification'), batch_size=32"),
    "ours_predict_fp32": ("predict", "nlp_transfer predict, batch 32, fp32"),
    "ours_predict_bf16": ("predict", "nlp_transfer predict, batch 32, bf16"),
}


# ----------------------------------------------------------------- measurement helpers
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rows(split: str) -> list[dict]:
    return read_rows(DATA, split, 128 if os.environ.get("BENCH_SMOKE") else None)  # --smoke: every case runs, in minutes


def _model_path() -> str:
    return model_path()


def _token_lengths(texts: list[str]) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_model_path())
    return [len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]]


def _forward_flops(lengths: list[int]) -> float:
    """Forward FLOPs on these (unpadded) sequences: 2 x weights per token plus attention scores."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(_model_path())
    d, layers, inner = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    per_token_weights = layers * (4 * d * d + 2 * d * inner)
    return sum(2 * per_token_weights * t + 4 * layers * d * t * t for t in lengths)


# ----------------------------------------------------------------- the cases
def case_matmul() -> dict:
    import torch

    def rate(dtype) -> float:
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        for _ in range(3):
            a @ b
        started, n = time.perf_counter(), 20
        for _ in range(n):
            a @ b
        return 2 * 2048**3 * n / (time.perf_counter() - started) / 1e9

    return {"gflops_fp32": rate(torch.float32), "gflops_bf16": rate(torch.bfloat16)}


def _hf_trainer(strategy: str, style: str) -> dict:
    epochs = FE_EPOCHS if strategy == "frozen" and style == "tuned" else 1
    steps = RUNGLUE_STEPS if style == "runglue" else -1
    ref = train_reference(strategy, style, _rows("train"), epochs=epochs, max_steps=steps)
    train = len(_rows("train"))
    samples = RUNGLUE_STEPS * BATCH if style == "runglue" else train * epochs
    result = {"train_seconds": ref.train_seconds, "samples": samples,
              "epochs": epochs if style != "runglue" else samples / train}
    if style == "tuned":  # run_glue-style runs stop after a few steps: their accuracy means nothing
        result["test_accuracy"] = accuracy(ref.trainer, ref.encode(_rows("test")))
    lengths = _token_lengths([r["text"] for r in _rows("train")])
    forward = _forward_flops(lengths) / len(lengths) * samples
    result["flops"] = forward * {"full": 3, "lora": 2, "frozen": 1}[strategy]
    return result


def _ours(strategy: str, precision: str) -> dict:
    from nlp_transfer import TextClassifier

    epochs = FE_EPOCHS if strategy == "feature_extraction" else 1
    clf = TextClassifier.from_pretrained(_model_path(), strategy=strategy, max_length=MAX_LENGTH)
    train = _rows("train")
    started = time.perf_counter()
    clf.fit(train, epochs=epochs, batch_size=BATCH, mixed_precision=precision, validation_split=0.0,
            feature_cache_dir=tempfile.mkdtemp())  # a cold cache: encoding is part of the time
    seconds = time.perf_counter() - started
    test = clf.evaluate(_rows("test"))
    lengths = _token_lengths([r["text"] for r in train])
    forward = _forward_flops(lengths)
    flops = forward * {"full": 3 * epochs, "lora": 2 * epochs, "feature_extraction": 1}[strategy]
    return {"train_seconds": seconds, "samples": len(train) * epochs, "epochs": epochs,
            "test_accuracy": test["accuracy"], "flops": flops}


def _pipeline(batch_size: int) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    model = AutoModelForSequenceClassification.from_pretrained(_model_path(), num_labels=2)
    classify = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(_model_path()),
                        device="cpu", truncation=True, max_length=MAX_LENGTH)
    texts = [r["text"] for r in _rows("validation")]
    classify(texts[:8], batch_size=batch_size)  # warm-up
    started = time.perf_counter()
    classify(texts, batch_size=batch_size)
    seconds = time.perf_counter() - started
    return {"predict_seconds": seconds, "samples": len(texts), "flops": _forward_flops(_token_lengths(texts))}


def _our_predict(precision: str) -> dict:
    from nlp_transfer import TextClassifier, TrainingConfig

    clf = TextClassifier.from_pretrained(_model_path(), labels=["negative", "positive"], strategy="full",
                                         max_length=MAX_LENGTH)
    # the pipeline's batch size; a model trained in bf16 predicts in bf16
    clf.training = TrainingConfig(eval_batch_size=BATCH, mixed_precision=precision)
    texts = [r["text"] for r in _rows("validation")]
    clf.predict(texts[:8])  # warm-up
    started = time.perf_counter()
    clf.predict(texts)
    seconds = time.perf_counter() - started
    return {"predict_seconds": seconds, "samples": len(texts), "flops": _forward_flops(_token_lengths(texts))}


def run_case(name: str) -> dict:
    runners = {
        "matmul": case_matmul,
        "hf_full_runglue": lambda: _hf_trainer("full", "runglue"), "hf_full_tuned": lambda: _hf_trainer("full", "tuned"),
        "ours_full_fp32": lambda: _ours("full", "no"), "ours_full_bf16": lambda: _ours("full", "bf16"),
        "hf_lora_runglue": lambda: _hf_trainer("lora", "runglue"), "hf_lora_tuned": lambda: _hf_trainer("lora", "tuned"),
        "ours_lora_fp32": lambda: _ours("lora", "no"), "ours_lora_bf16": lambda: _ours("lora", "bf16"),
        "hf_frozen_runglue": lambda: _hf_trainer("frozen", "runglue"),
        "hf_frozen_tuned": lambda: _hf_trainer("frozen", "tuned"),
        "ours_fe_fp32": lambda: _ours("feature_extraction", "no"), "ours_fe_bf16": lambda: _ours("feature_extraction", "bf16"),
        "hf_pipeline_bs32": lambda: _pipeline(BATCH),
        "ours_predict_fp32": lambda: _our_predict("no"), "ours_predict_bf16": lambda: _our_predict("bf16"),
    }
    started = time.perf_counter()
    result = runners[name]()
    return {"case": name, **result, "wall_seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}


# ----------------------------------------------------------------- the report
def report(results: dict[str, dict]) -> str:
    peak = results.get("matmul", {})
    lines = [f"matmul peak (2048^3, this run): fp32 {peak.get('gflops_fp32', 0):.0f} GFLOP/s, "
             f"bf16 {peak.get('gflops_bf16', 0):.0f} GFLOP/s", ""]
    header = (f"{'case':<50}{'samples/s':>10}{'s/epoch':>9}{'test acc':>9}{'peak RSS':>10}{'GFLOP/s':>9}{'% peak':>8}")
    lines += [header, "-" * len(header)]
    for name, (group, description) in CASES.items():
        row = results.get(name)
        if name == "matmul" or row is None:
            continue
        seconds = row.get("train_seconds", row.get("predict_seconds"))
        rate = row["samples"] / seconds
        per_epoch = f"{seconds / row['epochs']:>9.0f}" if "epochs" in row else f"{'':>9}"
        score = f"{100 * row['test_accuracy']:>9.1f}" if "test_accuracy" in row else f"{'-':>9}"
        gflops = row["flops"] / seconds / 1e9
        reference = peak.get("gflops_bf16" if name.endswith("bf16") else "gflops_fp32")
        share = f"{100 * gflops / reference:>7.0f}%" if reference else f"{'':>8}"
        lines.append(f"{description:<50}{rate:>10.1f}{per_epoch}{score}{row['peak_rss_mb']:>8.0f}MB{gflops:>9.1f}{share}")
    lines += ["", "Ratios (nlp_transfer / Hugging Face; higher is better for speed):"]
    lines += _ratios(results)
    return "\n".join(lines)


def _ratios(results: dict[str, dict]) -> list[str]:
    def rate(name: str) -> float | None:
        row = results.get(name)
        if row is None:
            return None
        return row["samples"] / row.get("train_seconds", row.get("predict_seconds"))

    def line(label: str, ours: str, theirs: str, target: str = "") -> str | None:
        a, b = rate(ours), rate(theirs)
        if a is None or b is None:
            return None
        delta = ""
        if "test_accuracy" in results[ours] and "test_accuracy" in results[theirs]:
            delta = f", test accuracy {100 * (results[ours]['test_accuracy'] - results[theirs]['test_accuracy']):+.1f} points"
        return f"  {label:<44}{a / b:>6.2f}x samples/s{delta}{f'  (target {target})' if target else ''}"

    pairs = [
        ("full fp32 vs Trainer run_glue", "ours_full_fp32", "hf_full_runglue", ">= 2x"),
        ("full fp32 vs Trainer tuned", "ours_full_fp32", "hf_full_tuned", ">= 1.2x"),
        ("full bf16 vs Trainer tuned", "ours_full_bf16", "hf_full_tuned", ""),
        ("lora fp32 vs Trainer run_glue", "ours_lora_fp32", "hf_lora_runglue", ">= 2x"),
        ("lora fp32 vs Trainer tuned", "ours_lora_fp32", "hf_lora_tuned", ">= 1.2x"),
        ("lora bf16 vs Trainer tuned", "ours_lora_bf16", "hf_lora_tuned", ""),
        ("feature_extraction fp32 vs Trainer frozen tuned", "ours_fe_fp32", "hf_frozen_tuned", ">= 5x wall, 5 epochs"),
        ("feature_extraction bf16 vs Trainer frozen tuned", "ours_fe_bf16", "hf_frozen_tuned", ""),
        ("predict fp32 vs pipeline, both batch 32", "ours_predict_fp32", "hf_pipeline_bs32", ">= 2x"),
        ("predict bf16 vs pipeline, both batch 32", "ours_predict_bf16", "hf_pipeline_bs32", ""),
    ]
    return [text for text in (line(*pair) for pair in pairs) if text]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated groups (matmul, full, lora, fe, predict) or case names")
    parser.add_argument("--smoke", action="store_true", help="128 examples per split: checks that every case runs")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    parser.add_argument("--output", default=str(ROOT / "bench" / "hf_vs_nlp_transfer.json"))
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    wanted = set(args.only.split(",")) if args.only else None
    names = [n for n, (group, _) in CASES.items() if wanted is None or n in wanted or group in wanted or n == "matmul"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TRANSFORMERS_VERBOSITY": "error", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           **({"BENCH_SMOKE": "1"} if args.smoke else {})}
    results: dict[str, dict] = {}
    for name in names:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(f"{name}: FAILED\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name}: {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(report(results))


if __name__ == "__main__":
    main()
