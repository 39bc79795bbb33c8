"""Writing prediction rows to a file chunk by chunk, in the format its suffix names.

JSONL keeps each row as `predict` returns it. CSV has one column per probability (``prob_<label>``)
and lists (multi-label predictions, tagging's words and entities) as JSON text in their cell.
Parquet keeps the nested rows (probabilities as a struct) and writes one row group per chunk.
The caller stages the file (`storage.atomic.staged_file`), so a failed run leaves no partial file.

    with prediction_writer(Path("out.csv"), staging) as writer:
        for rows in iter_predictions(model, "big.jsonl"):
            writer.write(rows)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, TextIO

from nlp_transfer.errors import DataError, did_you_mean

__all__ = ["PREDICTION_FORMATS", "prediction_format", "prediction_writer", "PredictionWriter"]

PREDICTION_FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def prediction_format(target: Path) -> str:
    """The format of `target` by its suffix, or a DataError listing the ones we write."""
    suffix = Path(target).suffix.lower()
    if suffix not in PREDICTION_FORMATS:
        raise DataError(f"cannot write predictions to {Path(target).name!r}: unknown file type {suffix or '(none)'!r}. "
                        f"Name the output .jsonl, .csv or .parquet; {did_you_mean(suffix, list(PREDICTION_FORMATS))}")
    return PREDICTION_FORMATS[suffix]


class PredictionWriter:
    """Appends chunks of prediction rows to one file; a context manager that closes it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows = 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._write(rows)
            self.rows += len(rows)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and close the file."""

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def prediction_writer(target: Path, path: Path | None = None) -> PredictionWriter:
    """The writer for `target`'s format, writing at `path` (a staging file beside it; default `target`)."""
    kind = prediction_format(target)
    return _WRITERS[kind](Path(path or target))


class _JsonlWriter(PredictionWriter):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._handle: TextIO = self.path.open("w", encoding="utf-8")

    def _write(self, rows: list[dict[str, Any]]) -> None:
        self._handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    def close(self) -> None:
        self._handle.close()


class _CsvWriter(PredictionWriter):
    """The first chunk fixes the header (every row of one model has the same keys)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._handle: TextIO = self.path.open("w", encoding="utf-8", newline="")
        self._writer: csv.DictWriter | None = None

    def _write(self, rows: list[dict[str, Any]]) -> None:
        flat = [_flat_row(row) for row in rows]
        if self._writer is None:
            self._writer = csv.DictWriter(self._handle, fieldnames=list(flat[0]), restval="")
            self._writer.writeheader()
        self._writer.writerows(flat)

    def close(self) -> None:
        self._handle.close()


def _flat_row(row: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if key == "probabilities" and isinstance(value, dict):
            flat.update({f"prob_{label}": p for label, p in value.items()})
        elif isinstance(value, (list, dict)):
            flat[key] = json.dumps(value, ensure_ascii=False)
        else:
            flat[key] = value
    return flat


class _ParquetWriter(PredictionWriter):
    """One row group per chunk; the first chunk fixes the schema (types it cannot tell, as for an
    all-empty list, are filled in: see `_settled`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._writer = None
        self._schema = None

    def _write(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            found = pa.Table.from_pylist(rows).schema
            self._schema = pa.schema([pa.field(f.name, _settled(f.name, f.type)) for f in found])
            self._writer = pq.ParquetWriter(self.path, self._schema)
        try:
            table = pa.Table.from_pylist(rows, schema=self._schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise DataError(f"predictions of the chunk starting at row {self.rows} do not fit the parquet schema of "
                            f"the first chunk ({self._schema}): {error}. Write .jsonl instead.") from error
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _settled(name: str, kind: Any) -> Any:
    """A column type the first chunk left open (all None, or only empty lists) as what later rows hold."""
    import pyarrow as pa

    if pa.types.is_null(kind):
        return pa.string()
    if pa.types.is_list(kind) and pa.types.is_null(kind.value_type):
        if name == "entities":  # tagging: `TokenClassifier.predict`'s entity dicts
            return pa.list_(pa.struct([("entity_group", pa.string()), ("word", pa.string()),
                                       ("words", pa.list_(pa.string())), ("start", pa.int64()), ("end", pa.int64()),
                                       ("score", pa.float64())]))
        return pa.list_(pa.string())  # multi-label predictions with no label in the first chunk
    return kind


_WRITERS: dict[str, type[PredictionWriter]] = {"jsonl": _JsonlWriter, "csv": _CsvWriter, "parquet": _ParquetWriter}
