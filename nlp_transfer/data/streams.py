"""Reading a data source lazily, a chunk of rows at a time, so prediction memory stays flat as input grows.

Files are read as they are consumed (JSONL line by line, CSV/TSV in pandas chunks, parquet by
pyarrow record batches), a `datasets.Dataset` by slices, an `IterableDataset`, a generator or any
iterator as a stream; lists are sliced. Only a JSON array file is read whole (it has no row
boundaries to stop at).

    >>> for rows in row_chunks("big.jsonl", where="predict", size=2048):
    ...     texts = TextColumns.from_table(read_table(rows, "predict"), DataConfig(), "predict", need_labels=False)
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nlp_transfer.errors import DataError

__all__ = ["DEFAULT_CHUNK_SIZE", "check_chunk_size", "row_chunks", "streams", "in_chunk"]

# Large enough that per-chunk overhead (a DataLoader, a length sort) is noise next to the model's
# work, small enough that a chunk's tokens are a few MB whatever the file's size.
DEFAULT_CHUNK_SIZE = 2048


def check_chunk_size(size: Any) -> int:
    """`size` as a positive int, or a DataError that says what to pass."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DataError(f"chunk_size must be a positive whole number of rows, got {size!r}; e.g. chunk_size=2048.")
    return size


def in_chunk(error: DataError, first: int) -> DataError:
    """`error`, raised on a chunk's rows, saying where the chunk starts: its row numbers count from there."""
    return type(error)(f"{error} (in the chunk starting at row {first}: row numbers above count from it)")


def streams(source: Any) -> bool:
    """Whether `row_chunks` reads `source` lazily. Not: a folder (images), a CoNLL file, one text
    or one image, a (images, labels) pair; those are read whole by their own readers."""
    from nlp_transfer.data.tables import table_file_kind

    if isinstance(source, (str, Path)):
        return table_file_kind(Path(source)) is not None and not Path(source).is_dir()
    if isinstance(source, tuple) and len(source) == 2 and not isinstance(source[0], (str, dict)):
        return False  # (images, labels) in memory: one source, not two rows
    if _is_dataset(source) or _is_iterable_dataset(source) or _is_frame(source):
        return True
    return isinstance(source, Iterable) and not isinstance(source, (str, bytes, dict))


def row_chunks(source: Any, where: str, size: int) -> Iterator[list[Any]]:
    """Successive lists of at most `size` rows of `source`, in order: row dicts for tables and
    datasets, the items themselves for lists and iterators (texts, pairs, dicts, images).

    Raises a DataError for a source with no rows, and for what `read_table` would reject.
    """
    check_chunk_size(size)
    chunks = _chunks(source, where, size)
    first = next(chunks, None)
    if not first:
        raise DataError(f"{where}: the data is empty (0 rows).")
    yield first
    yield from chunks


def _chunks(source: Any, where: str, size: int) -> Iterator[list[Any]]:
    from nlp_transfer.data.tables import read_table

    if type(source).__name__ in ("DatasetDict", "IterableDatasetDict"):
        read_table(source, where)  # raises, with the "did you mean dataset['train']" hint
    if isinstance(source, (str, Path)):
        return _file_chunks(Path(source), where, size)
    if _is_iterable_dataset(source):
        return _iterable_dataset_chunks(source, size)
    if _is_dataset(source):
        return _dataset_chunks(source, size)
    if _is_frame(source):
        return _frame_chunks(source, size)
    if isinstance(source, (list, tuple)):
        return (list(source[start : start + size]) for start in range(0, len(source), size))
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes, dict)):
        return _iterator_chunks(iter(source), size)
    read_table(source, where)  # raises: what types we read
    raise DataError(f"{where}: cannot read data of type {type(source).__name__}.")


def _iterator_chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(itertools.islice(items, size)):  # pulls `size` items, never more
        yield chunk


def _file_chunks(path: Path, where: str, size: int) -> Iterator[list[dict[str, Any]]]:
    from nlp_transfer.data.tables import read_table, table_file_kind

    kind = table_file_kind(path, where)  # a missing file or unknown type fails here, before a row is read
    if kind == "jsonl":
        return _iterator_chunks(_jsonl_rows(path, where), size)
    if kind in ("csv", "tsv"):
        return _csv_chunks(path, where, size, "," if kind == "csv" else "\t")
    if kind == "parquet":
        return _parquet_chunks(path, size)
    table = read_table(path, where)  # a JSON array: no row boundaries to stream on
    return _iterator_chunks((dict(zip(table, values)) for values in zip(*table.values())), size)


def _jsonl_rows(path: Path, where: str) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"{where}: line {number} of {path.name!r} is not valid JSON: {error}") from error
                if not isinstance(row, dict):
                    raise DataError(f"{where}: line {number} of {path.name!r} holds {type(row).__name__} {row!r}, "
                                    "not an object; give one {\"column\": value, ...} object per line.")
                yield row
        except UnicodeDecodeError as error:
            raise DataError(f"{where}: {path.name!r} is not UTF-8 text ({error}). Re-save it as UTF-8.") from error


def _csv_chunks(path: Path, where: str, size: int, sep: str) -> Iterator[list[dict[str, Any]]]:
    import pandas as pd

    try:
        with pd.read_csv(path, sep=sep, keep_default_na=False, na_values=[""], chunksize=size) as reader:
            for frame in reader:
                yield _frame_rows(frame)
    except UnicodeDecodeError as error:
        raise DataError(f"{where}: {path.name!r} is not UTF-8 text ({error}). Re-save it as UTF-8.") from error
    except (pd.errors.ParserError, ValueError) as error:
        raise DataError(f"{where}: could not parse {path.name!r}: {error}") from error


def _parquet_chunks(path: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as handle:
        for batch in handle.iter_batches(batch_size=size):
            yield batch.to_pylist()


def _frame_chunks(frame: Any, size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(frame), size):
        yield _frame_rows(frame.iloc[start : start + size])


def _frame_rows(frame: Any) -> list[dict[str, Any]]:
    from nlp_transfer.data.tables import plain_value

    columns = [str(c) for c in frame.columns]
    return [dict(zip(columns, map(plain_value, values))) for values in zip(*(frame[c].tolist() for c in frame.columns))]


def _dataset_chunks(dataset: Any, size: int) -> Iterator[list[dict[str, Any]]]:
    from nlp_transfer.data.tables import label_names

    features = getattr(dataset, "features", None)
    for start in range(0, len(dataset), size):
        columns = label_names(dataset[start : start + size], features)  # a slice is {column: values}
        yield [dict(zip(columns, values)) for values in zip(*columns.values())]


def _iterable_dataset_chunks(dataset: Any, size: int) -> Iterator[list[dict[str, Any]]]:
    from nlp_transfer.data.tables import label_names

    features = getattr(dataset, "features", None)  # None when the stream's features are unknown
    for rows in _iterator_chunks(iter(dataset), size):
        if not features:
            yield rows
            continue
        columns = label_names({key: [row.get(key) for row in rows] for key in rows[0]}, features)
        yield [dict(zip(columns, values)) for values in zip(*columns.values())]


def _is_dataset(source: Any) -> bool:
    return hasattr(source, "column_names") and hasattr(source, "to_dict") and hasattr(source, "__getitem__")


def _is_iterable_dataset(source: Any) -> bool:
    return type(source).__name__ == "IterableDataset" and hasattr(source, "features")


def _is_frame(source: Any) -> bool:
    return hasattr(source, "columns") and hasattr(source, "iloc")
