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
    assert "--seeds 3" in result.table()  # one seed: the footer says it cannot tell a difference from noise


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


# ----------------------------------------------------------------- several seeds
def test_tie_rule_clear_win_tie_and_lower_is_better():
    assert comparison.tied_with_top({"lora": (0.90, 0.01), "full": (0.85, 0.01)}) == []  # 0.89 > 0.86
    assert comparison.tied_with_top({"lora": (0.90, 0.03), "full": (0.85, 0.03), "partial": (0.70, 0.01)}) == [
        "lora", "full"]  # 0.87 <= 0.88; partial is clearly behind
    assert comparison.tied_with_top({"a": (0.30, 0.02), "b": (0.20, 0.02)}, higher=False) == []  # b: lowest loss wins
    assert comparison.tied_with_top({"a": (0.30, 0.06), "b": (0.20, 0.06)}, higher=False) == ["b", "a"]
    assert comparison.tied_with_top({"only": (0.5, 0.1)}) == []


def test_reliability_bins_pool_over_seeds_by_confidence():
    first = {"confidence": [0.55, 0.95], "accuracy": [0.5, 1.0], "count": [2, 2]}
    second = {"confidence": [0.95], "accuracy": [0.5], "count": [2]}  # its empty bins left out
    pooled = comparison.pooled_reliability([first, second, None])
    assert pooled["count"] == [2, 4] and pooled["accuracy"] == [0.5, 0.75] and pooled["confidence"] == [0.55, 0.95]
    assert pooled["ece"] == pytest.approx((2 * 0.05 + 4 * 0.2) / 6)
    assert comparison.pooled_reliability([None, {}]) is None


FAKE_BINS = {"confidence": [0.6, 0.9], "accuracy": [0.5, 0.8], "count": [5, 18]}


def test_two_seeds_give_mean_and_std_per_seed_runs_and_charts(model_dirs, tmp_path, monkeypatch):
    real, seeds_seen = comparison.fit_run, []

    def fit_run(config, splits, **kwargs):  # the reliability entry another evaluation change adds, faked
        seeds_seen.append((config.strategy.name, config.train.seed, config.train.seeds))
        result = real(config, splits, **kwargs)
        return dataclasses.replace(result, metrics={**result.metrics, "test": {**result.metrics["test"],
                                                                              "reliability": FAKE_BINS}})

    monkeypatch.setattr(comparison, "fit_run", fit_run)
    data = _write_data(tmp_path / "data")
    out = tmp_path / "cmp"
    config = load_config(TINY, [*_overrides(model_dirs["bert"], data, out), "train.epochs=1"])
    result = comparison.compare(config, ["feature_extraction", "lora"], seeds=2)
    assert seeds_seen == [("feature_extraction", 42, 1), ("feature_extraction", 43, 1), ("lora", 42, 1), ("lora", 43, 1)]
    row = result.rows[0]
    assert row.seeds == [42, 43] and [run["seed"] for run in row.per_seed] == [42, 43]
    runs = [run["metrics"]["accuracy"] for run in row.per_seed]
    assert row.metrics["accuracy"] == pytest.approx(np.mean(runs))
    assert row.metrics_std["accuracy"] == pytest.approx(np.std(runs, ddof=1)) and "accuracy" in row.selection_std
    assert row.reliability["count"] == [10, 36] and row.reliability["accuracy"] == pytest.approx([0.5, 0.8])
    for strategy in ("feature_extraction", "lora"):
        assert {p.name for p in (out / strategy).iterdir()} == {"seed-42", "seed-43"}
    assert len(list(out.glob("*/seed-*/model"))) == 1 and len(list((out / result.best).glob("seed-*/model"))) == 1
    table = (out / "compare.md").read_text()
    line = next(line for line in table.splitlines() if line.startswith("feature_extraction"))
    assert line.count("±") == 3  # val acc, test acc, test F1
    assert "over 2 seeds (42, 43)" in table and "reliability.png" in table
    assert ("tie between" in table) == bool(result.tied)
    saved = json.loads((out / "compare.json").read_text())
    assert saved["seeds"] == 2 and "mean - std" in saved["best_rule"] and saved["tied"] == result.tied
    assert saved["strategies"][0]["per_seed"][1]["seed"] == 43 and saved["strategies"][0]["metrics_std"]
    assert (out / "compare.png").stat().st_size > 0 and (out / "reliability.png").stat().st_size > 0


def test_a_tie_is_reported_in_the_table():
    rows = [comparison.StrategyScore(name, {"accuracy": mean}, 1.0, 10.0, 5.0, 10, 100, 1, 1e-3,
                                     selection_metrics={"accuracy": mean}, metrics_std={"accuracy": 0.05},
                                     selection_std={"accuracy": 0.05}, seeds=[1, 2, 3])
            for name, mean in (("lora", 0.9), ("full", 0.88))]
    tied = comparison.tied_with_top({row.strategy: (0.9 if row.strategy == "lora" else 0.88, 0.05) for row in rows})
    table = comparison.Comparison("test", "accuracy", rows, "lora", seeds=3, tied=tied).table()
    assert "lora * =" in table and "full =" in table and "0.9000 ± 0.0500" in table
    assert "tie between lora, full: within one standard deviation on validation over 3 seeds" in table


def test_seeds_must_be_at_least_one(model_dirs, tmp_path):
    from nlp_transfer.cli import main
    from nlp_transfer.config.settings import TrainingConfig
    from nlp_transfer.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 1"):
        comparison.compare(load_config(TINY, _overrides(model_dirs["bert"], {}, tmp_path / "c")), ["lora"], seeds=0)
    with pytest.raises(ConfigError, match="seeds must be at least 1"):
        TrainingConfig(seeds=0)
    data = _write_data(tmp_path / "data")
    assert main(["train", str(TINY), *_overrides(model_dirs["bert"], data, tmp_path / "run"), "train.seeds=2"]) == 2
    from nlp_transfer.api import train

    with pytest.raises(ConfigError, match="train.seeds=2 is for `compare`"):  # the Python API refuses it too
        train(TINY, [*_overrides(model_dirs["bert"], data, tmp_path / "run"), "train.seeds=2"])
    assert main(["compare", str(TINY), *_overrides(model_dirs["bert"], data, tmp_path / "cmp"), "--seeds", "0"]) == 2
    assert not (tmp_path / "run").exists() and not (tmp_path / "cmp").exists()


def test_default_strategies_are_those_that_can_learn_the_task_and_a_misfit_is_refused_before_training(model_dirs, tmp_path):
    from conftest import multi_label_rows, pair_rows
    from nlp_transfer.data.sources import load_splits
    from test_cli import _write_jsonl

    single = load_config(TINY, _overrides(model_dirs["bert"], _write_data(tmp_path / "single"), tmp_path / "a"))
    assert comparison.default_strategies(single, load_splits(single.data)) == comparison.DEFAULT_STRATEGIES
    folder = tmp_path / "other"
    folder.mkdir()
    multi = load_config(TINY, _overrides(model_dirs["bert"], {"train": _write_jsonl(folder / "m.jsonl", multi_label_rows(20))},
                                         tmp_path / "b", "model.task=multi_label", "data.validation=null", "data.test=null"))
    pairs = load_config(TINY, _overrides(model_dirs["bert"], {"train": _write_jsonl(folder / "p.jsonl", pair_rows(20))},
                                         tmp_path / "c", "data.validation=null", "data.test=null"))
    for config in (multi, pairs):
        chosen = comparison.default_strategies(config, load_splits(config.data))
        assert "contrastive" not in chosen and "lora" in chosen and chosen[-1] == comparison.SCRATCH
    with pytest.raises(comparison.ConfigError, match="'contrastive' cannot run here.*sentence pairs"):
        comparison.compare(pairs, ["lora", "contrastive"])
    assert not (tmp_path / "c").exists()  # nothing trained, nothing written
