"""Run by test_distributed.py under `torchrun --nproc_per_node 2` (and once as a plain process).

Trains a tiny model with the given strategy, saves it, and writes the evaluation metrics on an
odd-sized set (so the last batch is split unevenly between processes) to OUTPUT/metrics-<n>.json.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import IMAGE_SIZE, sentiment_rows, square_images  # noqa: E402


def main(model_dir: str, strategy: str, output: str, modality: str = "text") -> None:
    from nlp_transfer.training.engine import process_state

    if modality == "vision":
        from nlp_transfer import ImageClassifier

        clf = ImageClassifier.from_pretrained(model_dir, strategy=strategy, image_size=IMAGE_SIZE)
        train, held_out = square_images(96), square_images(37, seed=1)
    elif modality == "tagging":  # max_length 12: the longer sentences are read in overlapping windows
        from tagging_data import tagged_rows

        from nlp_transfer import TokenClassifier

        clf = TokenClassifier.from_pretrained(model_dir, strategy=strategy, max_length=12)
        train, held_out = tagged_rows(96), tagged_rows(37, seed=1, words=9)
    else:
        from nlp_transfer import TextClassifier

        clf = TextClassifier.from_pretrained(model_dir, strategy=strategy, pooling="mean")
        train, held_out = sentiment_rows(96), sentiment_rows(37, seed=1)
    # The last epoch's weights, not the best one's: what each process trained last is compared.
    clf.fit(train, held_out, epochs=2, batch_size=8, learning_rate=3e-3, load_best_model_at_end=False)
    clf.save(Path(output) / "model")
    metrics = clf.evaluate(held_out)
    if modality == "tagging":
        metrics["tags"] = clf.predict_tags([row["tokens"] for row in held_out])
    state = process_state()
    metrics["rank_weight_difference"] = _rank_difference(clf.model)
    if state.is_main_process:
        (Path(output) / f"metrics-{state.num_processes}.json").write_text(json.dumps(metrics))
    # Release the DDP-wrapped model before the process group goes, or gloo may abort at exit.
    del clf
    gc.collect()
    state.wait_for_everyone()
    if state.use_distributed:
        import torch.distributed as dist

        dist.destroy_process_group()


def _rank_difference(model) -> float:
    """The largest difference between the processes' weights and buffers (BatchNorm running
    statistics included: 0 when they trained in step)."""
    import torch
    import torch.distributed as dist

    flat = torch.cat([t.detach().float().flatten() for t in (*model.parameters(), *model.buffers())])
    if not (dist.is_available() and dist.is_initialized()):
        return 0.0
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return max(float((g - gathered[0]).abs().max()) for g in gathered)


if __name__ == "__main__":
    main(*sys.argv[1:5])
