"""Where a run's data comes from: files, a dataset bundled with the package, or a Hub dataset.

Every source is found (and every file checked to exist) before a model is loaded, so a wrong path
fails in a second, not after the download of a base model.

    >>> splits = load_splits(DataSection(dataset="support_intents", train="train", test="test"))
    >>> splits.names()
    ['train', 'test']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlp_transfer.backbones.embedded import BUNDLED_DATASETS, bundled_dataset
from nlp_transfer.config.run import DataSection
from nlp_transfer.errors import DataError, did_you_mean

__all__ = ["Splits", "load_splits", "resolve_data"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Splits:
    """The data of a run; each split is something `TextClassifier.fit` / `evaluate` accept."""

    train: Any
    validation: Any = None
    test: Any = None

    def names(self) -> list[str]:
        return [name for name in ("train", "validation", "test") if getattr(self, name) is not None]


def load_splits(data: DataSection) -> Splits:
    """The train/validation/test data named by a data section; raises `DataError` for what is missing."""
    if data.train is None:
        raise DataError("data.train is not set: give a training file (data.train=path/to/train.jsonl), "
                        "or a dataset (data.dataset=...) and its split name (data.train=train).")
    return Splits(**{name: _load(data, getattr(data, name), f"data.{name}")
                     for name in ("train", "validation", "test") if getattr(data, name) is not None})


def resolve_data(spec: str, where: str = "data") -> Any:
    """A file path, or ``<bundled dataset>:<split>`` (e.g. ``support_intents:test``), for the CLI."""
    name, sep, split = spec.partition(":")
    if sep and bundled_dataset(name) is not None:
        return _bundled_split(name, split, where)
    if not Path(spec).exists():  # a file, or a folder of images
        raise DataError(f"{where}: data file {spec!r} does not exist. Give a .csv/.jsonl/... file (or an image folder), or a bundled "
                        f"split such as 'support_intents:test' (bundled datasets: {', '.join(BUNDLED_DATASETS)}).")
    return spec


def _load(data: DataSection, split: str, where: str) -> Any:
    if data.dataset is None:
        if not Path(split).exists():  # a file, or a folder of images
            raise DataError(f"{where}: data file {split!r} does not exist. Check the path (relative paths are "
                            "read from the current folder), or set data.dataset to read split names from a dataset.")
        return split
    if bundled_dataset(data.dataset) is not None:
        return _bundled_split(data.dataset, split, where)
    return _hub_split(data.dataset, data.dataset_config, split, where)


def _bundled_split(name: str, split: str, where: str) -> str:
    folder = bundled_dataset(name)
    available = sorted(p.stem for p in folder.glob("*.jsonl"))
    if split not in available:
        raise DataError(f"{where}: the bundled dataset {name!r} has no split {split!r}: {did_you_mean(split, available)}")
    return str(folder / f"{split}.jsonl")


def _hub_split(dataset: str, config: str | None, split: str, where: str) -> Any:
    if "/" not in dataset and not Path(dataset).exists():
        logger.warning("%r is neither a bundled dataset (%s) nor a Hub id of the form owner/name; trying the Hub.",
                       dataset, ", ".join(BUNDLED_DATASETS))
    try:
        import datasets
    except ImportError as error:
        raise DataError("Reading a Hub dataset needs the datasets package: pip install datasets") from error
    try:
        return datasets.load_dataset(dataset, config, split=split)
    except Exception as error:  # datasets raises many types: offline, unknown config, unknown split
        raise DataError(
            f"{where}: could not load split {split!r} of the dataset {dataset!r}"
            f"{f' ({config})' if config else ''}: {error}. Check the name, data.dataset_config and the split; "
            "offline, point data.train/validation/test at local files instead."
        ) from error
