"""Bad input gets a clear error before any training starts.

Each test checks the exception type (the `nlp_transfer.errors` classes) and that the message names
both the problem and the fix: the columns found, the valid choices, a "did you mean", the option to
set. The `no_training` fixture makes the feature cache, the accelerator and the training loop fail
the test when they are reached, so an error that only comes out of the loop does not pass.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import multi_label_rows, pair_rows, regression_rows, sentiment_rows

from nlp_transfer import TextClassifier
from nlp_transfer.errors import ConfigError, DataError, ModelLoadError, NLPTransferError, StrategyError


@pytest.fixture
def bert(model_dirs) -> Path:
    return model_dirs["bert"]


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any step of model work inside `fit` fails the test: validation must come first."""
    import nlp_transfer.classifiers.base as classifier

    def started(*args, **kwargs):
        pytest.fail("training started before the bad input was reported")

    for name in ("train_loop", "make_accelerator", "encode_features"):
        monkeypatch.setattr(classifier, name, started)


@pytest.fixture
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the encoder fails the test: settings must be checked before anything heavy happens."""
    import nlp_transfer.classifiers.text as text

    def loaded(*args, **kwargs):
        pytest.fail("the model was loaded before the bad setting was reported")

    monkeypatch.setattr(text, "load_text_backbone", loaded)


def _rename(rows: list[dict], old: str, new: str) -> list[dict]:
    return [{(new if k == old else k): v for k, v in row.items()} for row in rows]


# --------------------------------------------------------------------------- columns and rows
def test_missing_text_column_lists_the_columns_found(bert, no_training):
    clf = TextClassifier.from_pretrained(bert)
    rows = _rename(sentiment_rows(8), "text", "sentence")
    with pytest.raises(DataError) as error:
        clf.fit(rows, epochs=1)
    message = str(error.value)
    assert "'text'" in message
    assert "'sentence'" in message and "'label'" in message  # the columns found
    assert "text_column" in message  # the fix


def test_missing_label_column_lists_the_columns_found(bert, no_training):
    clf = TextClassifier.from_pretrained(bert)
    rows = _rename(sentiment_rows(8), "label", "sentiment")
    with pytest.raises(DataError) as error:
        clf.fit(rows, epochs=1)
    message = str(error.value)
    assert "'label'" in message
    assert "'sentiment'" in message and "'text'" in message
    assert "label_column" in message


def _empty_list(tmp_path: Path):
    return []


def _empty_frame(tmp_path: Path):
    import pandas as pd

    return pd.DataFrame({"text": pd.Series([], dtype=object), "label": pd.Series([], dtype=object)})


def _empty_dataset(tmp_path: Path):
    import datasets

    return datasets.Dataset.from_dict({"text": [], "label": []})


def _header_only_csv(tmp_path: Path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n", encoding="utf-8")
    return str(path)


def _empty_jsonl(tmp_path: Path):
    path = tmp_path / "train.jsonl"
    path.write_text("", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("make", [
    pytest.param(_empty_list, id="list"),
    pytest.param(_empty_frame, id="dataframe"),
    pytest.param(_empty_dataset, id="dataset"),
    pytest.param(_header_only_csv, id="csv-header-only"),
    pytest.param(_empty_jsonl, id="jsonl"),
])
def test_empty_dataset_is_reported_as_empty(bert, no_training, tmp_path, make):
    clf = TextClassifier.from_pretrained(bert)
    with pytest.raises(DataError) as error:
        clf.fit(make(tmp_path), epochs=1)
    message = str(error.value)
    assert "empty" in message or "0 rows" in message, message


@pytest.mark.parametrize("bad_text", ["", "   ", "\t\n", None])
def test_empty_or_blank_text_names_the_row(bert, no_training, bad_text):
    clf = TextClassifier.from_pretrained(bert)
    rows = sentiment_rows(6)
    rows[3]["text"] = bad_text
    with pytest.raises(DataError) as error:
        clf.fit(rows, epochs=1)
    message = str(error.value)
    assert "empty" in message and "'text'" in message
    assert re.search(r"\b3\b", message), f"the row is not named: {message}"


def test_blank_text_from_a_csv_file_names_the_row(bert, no_training, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\ngood film,pos\n,neg\n   ,neg\n", encoding="utf-8")
    clf = TextClassifier.from_pretrained(bert)
    with pytest.raises(DataError) as error:
        clf.fit(str(path), epochs=1)
    message = str(error.value)
    assert "2 row(s)" in message and "[1, 2]" in message


def test_blank_second_sentence_names_the_pair_column(bert, no_training):
    clf = TextClassifier.from_pretrained(bert)
    rows = pair_rows(6)
    rows[4]["text_pair"] = "  "
    with pytest.raises(DataError) as error:
        clf.fit(rows, epochs=1)
    message = str(error.value)
    assert "'text_pair'" in message and re.search(r"\b4\b", message)


# --------------------------------------------------------------------------- labels
def test_evaluate_with_labels_the_model_does_not_know(bert):
    clf = TextClassifier.from_pretrained(bert, labels=["neg", "pos"])
    data = [{"text": "good film", "label": "pos"}, {"text": "the plot", "label": "meh"}]
    with pytest.raises(DataError) as error:
        clf.evaluate(data)
    message = str(error.value)
    assert "'meh'" in message  # the unknown label
    assert "'neg'" in message and "'pos'" in message  # the labels the model knows


def test_eval_data_with_unknown_labels_fails_before_training(bert, no_training):
    clf = TextClassifier.from_pretrained(bert)
    eval_rows = sentiment_rows(6, seed=1, labels=("neg", "neutral"))
    with pytest.raises(DataError) as error:
        clf.fit(sentiment_rows(12), eval_data=eval_rows, epochs=1)
    assert "'neutral'" in str(error.value) and "'pos'" in str(error.value)


def _nan_rows():
    rows = regression_rows(8)
    rows[5]["label"] = float("nan")
    return rows


def _none_rows():
    rows = regression_rows(8)
    rows[5]["label"] = None
    return rows


def _nan_frame():
    import pandas as pd

    frame = pd.DataFrame(regression_rows(8))
    frame.loc[5, "label"] = np.nan
    return frame


@pytest.mark.parametrize("make", [_nan_rows, _none_rows, _nan_frame], ids=["nan", "none", "dataframe-nan"])
def test_missing_regression_target_names_the_row(bert, no_training, make):
    clf = TextClassifier.from_pretrained(bert, task="regression")
    with pytest.raises(DataError) as error:
        clf.fit(make(), epochs=1)
    message = str(error.value)
    assert "number" in message and re.search(r"\b5\b", message), message


def test_num_labels_contradicting_labels(bert):
    with pytest.raises(ConfigError) as error:
        TextClassifier.from_pretrained(bert, labels=["neg", "pos"], num_labels=3)
    message = str(error.value)
    assert "num_labels=3" in message and "'neg'" in message and "'pos'" in message


def test_num_labels_contradicting_the_training_data(bert, no_training):
    clf = TextClassifier.from_pretrained(bert, num_labels=3)
    with pytest.raises(DataError) as error:
        clf.fit(sentiment_rows(12), epochs=1)
    message = str(error.value)
    assert "num_labels=3" in message and "'neg'" in message and "'pos'" in message
    assert "num_labels=2" in message  # the fix


def _mixed_frame():
    import pandas as pd

    return pd.DataFrame({"text": ["good film", "bad film", "a plot", "the story"], "label": [1, "neg", 0, "pos"]})


@pytest.mark.parametrize("make", [
    lambda: [{"text": "good film", "label": 1}, {"text": "bad film", "label": "neg"}] * 3,
    _mixed_frame,
], ids=["list", "dataframe"])
def test_label_column_with_mixed_types(bert, no_training, make):
    clf = TextClassifier.from_pretrained(bert)
    with pytest.raises(DataError) as error:
        clf.fit(make(), epochs=1)
    message = str(error.value)
    assert "mixes types" in message and "str" in message and "number" in message


def test_list_labels_for_a_single_label_task(bert, no_training):
    clf = TextClassifier.from_pretrained(bert)  # task="single_label" by default
    with pytest.raises(DataError) as error:
        clf.fit(multi_label_rows(8), epochs=1)
    assert "multi_label" in str(error.value)


# --------------------------------------------------------------------------- strategies and settings
def test_unknown_strategy_name_suggests_the_closest(bert, no_model_loading):
    with pytest.raises(StrategyError) as error:
        TextClassifier.from_pretrained(bert, strategy="lroa")
    message = str(error.value)
    assert "'lroa'" in message and "did you mean 'lora'" in message
    for name in ("feature_extraction", "partial", "full", "lora"):
        assert repr(name) in message


def test_unknown_strategy_option_suggests_the_closest(bert, no_model_loading):
    with pytest.raises(ConfigError) as error:
        TextClassifier.from_pretrained(bert, strategy="partial", unfreeze_lst=1)
    message = str(error.value)
    assert "'unfreeze_lst'" in message and "did you mean 'unfreeze_last'" in message


def test_unknown_fit_setting_suggests_the_closest(bert, no_training):
    clf = TextClassifier.from_pretrained(bert)
    with pytest.raises(ConfigError) as error:
        clf.fit(sentiment_rows(8), epoch=3)
    message = str(error.value)
    assert "'epoch'" in message and "did you mean 'epochs'" in message


@pytest.mark.parametrize("setting, value", [
    ("batch_size", "32"),
    ("epochs", 2.5),
    ("learning_rate", "3e-5"),
    ("group_by_length", "yes"),
    ("mixed_precision", "fp8"),
    ("max_length", "128"),
])
def test_fit_setting_of_the_wrong_type(bert, no_training, setting, value):
    clf = TextClassifier.from_pretrained(bert)
    with pytest.raises(ConfigError) as error:
        clf.fit(sentiment_rows(8), **{setting: value})
    message = str(error.value)
    assert setting in message and repr(value) in message, message


def test_unfreeze_last_larger_than_the_layer_count(tiny_model):
    with pytest.raises(StrategyError) as error:
        TextClassifier.from_pretrained(tiny_model, labels=["neg", "pos"], strategy="partial", unfreeze_last=5)
    message = str(error.value)
    assert "unfreeze_last=5" in message and "2 layers" in message


def test_unfreeze_last_too_large_found_at_load_even_without_labels(bert, no_training):
    # No labels yet, so no head: the strategy is still checked against the encoder straight away.
    with pytest.raises(StrategyError) as error:
        TextClassifier.from_pretrained(bert, strategy="partial", unfreeze_last=5)
    assert "2 layers" in str(error.value)


def test_lora_target_modules_not_found_lists_the_linear_layers(tiny_model):
    import peft  # noqa: F401  (installed by the README's command: a missing one must fail, not skip)
    with pytest.raises(StrategyError) as error:
        TextClassifier.from_pretrained(tiny_model, labels=["neg", "pos"], strategy="lora", target_modules=["qkv"])
    message = str(error.value)
    assert "'qkv'" in message
    assert "query" in message and "value" in message and "dense" in message  # candidates
    assert "target_modules" in message


# --------------------------------------------------------------------------- data sources
@pytest.mark.parametrize("splits", [["train", "test"], ["train", "validation", "test"]])
def test_dataset_dict_instead_of_a_split(bert, no_training, splits):
    import datasets

    dataset = datasets.DatasetDict({name: datasets.Dataset.from_list(sentiment_rows(4)) for name in splits})
    clf = TextClassifier.from_pretrained(bert)
    with pytest.raises(DataError) as error:
        clf.fit(dataset, epochs=1)
    assert "dataset['train']" in str(error.value)


def test_dataset_dict_suggests_train_even_when_not_first(bert, no_training):
    import datasets

    dataset = datasets.DatasetDict({name: datasets.Dataset.from_list(sentiment_rows(4)) for name in ("validation", "train")})
    clf = TextClassifier.from_pretrained(bert)
    with pytest.raises(DataError) as error:
        clf.fit(dataset, epochs=1)
    assert "dataset['train']" in str(error.value)


@pytest.mark.parametrize("as_path", [str, Path], ids=["str", "Path"])
def test_missing_data_file(bert, no_training, tmp_path, as_path):
    missing = tmp_path / "no_such_train.csv"
    clf = TextClassifier.from_pretrained(bert)
    with pytest.raises(DataError) as error:
        clf.fit(as_path(missing), epochs=1)
    message = str(error.value)
    assert "no_such_train.csv" in message and "does not exist" in message


@pytest.mark.parametrize("name", ["train.txt", "train.xlsx"])
def test_unsupported_file_suffix_lists_the_supported_ones(bert, no_training, tmp_path, name):
    path = tmp_path / name
    path.write_text("text,label\ngood film,pos\n", encoding="utf-8")
    clf = TextClassifier.from_pretrained(bert)
    with pytest.raises(DataError) as error:
        clf.fit(str(path), epochs=1)
    message = str(error.value)
    assert name in message
    for suffix in (".csv", ".tsv", ".json", ".jsonl", ".parquet"):
        assert suffix in message


@pytest.mark.parametrize("suffix, content", [
    (".csv", "text,label\ncafé good,pos\nbad film,neg\n"),
    (".tsv", "text\tlabel\ncafé good\tpos\nbad film\tneg\n"),
    (".jsonl", '{"text": "café good", "label": "pos"}\n'),
    (".json", '[{"text": "café good", "label": "pos"}]'),
])
def test_non_utf8_file_says_to_resave_as_utf8(bert, no_training, tmp_path, suffix, content):
    path = tmp_path / f"train{suffix}"
    path.write_bytes(content.encode("latin-1"))
    clf = TextClassifier.from_pretrained(bert)
    with pytest.raises(DataError) as error:
        clf.fit(str(path), epochs=1)
    message = str(error.value)
    assert path.name in message and "UTF-8" in message


def test_invalid_jsonl_line_is_named(bert, no_training, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "good film", "label": "pos"}\n{"text": "bad film", "label": neg}\n', encoding="utf-8")
    clf = TextClassifier.from_pretrained(bert)
    with pytest.raises(DataError) as error:
        clf.fit(str(path), epochs=1)
    assert "line 2" in str(error.value) and "train.jsonl" in str(error.value)


# --------------------------------------------------------------------------- model folders
def test_missing_model_folder(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(ModelLoadError) as error:
        TextClassifier.from_pretrained(missing)
    assert "no_such_model" in str(error.value) and "does not exist" in str(error.value)
    with pytest.raises(ModelLoadError) as error:
        TextClassifier.load(missing)
    assert "does not exist" in str(error.value)


def test_model_folder_without_config_json(bert, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(bert, folder)
    (folder / "config.json").unlink()
    with pytest.raises(ModelLoadError) as error:
        TextClassifier.from_pretrained(folder)
    assert "config.json" in str(error.value) and "save_pretrained" in str(error.value)


def test_model_folder_with_only_pickle_weights_is_refused(bert, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(bert, folder)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError) as error:
        TextClassifier.from_pretrained(folder)
    message = str(error.value)
    assert "pickle" in message and "safetensors" in message and "allow_pickle" in message
    # the escape hatch the message names does work
    clf = TextClassifier.from_pretrained(folder, labels=["neg", "pos"], allow_pickle=True)
    assert clf.predict(["good film"])[0] in ("neg", "pos")


def test_predict_proba_on_a_regression_model(bert):
    clf = TextClassifier.from_pretrained(bert, task="regression")
    with pytest.raises(NLPTransferError) as error:
        clf.predict_proba(["good film"])
    assert "regression" in str(error.value) and "predict" in str(error.value)


def test_pair_model_asked_to_predict_without_the_pair(bert):
    clf = TextClassifier.from_pretrained(bert)
    clf.fit(pair_rows(16), epochs=1, validation_split=0.0)
    assert clf.uses_text_pair
    for inputs in (["good film"], [{"text": "good film"}]):
        with pytest.raises(DataError) as error:
            clf.predict(inputs)
        message = str(error.value)
        assert "'text_pair'" in message and "pairs" in message
    assert len(clf.predict([("good film", "bad film")])) == 1  # the shape the message asks for works


# --------------------------------------------------------------------------- a failed fit changes nothing
def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


_BAD_FITS = [
    (lambda: _rename(sentiment_rows(8), "text", "sentence"), {}),
    (lambda: [{"text": " ", "label": "pos"}] * 4, {}),
    (lambda: sentiment_rows(8, labels=("neg", "neutral")), {}),
    (lambda: sentiment_rows(8), {"epoch": 2}),
    (lambda: sentiment_rows(8), {"text_column": "sentence"}),
]


def test_failing_fit_leaves_the_saved_model_intact(bert, tmp_path, monkeypatch):
    texts = [row["text"] for row in sentiment_rows(10, seed=3)]
    clf = TextClassifier.from_pretrained(bert)
    clf.fit(sentiment_rows(24), epochs=1, validation_split=0.0)
    folder = clf.save(tmp_path / "model")
    before_files = _digest(folder)
    before = clf.predict_proba(texts)

    import nlp_transfer.classifiers.base as classifier

    monkeypatch.setattr(classifier, "train_loop", lambda *a, **k: pytest.fail("training started"))
    for make, settings in _BAD_FITS:
        with pytest.raises(NLPTransferError):
            clf.fit(make(), **settings)

    assert _digest(folder) == before_files
    reloaded = TextClassifier.load(folder)
    np.testing.assert_allclose(reloaded.predict_proba(texts), before, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(texts), before, atol=1e-6)
    assert clf.labels == reloaded.labels == ["neg", "pos"]


def test_failing_fit_keeps_the_data_settings(bert):
    clf = TextClassifier.from_pretrained(bert)
    clf.fit(sentiment_rows(16), epochs=1, validation_split=0.0)
    with pytest.raises(DataError):
        clf.fit(sentiment_rows(16), text_column="sentence")
    assert clf.data_config.text_column == "text"
    assert len(clf.predict([{"text": "good film"}])) == 1


def test_errors_are_value_errors():
    """Callers that already catch ValueError keep working."""
    for cls in (ConfigError, DataError, StrategyError, ModelLoadError):
        assert issubclass(cls, NLPTransferError) and issubclass(cls, ValueError)


def test_unavailable_extra_metric_fails_before_training(bert, no_training, monkeypatch):
    import evaluate

    from nlp_transfer.training.metrics import MetricLoadError

    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    clf = TextClassifier.from_pretrained(bert, labels=["neg", "pos"])
    with pytest.raises(MetricLoadError) as error:
        clf.fit(sentiment_rows(16), epochs=1, extra_metrics=["bleurt_not_bundled"])
    assert "bleurt_not_bundled" in str(error.value) and "Hub" in str(error.value)


def test_pair_training_data_with_single_text_eval_data(bert, no_training):
    from conftest import pair_rows

    clf = TextClassifier.from_pretrained(bert)
    evaluation = [{"text": r["text"], "label": r["label"]} for r in pair_rows(8, seed=1)]
    with pytest.raises(DataError) as error:
        clf.fit(pair_rows(16), evaluation, epochs=1)
    assert "eval_data" in str(error.value) and "'text_pair'" in str(error.value)
    assert clf.uses_text_pair is False  # a failed fit changes nothing


def test_fp16_on_a_cpu_is_refused_before_training(bert):
    if __import__("torch").cuda.is_available():
        pytest.skip("a GPU is present: fp16 is valid there")
    clf = TextClassifier.from_pretrained(bert, labels=["neg", "pos"])
    with pytest.raises(ConfigError, match="fp16.*needs a GPU.*bf16"):
        clf.fit(sentiment_rows(8), mixed_precision="fp16")


# --------------------------------------------------------------------------- labels a model cannot learn from
def test_single_class_training_set_is_refused(bert, no_training):
    rows = [{"text": r["text"], "label": "pos"} for r in sentiment_rows(12)]
    for labels in (None, ["neg", "pos"]):  # also when the model already knows both labels
        clf = TextClassifier.from_pretrained(bert, labels=labels)
        with pytest.raises(DataError) as error:
            clf.fit(rows, epochs=1)
        message = str(error.value)
        assert "'pos'" in message and "at least two" in message and "task='regression'" in message


def test_multi_label_rows_that_are_all_empty_are_refused(bert, no_training):
    clf = TextClassifier.from_pretrained(bert, task="multi_label")
    with pytest.raises(DataError) as error:
        clf.fit([{"text": r["text"], "label": []} for r in multi_label_rows(12)], epochs=1)
    assert "empty label list" in str(error.value)


@pytest.mark.parametrize("bad", [float("nan"), None, "3.5"])
def test_regression_evaluate_with_missing_targets_names_the_rows(bert, no_training, bad):
    clf = TextClassifier.from_pretrained(bert, task="regression")
    rows = regression_rows(8)
    rows[3]["label"] = bad
    with pytest.raises(DataError) as error:
        clf.evaluate(rows)
    message = str(error.value)
    assert "rows [3]" in message and "number" in message and "Drop or fill" in message


# --------------------------------------------------------------------------- max_length and the position table
def test_max_length_beyond_the_position_table_fails_at_load(model_dirs):
    # tiny BERT: 64 positions; tiny RoBERTa: 80, of which pad_token_id + 1 = 2 are offset, so 78 tokens
    for name, limit, table in (("bert", 64, 64), ("roberta", 78, 80)):
        with pytest.raises(ConfigError) as error:
            TextClassifier.from_pretrained(model_dirs[name], max_length=limit + 1)
        message = str(error.value)
        assert f"max_length={limit + 1}" in message and f"{limit} tokens" in message
        assert f"max_position_embeddings={table}" in message and f"at most {limit}" in message
        assert TextClassifier.from_pretrained(model_dirs[name], max_length=limit).max_length == limit
        assert TextClassifier.from_pretrained(model_dirs[name]).max_length == limit  # the default 128 is lowered


@pytest.mark.parametrize("name", ["bert", "roberta", "distilbert"])
def test_max_positions_is_what_the_encoder_really_takes(model_dirs, name):
    import torch

    clf = TextClassifier.from_pretrained(model_dirs[name])
    limit = clf.backbone.max_positions()
    encoder = clf.backbone.base_encoder.eval()
    ids = torch.full((1, limit), 5, dtype=torch.long)
    with torch.no_grad():
        encoder(input_ids=ids, attention_mask=torch.ones_like(ids))  # the limit works
        with pytest.raises((IndexError, RuntimeError)):  # one token more does not
            longer = torch.full((1, limit + 1), 5, dtype=torch.long)
            encoder(input_ids=longer, attention_mask=torch.ones_like(longer))


def test_max_length_beyond_the_position_table_in_fit_and_evaluate(bert, no_training):
    clf = TextClassifier.from_pretrained(bert, labels=["neg", "pos"])
    with pytest.raises(ConfigError, match=r"max_length=100.*64 tokens"):
        clf.fit(sentiment_rows(12), epochs=1, max_length=100)
    with pytest.raises(ConfigError, match=r"max_length=100.*64 tokens"):
        clf.evaluate(sentiment_rows(8), max_length=100)
    with pytest.raises(ConfigError, match=r"max_length=100.*64 tokens"):
        clf.features(["good film"], max_length=100)
    assert clf.max_length == 64  # a refused fit changes nothing


# --------------------------------------------------------------------------- columns named but absent
def test_text_pair_column_that_is_not_in_the_data(bert, no_training):
    clf = TextClassifier.from_pretrained(bert)
    rows = _rename(pair_rows(12), "text_pair", "hypothesis")
    with pytest.raises(DataError) as error:
        clf.fit(rows, epochs=1, text_pair_column="second")
    message = str(error.value)
    assert "'second'" in message and "'hypothesis'" in message and "text_pair_column" in message


# --------------------------------------------------------------------------- threshold and pool_layers
@pytest.mark.parametrize("threshold", [0, 1, 1.5, -0.2])
def test_threshold_outside_zero_one(bert, threshold):
    from nlp_transfer.config.run import ModelSection

    with pytest.raises(ConfigError) as error:
        TextClassifier.from_pretrained(bert, task="multi_label", threshold=threshold)
    assert f"threshold={threshold!r}" in str(error.value) and "0.5" in str(error.value)
    with pytest.raises(ConfigError) as error:
        ModelSection(threshold=threshold)
    assert "model.threshold" in str(error.value)


@pytest.mark.parametrize("pool_layers", [0, -1])
def test_pool_layers_below_one_fails_before_the_model_loads(bert, pool_layers, no_model_loading):
    with pytest.raises(ConfigError) as error:
        TextClassifier.from_pretrained(bert, pool_layers=pool_layers)
    message = str(error.value)
    assert f"pool_layers={pool_layers}" in message and "from 1" in message and "leave it unset" in message


def test_pool_layers_past_the_layer_count(bert):
    with pytest.raises(StrategyError) as error:
        TextClassifier.from_pretrained(bert, pool_layers=3)
    message = str(error.value)
    assert "pool_layers=3" in message and "from 1 to 2" in message and "leave it unset" in message


def test_pool_layers_zero_in_a_run_config():
    from nlp_transfer.config.run import ModelSection

    with pytest.raises(ConfigError, match=r"model.pool_layers=0.*from 1"):
        ModelSection(pool_layers=0)


# --------------------------------------------------------------------------- sentence pairs in nlp_transfer.predict
def test_predict_api_takes_text_pair_tuples(bert):
    import nlp_transfer

    clf = TextClassifier.from_pretrained(bert)
    clf.fit(pair_rows(16), epochs=1, validation_split=0.0)
    rows = nlp_transfer.predict(clf, [("good film", "bad film"), {"text": "a plot", "text_pair": "the story"}])
    assert [(r["text"], r["text_pair"]) for r in rows] == [("good film", "bad film"), ("a plot", "the story")]
    assert rows[0]["prediction"] == clf.predict([("good film", "bad film")])[0]
    assert set(rows[0]["probabilities"]) == {"different", "same"}


def test_predict_api_refuses_pairs_for_a_single_text_model(bert):
    import nlp_transfer

    clf = TextClassifier.from_pretrained(bert)
    clf.fit(sentiment_rows(16), epochs=1, validation_split=0.0)
    with pytest.raises(DataError, match="single texts"):
        nlp_transfer.predict(clf, [("good film", "bad film")])


# --------------------------------------------------------------------------- settings that were silently ignored
def test_constant_scheduler_warms_up(bert):
    clf = TextClassifier.from_pretrained(bert, strategy="full")
    history = clf.fit(sentiment_rows(32), epochs=2, batch_size=4, learning_rate=1e-3, scheduler="constant",
                      warmup_ratio=0.25, logging_steps=1, validation_split=0.0)
    rates = [step["learning_rate"] for step in history.steps]
    warmup = 4  # ceil(16 optimizer steps * 0.25)
    assert len(rates) == 16
    assert rates[:warmup] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3]), rates  # rises (logged after each step) ...
    assert rates[warmup:] == pytest.approx([1e-3] * (16 - warmup))  # ... then stays constant
