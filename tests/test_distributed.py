"""Two CPU processes (gloo): training works for every strategy, the processes' weights stay equal,
and evaluation counts each example once.

`accelerate launch --cpu --num_processes 2` starts only one process on a CPU machine; `torchrun`
(or `accelerate launch --multi_gpu`) starts two.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAFETY_NET_SECONDS

WORKER = Path(__file__).with_name("ddp_worker.py")


def _torchrun(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=SAFETY_NET_SECONDS, env=env)


# Text under two processes (every strategy, gradual's re-wrapping included): `test_sharded.py`, whose
# DDP run is the reference for the FSDP one, checks the same (weights in step, every example once).


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["feature_extraction", "full"])
def test_two_processes_tag_every_word_once(model_dirs, strategy, tmp_path):
    """Tagging under two processes: windows of different lengths per process are gathered, trimmed to
    their words and put back in order, so evaluation and prediction equal one process's."""
    from tagging_data import tagged_rows

    from nlp_transfer import TokenClassifier

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = _torchrun([str(WORKER), str(model_dirs["bert"]), strategy, str(tmp_path), "tagging"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "metrics-2.json").read_text())
    held_out = tagged_rows(37, seed=1, words=9)
    clf = TokenClassifier.load(tmp_path / "model")
    one = clf.evaluate(held_out)
    assert two["rank_weight_difference"] == 0.0
    assert two["tags"] == clf.predict_tags([row["tokens"] for row in held_out])
    assert [len(tags) for tags in two["tags"]] == [len(row["tokens"]) for row in held_out]  # every word, once
    assert two["f1"] == pytest.approx(one["f1"]) and two["accuracy"] == pytest.approx(one["accuracy"])
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["partial", "lora", "full"])
def test_two_processes_train_a_resnet(resnet_dir, strategy, tmp_path):
    """The same for a timm ResNet: BatchNorm (trained or frozen) and LoRA on convolutions under DDP."""
    from conftest import square_images

    from nlp_transfer import ImageClassifier

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = _torchrun([str(WORKER), str(resnet_dir), strategy, str(tmp_path), "vision"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "metrics-2.json").read_text())
    one = ImageClassifier.load(tmp_path / "model").evaluate(square_images(37, seed=1))
    assert sum(map(sum, two["confusion_matrix"])) == 37
    assert two["rank_weight_difference"] == 0.0
    assert two["confusion_matrix"] == one["confusion_matrix"]
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-5)
