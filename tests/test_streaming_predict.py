"""Streaming prediction: sources read chunk by chunk, rows in input order, bounded memory, atomic output files.

Untrained tiny models (random head with labels) are enough: the tests compare streamed and
whole-input predictions of the same weights, never their quality.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import sentiment_rows
from nlp_transfer.api import iter_predictions, predict, write_predictions
from nlp_transfer.classifiers.text import TextClassifier
from nlp_transfer.cli import main
from nlp_transfer.errors import DataError

ROWS = 23  # no chunk size below divides it


@pytest.fixture(scope="module")
def clf(model_dirs):
    return TextClassifier.from_pretrained(model_dirs["bert"], labels=["neg", "pos"], seed=0)


@pytest.fixture(scope="module")
def saved(clf, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("saved") / "model"
    clf.save(folder)
    return folder


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return sentiment_rows(ROWS, seed=3)


@pytest.fixture(scope="module")
def jsonl(rows, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def whole(clf, rows) -> np.ndarray:
    """Probabilities of every row from one pass: what streamed predictions must equal."""
    clf.chunk_size = 10_000
    return clf.predict_proba([r["text"] for r in rows])


def _flat(chunks) -> list[dict]:
    return [row for rows in chunks for row in rows]


def _probabilities(predicted: list[dict]) -> np.ndarray:
    return np.array([[row["probabilities"]["neg"], row["probabilities"]["pos"]] for row in predicted])


@pytest.mark.parametrize("chunk_size", [1, 5, 7, 50])
def test_streamed_predictions_equal_one_pass_in_input_order(clf, rows, jsonl, whole, chunk_size):
    chunks = list(iter_predictions(clf, str(jsonl), chunk_size=chunk_size))
    assert [len(c) for c in chunks[:-1]] == [chunk_size] * (len(chunks) - 1) and 0 < len(chunks[-1]) <= chunk_size
    predicted = _flat(chunks)
    assert [p["text"] for p in predicted] == [r["text"] for r in rows]
    np.testing.assert_allclose(_probabilities(predicted), whole, atol=1e-5)


def test_every_source_kind_streams_to_the_same_rows(clf, rows, jsonl, tmp_path):
    import datasets
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    frame.to_csv(tmp_path / "rows.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "rows.parquet")
    reference = _flat(iter_predictions(clf, str(jsonl), chunk_size=ROWS))
    sources = {"csv": str(tmp_path / "rows.csv"), "tsv": str(tmp_path / "rows.tsv"),
               "parquet": str(tmp_path / "rows.parquet"), "frame": frame, "dataset": datasets.Dataset.from_list(rows),
               "iterable": datasets.Dataset.from_list(rows).to_iterable_dataset(),
               "texts": [r["text"] for r in rows], "generator": (r["text"] for r in rows), "dicts": rows}
    for name, source in sources.items():
        streamed = _flat(iter_predictions(clf, source, chunk_size=4))
        assert [p["text"] for p in streamed] == [p["text"] for p in reference], name
        np.testing.assert_allclose(_probabilities(streamed), _probabilities(reference), atol=1e-5, err_msg=name)


def test_classifier_methods_chunk_large_inputs_and_iterable_datasets(clf, rows, whole):
    import datasets

    texts = [r["text"] for r in rows]
    clf.chunk_size = 4
    try:
        np.testing.assert_allclose(clf.predict_proba(texts), whole, atol=1e-5)
        labels, scores = clf.predict_with_scores(datasets.Dataset.from_list(rows).to_iterable_dataset())
        np.testing.assert_allclose(scores, whole, atol=1e-5)
        assert labels == [["neg", "pos"][i] for i in whole.argmax(axis=1)]
        chunked = clf.evaluate(rows)
        clf.chunk_size = 10_000
        at_once = clf.evaluate(rows)
    finally:
        clf.chunk_size = 10_000
    assert chunked["accuracy"] == at_once["accuracy"]
    assert chunked["loss"] == pytest.approx(at_once["loss"], abs=1e-5)


def test_an_iterable_dataset_is_consumed_lazily(clf):
    import datasets

    pulled = {"rows": 0}

    def generate():
        for row in sentiment_rows(1000, seed=4):
            pulled["rows"] += 1
            if pulled["rows"] > 40:
                raise AssertionError("read past what the first chunks need")
            yield row

    stream = datasets.IterableDataset.from_generator(generate)
    chunks = iter_predictions(clf, stream, chunk_size=10)
    first = next(chunks)
    assert len(first) == 10 and pulled["rows"] <= 11  # the chunk, and at most the row that ends it
    next(chunks)
    assert pulled["rows"] <= 21


def test_rows_tokenised_at_once_are_bounded_by_the_chunk(clf, jsonl, monkeypatch):
    seen: list[int] = []
    tokenise = clf._dataset

    def recording(examples, *args, **kwargs):
        seen.append(len(examples))
        return tokenise(examples, *args, **kwargs)

    monkeypatch.setattr(clf, "_dataset", recording)
    many = (r["text"] for r in sentiment_rows(200, seed=5))
    assert len(_flat(iter_predictions(clf, many, chunk_size=8))) == 200
    assert max(seen) <= 8 and sum(seen) == 200
    seen.clear()
    clf.chunk_size = 6
    try:
        assert len(clf.predict([r["text"] for r in sentiment_rows(50, seed=6)])) == 50
    finally:
        clf.chunk_size = 10_000
    assert max(seen) <= 6 and sum(seen) == 50


def test_no_chunk_stays_alive_after_it_is_predicted(clf):
    """accelerate keeps each loader it prepares; one per chunk would hold every chunk's tokens."""
    clf.predict(["a good film"])
    before = len(clf._accelerator._dataloaders)
    assert len(_flat(iter_predictions(clf, (r["text"] for r in sentiment_rows(60, seed=8)), chunk_size=7))) == 60
    assert len(clf._accelerator._dataloaders) == before


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_each_output_format_reads_back(clf, rows, jsonl, whole, tmp_path, suffix):
    target = tmp_path / f"out{suffix}"
    assert write_predictions(clf, str(jsonl), target, chunk_size=5) == ROWS
    if suffix == ".jsonl":
        back = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
        probabilities = _probabilities(back)
    elif suffix == ".csv":
        with target.open(encoding="utf-8", newline="") as handle:
            back = list(csv.DictReader(handle))
        assert list(back[0]) == ["text", "prediction", "prob_neg", "prob_pos"]
        probabilities = np.array([[float(r["prob_neg"]), float(r["prob_pos"])] for r in back])
    else:
        import pyarrow.parquet as pq

        assert pq.ParquetFile(target).num_row_groups == 5  # one per chunk
        back = pq.read_table(target).to_pylist()
        assert back == _flat(iter_predictions(clf, str(jsonl), chunk_size=5))  # the JSONL rows, nested
        probabilities = _probabilities(back)
    assert [r["text"] for r in back] == [r["text"] for r in rows]
    np.testing.assert_allclose(probabilities, whole, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no staging file left
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as any new file (the staging file was private)


def test_an_unknown_output_type_is_an_error_before_any_work(clf, jsonl, tmp_path):
    with pytest.raises(DataError, match=r"\.jsonl, \.csv or \.parquet"):
        write_predictions(clf, str(jsonl), tmp_path / "out.txt")
    assert not any(tmp_path.iterdir())


def test_an_interrupted_write_leaves_no_file(clf, tmp_path):
    def failing():
        for i, row in enumerate(sentiment_rows(100, seed=7)):
            if i == 12:
                raise KeyboardInterrupt  # Ctrl-C halfway through the stream
            yield row

    for suffix in (".jsonl", ".csv", ".parquet"):
        target = tmp_path / f"out{suffix}"
        with pytest.raises(KeyboardInterrupt):
            write_predictions(clf, failing(), target, chunk_size=5)
        assert not any(tmp_path.iterdir()), suffix
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text("kept\n")
    with pytest.raises(KeyboardInterrupt):
        write_predictions(clf, failing(), earlier, chunk_size=5)
    assert earlier.read_text() == "kept\n" and [p.name for p in tmp_path.iterdir()] == ["earlier.jsonl"]


def test_bad_columns_and_empty_texts_fail_with_clear_errors(clf, tmp_path, monkeypatch):
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text("".join(json.dumps({"sentence": r["text"]}) + "\n" for r in sentiment_rows(30)))
    monkeypatch.setattr(clf, "_logits", lambda *a: pytest.fail("the model ran before the columns were checked"))
    chunks = iter_predictions(clf, str(wrong), chunk_size=5)
    with pytest.raises(DataError, match="no text column 'text'; columns found: \\['sentence'\\]"):
        next(chunks)
    monkeypatch.undo()
    with pytest.raises(DataError, match="does not exist"):
        iter_predictions(clf, str(tmp_path / "missing.jsonl"))  # found when called, not when iterated
    texts = [r["text"] for r in sentiment_rows(30)]
    texts[12] = "  "
    with pytest.raises(DataError, match=r"empty 'text' \(first rows: \[2\]\).*chunk starting at row 10"):
        predict(clf, texts, chunk_size=5)
    monkeypatch.setattr(clf, "chunk_size", 5)  # the classifier's own chunking says where, too
    with pytest.raises(DataError, match=r"empty 'text' \(first rows: \[2\]\).*chunk starting at row 10"):
        clf.predict(texts)
    monkeypatch.undo()
    with pytest.raises(DataError, match="the data is empty"):
        predict(clf, iter([]))
    with pytest.raises(DataError, match="chunk_size must be a positive"):
        iter_predictions(clf, texts, chunk_size=0)


def test_cli_streams_to_each_format_and_rejects_unknown_ones(saved, jsonl, rows, tmp_path, capsys):
    target = tmp_path / "out.csv"
    assert main(["predict", str(saved), "--data", str(jsonl), "--output", str(target), "--chunk-size", "4"]) == 0
    with target.open(encoding="utf-8", newline="") as handle:
        back = list(csv.DictReader(handle))
    assert [r["text"] for r in back] == [r["text"] for r in rows]
    assert f"{ROWS} predictions written" in capsys.readouterr().out
    assert main(["predict", str(saved), "--data", str(jsonl), "--output", str(tmp_path / "out.xlsx")]) == 2
    assert "unknown file type '.xlsx'" in capsys.readouterr().err


def test_tagging_streams_and_evaluates_in_chunks(model_dirs, tmp_path):
    from tagging_data import TAGS, tagged_rows

    from nlp_transfer.classifiers.tokens import TokenClassifier

    tagger = TokenClassifier.from_pretrained(model_dirs["bert"], labels=TAGS, seed=0)
    data = tagged_rows(17, seed=1)
    path = tmp_path / "tagged.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in data))
    tagger.chunk_size = 10_000
    at_once = tagger.evaluate(data)
    reference = predict(tagger, str(path), chunk_size=100)
    tagger.chunk_size = 4
    chunked = tagger.evaluate(str(path))
    assert chunked["loss"] == pytest.approx(at_once["loss"], abs=1e-5)
    assert {k: v for k, v in chunked.items() if k != "loss"} == {k: v for k, v in at_once.items() if k != "loss"}
    streamed = predict(tagger, str(path), chunk_size=3)
    assert [r["tokens"] for r in streamed] == [r["tokens"] for r in data]
    assert [r["tags"] for r in streamed] == [r["tags"] for r in reference]
