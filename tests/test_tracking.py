"""Experiment tracking through accelerate's trackers: TensorBoard, offline, read back with
TensorBoard's own reader; a tracker that is not installed is a config error with the fix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import sentiment_rows

from nlp_transfer import TextClassifier
from nlp_transfer.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent))


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series under `folder`, read by TensorBoard's event reader (all event files)."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(folder))
    multiplexer.Reload()
    series: dict[str, list[tuple[int, float]]] = {}
    for run, tags in multiplexer.Runs().items():
        for tag in tags.get("scalars", []):
            series.setdefault(tag, []).extend((e.step, e.value) for e in multiplexer.Scalars(run, tag))
    return series


def test_fit_reports_steps_and_epochs_to_tensorboard(tiny_model, tmp_path):
    clf = TextClassifier.from_pretrained(tiny_model, strategy="full", pooling="mean")
    history = clf.fit(sentiment_rows(48), sentiment_rows(16, seed=1), epochs=2, batch_size=8, learning_rate=3e-3,
                      logging_steps=2, report_to=["tensorboard"], logging_dir=str(tmp_path / "tb"))
    scalars = _scalars(tmp_path / "tb")
    steps = [row["step"] for row in history.steps]
    assert [step for step, _ in scalars["train/loss"]] == steps
    assert [round(v, 5) for _, v in scalars["train/loss"]] == [round(row["loss"], 5) for row in history.steps]
    assert len(scalars["train/learning_rate"]) == len(steps)
    assert [round(v, 5) for _, v in scalars["eval/accuracy"]] == [round(row["eval_accuracy"], 5) for row in history.epochs]
    assert [step for step, _ in scalars["eval/loss"]] == [row["step"] for row in history.epochs]
    hparams = next((tmp_path / "tb").rglob("hparams.yml")).read_text()
    assert "train.learning_rate: 0.003" in hparams and "strategy.name: full" in hparams


def test_a_run_keeps_its_tracker_logs_with_the_config_and_final_metrics(model_dirs, tmp_path):
    from test_cli import TINY, _overrides, _write_data

    from nlp_transfer.api import train

    data = _write_data(tmp_path / "data")
    out = tmp_path / "run"
    result = train(TINY, _overrides(model_dirs["bert"], data, out, "train.report_to=[tensorboard]", "train.logging_steps=1"))
    assert (out / "logs").is_dir() and not Path(f"{out}.logs").exists()
    scalars = _scalars(out / "logs")
    for split, scores in result.metrics.items():  # the final scores of each split, at the last step
        assert scalars[f"{split}/accuracy"][-1][1] == pytest.approx(scores["accuracy"])
    assert scalars["train/loss"] and scalars["eval/accuracy"]
    hparams = next((out / "logs").rglob("hparams.yml")).read_text()
    assert f"model.name_or_path: {model_dirs['bert']}" in hparams  # the resolved run config
    assert json.loads((out / "metrics.json").read_text())["final"] == result.metrics


def test_a_missing_or_unknown_tracker_fails_before_training(tiny_model, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    clf = TextClassifier.from_pretrained(tiny_model, strategy="full")
    with pytest.raises(ConfigError, match=r"'wandb' needs the wandb package.*pip install wandb"):
        clf.fit(sentiment_rows(16), epochs=1, report_to=["wandb"])
    with pytest.raises(ConfigError, match="did you mean 'tensorboard'"):
        clf.fit(sentiment_rows(16), epochs=1, report_to=["tensorbord"])
    assert clf.history is None  # nothing trained
