"""Where nlp_transfer keeps what it can recompute: cached features and converted weights."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """$NLP_TRANSFER_CACHE, else $XDG_CACHE_HOME/nlp_transfer, else ~/.cache/nlp_transfer."""
    if os.environ.get("NLP_TRANSFER_CACHE"):
        return Path(os.environ["NLP_TRANSFER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nlp_transfer"
