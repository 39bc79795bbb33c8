"""Reading the user's data and checking it before any model work starts (batching: `batching.py`).

Accepted sources: a file path (.csv, .tsv, .json, .jsonl, .parquet), a `datasets.Dataset`, a
pandas DataFrame, or a list of dicts. Everything is checked before any model work starts.

    >>> table = read_table("train.jsonl", where="train")
    >>> texts = TextColumns.from_table(table, DataConfig(), where="train", need_labels=True)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nlp_transfer.config.settings import DataConfig
from nlp_transfer.errors import DataError

__all__ = [
    "read_table",
    "looks_like_data_file",
    "table_file_kind",
    "label_names",
    "plain_value",
    "TextColumns",
    "split_validation",
    "per_class_rows",
]

logger = logging.getLogger(__name__)

_DEFAULT_PAIR_COLUMN = DataConfig.__dataclass_fields__["text_pair_column"].default  # "used when present"
_READERS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}


def looks_like_data_file(text: str) -> bool:
    """True for a path we would read as data (known suffix, or an existing file), not a sentence."""
    return Path(text).suffix.lower() in _READERS or Path(text).is_file()


def read_table(source: Any, where: str) -> dict[str, list[Any]]:
    """Any accepted source -> {column: values}, with plain Python values."""
    if isinstance(source, (str, Path)):
        return _read_file(Path(source), where)
    if type(source).__name__ in ("DatasetDict", "IterableDatasetDict"):
        splits = list(source.keys())
        hint = "train" if "train" in splits else splits[0]
        raise DataError(f"{where}: got a DatasetDict with splits {splits}; pass one split, did you mean `dataset[{hint!r}]`?")
    if hasattr(source, "column_names") and hasattr(source, "to_dict"):  # datasets.Dataset
        return _dataset_columns(source)
    if hasattr(source, "columns") and hasattr(source, "to_dict"):  # pandas.DataFrame
        return {str(name): source[name].tolist() for name in source.columns}
    if isinstance(source, (list, tuple)) and not source:
        raise DataError(f"{where}: the data is empty (0 rows).")
    if isinstance(source, (list, tuple)) and all(isinstance(row, dict) for row in source):
        columns: dict[str, list[Any]] = {}
        for row in source:
            for key in row:
                columns.setdefault(key, [])
        for row in source:
            for key, values in columns.items():
                values.append(row.get(key))
        return columns
    raise DataError(
        f"{where}: cannot read data of type {type(source).__name__}. Give a file path (.csv, .tsv, .json, "
        ".jsonl, .parquet), a datasets.Dataset, a pandas DataFrame or a list of dicts."
    )


def _dataset_columns(dataset: Any) -> dict[str, list[Any]]:
    """Columns of a `datasets.Dataset`, with label names (`label_names`)."""
    return label_names(dataset.to_dict(), getattr(dataset, "features", None))


def label_names(columns: dict[str, Any], features: Any) -> dict[str, list[Any]]:
    """Columns (of a dataset, or a slice of one) with ClassLabel ids as their names (-1, "no label",
    becomes None), also inside list columns (`Sequence(ClassLabel)`, e.g. one NER tag per word)."""
    columns = {name: list(values) for name, values in columns.items()}
    for name, feature in (features or {}).items():
        if name not in columns:
            continue
        if _is_class_label(feature):
            columns[name] = [_label_name(feature, v) for v in columns[name]]
            continue
        inner = _list_item_feature(feature)
        if _is_class_label(inner):
            columns[name] = [[_label_name(inner, v) for v in values] if isinstance(values, list) else values
                             for values in columns[name]]
    return columns


def _is_class_label(feature: Any) -> bool:
    return type(feature).__name__ == "ClassLabel" and bool(feature.names)


def _label_name(feature: Any, value: Any) -> Any:
    return feature.int2str(value) if isinstance(value, int) and value >= 0 else None


def _list_item_feature(feature: Any) -> Any:
    """The item feature of a list column: `Sequence`/`List`/`LargeList` keep it in `.feature` (datasets 4+
    turns `Sequence` into `List`); a plain `[feature]` list is the older spelling."""
    if isinstance(feature, list) and len(feature) == 1:
        return feature[0]
    if type(feature).__name__ in ("Sequence", "List", "LargeList"):
        return getattr(feature, "feature", None)
    return None


def table_file_kind(path: Path, where: str | None = None) -> str | None:
    """The reader of a data file by its suffix ("csv", "jsonl", ...). Without `where`, None for a
    suffix we do not read; with it, a DataError for that and for a file that does not exist."""
    kind = _READERS.get(Path(path).suffix.lower())
    if where is None:
        return kind
    if not Path(path).is_file():
        raise DataError(f"{where}: data file {str(path)!r} does not exist.")
    if kind is None:
        raise DataError(f"{where}: cannot read {Path(path).name!r}; supported file types: {', '.join(_READERS)}.")
    return kind


def _read_file(path: Path, where: str) -> dict[str, list[Any]]:
    import pandas as pd

    kind = table_file_kind(path, where)
    try:
        if kind in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="," if kind == "csv" else "\t", keep_default_na=False, na_values=[""])
        elif kind == "parquet":
            frame = pd.read_parquet(path)
        elif kind == "jsonl":
            return _read_jsonl(path, where)
        else:
            rows = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(rows, dict):  # {"column": [values]} is also common
                return {str(k): list(v) for k, v in rows.items()}
            return read_table(rows, where)
    except UnicodeDecodeError as error:
        raise DataError(f"{where}: {path.name!r} is not UTF-8 text ({error}). Re-save it as UTF-8.") from error
    except (pd.errors.ParserError, ValueError) as error:
        raise DataError(f"{where}: could not parse {path.name!r}: {error}") from error
    # pandas gives NaN for empty cells; None is what the checks below understand.
    return {str(c): [None if _is_nan(v) else v for v in frame[c].tolist()] for c in frame.columns}


def _read_jsonl(path: Path, where: str) -> dict[str, list[Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DataError(f"{where}: line {number} of {path.name!r} is not valid JSON: {error}") from error
    return read_table(rows, where)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def plain_value(value: Any) -> Any:
    """A cell as the checks understand it: pandas' NaN for an empty cell becomes None."""
    return None if _is_nan(value) else value


@dataclass(frozen=True)
class TextColumns:
    """The validated text columns (and labels, when present) of one data source."""

    texts: list[str]
    pairs: list[str] | None
    labels: list[Any] | None

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: Sequence[int]) -> TextColumns:
        pick = lambda values: [values[i] for i in rows] if values is not None else None  # noqa: E731
        return TextColumns(pick(self.texts), pick(self.pairs), pick(self.labels))

    @classmethod
    def from_table(cls, table: dict[str, list[Any]], config: DataConfig, where: str, need_labels: bool) -> TextColumns:
        found = sorted(table)
        if config.text_column not in table:
            raise DataError(
                f"{where}: no text column {config.text_column!r}; columns found: {found}. "
                f"Set text_column to the column that holds the text."
            )
        texts = table[config.text_column]
        if not texts:
            raise DataError(f"{where}: the data is empty (0 rows).")
        if need_labels and config.label_column not in table:
            raise DataError(
                f"{where}: no label column {config.label_column!r}; columns found: {found}. "
                f"Set label_column to the column that holds the labels."
            )
        pair_column = config.text_pair_column
        pairs = table.get(pair_column) if pair_column else None
        if need_labels and pairs is None and pair_column not in (None, _DEFAULT_PAIR_COLUMN):
            # a column the user named must exist: training on single texts instead would go unnoticed
            raise DataError(
                f"{where}: no text pair column {pair_column!r}; columns found: {found}. Set text_pair_column to the "
                f"column with the second text, or to None for single texts."
            )
        _check_texts(texts, config.text_column, where)
        if pairs is not None:
            _check_texts(pairs, pair_column, where)
        labels = table.get(config.label_column)
        return cls([str(t) for t in texts], [str(p) for p in pairs] if pairs is not None else None, labels)


def _check_texts(texts: Sequence[Any], column: str, where: str) -> None:
    empty = [i for i, t in enumerate(texts) if t is None or (isinstance(t, str) and not t.strip())]
    if empty:
        raise DataError(
            f"{where}: {len(empty)} row(s) have an empty {column!r} (first rows: {empty[:5]}). "
            "Drop them or fill in the text; an empty text carries nothing to learn from."
        )
    not_text = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if not_text:
        raise DataError(
            f"{where}: column {column!r} must hold text; rows {not_text[:5]} hold {[texts[i] for i in not_text[:5]]}."
        )


def split_validation(columns, share: float, seed: int, stratify: bool = False):
    """A seeded hold-out of `share` of the rows, for when the user gave no evaluation data.

    Any examples with `len`, `labels` and `take(rows)` (text columns, image columns) split the same
    way. With `stratify` (single-label data) every class gives the same share, so a rare class is
    not left out of validation, or out of training, by chance: each class holds out share * count
    rounded (largest remainders first, so the total is the unstratified one) and keeps at least one
    training example. Otherwise (multi-label, regression) the hold-out is a plain random draw.
    """
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(columns), generator=generator).tolist()
    held = max(1, int(round(len(columns) * share)))
    if held >= len(columns):
        raise DataError(f"train: {len(columns)} rows are too few to hold out {share:.0%} for validation; pass eval_data.")
    rows = _stratified_rows(columns.labels, order, share, held) if stratify and columns.labels is not None else order[:held]
    chosen = set(rows)
    return columns.take([i for i in range(len(columns)) if i not in chosen]), columns.take(sorted(rows))


def _stratified_rows(labels: Sequence[Any], order: list[int], share: float, held: int) -> list[int]:
    """The held-out rows: per class, the first of its rows in the seeded `order`."""
    by_class: dict[Any, list[int]] = {}
    for row in order:  # classes in order of first appearance in the shuffle: seeded tie-breaking
        by_class.setdefault(labels[row], []).append(row)
    wanted = {label: share * len(rows) for label, rows in by_class.items()}
    counts = {label: min(math.floor(w), len(by_class[label]) - 1) for label, w in wanted.items()}
    spare = sorted((label for label in by_class if counts[label] < len(by_class[label]) - 1),
                   key=lambda label: counts[label] - wanted[label])  # largest remainder first (stable sort)
    for label in spare[: max(0, held - sum(counts.values()))]:
        counts[label] += 1
    if not any(counts.values()):
        raise DataError(f"train: each of the {len(by_class)} classes has a single example, so none can be held out for "
                        "validation without leaving it out of training; pass eval_data, or set validation_split=0.")
    missing = [label for label, count in counts.items() if count == 0]
    if missing:
        logger.warning("The validation hold-out has no example of %d class(es) with too few training examples: %s. "
                       "Pass eval_data to measure them.", len(missing), sorted(missing, key=str)[:20])
    return [row for label, rows in by_class.items() for row in rows[: counts[label]]]


def per_class_rows(labels: Sequence[Any], limit: int, seed: int) -> tuple[list[int], dict[Any, int]]:
    """A seeded draw of at most `limit` rows per class (few-shot runs, learning curves).

    Returns the chosen rows in their original order (stable: the same seed gives the same list) and
    the classes that had fewer than `limit` rows, with their counts (those keep every row).

    Example: ``per_class_rows(["a", "b", "a", "a", "b"], 1, seed=0)`` picks one "a" and one "b".
    """
    import numpy as np

    by_class: dict[Any, list[int]] = {}
    for row, label in enumerate(labels):
        by_class.setdefault(label, []).append(row)
    generator = np.random.default_rng(seed)
    chosen: list[int] = []
    short: dict[Any, int] = {}
    # classes in a fixed order (sorted by name), so the draw does not depend on the file's row order of classes
    for label in sorted(by_class, key=str):
        rows = by_class[label]
        if len(rows) <= limit:
            if len(rows) < limit:
                short[label] = len(rows)
            chosen += rows
        else:
            chosen += generator.choice(rows, size=limit, replace=False).tolist()
    return sorted(chosen), short


def limit_per_class(examples, limit: int, seed: int):
    """`examples` (any with `labels` and `take(rows)`) cut to at most `limit` per class, drawn with `seed`.

    Logs what is kept; a class with fewer than `limit` examples keeps all of them, with one warning.
    """
    rows, short = per_class_rows(examples.labels, limit, seed)
    if short:
        logger.warning("per_class_limit=%d: %d class(es) have fewer training examples and keep all of them: %s.", limit,
                       len(short), ", ".join(f"{label!r} ({count})" for label, count in list(short.items())[:20]))
    each = f"at most {limit}" if short else str(limit)
    logger.info("per_class_limit=%d: training on %s of %s examples (%s per class).", limit, f"{len(rows):,}",
                f"{len(examples):,}", each)
    return examples.take(rows)
