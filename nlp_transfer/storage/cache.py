"""Where nlp_transfer keeps what it can recompute: cached features and converted weights."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["cache_root", "file_sha256", "update_with_file"]


def cache_root() -> Path:
    """$NLP_TRANSFER_CACHE, else $XDG_CACHE_HOME/nlp_transfer, else ~/.cache/nlp_transfer."""
    if os.environ.get("NLP_TRANSFER_CACHE"):
        return Path(os.environ["NLP_TRANSFER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nlp_transfer"


def update_with_file(digest, path: str | Path) -> None:
    """Feed a file's bytes to a hashlib digest, a megabyte at a time."""
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    update_with_file(digest, path)
    return digest.hexdigest()
