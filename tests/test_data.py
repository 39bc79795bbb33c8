"""Input formats, column names, label order, the validation split, and the batch samplers.

Every accepted source of the same rows must give the same `TextColumns` (same values, same Python
types); the samplers must visit every row once and keep the caller's order in the outputs.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import WORDS, pair_rows, sentiment_rows

from nlp_transfer import TextClassifier
from nlp_transfer.config.settings import DataConfig
from nlp_transfer.data.batching import LengthGroupedBatchSampler, SortedBatchSampler
from nlp_transfer.data.tables import TextColumns, read_table, split_validation
from nlp_transfer.errors import DataError

# Texts that trip naive readers: separators, quotes, a newline, non-ASCII, and values that
# pandas would turn into NaN or numbers by default.
ROWS = [
    {"text": "good film, great plot", "text_pair": "a story", "label": "pos", "label_id": 1, "score": 2.5},
    {"text": 'he said "awful"', "text_pair": "the acting\tis dull", "label": "neg", "label_id": 0, "score": 0.0},
    {"text": "NA", "text_pair": "null", "label": "neg", "label_id": 0, "score": 1.0},
    {"text": "café crème, très bien", "text_pair": "1984", "label": "pos", "label_id": 1, "score": 3.0},
    {"text": "two\nlines", "text_pair": "None", "label": "pos", "label_id": 1, "score": 0.5},
    {"text": "1984", "text_pair": "n/a", "label": "neg", "label_id": 0, "score": 1.5},
]


def _csv(rows, tmp_path):
    import pandas as pd

    path = tmp_path / "data.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def _tsv(rows, tmp_path):
    import pandas as pd

    path = tmp_path / "data.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return str(path)


def _json(rows, tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return str(path)


def _json_columns(rows, tmp_path):
    path = tmp_path / "columns.json"
    path.write_text(json.dumps({key: [row[key] for row in rows] for key in rows[0]}), encoding="utf-8")
    return str(path)


def _jsonl(rows, tmp_path):
    path = tmp_path / "data.jsonl"
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines[:2] + [""] + lines[2:]) + "\n", encoding="utf-8")  # a blank line is skipped
    return path  # a Path, not a str: both are accepted


def _parquet(rows, tmp_path):
    import pandas as pd

    path = tmp_path / "data.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return str(path)


def _dataset(rows, tmp_path):
    import datasets

    return datasets.Dataset.from_list(rows)


def _dataframe(rows, tmp_path):
    import pandas as pd

    return pd.DataFrame(rows)


def _list_of_dicts(rows, tmp_path):
    return [dict(row) for row in rows]


SOURCES = {
    "csv": _csv, "tsv": _tsv, "json": _json, "json-columns": _json_columns, "jsonl": _jsonl,
    "parquet": _parquet, "dataset": _dataset, "dataframe": _dataframe, "list": _list_of_dicts,
}


def _typed(values):
    return [(type(v).__name__, v) for v in values] if values is not None else None


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("label_column", ["label", "label_id", "score"])
def test_every_source_gives_the_same_text_columns(tmp_path, source, label_column):
    config = DataConfig(label_column=label_column)
    got = TextColumns.from_table(read_table(SOURCES[source](ROWS, tmp_path), "train"), config, "train", need_labels=True)
    assert got.texts == [row["text"] for row in ROWS]
    assert got.pairs == [row["text_pair"] for row in ROWS]
    assert _typed(got.labels) == _typed([row[label_column] for row in ROWS])


@pytest.mark.parametrize("source", list(SOURCES))
def test_every_source_without_pairs_or_labels(tmp_path, source):
    rows = [{"text": row["text"]} for row in ROWS]
    got = TextColumns.from_table(read_table(SOURCES[source](rows, tmp_path), "inputs"), DataConfig(), "inputs",
                                 need_labels=False)
    assert got == TextColumns([row["text"] for row in ROWS], None, None)


def test_read_table_of_a_list_of_dicts_with_uneven_keys():
    table = read_table([{"text": "a", "label": "pos"}, {"text": "b", "extra": 1}], "train")
    assert table == {"text": ["a", "b"], "label": ["pos", None], "extra": [None, 1]}


# --------------------------------------------------------------------------- column names, labels
def test_configurable_column_names_end_to_end(model_dirs, tmp_path):
    rows = [{"sentence": row["text"], "y": row["label"]} for row in sentiment_rows(24)]
    clf = TextClassifier.from_pretrained(model_dirs["bert"])
    history = clf.fit(rows, epochs=1, text_column="sentence", label_column="y", validation_split=0.25)
    assert clf.labels == ["neg", "pos"]
    assert len(history.epochs) == 1 and "eval_accuracy" in history.epochs[0]
    # the column names are remembered for evaluate and predict, and saved with the model
    assert "accuracy" in clf.evaluate(rows[:6])
    by_row = clf.predict([{"sentence": row["sentence"]} for row in rows[:6]])
    assert by_row == clf.predict([row["sentence"] for row in rows[:6]])
    reloaded = TextClassifier.load(clf.save(tmp_path / "model"))
    assert reloaded.data_config.text_column == "sentence" and reloaded.data_config.label_column == "y"
    assert reloaded.predict([{"sentence": row["sentence"]} for row in rows[:6]]) == by_row


def test_configurable_pair_column_end_to_end(model_dirs):
    rows = [{"premise": row["text"], "hypothesis": row["text_pair"], "label": row["label"]} for row in pair_rows(16)]
    clf = TextClassifier.from_pretrained(model_dirs["bert"])
    clf.fit(rows, epochs=1, text_column="premise", text_pair_column="hypothesis", validation_split=0.0)
    assert clf.uses_text_pair and clf.labels == ["different", "same"]
    assert len(clf.predict([{"premise": "good film", "hypothesis": "bad film"}])) == 1


@pytest.mark.parametrize("labels, expected", [
    (("pos", "neg"), ["neg", "pos"]),
    (("neutral", "positive", "negative"), ["negative", "neutral", "positive"]),
    ((2, 0, 1), [0, 1, 2]),
])
def test_labels_from_the_data_are_sorted_and_stable(model_dirs, labels, expected):
    rows = [{"text": " ".join(random.Random(i).sample(WORDS, 3)), "label": labels[i % len(labels)]} for i in range(12)]
    found = []
    for order in (rows, rows[::-1]):
        clf = TextClassifier.from_pretrained(model_dirs["bert"])
        clf.fit(order, epochs=1, validation_split=0.0)
        found.append(clf.labels)
    assert found == [expected, expected]
    assert rows[0]["label"] != expected[0]  # first seen is not first in the sorted list


# --------------------------------------------------------------------------- validation split
def _columns(n: int) -> TextColumns:
    return TextColumns([f"text {i}" for i in range(n)], [f"pair {i}" for i in range(n)], [i % 3 for i in range(n)])


def test_split_validation_is_seeded_disjoint_and_complete():
    columns = _columns(50)
    train, held = split_validation(columns, 0.2, seed=1)
    assert (len(train), len(held)) == (40, 10)
    assert not set(train.texts) & set(held.texts)
    assert sorted(train.texts + held.texts) == sorted(columns.texts)
    for part in (train, held):  # rows stay whole, and in their original order
        numbers = [int(t.split()[1]) for t in part.texts]
        assert numbers == sorted(numbers)
        assert part.pairs == [f"pair {i}" for i in numbers] and part.labels == [i % 3 for i in numbers]

    again_train, again_held = split_validation(columns, 0.2, seed=1)
    assert again_train == train and again_held == held
    other_train, other_held = split_validation(columns, 0.2, seed=2)
    assert set(other_held.texts) != set(held.texts)


def test_split_validation_of_too_few_rows():
    with pytest.raises(DataError) as error:
        split_validation(_columns(1), 0.1, seed=0)
    assert "eval_data" in str(error.value)


def _imbalanced(counts: dict[str, int], seed: int = 0) -> TextColumns:
    labels = [label for label, n in counts.items() for _ in range(n)]
    random.Random(seed).shuffle(labels)
    return TextColumns([f"text {i}" for i in range(len(labels))], None, labels)


def test_stratified_split_keeps_the_class_proportions():
    from collections import Counter

    counts = {"common": 83, "middle": 27, "rare": 6}
    columns = _imbalanced(counts)
    train, held = split_validation(columns, 0.2, seed=3, stratify=True)
    assert len(held) == round(0.2 * len(columns))  # the same size as the unstratified hold-out
    in_train, in_held = Counter(train.labels), Counter(held.labels)
    for label, n in counts.items():
        assert abs(in_held[label] - 0.2 * n) < 1, (label, in_held)  # within one example of its share
        assert in_train[label] + in_held[label] == n and in_train[label] >= 1
    assert sorted(train.texts + held.texts) == sorted(columns.texts)
    assert split_validation(columns, 0.2, seed=3, stratify=True) == (train, held)  # seeded
    assert split_validation(columns, 0.2, seed=4, stratify=True)[1] != held


def test_stratified_split_names_classes_left_out_of_validation(caplog):
    columns = _imbalanced({"a": 20, "b": 20, "lonely": 1})
    with caplog.at_level("WARNING", logger="nlp_transfer.data.tables"):
        train, held = split_validation(columns, 0.1, seed=0, stratify=True)
    assert "lonely" in train.labels and "lonely" not in held.labels  # its one example stays in training
    assert [r.getMessage() for r in caplog.records if "lonely" in r.getMessage()], caplog.text
    with pytest.raises(DataError, match="single example"):
        split_validation(_imbalanced({"x": 1, "y": 1, "z": 1}), 0.4, seed=0, stratify=True)


def test_fit_holds_out_a_stratified_validation_set(model_dirs):
    rows = [{"text": r["text"], "label": "pos" if i < 30 else "neg"} for i, r in enumerate(sentiment_rows(40))]
    clf = TextClassifier.from_pretrained(model_dirs["bert"])
    history = clf.fit(rows, epochs=1, validation_split=0.25)
    matrix = history.epochs[-1]["eval_confusion_matrix"]  # rows: true classes neg, pos
    assert [sum(row) for row in matrix] == [round(0.25 * 10), round(0.25 * 30)]


# --------------------------------------------------------------------------- samplers
def _lengths(n: int = 1000, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(5, 120) for _ in range(n)]


def _padding(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


@pytest.mark.parametrize("n, batch_size", [(1000, 16), (37, 8), (5, 8), (800, 16)])
@pytest.mark.parametrize("group", [True, False])
def test_length_grouped_sampler_yields_every_index_once(n, batch_size, group):
    sampler = LengthGroupedBatchSampler(_lengths(n), batch_size, seed=0, group=group)
    for epoch in (0, 1, 2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(n))
        assert len(batches) == len(sampler)
        assert all(1 <= len(b) <= batch_size for b in batches)


def test_length_grouped_batches_have_little_padding():
    lengths = _lengths(1000)
    grouped = list(LengthGroupedBatchSampler(lengths, 16, seed=0))
    random_batches = list(LengthGroupedBatchSampler(lengths, 16, seed=0, group=False))
    assert _padding(grouped, lengths) < 0.1 * _padding(random_batches, lengths)
    spreads = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in grouped]
    assert np.mean(spreads) <= 5  # lengths range over 5..120


def test_length_grouped_order_depends_on_seed_and_epoch():
    lengths = _lengths(500)

    def order(seed: int, epoch: int) -> list[list[int]]:
        sampler = LengthGroupedBatchSampler(lengths, 16, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(0, 2)
    assert order(0, 1) != order(7, 1)
    assert [b[0] for b in order(0, 1)] != [b[0] for b in order(0, 2)]  # batch order, not only batch content


def test_sorted_batch_sampler_covers_every_index_once():
    lengths = _lengths(203)
    sampler = SortedBatchSampler(lengths, 16)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13
    assert sorted(i for b in batches for i in b) == list(range(203))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)  # longest first


def test_fit_reshuffles_the_training_batches_every_epoch(model_dirs, monkeypatch):
    import nlp_transfer.classifiers.base as classifier

    seen: list[list[list[int]]] = []

    class Recording(LengthGroupedBatchSampler):
        def __iter__(self):
            batches = list(super().__iter__())
            seen.append(batches)
            yield from batches

    monkeypatch.setattr(classifier, "LengthGroupedBatchSampler", Recording)
    clf = TextClassifier.from_pretrained(model_dirs["bert"])
    clf.fit(sentiment_rows(40), epochs=2, batch_size=4, validation_split=0.0)
    assert len(seen) == 2
    assert all(sorted(i for b in epoch for i in b) == list(range(40)) for epoch in seen)
    assert seen[0] != seen[1]


# --------------------------------------------------------------------------- predictions in input order
@pytest.fixture(scope="module")
def varied_texts() -> list[str]:
    rng = random.Random(5)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20))) for _ in range(32)]


def test_predict_keeps_the_input_order(tiny_model, varied_texts):
    clf = TextClassifier.from_pretrained(tiny_model)
    clf.fit(sentiment_rows(32), epochs=1, eval_batch_size=4, validation_split=0.0)
    proba = clf.predict_proba(varied_texts)
    assert proba.shape == (len(varied_texts), 2)

    permutation = np.random.default_rng(0).permutation(len(varied_texts))
    shuffled = [varied_texts[i] for i in permutation]
    np.testing.assert_allclose(clf.predict_proba(shuffled), proba[permutation], atol=1e-6)
    assert clf.predict(shuffled) == [clf.labels[k] for k in proba[permutation].argmax(axis=1)]
    # and each row is the answer for that text alone (no padding leaks between rows)
    one_by_one = np.concatenate([clf.predict_proba([text]) for text in varied_texts[:6]])
    np.testing.assert_allclose(one_by_one, proba[:6], atol=1e-5)


def test_predict_accepts_a_single_string(model_dirs):
    clf = TextClassifier.from_pretrained(model_dirs["bert"], labels=["neg", "pos"])
    assert len(clf.predict("a good film")) == 1
    assert len(clf.predict("I loved it.")) == 1


def test_predict_a_single_string_with_a_full_stop_inside(model_dirs):
    clf = TextClassifier.from_pretrained(model_dirs["bert"], labels=["neg", "pos"])
    assert len(clf.predict("A fine film. Loved it")) == 1


# --------------------------------------------------------------------------- image arrays
def _pixels(array) -> np.ndarray:
    from nlp_transfer.data.images import open_rgb

    return np.asarray(open_rgb(array))


def test_image_arrays_are_scaled_by_dtype_not_stretched():
    dark = np.full((8, 8, 3), 1000, dtype=np.uint16)  # 16-bit: 1000 / 65535 of full brightness
    dark[0, 0] = 2000
    assert _pixels(dark).max() == round(2000 / 257)  # stays dark (a per-image stretch made it 255)
    ints = np.arange(64).reshape(8, 8) + 10  # int64 from numpy arithmetic, values 10-73
    assert _pixels(ints)[..., 0].tolist() == ints.tolist()
    low, full = np.linspace(0.1, 0.2, 64).reshape(8, 8), np.linspace(0.0, 1.0, 64).reshape(8, 8)
    assert _pixels(low).max() == round(0.2 * 255) and _pixels(full).max() == 255  # not the same picture
    assert _pixels(np.eye(8, dtype=bool))[..., 0].tolist() == (np.eye(8) * 255).astype(int).tolist()


@pytest.mark.parametrize("array, fix", [
    (np.full((8, 8, 3), 200.0), "Divide by 255"),
    (np.full((8, 8), 300, dtype=np.int32), "Convert to uint8"),
])
def test_image_arrays_out_of_range_fail_when_read(array, fix):
    from nlp_transfer.data.images import ImageColumns

    with pytest.raises(DataError) as error:
        ImageColumns.from_source(([array, array], ["a", "b"]), DataConfig(), where="train", need_labels=True)
    assert "row 0" in str(error.value) and fix in str(error.value)
