"""Reading token-classification (NER) data: the words of each sentence and one tag per word, in IOB2.

Accepted sources: a CoNLL column file (.conll, .txt, .iob, .iob2, .bio, .bioes: one word per line,
blank lines between sentences), anything `read_table` reads whose tokens and tags columns hold lists,
and, for prediction, a list of token lists. Every sentence is checked before any model work starts,
and IOB1 and BIOES tags are converted, so the rest of the toolkit only ever sees IOB2.

    >>> data = TaggedSentences.from_source("train.conll", DataConfig(), where="train", need_labels=True)
    >>> data.tokens[0], data.tags[0]
    (['EU', 'rejects', 'German', 'call'], ['B-ORG', 'O', 'B-MISC', 'O'])
    >>> tag_set(data.tags)
    ['O', 'B-MISC', 'I-MISC', 'B-ORG', 'I-ORG']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlp_transfer.config.settings import DataConfig
from nlp_transfer.data.tables import read_table
from nlp_transfer.errors import DataError, did_you_mean

__all__ = [
    "TaggedSentences",
    "check_known_tags",
    "is_conll_file",
    "read_conll",
    "tag_set",
    "to_iob2",
]

logger = logging.getLogger(__name__)

_CONLL_SUFFIXES = (".conll", ".txt", ".iob", ".iob2", ".bio", ".bioes")
_SCHEMES = ("auto", "iob1", "iob2", "bioes")
_PREFIXES = {"iob1": ("B", "I"), "iob2": ("B", "I"), "bioes": ("B", "I", "E", "S")}
_ACCEPTED = ("'O', or a prefix, a '-' and the entity type: B-TYPE / I-TYPE (IOB1, IOB2), plus E-TYPE / S-TYPE "
             "(BIOES), e.g. 'B-PER'")
_SHOWN = 6  # words of a sentence quoted in a message: enough to find it, short enough to read


@dataclass(frozen=True)
class TaggedSentences:
    """The checked words of each sentence and, when the data has them, their IOB2 tags."""

    tokens: list[list[str]]
    tags: list[list[str]] | None

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def labels(self) -> list[list[str]] | None:
        """The tags, under the name `split_validation` (and the other example types) use."""
        return self.tags

    def take(self, rows: Sequence[int]) -> TaggedSentences:
        return TaggedSentences([self.tokens[i] for i in rows],
                               [self.tags[i] for i in rows] if self.tags is not None else None)

    @classmethod
    def from_source(cls, source: Any, config: DataConfig, where: str, need_labels: bool) -> TaggedSentences:
        """Read, check and convert any accepted source; `need_labels` makes the tags required."""
        if isinstance(source, TaggedSentences):
            tokens, tags = source.tokens, source.tags
            if need_labels and tags is None:
                raise DataError(f"{where}: these sentences have no tags; training and evaluation need one tag per word.")
        elif _is_path(source) and is_conll_file(source):
            tokens, tags = _from_conll(Path(source), config, where, need_labels)
        elif _is_token_lists(source):
            if need_labels:
                raise DataError(f"{where}: got a list of token lists, which has no tags; training and evaluation need "
                                f"rows with {config.tokens_column!r} and {config.tags_column!r}, e.g. "
                                f"[{{{config.tokens_column!r}: ['John', 'lives'], {config.tags_column!r}: ['B-PER', 'O']}}].")
            tokens, tags = list(source), None
        else:
            _reject_plain_strings(source, where)
            tokens, tags = _from_table(read_table(source, where), config, where, need_labels)
        tokens, tags = _checked(tokens, tags, where)
        if tags is not None:
            tags = to_iob2(tags, config.tag_scheme, where, tokens=tokens)
        return cls(tokens, tags)


def is_conll_file(path: Any) -> bool:
    """True for a path we read as a CoNLL column file (by its suffix), not as a table."""
    return _is_path(path) and Path(path).suffix.lower() in _CONLL_SUFFIXES


def _is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def _is_token_lists(source: Any) -> bool:
    return (isinstance(source, (list, tuple)) and bool(source)
            and all(isinstance(row, (list, tuple)) for row in source))


def _reject_plain_strings(source: Any, where: str) -> None:
    if isinstance(source, (list, tuple)) and source and all(isinstance(row, str) for row in source):
        raise DataError(f"{where}: got a list of {len(source)} strings (first: {source[0]!r}); tagging needs each sentence "
                        "as a list of words, e.g. [['John', 'lives', 'in', 'Paris']]. Split the text into words first.")


# ---------------------------------------------------------------------------------------------- CoNLL files


def read_conll(path: Path, tag_column: int, where: str) -> dict[str, list | None]:
    """{"tokens": words per sentence, "tags": tags per sentence}; "tags" is None when the file has words only.

    Column 0 is the word, `tag_column` the tag (-1: the last, as in CoNLL-2003's word POS chunk NER).
    `-DOCSTART-` lines mark documents, not sentences, and are skipped.
    """
    path = Path(path)
    sentences = _conll_sentences(path, where)
    if not sentences:
        raise DataError(f"{where}: {path.name!r} has no sentences; expected one word per line (word ... tag) and "
                        "a blank line after each sentence.")
    tokens = [[parts[0] for _, parts in sentence] for sentence in sentences]
    if all(len(parts) == 1 for sentence in sentences for _, parts in sentence):
        return {"tokens": tokens, "tags": None}
    _check_tag_column(tag_column, where)
    needed = tag_column + 1 if tag_column > 0 else 1 - tag_column
    tags = []
    for sentence in sentences:
        for number, parts in sentence:
            if len(parts) < needed:
                raise DataError(
                    f"{where}: line {number} of {path.name!r} has {len(parts)} column(s) ({' '.join(parts)!r}), but the "
                    f"tag in column {tag_column} needs at least {needed}. Fix the line, or set conll_tag_column to the "
                    "column that holds the tag (0 is the word, -1 the last)."
                )
        tags.append([parts[tag_column] for _, parts in sentence])
    return {"tokens": tokens, "tags": tags}


def _conll_sentences(path: Path, where: str) -> list[list[tuple[int, list[str]]]]:
    """The (line number, columns) of each sentence's words."""
    if not path.is_file():
        raise DataError(f"{where}: data file {str(path)!r} does not exist.")
    sentences: list[list[tuple[int, list[str]]]] = []
    current: list[tuple[int, list[str]]] = []
    try:
        with path.open(encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is not part of the first word
            for number, line in enumerate(handle, start=1):
                parts = line.split()
                if parts and parts[0] != "-DOCSTART-":
                    current.append((number, parts))
                    continue
                if current:  # a blank line or a document start ends the sentence
                    sentences.append(current)
                current = []
    except UnicodeDecodeError as error:
        raise DataError(f"{where}: {path.name!r} is not UTF-8 text ({error}). Re-save it as UTF-8.") from error
    if current:
        sentences.append(current)
    return sentences


def _check_tag_column(tag_column: Any, where: str) -> None:
    if isinstance(tag_column, bool) or not isinstance(tag_column, int) or tag_column == 0:
        raise DataError(f"{where}: conll_tag_column must be the index of the tag column (1 or more, or -1 for the "
                        f"last); got {tag_column!r}, and column 0 holds the word.")


def _from_conll(path: Path, config: DataConfig, where: str, need_labels: bool) -> tuple[list, list | None]:
    table = read_conll(path, config.conll_tag_column, where)
    if need_labels and table["tags"] is None:
        raise DataError(f"{where}: {path.name!r} has one column, the words, and no tags; training and evaluation need "
                        "a tag on each line ('word tag', or CoNLL-2003's 'word POS chunk tag').")
    return table["tokens"], table["tags"]


# ---------------------------------------------------------------------------------------------- tables and checks


def _from_table(table: dict[str, list[Any]], config: DataConfig, where: str, need_labels: bool) -> tuple[list, list | None]:
    found = sorted(table)
    if config.tokens_column not in table:
        raise DataError(f"{where}: no tokens column {config.tokens_column!r}; columns found: {found}. "
                        "Set tokens_column to the column that holds each sentence's words (a list of strings).")
    if need_labels and config.tags_column not in table:
        raise DataError(f"{where}: no tags column {config.tags_column!r}; columns found: {found}. "
                        "Set tags_column to the column that holds each word's tag (a list as long as the words).")
    tokens, tags = table[config.tokens_column], table.get(config.tags_column)
    missing = [i for i, row in enumerate(tags or []) if row is None]
    if tags and len(missing) == len(tags):
        tags = None  # e.g. list-of-dicts rows without tags: no tags at all
    elif missing and not need_labels:
        logger.warning("%s: %d sentence(s) have no %r (first: %d); the tags are ignored.",
                       where, len(missing), config.tags_column, missing[0])
        tags = None
    if need_labels and tags is None:
        raise DataError(f"{where}: the tags column {config.tags_column!r} is empty; training and evaluation need "
                        "one tag per word.")
    return tokens, tags


def _checked(tokens: Sequence[Any], tags: Sequence[Any] | None, where: str) -> tuple[list, list | None]:
    """Plain lists of words and tags, or a DataError naming the first sentence that cannot be used."""
    if len(tokens) == 0:
        raise DataError(f"{where}: the data is empty (0 sentences).")
    words = [_as_list(row, i, "words", where, row) for i, row in enumerate(tokens)]
    for i, sentence in enumerate(words):
        _check_words(sentence, i, where)
    if tags is None:
        return words, None
    labels = [_as_list(row, i, "tags", where, words[i]) for i, row in enumerate(tags)]
    for i, (sentence, sentence_tags) in enumerate(zip(words, labels)):
        _check_tags(sentence, sentence_tags, i, where)
    return words, labels


def _as_list(row: Any, index: int, what: str, where: str, words: Any) -> list:
    if isinstance(row, (list, tuple)):
        return list(row)
    if hasattr(row, "tolist") and not isinstance(row, str):  # numpy arrays, from parquet list columns
        return list(row.tolist())
    hint = (" CSV cells hold text, not lists: use JSONL or parquet for tagging data." if isinstance(row, str)
            else "")
    raise DataError(f"{where}: {_sentence(index, words)}: the {what} must be a list, one per word; got "
                    f"{type(row).__name__} {_short(row)}.{hint}")


def _check_words(words: list, index: int, where: str) -> None:
    if not words:
        raise DataError(f"{where}: sentence {index} has no words. Drop it; an empty sentence has nothing to tag.")
    bad = [j for j, word in enumerate(words) if not isinstance(word, str) or not word.strip()]
    if bad:
        raise DataError(f"{where}: {_sentence(index, words)}: word {bad[0]} is {words[bad[0]]!r}; every word must be a "
                        "non-empty string. Drop empty or whitespace-only words (and their tags).")


def _check_tags(words: list, tags: list, index: int, where: str) -> None:
    if len(tags) != len(words):
        raise DataError(f"{where}: {_sentence(index, words)}: {len(words)} words but {len(tags)} tags; every word "
                        "needs exactly one tag.")
    bad = [j for j, tag in enumerate(tags) if not isinstance(tag, str)]
    if bad:
        raise DataError(f"{where}: {_sentence(index, words)}: the tag of word {bad[0]} ({words[bad[0]]!r}) is "
                        f"{tags[bad[0]]!r}; tags must be names such as 'B-PER' or 'O'. Map tag ids to their names "
                        "(a datasets.Dataset with a Sequence(ClassLabel) column is converted for you).")


def _sentence(index: int, words: Any) -> str:
    """'sentence 3 ("EU rejects German call ...")': where to look, in a message."""
    if isinstance(words, (list, tuple)) and all(isinstance(w, str) for w in words):
        shown = " ".join(words[:_SHOWN]) + (" ..." if len(words) > _SHOWN else "")
        return f"sentence {index} ({shown!r})"
    return f"sentence {index} ({_short(words)})"


def _located(index: int, tokens: list[list[str]] | None, tags: list[list[str]]) -> str:
    """The sentence by its words when the caller gave them, else by its tags."""
    if tokens is not None:
        return _sentence(index, tokens[index])
    return _sentence(index, tags[index]).replace("(", "(tags ", 1)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------- tag schemes


def to_iob2(tags: list[list[str]], scheme: str, where: str, *, tokens: list[list[str]] | None = None) -> list[list[str]]:
    """The tags in IOB2 (every entity starts with B-), from `scheme` "iob1", "iob2", "bioes" or "auto".

    IOB1 writes entity starts as I- (B- only between two adjacent entities of one type) and BIOES adds
    E- (end) and S- (single); all become IOB2. An IOB2 I- that cannot continue the tag before it is
    repaired to B-, with a warning. `tokens`, when given, quotes the words of a sentence in messages.

    >>> to_iob2([["I-PER", "I-PER", "O", "S-LOC"]], "auto", "train")
    [['B-PER', 'I-PER', 'O', 'B-LOC']]
    """
    if scheme not in _SCHEMES:
        raise DataError(f"{where}: unknown tag_scheme {scheme!r}; {did_you_mean(scheme, _SCHEMES)}")
    if scheme == "auto":
        scheme = _detect_scheme(tags, where)
    _check_forms(tags, scheme, where, tokens)
    if scheme == "bioes":
        tags = [[_BIOES_TO_IOB2.get(tag[:2], tag[:2]) + tag[2:] if tag != "O" else tag for tag in row] for row in tags]
    fixed, repaired, first = _starts_as_b(tags)
    if repaired and scheme != "iob1":  # in IOB1 an I- start is the rule; elsewhere it is a data error
        logger.warning("%s: %d I- tag(s) could not continue the tag before them (after O, at a sentence start or after "
                       "another type), first in %s; they were read as entity starts (B-). If the data is IOB1, set "
                       "tag_scheme: iob1.", where, repaired, _located(first, tokens, tags))
    return fixed


_BIOES_TO_IOB2 = {"S-": "B-", "E-": "I-"}


def _detect_scheme(tags: list[list[str]], where: str) -> str:
    """'bioes' when S-/E- tags occur; 'iob1' when most entity starts are written I-; else 'iob2'."""
    if any(tag[:2] in _BIOES_TO_IOB2 for row in tags for tag in row):
        logger.info("%s: S-/E- tags found; the tags were read as BIOES and converted to IOB2.", where)
        return "bioes"
    _, i_starts, _ = _starts_as_b(tags)
    b_starts = sum(tag.startswith("B-") for row in tags for tag in row)
    if i_starts > b_starts:  # more than half of all entity starts
        logger.info("%s: %d of %d entities start with I-, so the tags were read as IOB1 and converted to IOB2 "
                    "(set tag_scheme to choose).", where, i_starts, i_starts + b_starts)
        return "iob1"
    return "iob2"


def _starts_as_b(tags: list[list[str]]) -> tuple[list[list[str]], int, int]:
    """The tags with each I- that starts an entity written B-; the count of those, and the first sentence."""
    fixed, count, first = [], 0, -1
    for index, row in enumerate(tags):
        out, previous = [], None  # previous: the entity type of the tag before, None after O or at the start
        for tag in row:
            kind = tag[2:] if tag != "O" else None
            if tag.startswith("I-") and kind != previous:
                tag, count, first = "B-" + kind, count + 1, first if first >= 0 else index
            out.append(tag)
            previous = kind
        fixed.append(out)
    return fixed, count, first


def _check_forms(tags: list[list[str]], scheme: str, where: str, tokens: list[list[str]] | None) -> None:
    """A DataError listing tags that are neither 'O' nor PREFIX-TYPE, or that `scheme` does not have."""
    allowed = _PREFIXES[scheme]
    bad: dict[str, int] = {}  # tag -> first sentence
    for index, row in enumerate(tags):
        for tag in row:
            if tag != "O" and not (len(tag) > 2 and tag[1] == "-" and tag[0] in allowed) and tag not in bad:
                bad[tag] = index
    if not bad:
        return
    first = min(bad.values())
    where_first = _located(first, tokens, tags)
    examples = list(bad)[:5]
    if all(tag[:2] in _BIOES_TO_IOB2 and len(tag) > 2 for tag in bad):
        raise DataError(f"{where}: tag_scheme is {scheme!r}, but BIOES tags such as {examples} occur (first in "
                        f"{where_first}). Set tag_scheme to 'bioes' or 'auto'.")
    raise DataError(f"{where}: {len(bad)} tag name(s) are not in a form we read, e.g. {examples} (first in "
                    f"{where_first}). Accepted: {_ACCEPTED}. Rename them (e.g. 'B_PER' or 'PER' to 'B-PER').")


# ---------------------------------------------------------------------------------------------- label lists


def tag_set(tags: list[list[str]]) -> list[str]:
    """The labels a model predicts: 'O', then B-TYPE, I-TYPE for each entity type in sorted order.

    I-TYPE is there even when the data has only single-word entities: longer entities and a word's
    continuation sub-tokens need it.

    >>> tag_set([["B-PER", "O", "B-LOC", "I-LOC"]])
    ['O', 'B-LOC', 'I-LOC', 'B-PER', 'I-PER']
    """
    _check_forms(tags, "bioes", "tag_set", None)
    kinds = sorted({tag[2:] for row in tags for tag in row if tag != "O"})
    return ["O"] + [f"{prefix}-{kind}" for kind in kinds for prefix in ("B", "I")]


def check_known_tags(tags: list[list[str]], known: Sequence[str], where: str, *,
                     tokens: list[list[str]] | None = None) -> None:
    """A DataError when the tags hold one outside `known` (e.g. evaluation data with a type the model never saw)."""
    known_set = set(known)
    unknown = sorted({tag for row in tags for tag in row if tag not in known_set})
    if not unknown:
        return
    first = next(i for i, row in enumerate(tags) if any(tag not in known_set for tag in row))
    raise DataError(
        f"{where}: tag(s) {unknown[:10]}{' ...' if len(unknown) > 10 else ''} are not among the model's tags "
        f"{list(known)} (first in {_located(first, tokens, tags)}). The model cannot predict them: drop or rename "
        "them in this data, or train a model on data that has them."
    )
