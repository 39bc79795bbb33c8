"""`strategy: auto`: `train` chooses the strategy from the training data's examples per class, says
which and why, and refuses what its rule was not measured on."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import sentiment_rows
from test_cli import TINY, _overrides, _write_data, _write_jsonl

from nlp_transfer.api import train
from nlp_transfer.config.run import load_config, resolve
from nlp_transfer.errors import ConfigError, StrategyError
from nlp_transfer.selection.auto import CONTRASTIVE_UP_TO, choose_strategy
from nlp_transfer.strategies import make_strategy


def test_few_examples_per_class_choose_contrastive_and_many_choose_full():
    few = ["a"] * CONTRASTIVE_UP_TO + ["b"] * 10
    assert choose_strategy(few).strategy == "contrastive"
    many = ["a"] * (CONTRASTIVE_UP_TO + 1) * 2 + ["b"] * (CONTRASTIVE_UP_TO + 1) * 2
    choice = choose_strategy(many)
    assert choice.strategy == "full" and choice.examples_per_class == 2 * (CONTRASTIVE_UP_TO + 1)
    assert str(CONTRASTIVE_UP_TO) in choice.reason and "per class" in choice.reason


def test_the_count_is_what_fit_will_train_on():
    labels = ["a"] * 100 + ["b"] * 100
    assert choose_strategy(labels).strategy == "full"
    assert choose_strategy(labels, per_class_limit=16).strategy == "contrastive"  # the few-shot sample
    labels = ["a"] * (CONTRASTIVE_UP_TO + 3) + ["b"] * (CONTRASTIVE_UP_TO + 3)
    assert choose_strategy(labels).strategy == "full"
    assert choose_strategy(labels, keep_share=0.9).strategy == "contrastive"  # what a 10% hold-out leaves


@pytest.mark.parametrize("kwargs, message", [
    ({"task": "multi_label"}, "cannot choose for multi_label data"),
    ({"pairs": True}, "cannot choose for sentence pairs"),
    ({"modality": "vision"}, "chooses for text"),
])
def test_what_the_rule_was_not_measured_on_is_refused_with_the_choices(kwargs, message):
    with pytest.raises(ConfigError, match=message) as error:
        choose_strategy(["a", "b"] * 5, **kwargs)
    assert "compare" in str(error.value)


def test_auto_is_not_a_strategy_to_build_or_to_compare():
    with pytest.raises(StrategyError, match="chosen from the training data"):
        make_strategy("auto")
    with pytest.raises(ConfigError, match="chosen from the training data"):
        resolve(load_config(None, ["strategy.name=auto"]))
    from nlp_transfer.selection.comparison import compare

    with pytest.raises(ConfigError, match="leave it out of --strategies"):
        compare(load_config(None, []), strategies=["auto", "full"])


def test_train_with_auto_runs_the_chosen_strategy_and_records_why(model_dirs, tmp_path):
    data = _write_data(tmp_path / "data")  # 64 training rows: about 32 per class
    out = tmp_path / "run"
    result = train(TINY, _overrides(model_dirs["bert"], data, out, "strategy.name=auto", "train.epochs=1",
                                    "strategy.contrastive.num_iterations=1"))
    assert result.config.strategy.name == "contrastive" and result.classifier.strategy.name == "contrastive"
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["strategy"]["name"] == "contrastive"  # the replayed config reruns what ran
    choice = json.loads((out / "metrics.json").read_text())["strategy_choice"]
    assert choice.startswith("auto chose contrastive") and "per class" in choice


def test_train_with_auto_on_more_data_fine_tunes(model_dirs, tmp_path):
    data = _write_data(tmp_path / "data")
    _write_jsonl(data["train"], sentiment_rows(2 * (CONTRASTIVE_UP_TO + 12)))
    result = train(TINY, _overrides(model_dirs["bert"], data, tmp_path / "run", "strategy.name=auto", "train.epochs=1"))
    assert result.config.strategy.name == "full" and result.strategy_choice.startswith("auto chose full")
