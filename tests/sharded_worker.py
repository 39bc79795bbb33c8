"""Run by test_sharded.py under `torchrun --nproc_per_node 2`: every strategy that FSDP can run,
trained with checkpoints, under DDP or FSDP2, uninterrupted, interrupted or resumed.

    python -m torch.distributed.run --standalone --nproc_per_node 2 sharded_worker.py MODEL OUTPUT MODE

MODE: ddp | fsdp | fsdp-interrupt (stops each run after its third checkpoint) | fsdp-resume; and
launched | launched-interrupt | launched-resume: as the launcher set it up (`bench/gpu_check.sh`
runs these under `accelerate launch --use_fsdp` on a GPU, where accelerate itself shards).

accelerate 1.16 turns FSDP on for accelerators only; on CPU the run is made FSDP the way a GPU
launch with ``--use_fsdp --fsdp_version 2`` makes it: the accelerator's distributed type and its
FSDP plugin, so that accelerate's own FSDP2 preparation (torch's ``fully_shard`` per BertLayer and
on the root) runs on gloo.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import sentiment_rows  # noqa: E402

SEEN_SHARDS: list[bool] = []
STRATEGIES = {"full": 3e-3, "partial": 3e-3, "lora": 1e-2, "feature_extraction": 3e-2}


def force_fsdp2() -> None:
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    import nlp_transfer.classifiers.base as base
    from nlp_transfer.training import engine

    make = engine.make_accelerator

    def sharded(settings):
        accelerator = make(settings)
        accelerator.state.distributed_type = DistributedType.FSDP
        version = int(os.environ.get("FSDP_VERSION_UNDER_TEST", "2"))  # 1: by hand, not in the suite (see README)
        accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin(
            fsdp_version=version, auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=["BertLayer"])
        return accelerator

    base.make_accelerator = engine.make_accelerator = sharded
    note_shards()


def note_shards() -> None:
    from nlp_transfer.training import sharding

    snapshot = sharding.StateAccess.snapshot

    def noting(self, model):  # what the state code saw: the shards (DTensors) or plain tensors
        SEEN_SHARDS.append(_any_dtensor(model))
        return snapshot(self, model)

    sharding.StateAccess.snapshot = noting


def interrupt_after(saves: int) -> None:
    from nlp_transfer.training import checkpoints

    save, count = checkpoints.Checkpointer.save, {"n": 0}

    def interrupting(self, *args, **kwargs):
        path = save(self, *args, **kwargs)
        count["n"] += 1
        if count["n"] % saves == 0:
            raise KeyboardInterrupt
        return path

    checkpoints.Checkpointer.save = interrupting


def main(model_dir: str, output: str, mode: str) -> None:
    from nlp_transfer import TextClassifier
    from nlp_transfer.training.engine import end_distributed, process_state

    if mode.startswith("fsdp"):
        force_fsdp2()
    else:
        note_shards()
    if mode.endswith("-interrupt"):
        interrupt_after(3)
    # gradual re-wraps DDP each epoch; FSDP refuses it (tested in test_sharded.py without a launch)
    cases = {**STRATEGIES, "gradual": 3e-3} if mode == "ddp" else STRATEGIES
    for strategy, rate in cases.items():
        folder = Path(output) / strategy
        SEEN_SHARDS.clear()
        clf = TextClassifier.from_pretrained(model_dir, strategy=strategy, pooling="mean", seed=3)
        try:
            history = clf.fit(sentiment_rows(64), sentiment_rows(21, seed=1), epochs=3, batch_size=8,
                              learning_rate=rate, save_steps=3, checkpoint_dir=str(folder / "checkpoints"),
                              resume=mode.endswith("-resume"), cache_features=False)
        except KeyboardInterrupt:
            continue
        clf.save(folder / "model")
        metrics = clf.evaluate(sentiment_rows(21, seed=1))  # odd: the processes' shares differ
        from ddp_worker import _rank_difference

        metrics["rank_weight_difference"] = _rank_difference(clf.model)  # every process takes part
        if process_state().is_main_process:
            record = {"metrics": metrics, "history": history.to_dict(), "trained_sharded": bool(SEEN_SHARDS) and all(SEEN_SHARDS),
                      "plain_after_fit": not _any_dtensor(clf.model)}
            (folder / "result.json").write_text(json.dumps(record))
        del clf
    end_distributed()


def _any_dtensor(model) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


if __name__ == "__main__":
    main(*sys.argv[1:4])
