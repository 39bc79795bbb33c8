"""FSDP2 on two gloo CPU processes: checkpoints, best-epoch restore and save read the sharded
weights whole, a resumed sharded run is bit-identical to an uninterrupted one, and the saved model
equals what a DDP run saves. (accelerate enables FSDP on accelerators only; `sharded_worker.py`
makes the run FSDP as a GPU launch would, and accelerate's own FSDP2 preparation shards it.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAFETY_NET_SECONDS

WORKER = Path(__file__).with_name("sharded_worker.py")
STRATEGIES = ["full", "partial", "lora", "feature_extraction"]



def _launch(model_dir: Path, output: Path, mode: str) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
               str(model_dir), str(output), mode]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=SAFETY_NET_SECONDS, env=env)
    assert done.returncode == 0, f"{mode}: {done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def runs(model_dirs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sharded")
    for mode in ("ddp", "fsdp"):
        _launch(model_dirs["bert"], root / mode, mode)
    for mode in ("fsdp-interrupt", "fsdp-resume"):  # one folder: the resume continues the interrupted runs
        _launch(model_dirs["bert"], root / "resumed", mode)
    return {"ddp": root / "ddp", "fsdp": root / "fsdp", "resumed": root / "resumed"}


def _result(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())


def _weights(model_folder: Path) -> dict[str, dict]:
    from safetensors.torch import load_file

    return {str(f.relative_to(model_folder)): load_file(str(f)) for f in sorted(model_folder.rglob("*.safetensors"))}


def _files(model_folder: Path) -> list[str]:
    return sorted(str(f.relative_to(model_folder)) for f in model_folder.rglob("*") if f.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sharded_training_saves_what_ddp_saves(runs, strategy):
    sharded, ddp = runs["fsdp"] / strategy, runs["ddp"] / strategy
    record = _result(sharded)
    assert record["trained_sharded"], "the run was not sharded: the test checks nothing"
    assert record["plain_after_fit"]
    assert _files(sharded / "model") == _files(ddp / "model")
    ours, theirs = _weights(sharded / "model"), _weights(ddp / "model")
    assert ours.keys() == theirs.keys()
    for file, tensors in ours.items():
        assert tensors.keys() == theirs[file].keys(), file
        for name, value in tensors.items():  # the same run but for the order of the gradient sums
            assert (value - theirs[file][name]).abs().max().item() < 1e-5, (file, name)
    ours_meta = json.loads((sharded / "model" / "nlp_transfer.json").read_text())
    theirs_meta = json.loads((ddp / "model" / "nlp_transfer.json").read_text())
    assert ours_meta["strategy"] == theirs_meta["strategy"] and ours_meta["parameters"] == theirs_meta["parameters"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", [*STRATEGIES, "gradual"])
def test_ddp_processes_train_in_step_and_evaluate_every_example_once(runs, strategy):
    """The DDP run of the comparison: the processes' weights stay equal (gradual: weights unfrozen
    later are all-reduced too), and their evaluation equals one process's on the saved model."""
    from conftest import sentiment_rows

    from nlp_transfer import TextClassifier

    two = _result(runs["ddp"] / strategy)["metrics"]
    one = TextClassifier.load(runs["ddp"] / strategy / "model").evaluate(sentiment_rows(21, seed=1))
    assert two["rank_weight_difference"] == 0.0
    assert sum(map(sum, two["confusion_matrix"])) == 21  # no duplicated tail examples
    assert two["confusion_matrix"] == one["confusion_matrix"]
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-5)


def test_gradual_under_fsdp_is_refused_before_training(model_dirs, monkeypatch):
    from accelerate.utils import DistributedType

    import nlp_transfer.classifiers.base as base
    from nlp_transfer import TextClassifier
    from nlp_transfer.errors import ConfigError

    make = base.make_accelerator

    def sharded(settings):
        accelerator = make(settings)
        monkeypatch.setattr(type(accelerator), "distributed_type", property(lambda self: DistributedType.FSDP))
        return accelerator

    monkeypatch.setattr(base, "make_accelerator", sharded)
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="gradual")
    from conftest import sentiment_rows

    with pytest.raises(ConfigError, match="'gradual' cannot run under FSDP.*'partial'"):
        clf.fit(sentiment_rows(16), epochs=2)
    assert clf.history is None


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sharded_best_epoch_restore_restores(runs, strategy):
    record = _result(runs["fsdp"] / strategy)
    epochs = record["history"]["epochs"]
    best = record["history"]["best_epoch"]
    # the model evaluated after fit is the best epoch's, not the last one's
    assert record["metrics"]["loss"] == pytest.approx(epochs[best - 1]["eval_loss"], abs=1e-6)
    if best != len(epochs):
        assert record["metrics"]["loss"] != pytest.approx(epochs[-1]["eval_loss"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sharded_resume_is_bit_identical(runs, strategy):
    resumed, uninterrupted = runs["resumed"] / strategy, runs["fsdp"] / strategy
    assert _result(resumed)["trained_sharded"]
    ours, theirs = _weights(resumed / "model"), _weights(uninterrupted / "model")
    for file, tensors in ours.items():
        for name, value in tensors.items():
            assert (value == theirs[file][name]).all(), (file, name)
    assert _result(resumed)["metrics"] == _result(uninterrupted)["metrics"]


@pytest.mark.slow
def test_sharded_checkpoints_hold_only_what_trains(runs):
    from safetensors.torch import load_file

    for strategy in ("lora", "feature_extraction"):
        newest = sorted((runs["fsdp"] / strategy / "checkpoints").glob("step-*"))[-1]
        saved = load_file(str(newest / "trainable.safetensors"))
        allowed = ("head.",) if strategy == "feature_extraction" else ("head.", "lora_")
        assert saved and all(any(part in name for part in allowed) for name in saved), sorted(saved)[:5]
