"""Tagging data: every accepted source gives the same checked sentences, every scheme comes out IOB2,
and every unusable sentence is an error that names it and the fix."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from nlp_transfer.config.settings import DataConfig
from nlp_transfer.data.tables import split_validation
from nlp_transfer.data.tagging import (
    TaggedSentences,
    check_known_tags,
    is_conll_file,
    read_conll,
    tag_set,
    to_iob2,
)
from nlp_transfer.errors import DataError

TOKENS = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"], ["BRUSSELS", "1996-08-22"]]
TAGS = [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"], ["B-LOC", "O"]]
ROWS = [{"tokens": t, "tags": g} for t, g in zip(TOKENS, TAGS)]
CONLL_2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER


BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""
CONLL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"  # ../shared beside the checkout


def read(source, need_labels=True, **settings):
    return TaggedSentences.from_source(source, DataConfig(**settings), where="train", need_labels=need_labels)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- sources


def test_jsonl_and_json(tmp_path):
    jsonl = write(tmp_path, "train.jsonl", "\n".join(json.dumps(row) for row in ROWS) + "\n")
    json_file = write(tmp_path, "train.json", json.dumps(ROWS))
    for path in (jsonl, str(json_file)):
        data = read(path)
        assert (data.tokens, data.tags, len(data)) == (TOKENS, TAGS, 3)


def test_conll_2003_layout(tmp_path):
    data = read(write(tmp_path, "train.conll", CONLL_2003))
    assert (data.tokens, data.tags) == (TOKENS, TAGS)


def test_conll_tag_column_index(tmp_path):
    path = write(tmp_path, "train.txt", CONLL_2003)
    ner_first = "".join(f"{word} {tag} NNP\n" for word, tag in zip(TOKENS[1], TAGS[1]))
    assert read(write(tmp_path, "ner_first.txt", ner_first), conll_tag_column=1).tags == [TAGS[1]]
    assert read_conll(path, 1, "train")["tags"][0] == ["NNP", "VBZ", "JJ", "NN"]
    assert read_conll(path, -1, "train")["tags"] == TAGS
    assert read_conll(path, 3, "train")["tags"] == TAGS


def test_conll_without_tags_is_for_prediction_only(tmp_path):
    path = write(tmp_path, "words.iob", "EU\nrejects\n\nPeter\n")
    assert read_conll(path, -1, "test") == {"tokens": [["EU", "rejects"], ["Peter"]], "tags": None}
    assert read(path, need_labels=False).tags is None
    with pytest.raises(DataError, match="'words.iob' has one column, the words, and no tags"):
        read(path)


def test_conll_short_line_names_file_and_line(tmp_path):
    path = write(tmp_path, "train.bio", "EU B-ORG\nrejects\n\nPeter B-PER\n")
    with pytest.raises(DataError, match=r"line 2 of 'train.bio' has 1 column\(s\) \('rejects'\).*conll_tag_column"):
        read(path)
    path = write(tmp_path, "short.conll", "EU NNP B-ORG\nrejects VBZ\n")
    with pytest.raises(DataError, match="line 2 of 'short.conll' has 2 column.*at least 3"):
        read_conll(path, 2, "train")
    with pytest.raises(DataError, match="column 0 holds the word"):
        read_conll(path, 0, "train")


def test_conll_empty_or_missing_file(tmp_path):
    with pytest.raises(DataError, match="'empty.conll' has no sentences"):
        read(write(tmp_path, "empty.conll", "-DOCSTART- -X- O\n\n\n"))
    with pytest.raises(DataError, match="does not exist"):
        read(tmp_path / "nope.conll")


def test_is_conll_file():
    assert all(is_conll_file(f"a{s}") for s in (".conll", ".txt", ".iob", ".IOB2", ".bio", ".bioes"))
    assert not any(is_conll_file(x) for x in ("a.jsonl", "a.csv", Path("a.parquet"), ["a.conll"], None))


def test_dataset_with_class_label_tags():
    import datasets

    names = ["O", "B-PER", "I-PER", "B-ORG", "B-MISC", "B-LOC"]
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    ids = [[names.index(tag) for tag in row] for row in TAGS]
    dataset = datasets.Dataset.from_dict({"tokens": TOKENS, "tags": ids}, features=features)
    data = read(dataset)
    assert (data.tokens, data.tags) == (TOKENS, TAGS)


def test_dataframe_parquet_and_list_of_dicts(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(ROWS)
    frame.to_parquet(tmp_path / "train.parquet")  # list columns come back as numpy arrays
    for source in (frame, tmp_path / "train.parquet", ROWS):
        data = read(source)
        assert (data.tokens, data.tags) == (TOKENS, TAGS)
        assert all(type(word) is str for row in data.tokens for word in row)


def test_other_column_names():
    rows = [{"words": t, "ner": g} for t, g in zip(TOKENS, TAGS)]
    assert read(rows, tokens_column="words", tags_column="ner").tags == TAGS


def test_prediction_sources():
    assert read(TOKENS, need_labels=False) == TaggedSentences(TOKENS, None)
    assert read([{"tokens": t} for t in TOKENS], need_labels=False).tags is None
    assert read(ROWS, need_labels=False).tags == TAGS  # tags are read when present
    with pytest.raises(DataError, match="list of token lists, which has no tags"):
        read(TOKENS)
    with pytest.raises(DataError, match="list of 2 strings.*Split the text into words"):
        read(["EU rejects it", "Peter"], need_labels=False)


def test_take_labels_and_split_validation():
    data = read(ROWS)
    assert data.labels is data.tags
    assert data.take([2, 0]) == TaggedSentences([TOKENS[2], TOKENS[0]], [TAGS[2], TAGS[0]])
    assert read(TOKENS, need_labels=False).take([1]) == TaggedSentences([TOKENS[1]], None)
    train, held = split_validation(data, share=0.34, seed=0)
    assert (len(train), len(held)) == (2, 1)
    assert sorted(train.tokens + held.tokens) == sorted(TOKENS)


# ---------------------------------------------------------------------------------------------- errors


def test_missing_columns_name_the_setting():
    with pytest.raises(DataError, match=r"no tokens column 'tokens'; columns found: \['tags', 'words'\].*tokens_column"):
        read([{"words": t, "tags": g} for t, g in zip(TOKENS, TAGS)])
    with pytest.raises(DataError, match=r"no tags column 'tags'; columns found: \['tokens'\].*tags_column"):
        read([{"tokens": t} for t in TOKENS])


@pytest.mark.parametrize("row, message", [
    ({"tokens": ["EU", "rejects"], "tags": ["B-ORG"]}, r"sentence 1 \('EU rejects'\): 2 words but 1 tags"),
    ({"tokens": [], "tags": []}, "sentence 1 has no words"),
    ({"tokens": ["EU", ""], "tags": ["B-ORG", "O"]}, r"sentence 1 .*word 1 is ''; every word must be a non-empty"),
    ({"tokens": ["EU", "  "], "tags": ["B-ORG", "O"]}, r"sentence 1 .*word 1 is '  '"),
    ({"tokens": ["EU", 7], "tags": ["B-ORG", "O"]}, r"sentence 1 .*word 1 is 7"),
    ({"tokens": ["EU", "rejects"], "tags": ["B-ORG", 0]}, r"sentence 1 \('EU rejects'\): the tag of word 1 .* is 0"),
    ({"tokens": "EU rejects", "tags": ["B-ORG", "O"]}, r"sentence 1 \('EU rejects'\): the words must be a list.*CSV"),
    ({"tokens": ["EU"], "tags": None}, r"sentence 1 \('EU'\): the tags must be a list"),
])
def test_bad_sentence_names_it(row, message):
    with pytest.raises(DataError, match=message):
        read([ROWS[1], row, ROWS[2]])


def test_long_sentence_is_shortened_in_messages():
    words = [f"w{i}" for i in range(10)]
    with pytest.raises(DataError, match=r"sentence 0 \('w0 w1 w2 w3 w4 w5 \.\.\.'\): 10 words but 1 tags"):
        read([{"tokens": words, "tags": ["O"]}])


def test_empty_data():
    with pytest.raises(DataError, match="empty"):
        read([])
    import pandas as pd

    with pytest.raises(DataError, match=r"empty \(0 sentences\)"):
        read(pd.DataFrame({"tokens": [], "tags": []}))


def test_malformed_tags_list_examples_and_forms():
    rows = ROWS + [{"tokens": ["Paris", "is"], "tags": ["B_LOC", "o"]}]
    with pytest.raises(DataError, match=r"2 tag name\(s\).*\['B_LOC', 'o'\].*sentence 3 \('Paris is'\).*Accepted: 'O'"):
        read(rows)
    with pytest.raises(DataError, match="not in a form we read"):
        to_iob2([["B-"]], "iob2", "train")


def test_bioes_tags_under_an_iob_scheme():
    with pytest.raises(DataError, match=r"tag_scheme is 'iob2', but BIOES tags such as \['S-PER'\].*'bioes' or 'auto'"):
        read([{"tokens": ["Peter"], "tags": ["S-PER"]}], tag_scheme="iob2")


def test_unknown_scheme():
    with pytest.raises(DataError, match="did you mean 'bioes'"):
        to_iob2(TAGS, "bioe", "train")


# ---------------------------------------------------------------------------------------------- schemes


def test_iob1_to_iob2(caplog):
    iob1 = [["I-PER", "I-PER", "B-PER", "O", "I-LOC"], ["I-ORG", "I-LOC", "I-LOC"]]
    iob2 = [["B-PER", "I-PER", "B-PER", "O", "B-LOC"], ["B-ORG", "B-LOC", "I-LOC"]]
    with caplog.at_level(logging.INFO, logger="nlp_transfer.data.tagging"):
        assert to_iob2(iob1, "iob1", "train") == iob2
        assert not caplog.records  # the user said IOB1: nothing to report
        assert to_iob2(iob1, "auto", "train") == iob2
    assert "read as IOB1" in caplog.text and caplog.records[-1].levelno == logging.INFO


def test_bioes_to_iob2():
    bioes = [["S-PER", "O", "B-LOC", "I-LOC", "E-LOC", "S-ORG", "S-ORG"]]
    iob2 = [["B-PER", "O", "B-LOC", "I-LOC", "I-LOC", "B-ORG", "B-ORG"]]
    assert to_iob2(bioes, "bioes", "train") == iob2
    assert to_iob2(bioes, "auto", "train") == iob2
    assert to_iob2([["B-PER", "E-PER"]], "auto", "train") == [["B-PER", "I-PER"]]


def test_auto_detection():
    from nlp_transfer.data.tagging import _detect_scheme

    assert _detect_scheme(TAGS, "train") == "iob2"
    assert _detect_scheme([["O", "O"]], "train") == "iob2"  # no entities: nothing to convert
    assert _detect_scheme([["B-PER", "E-PER"]], "train") == "bioes"
    assert _detect_scheme([["I-PER", "O", "I-LOC", "O", "B-ORG"]], "train") == "iob1"  # 2 of 3 starts are I-
    assert _detect_scheme([["I-PER", "O", "B-LOC"]], "train") == "iob2"  # half is not more than half


def test_iob2_repair_warns_once_with_count(caplog):
    tokens = [["a", "b"], ["Peter", "lives", "in", "Paris"], ["c"]]
    tags = [["O", "O"], ["B-PER", "O", "O", "I-LOC"], ["I-ORG"]]
    with caplog.at_level(logging.WARNING, logger="nlp_transfer.data.tagging"):
        data = read([{"tokens": t, "tags": g} for t, g in zip(tokens, tags)], tag_scheme="iob2")
    assert data.tags == [["O", "O"], ["B-PER", "O", "O", "B-LOC"], ["B-ORG"]]
    [record] = caplog.records
    assert "2 I- tag(s)" in record.message and "sentence 1 ('Peter lives in Paris')" in record.message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nlp_transfer.data.tagging"):  # I- after another type, auto
        assert to_iob2([["B-PER", "I-LOC"], *TAGS * 2], "auto", "train")[0] == ["B-PER", "B-LOC"]
    assert "1 I- tag(s)" in caplog.text and "sentence 0 (tags 'B-PER I-LOC')" in caplog.text


def test_to_iob2_leaves_its_input_alone():
    tags = [["I-PER", "I-PER"]]
    to_iob2(tags, "iob1", "train")
    assert tags == [["I-PER", "I-PER"]]


# ---------------------------------------------------------------------------------------------- label lists


def test_tag_set_order_and_i_completion():
    assert tag_set(TAGS) == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert tag_set([["O"]]) == ["O"]
    assert tag_set([["B-X"]]) == ["O", "B-X", "I-X"]


def test_check_known_tags():
    known = tag_set(TAGS[:2])
    check_known_tags(TAGS[:2], known, "eval")
    with pytest.raises(DataError, match=r"eval: tag\(s\) \['B-LOC'\] are not among the model's tags .*'B-ORG'.*"
                                        r"sentence 2 \('BRUSSELS 1996-08-22'\)"):
        check_known_tags(TAGS, known, "eval", tokens=TOKENS)


# ---------------------------------------------------------------------------------------------- real data


@pytest.mark.skipif(not CONLL_DATA.is_dir(), reason="CoNLL-2003 is not in ../shared/data")
def test_conll2003_counts_and_scheme(caplog):
    from nlp_transfer.data.tagging import _detect_scheme

    counts = {}
    with caplog.at_level(logging.WARNING, logger="nlp_transfer.data.tagging"):
        for split in ("train", "validation", "test"):
            data = read(CONLL_DATA / f"{split}.jsonl")
            raw = [json.loads(line)["tags"] for line in (CONLL_DATA / f"{split}.jsonl").open(encoding="utf-8")]
            assert _detect_scheme(raw, split) == "iob2"
            assert data.tags == raw  # zero repairs
            counts[split] = len(data)
    assert counts == {"train": 14041, "validation": 3250, "test": 3453}
    assert not caplog.records
    assert tag_set(data.tags) == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
