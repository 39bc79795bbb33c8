"""The reliability catalogue: damaged files, newer metadata, ragged CSVs, long texts, a full disk, determinism."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import sentiment_rows

from nlp_transfer import TextClassifier
from nlp_transfer.errors import DataError, ModelLoadError, NLPTransferError

TEXTS = ["a great film", "awful plot"]


def _saved(model_dirs, tmp_path, pooling="mean", strategy="full") -> tuple[TextClassifier, Path]:
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy=strategy, pooling=pooling)
    clf.fit(sentiment_rows(32), epochs=1, batch_size=16)
    return clf, clf.save(tmp_path / "model")


@pytest.mark.parametrize("pooling, damaged", [("mean", "head.safetensors"), ("mean", "encoder/model.safetensors"),
                                               ("cls", "model.safetensors")])
def test_truncated_weights_file_is_a_clear_load_error(model_dirs, tmp_path, pooling, damaged):
    _, folder = _saved(model_dirs, tmp_path, pooling)
    path = folder / damaged
    assert path.is_file(), sorted(p.name for p in folder.iterdir())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(ModelLoadError) as error:
        TextClassifier.load(folder)
    assert str(folder) in str(error.value) or damaged.split("/")[0] in str(error.value)


def test_metadata_from_a_newer_version_warns_and_loads(model_dirs, tmp_path, caplog):
    clf, folder = _saved(model_dirs, tmp_path)
    meta = json.loads((folder / "nlp_transfer.json").read_text())
    meta["calibration"] = {"method": "temperature"}  # a field a later version might add
    (folder / "nlp_transfer.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="nlp_transfer"):
        again = TextClassifier.load(folder)
    assert "calibration" in caplog.text
    np.testing.assert_allclose(again.predict_proba(TEXTS), clf.predict_proba(TEXTS), atol=1e-6)


def test_csv_with_ragged_rows_names_the_problem(model_dirs, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\ngood film,pos\nbad film,neg,extra,fields\n")
    clf = TextClassifier.from_pretrained(model_dirs["bert"])
    with pytest.raises(DataError, match=r"could not parse 'train.csv'.*line 3"):
        clf.fit(str(path), epochs=1)


def test_long_texts_warn_once(model_dirs, caplog):
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="feature_extraction", max_length=6)
    long_rows = [{"text": " ".join(["good"] * 40), "label": "pos"}, {"text": "bad film", "label": "neg"}] * 8
    with caplog.at_level(logging.WARNING, logger="nlp_transfer"):
        clf.fit(long_rows, long_rows, epochs=1)
        clf.predict([" ".join(["bad"] * 50)])
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "max_length=6" in warnings[0].getMessage()


def test_full_disk_during_save_keeps_the_previous_model(model_dirs, tmp_path, monkeypatch):
    import nlp_transfer.classifiers.text as text

    clf, folder = _saved(model_dirs, tmp_path)
    before = clf.predict_proba(TEXTS)
    clf.fit(sentiment_rows(32, seed=4), epochs=2, batch_size=16, learning_rate=1e-2)  # now a different model

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(text, "save_tensors", full)
    with pytest.raises(NLPTransferError, match="No space left on device.*unchanged"):
        clf.save(folder)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".model")]  # no half-written folder left
    np.testing.assert_allclose(TextClassifier.load(folder).predict_proba(TEXTS), before, atol=1e-6)


def test_same_config_and_seed_twice_give_identical_runs(model_dirs, tmp_path):
    from safetensors.torch import load_file

    from nlp_transfer.cli import main

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sentiment_rows(64)))
    runs = []
    for name in ("one", "two"):
        out = tmp_path / name
        assert main(["train", str(Path(__file__).parent.parent / "configs/tests/tiny.yaml"),
                     f"model.name_or_path={model_dirs['bert']}", f"data.train={data}", "data.validation=null",
                     "data.test=null", f"output.dir={out}", "strategy.name=lora"]) == 0
        runs.append(out)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    strip = lambda rows: [{k: v for k, v in r.items() if "second" not in k} for r in rows]  # noqa: E731
    assert strip(metrics[0]["epochs"]) == strip(metrics[1]["epochs"]) and metrics[0]["final"] == metrics[1]["final"]
    first, second = (load_file(str(run / "model" / "head.safetensors")) for run in runs)
    assert all((first[k] == second[k]).all() for k in first)
    adapters = [load_file(str(next((run / "model" / "adapter").glob("*.safetensors")))) for run in runs]
    assert all((adapters[0][k] == adapters[1][k]).all() for k in adapters[0])
