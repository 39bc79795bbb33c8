"""ONNX export: parity with PyTorch, dynamic axes, the int8 gate, OnnxClassifier, load_model and the CLI.

Tiny random encoders (conftest), trained for one epoch so the heads are not all zeros.
"""

from __future__ import annotations

import json
import random
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import FILLER, POSITIVE, multi_label_rows, pair_rows, regression_rows, sentiment_rows
from nlp_transfer.classifiers.text import TextClassifier
from nlp_transfer.cli import main
from nlp_transfer.errors import ConfigError
from nlp_transfer.export import ExportError, OnnxClassifier, export_classifier
from nlp_transfer.tasks import get_task

TINY = Path(__file__).resolve().parents[1] / "configs" / "tests" / "tiny.yaml"


def _texts(n: int, seed: int = 7) -> list[str]:
    """Texts of 1 to n words: one batch holds short and long rows, so padding matters."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(FILLER + POSITIVE) for _ in range(1 + i)) for i in range(n)]


def _trained(model_dir: Path, rows: list[dict], **settings) -> TextClassifier:
    clf = TextClassifier.from_pretrained(str(model_dir), max_length=32, **settings)
    clf.fit(rows, epochs=1, batch_size=8, learning_rate=3e-3, head_learning_rate=3e-3, validation_split=0.0)
    return clf


@pytest.fixture(scope="module")
def single(model_dirs, tmp_path_factory):
    """A full fine-tune of tiny BERT, exported with its validation data."""
    clf = _trained(model_dirs["bert"], sentiment_rows(48), strategy="full")
    out = tmp_path_factory.mktemp("export") / "single"
    result = clf.export(out, validation=sentiment_rows(20, seed=1))
    return clf, out, result


def test_onnx_probabilities_match_predict_proba(single):
    clf, out, result = single
    assert result.parity.passed and result.parity.source == "validation"
    onnx = OnnxClassifier.load(out)
    texts = _texts(9)
    assert np.abs(onnx.predict_proba(texts) - clf.predict_proba(texts)).max() <= 1e-4
    assert onnx.predict(texts) == clf.predict(texts)
    assert onnx.labels == clf.labels and onnx.task.name == "single_label" and onnx.precision == "fp32"
    ours, theirs = clf.evaluate(sentiment_rows(12, seed=3)), onnx.evaluate(sentiment_rows(12, seed=3))
    assert theirs["accuracy"] == ours["accuracy"] and theirs["loss"] == pytest.approx(ours["loss"], abs=1e-4)


def test_graph_has_dynamic_batch_and_sequence_axes(single):
    import onnxruntime

    clf, out, _ = single
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]
    for texts in (["good"], _texts(7)):
        encoded = clf.tokenizer(texts, padding=True, return_tensors="np")
        logits, probabilities = session.run(None, {k: encoded[k].astype(np.int64) for k in
                                                    ("input_ids", "attention_mask", "token_type_ids")})
        assert probabilities.shape == (len(texts), 2)
        assert np.abs(probabilities - clf.predict_proba(texts)).max() <= 1e-4


def test_export_folder_records_settings_and_numbers(single):
    clf, out, result = single
    manifest = json.loads((out / "onnx_config.json").read_text())
    assert manifest["labels"] == clf.labels and manifest["task"] == "single_label"
    assert manifest["strategy"]["name"] == "full" and manifest["threshold"] == clf.threshold
    assert manifest["parity"]["max_abs_diff"] == result.parity.max_abs_diff
    assert {"torch", "onnxruntime", "transformers"} <= set(manifest["versions"])
    assert (out / "tokenizer.json").is_file()
    assert "Parity with the PyTorch model" in (out / "README.md").read_text()


def test_load_model_and_predict_on_an_export(single):
    from nlp_transfer import api

    clf, out, _ = single
    loaded = api.load_model(out)
    assert isinstance(loaded, OnnxClassifier)
    rows = api.predict(out, ["good film", "bad plot"])
    assert [row["prediction"] for row in rows] == clf.predict(["good film", "bad plot"])
    assert set(rows[0]["probabilities"]) == set(clf.labels)


def test_lora_is_merged_in_the_export_and_kept_in_the_classifier(model_dirs, tmp_path):
    clf = _trained(model_dirs["roberta"], sentiment_rows(40), strategy="lora")
    texts = _texts(8)
    before = clf.predict_proba(texts)
    clf.export(tmp_path / "lora")
    assert clf.backbone.has_adapters  # the user's classifier still has its adapter
    np.testing.assert_array_equal(clf.predict_proba(texts), before)
    onnx = OnnxClassifier.load(tmp_path / "lora")
    assert np.abs(onnx.predict_proba(texts) - before).max() <= 1e-4
    manifest = json.loads((tmp_path / "lora" / "onnx_config.json").read_text())
    assert manifest["strategy"]["merged"] and manifest["parity"]["source"] == "built-in sample"


def test_multi_label_graph_ends_in_a_sigmoid(model_dirs, tmp_path):
    import onnx

    clf = _trained(model_dirs["bert"], multi_label_rows(40), task="multi_label", strategy="feature_extraction")
    clf.export(tmp_path / "multi")
    assert "Sigmoid" in {node.op_type for node in onnx.load(str(tmp_path / "multi" / "model.onnx")).graph.node}
    texts = _texts(6)
    ours = OnnxClassifier.load(tmp_path / "multi")
    assert np.abs(ours.predict_proba(texts) - clf.predict_proba(texts)).max() <= 1e-4
    assert ours.predict(texts) == clf.predict(texts)


def test_pair_model(model_dirs, tmp_path):
    clf = _trained(model_dirs["bert"], pair_rows(40), strategy="full")
    clf.export(tmp_path / "pairs", validation=pair_rows(16, seed=4))
    onnx = OnnxClassifier.load(tmp_path / "pairs")
    assert onnx.uses_text_pair
    pairs = list(zip(_texts(6), reversed(_texts(6))))
    assert np.abs(onnx.predict_proba(pairs) - clf.predict_proba(pairs)).max() <= 1e-4
    assert onnx.predict(pairs) == clf.predict(pairs)


def test_regression_graph_answers_in_the_users_units(model_dirs, tmp_path):
    rows = [{**row, "label": 100 + 50 * row["label"]} for row in regression_rows(40)]  # far from standardised
    clf = _trained(model_dirs["roberta"], rows, task="regression", strategy="full")
    clf.export(tmp_path / "regression")
    onnx = OnnxClassifier.load(tmp_path / "regression")
    texts = _texts(7)
    np.testing.assert_allclose(onnx.predict(texts), clf.predict(texts), atol=1e-4 * clf.target_scale[1])
    assert np.mean(onnx.predict(texts)) > 50  # user units, not standardised values around 0
    valid = [{**row, "label": 100 + 50 * row["label"]} for row in regression_rows(12, seed=2)]
    ours, theirs = clf.evaluate(valid), onnx.evaluate(valid)
    assert theirs["pearson"] == pytest.approx(ours["pearson"], abs=1e-4)
    assert theirs["loss"] == pytest.approx(ours["loss"], abs=1e-4)


def test_int8_gate_refuses_and_keeps_the_fp32_export(single, tmp_path, monkeypatch):
    clf, _, _ = single
    out = tmp_path / "refused"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # onnxruntime's tools like to leave files in the current folder
    with pytest.raises(ExportError, match=r"accuracy \d+\.\d\d \(fp32 ONNX\) -> \d+\.\d\d \(int8\).*max_drop=-1"):
        clf.export(out, quantize="int8", max_drop=-1, validation=sentiment_rows(20, seed=1))
    assert (out / "model.onnx").is_file() and not (out / "model_int8.onnx").exists()
    assert OnnxClassifier.load(out).precision == "fp32"
    assert json.loads((out / "onnx_config.json").read_text())["files"] == {"fp32": "model.onnx"}
    assert not any((tmp_path / "cwd").iterdir())


def test_parity_failure_refuses_the_export(single, tmp_path, monkeypatch):
    clf, _, _ = single
    outputs = OnnxClassifier.outputs

    def off_by_a_little(self, *args, **kwargs):
        logits, probabilities = outputs(self, *args, **kwargs)
        return logits, probabilities + 1e-3

    monkeypatch.setattr(OnnxClassifier, "outputs", off_by_a_little)
    with pytest.raises(ExportError, match=r"max \|difference\| of the probabilities is 0\.001.*tolerance 0\.0001"):
        clf.export(tmp_path / "mismatch")
    assert not (tmp_path / "mismatch").exists()


def test_unsupported_models_and_requests_are_clear_errors(single, tmp_path):
    clf, _, _ = single
    tagger = types.SimpleNamespace(modality="text", task=get_task("token_classification"))
    with pytest.raises(ExportError, match="covers text classification so far"):
        export_classifier(tagger, tmp_path / "x")
    images = types.SimpleNamespace(modality="vision", task=get_task("single_label"))
    with pytest.raises(ExportError, match="image classifier.*covers text classification"):
        export_classifier(images, tmp_path / "x")
    with pytest.raises(ExportError, match=r"needs validation data.*validation=.*--data"):
        clf.export(tmp_path / "x", quantize="int8")
    with pytest.raises(ConfigError, match="quantize='int4'"):
        clf.export(tmp_path / "x", quantize="int4")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an earlier ONNX export"):
        clf.export(tmp_path / "busy")


def test_cli_exports_a_run_with_int8_on_its_validation_split(model_dirs, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for split, rows in (("train", sentiment_rows(48)), ("validation", sentiment_rows(20, seed=1))):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    run = tmp_path / "run"
    assert main(["train", str(TINY), f"model.name_or_path={model_dirs['bert']}", f"data.train={data / 'train.jsonl'}",
                 f"data.validation={data / 'validation.jsonl'}", "data.test=null", "train.epochs=1",
                 f"output.dir={run}"]) == 0
    capsys.readouterr()
    out = tmp_path / "exported"
    assert main(["export", str(run), "--quantize", "int8", "--max-drop", "100", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "parity: max |difference|" in printed and "(validation)" in printed and "int8 gate: accuracy" in printed
    manifest = json.loads((out / "onnx_config.json").read_text())
    assert manifest["files"] == {"fp32": "model.onnx", "int8": "model_int8.onnx"}
    assert manifest["quantization"]["passed"] and manifest["quantization"]["examples"] == 20
    int8 = OnnxClassifier.load(out)
    assert int8.precision == "int8" and len(int8.predict(["good film"])) == 1
    assert "int8 quality gate" in (out / "README.md").read_text()
