"""Errors that tell the user what was wrong, the value received, and the fix.

Every error nlp_transfer raises for bad input derives from `NLPTransferError`, which is also a
`ValueError`, so callers that already catch `ValueError` keep working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["NLPTransferError", "ConfigError", "DataError", "StrategyError", "ModelLoadError", "did_you_mean"]


class NLPTransferError(ValueError):
    """Base class for every user-facing error of nlp_transfer."""


class ConfigError(NLPTransferError):
    """A setting has an unknown name, a wrong type or a value out of range."""


class DataError(NLPTransferError):
    """The data cannot be used as given: missing column, unknown label, empty text, ..."""


class StrategyError(NLPTransferError):
    """The chosen strategy or its options do not fit the model."""


class ModelLoadError(NLPTransferError):
    """A model folder is missing, incomplete or unsafe to load."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """A sentence listing the valid choices, with the closest one first when there is one.

    >>> did_you_mean("lora2", ["lora", "full"])
    "did you mean 'lora'? Valid choices: 'full', 'lora'."
    """
    choices = sorted(str(c) for c in choices)
    listed = ", ".join(repr(c) for c in choices)
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
    if close:
        return f"did you mean {close[0]!r}? Valid choices: {listed}."
    return f"valid choices: {listed}."
