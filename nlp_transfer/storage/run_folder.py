"""The run folder: one layout for every run, written so that nothing already there is lost.

    runs/<name>/
      config.yaml        the resolved configuration, stamped with the package version
      metrics.json       final metrics per split, and every epoch's
      history.jsonl      one line per logging step: loss, learning rate, samples/s
      environment.json   Python, packages, device, processes, precision, command line
      model/             the saved model (TextClassifier.load reads it)
      README.md          the model card

The run is written into a hidden staging folder beside the target and moved into place only when
complete; an existing run is replaced only with ``overwrite`` and only after the new one finished.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from nlp_transfer.errors import ConfigError
from nlp_transfer.storage.atomic import swap_in

__all__ = ["check_output_folder", "staged_run_folder", "write_json", "write_jsonl", "environment",
           "find_model_folder"]

logger = logging.getLogger(__name__)

_PACKAGES = ("nlp-transfer", "torch", "transformers", "accelerate", "peft", "datasets", "evaluate",
             "huggingface_hub", "safetensors", "timm")


def check_output_folder(path: Path, overwrite: bool) -> None:
    """Refuse, before any work, to write into a non-empty folder unless `overwrite`."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output.dir {str(path)!r} is a file, not a folder; choose another output.dir.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise ConfigError(
            f"The output folder {str(path)!r} already holds a run. Choose another folder (output.dir=...), or "
            "replace it with --overwrite (output.overwrite=true); the old run is kept until the new one finishes."
        )


@contextmanager
def staged_run_folder(path: Path) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces `path`, on failure it is removed.

    Under several processes every rank enters; the main process alone creates and moves folders.
    """
    from nlp_transfer.training.engine import process_state

    state = process_state()
    staging = path.parent / f".{path.name}.incomplete"
    if state.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    state.wait_for_everyone()
    try:
        yield staging
    except BaseException:
        if state.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    state.wait_for_everyone()
    if state.is_main_process:
        swap_in(staging, path)
        logger.info("Run written to %s", path)
    state.wait_for_everyone()


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, default=_plain) + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def environment(num_processes: int, mixed_precision: str, launch: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a reader needs to reproduce the run: versions, hardware, processes, precision, command,
    and the launch as it ran (`training.launch.describe_launch`: distributed type, machines, FSDP)."""
    import torch

    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda": torch.version.cuda if cuda else None,
        "gpus": torch.cuda.device_count() if cuda else 0,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processes": num_processes,
        "mixed_precision": mixed_precision,
        "launch": launch,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def find_model_folder(run_or_model: str | Path) -> Path:
    """The model folder of a run folder, or the folder itself when it is a saved model."""
    from nlp_transfer.errors import ModelLoadError
    from nlp_transfer.storage.model_folder import METADATA_FILE

    path = Path(run_or_model)
    for candidate in (path / "model", path):
        if (candidate / METADATA_FILE).is_file():
            return candidate
    if (path / "compare.json").is_file():
        best = json.loads((path / "compare.json").read_text(encoding="utf-8")).get("best")
        if best and (path / best / "model" / METADATA_FILE).is_file():
            return path / best / "model"
    if not path.exists():
        raise ModelLoadError(f"{str(path)!r} does not exist; give a run folder (runs/<name>) or a saved model folder.")
    raise ModelLoadError(f"{str(path)!r} is neither a run folder (with model/) nor a model saved by nlp_transfer "
                         f"(with {METADATA_FILE}). Was the run trained with output.save_model=false?")
