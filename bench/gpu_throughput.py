"""GPU throughput: nlp_transfer against the HF Trainer and pipeline on one GPU, BERT-base sized.

    bash bench/gpu_check.sh            # what the GPU machine runs; prints the table, writes $OUT/gpu.json

The GPU machine has torch, transformers, accelerate and peft but no datasets, evaluate, or the bundled
MiniLM, and nothing can be downloaded there. So the model is a randomly initialised BERT-base
(12 layers, hidden 768, 110 M parameters: the cost of the real one) with a generated vocabulary,
and the data are synthetic sentences with SST-2's length distribution (about 10 to 60 tokens).
Accuracy means nothing here; speed and memory do. Both sides first train on 256 examples, untimed (CUDA
and cuBLAS start-up), then the cases:

- full and LoRA (r 8, query/value), bf16, batch 64, one epoch over N examples: HF Trainer (dynamic
  padding, group_by_length, bf16=True) vs nlp_transfer (mixed_precision=bf16);
- feature_extraction with the cache (encoder once, 5 epochs on the head) vs the Trainer with the base
  frozen, 5 epochs;
- prediction: pipeline(batch_size=64) vs predict, sentences/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

BATCH, EPOCHS_FROZEN = 64, 5


def make_model(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = [f"w{i}" for i in range(30000)]
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]))
    tokenizer = BertTokenizerFast(str(folder / "vocab.txt"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words) + 5)).save_pretrained(folder)  # BERT-base defaults
    tokenizer.save_pretrained(folder)
    return folder


def make_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = min(60, max(3, int(rng.lognormvariate(3.0, 0.5))))  # median about 20 words, like SST-2
        rows.append({"text": " ".join(f"w{rng.randrange(30000)}" for _ in range(length)), "label": rng.choice(["neg", "pos"])})
    return rows


def timed(fn) -> tuple[float, float, object]:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - started, torch.cuda.max_memory_allocated() / 2**20, result


def _length_grouping() -> dict:
    """group_by_length under the name this transformers version uses (5.x renamed it)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in names else {"group_by_length": True}


def hf_trainer(model_dir: Path, rows: list[dict], strategy: str, epochs: int) -> dict:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    if strategy == "frozen":
        for parameter in model.base_model.parameters():
            parameter.requires_grad_(False)
    if strategy == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "value"]))
    encoded = tokenizer([r["text"] for r in rows], truncation=True, max_length=128)
    dataset = [{"input_ids": ids, "attention_mask": mask, "labels": int(r["label"] == "pos")}
               for ids, mask, r in zip(encoded["input_ids"], encoded["attention_mask"], rows)]
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, num_train_epochs=epochs,
                             learning_rate=5e-5, bf16=True, **_length_grouping(),
                             report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no",
                             disable_tqdm=True, dataloader_num_workers=2)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=DataCollatorWithPadding(tokenizer))
    seconds, memory, _ = timed(trainer.train)
    del trainer, model
    torch.cuda.empty_cache()
    return {"seconds": seconds, "samples": len(rows) * epochs, "peak_gpu_mb": memory}


def ours(model_dir: Path, rows: list[dict], strategy: str, epochs: int) -> dict:
    import torch

    from nlp_transfer import TextClassifier

    clf = TextClassifier.from_pretrained(model_dir, strategy=strategy, pooling="cls")
    seconds, memory, _ = timed(lambda: clf.fit(rows, epochs=epochs, batch_size=BATCH, mixed_precision="bf16",
                                               validation_split=0.0, feature_cache_dir=tempfile.mkdtemp()))
    del clf
    torch.cuda.empty_cache()
    return {"seconds": seconds, "samples": len(rows) * epochs, "peak_gpu_mb": memory}


def pipeline_rate(model_dir: Path, texts: list[str]) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2).to(torch.bfloat16)
    classify = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(model_dir), device=0)
    classify(texts[:64], batch_size=BATCH)
    seconds, memory, _ = timed(lambda: classify(texts, batch_size=BATCH, truncation=True, max_length=128))
    return {"seconds": seconds, "samples": len(texts), "peak_gpu_mb": memory}


def our_predict_rate(model_dir: Path, texts: list[str]) -> dict:
    from nlp_transfer import TextClassifier, TrainingConfig

    clf = TextClassifier.from_pretrained(model_dir, labels=["neg", "pos"], strategy="full", pooling="cls")
    clf.training = TrainingConfig(mixed_precision="bf16", eval_batch_size=BATCH)
    clf.predict(texts[:64])
    seconds, memory, _ = timed(lambda: clf.predict(texts))
    return {"seconds": seconds, "samples": len(texts), "peak_gpu_mb": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=8192)
    parser.add_argument("--output", default=os.path.join(os.environ.get("OUT", "."), "gpu.json"))
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no GPU: this benchmark is for the GPU machine (bench/gpu_check.sh)")
    model_dir = make_model(Path(tempfile.mkdtemp()) / "bert-base-random")
    rows = make_rows(args.examples)
    texts = [r["text"] for r in make_rows(4096, seed=1)]
    results = {"device": torch.cuda.get_device_name(), "examples": args.examples, "batch": BATCH}
    # the CUDA context, cuBLAS handles and kernels load on first use: paid here, untimed, by both sides,
    # not by whichever case happens to run first
    warm_up = rows[: 4 * BATCH]
    hf_trainer(model_dir, warm_up, "full", 1)
    ours(model_dir, warm_up, "full", 1)
    plan = [
        ("full: HF Trainer bf16", lambda: hf_trainer(model_dir, rows, "full", 1)),
        ("full: nlp_transfer bf16", lambda: ours(model_dir, rows, "full", 1)),
        ("lora: HF Trainer bf16", lambda: hf_trainer(model_dir, rows, "lora", 1)),
        ("lora: nlp_transfer bf16", lambda: ours(model_dir, rows, "lora", 1)),
        (f"frozen, {EPOCHS_FROZEN} epochs: HF Trainer bf16", lambda: hf_trainer(model_dir, rows, "frozen", EPOCHS_FROZEN)),
        (f"feature_extraction, {EPOCHS_FROZEN} epochs: nlp_transfer (cache)",
         lambda: ours(model_dir, rows, "feature_extraction", EPOCHS_FROZEN)),
        ("predict: pipeline bf16", lambda: pipeline_rate(model_dir, texts)),
        ("predict: nlp_transfer bf16", lambda: our_predict_rate(model_dir, texts)),
    ]
    for name, run in plan:
        results[name] = run()
        row = results[name]
        print(f"{name:<52}{row['samples'] / row['seconds']:>10.0f} samples/s{row['seconds']:>8.1f}s"
              f"{row['peak_gpu_mb']:>9.0f} MB", flush=True)
    for pair in (("full: nlp_transfer bf16", "full: HF Trainer bf16"), ("lora: nlp_transfer bf16", "lora: HF Trainer bf16"),
                 (plan[5][0], plan[4][0]), ("predict: nlp_transfer bf16", "predict: pipeline bf16")):
        ours_row, theirs = results[pair[0]], results[pair[1]]
        ratio = (ours_row["samples"] / ours_row["seconds"]) / (theirs["samples"] / theirs["seconds"])
        print(f"ratio {pair[0].split(':')[0]:<34}{ratio:>6.2f}x")
    Path(args.output).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
