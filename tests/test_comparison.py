"""`compare`: the best strategy is chosen on validation and reported on test; each strategy's memory is its own."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from test_cli import TINY, _overrides, _write_data

from nlp_transfer.selection import comparison
from nlp_transfer.classifiers.text import TextClassifier
from nlp_transfer.config.run import load_config
from nlp_transfer.training.memory import PeakMemory, current_rss_bytes

# the memory tests allocate host memory: on a GPU, PeakMemory measures the GPU's instead
needs_rss = pytest.mark.skipif(current_rss_bytes() is None or torch.cuda.is_available(),
                               reason="RSS is measured only on a CPU with /proc")

# validation and test disagree on purpose: validation prefers feature_extraction, test prefers lora
RIGGED = {"feature_extraction": (0.90, 0.60), "lora": (0.70, 0.95)}


def _rigged_fit_run(monkeypatch, *, keep_validation: bool = True) -> None:
    """Real fits, with their validation and test accuracies replaced by `RIGGED`. Without
    `keep_validation` only the held-out scores the fit chose its epoch on (classifier.metrics) carry them."""
    real = comparison.fit_run

    def fit_run(config, splits, **kwargs):
        result = real(config, splits, **kwargs)
        validation, test = RIGGED[config.strategy.name]
        metrics = {"test": {**result.metrics["test"], "accuracy": test}}
        if keep_validation:
            metrics["validation"] = {**result.metrics["validation"], "accuracy": validation}
        result.classifier.metrics = {**(result.classifier.metrics or {}), "accuracy": validation}
        return dataclasses.replace(result, metrics=metrics)

    monkeypatch.setattr(comparison, "fit_run", fit_run)


def test_best_is_chosen_on_validation_even_when_test_prefers_another(model_dirs, tmp_path, monkeypatch):
    _rigged_fit_run(monkeypatch)
    data = _write_data(tmp_path / "data")
    out = tmp_path / "cmp"
    result = comparison.compare(load_config(TINY, _overrides(model_dirs["bert"], data, out)), ["feature_extraction", "lora"])
    assert result.best == "feature_extraction" and result.selection_split == "validation" and result.split == "test"
    rows = {row.strategy: row for row in result.rows}
    assert rows["lora"].metrics["accuracy"] == 0.95 and rows["lora"].selection_metrics["accuracy"] == 0.70
    saved = json.loads((out / "compare.json").read_text())
    assert saved["best"] == "feature_extraction" and saved["selection_split"] == "validation"
    assert "never saw" in saved["chosen_on"]
    assert (out / "feature_extraction" / "model").is_dir() and not (out / "lora" / "model").exists()
    table = (out / "compare.md").read_text()
    assert "val acc" in table and "test acc" in table
    line = next(line for line in table.splitlines() if line.startswith("feature_extraction"))
    assert "*" in line and "0.9000" in line and "0.6000" in line  # validation and test side by side


def test_without_validation_data_the_held_out_part_of_train_chooses(model_dirs, tmp_path, monkeypatch):
    _rigged_fit_run(monkeypatch, keep_validation=False)
    data = _write_data(tmp_path / "data")
    del data["validation"]
    config = load_config(TINY, [*_overrides(model_dirs["bert"], data, tmp_path / "cmp"), "data.validation=null",
                                "data.validation_split=0.2"])
    result = comparison.compare(config, ["feature_extraction", "lora"])
    assert result.best == "feature_extraction" and result.selection_split == "held-out"
    assert "data.validation_split" in result.table()


def test_with_no_validation_at_all_the_table_says_the_choice_saw_the_test(model_dirs, tmp_path):
    data = _write_data(tmp_path / "data")
    del data["validation"]
    config = load_config(TINY, [*_overrides(model_dirs["bert"], data, tmp_path / "cmp"), "data.validation=null",
                                "data.validation_split=0", "train.epochs=1"])
    result = comparison.compare(config, ["feature_extraction"])
    assert result.selection_split == result.split == "test"
    assert "optimistic" in result.table() and "data.validation_split > 0" in result.chosen_on


@needs_rss
def test_a_later_strategy_does_not_inherit_an_earlier_ones_memory(model_dirs, tmp_path, monkeypatch):
    kept = []  # outlives the first fit, as a previous best model does inside compare
    real_fit = TextClassifier.fit

    def fit(self, *args, **kwargs):
        if self.strategy.name == "feature_extraction":
            ballast = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
            ballast += 1
            kept.append(ballast)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(TextClassifier, "fit", fit)
    data = _write_data(tmp_path / "data")
    config = load_config(TINY, [*_overrides(model_dirs["bert"], data, tmp_path / "cmp"), "train.epochs=1"])
    result = comparison.compare(config, ["feature_extraction", "lora"])
    first, second = result.rows
    assert first.peak_memory_mb >= 380  # its own ballast is its own
    assert second.peak_memory_mb < 200, second.peak_memory_mb  # the first one's, still alive, is not
    assert "increase" in result.memory_kind and "not counted" in result.table()


@needs_rss
def test_peak_memory_increase_is_measured_from_the_blocks_start():
    held = np.ones(200 * 2**20 // 8)  # 200 MiB alive before the block
    held += 1
    with PeakMemory() as peak:
        pass
    assert peak.megabytes >= 200 and peak.increase_megabytes < 50
    del held
