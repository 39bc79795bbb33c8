"""Does the ONNX graph answer what the PyTorch classifier answers? Checked at every export.

Both run on the same examples (a sample of the validation data, or `sample_texts`: sentences of
1 to 60 words, batched in input order so that short rows sit beside long ones and padding is
exercised); the largest absolute difference of the probabilities must stay within `TOLERANCE`.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np

from nlp_transfer.data.tables import TextColumns

__all__ = ["TOLERANCE", "Parity", "sample_texts", "parity_examples", "measure_parity"]

logger = logging.getLogger(__name__)

TOLERANCE = 1e-4  # fp32 vs fp32: only the order of float sums differs; a real export bug is far larger
_MOST = 128  # validation examples compared: enough to meet every length, cheap next to the export
_WORDS = ("the film was a good fine great long slow dull story plot actor scene music ending I we they it is "
          "not very quite rather never always loved hated enjoyed watched again and but or because while "
          "director camera city night day friend family funny sad boring brilliant awful").split()


@dataclass(frozen=True)
class Parity:
    """The check's result, as the manifest and the model card record it."""

    max_abs_diff: float
    examples: int
    source: str  # "validation" or "built-in sample"
    tolerance: float = TOLERANCE

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def sample_texts(count: int = 48, seed: int = 0) -> list[str]:
    """`count` generated sentences of 1 to 60 words (lengths spread evenly), deterministic."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(1 + (i * 59) // max(count - 1, 1))) for i in
            rng.sample(range(count), count)]


def parity_examples(validation: TextColumns | None, pairs: bool) -> tuple[TextColumns, str]:
    """The examples to compare on: up to 128 validation rows spread over the split, or the built-in sample."""
    if validation is not None:
        step = max(1, len(validation) // _MOST)
        return validation.take(list(range(0, len(validation), step))[:_MOST]), "validation"
    texts = sample_texts()
    return TextColumns(texts, list(reversed(texts)) if pairs else None, None), "built-in sample"


def measure_parity(torch_scores: np.ndarray, onnx_scores: np.ndarray, examples: int, source: str,
                   scale: float = 1.0) -> Parity:
    """Largest |difference|; regression values are divided by `scale` (the targets' spread), so the
    tolerance means the same for targets in the thousands as for targets around 1."""
    diff = float(np.max(np.abs(np.asarray(torch_scores, dtype=np.float64) - onnx_scores))) / scale
    logger.info("Parity on %d examples (%s): max |difference| %.2e (tolerance %.0e).", examples, source, diff,
                TOLERANCE)
    return Parity(diff, examples, source)
