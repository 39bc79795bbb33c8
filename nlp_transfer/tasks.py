"""Tasks: how labels become targets, which loss trains them, and how logits become answers.

Four tasks cover what our users bring: one label per example, any number of labels per example,
a number to predict, and a tag per word (token classification: named entities and other tagging).
Sentence pairs are not a task of their own; any sentence task accepts a second text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F

from nlp_transfer.errors import ConfigError, DataError, did_you_mean

__all__ = ["TaskName", "IGNORED", "Task", "TASKS", "get_task", "infer_labels", "check_learnable", "predicted_labels"]

TaskName = Literal["single_label", "multi_label", "regression", "token_classification"]

IGNORED = -100  # a target position the loss skips (padding, continuation sub-tokens): torch's and transformers' value


@dataclass(frozen=True)
class Task:
    """The behaviour of one task; instances live in `TASKS`."""

    name: TaskName
    hf_problem_type: str  # the matching `config.problem_type` of transformers

    def encode(self, values: Sequence[Any], label2id: dict[Any, int] | None, where: str) -> torch.Tensor:
        """Targets as a tensor; raises `DataError` for labels the model does not know."""
        if self.name == "regression":
            _check_numbers(values, where)  # NaN would make the loss and every metric NaN
            return torch.tensor([float(v) for v in values], dtype=torch.float32)
        assert label2id is not None  # every classification model knows its labels by now
        known = list(label2id)
        if self.name == "single_label":
            _check_known({v for v in values}, label2id, where)
            return torch.tensor([label2id[v] for v in values], dtype=torch.long)
        _check_known({v for row in values for v in row}, label2id, where)
        targets = torch.zeros(len(values), len(known), dtype=torch.float32)
        for row, names in enumerate(values):
            for name in names:
                targets[row, label2id[name]] = 1.0
        return targets

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # the loss in fp32 also under bf16/fp16 autocast
        if self.name == "single_label":
            return F.cross_entropy(logits, targets)
        if self.name == "multi_label":
            return F.binary_cross_entropy_with_logits(logits, targets)
        if self.name == "token_classification":  # logits [batch, words, tags], targets [batch, words]
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(), ignore_index=IGNORED)
        return F.mse_loss(logits.squeeze(-1), targets)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities (softmax or per-label sigmoid); for regression, the predicted value."""
        if self.name in ("single_label", "token_classification"):  # softmax over the last axis (tags per word)
            shifted = logits - logits.max(axis=-1, keepdims=True)
            exp = np.exp(shifted)
            return exp / exp.sum(axis=-1, keepdims=True)
        if self.name == "multi_label":
            return 1.0 / (1.0 + np.exp(-logits))
        return logits[:, 0]

    def decide(self, logits: np.ndarray, threshold: float) -> np.ndarray:
        """Class ids (single-label), multi-hot rows (multi-label) or values (regression)."""
        if self.name in ("single_label", "token_classification"):
            return logits.argmax(axis=-1)
        if self.name == "multi_label":
            return (self.scores(logits) >= threshold).astype(np.int64)
        return logits[:, 0]

    def targets_for_metrics(self, targets: np.ndarray) -> np.ndarray:
        return targets.astype(np.int64) if self.name == "multi_label" else targets


TASKS: dict[str, Task] = {
    "single_label": Task("single_label", "single_label_classification"),
    "multi_label": Task("multi_label", "multi_label_classification"),
    "regression": Task("regression", "regression"),
    "token_classification": Task("token_classification", "token_classification"),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"Unknown task {name!r}: {did_you_mean(name, TASKS)}")
    return TASKS[name]


def predicted_labels(task: Task, logits: Any, threshold: float, labels: Sequence[Any] | None) -> list[Any]:
    """What `predict` returns for these logits: labels (single-label), lists of labels (multi-label,
    those above `threshold`) or numbers (regression), one per row."""
    import numpy as np

    decided = task.decide(logits, threshold)
    if task.name == "regression":
        return [float(v) for v in decided]
    if task.name == "multi_label":
        return [[labels[i] for i in np.flatnonzero(row)] for row in decided]
    return [labels[int(i)] for i in decided]


def infer_labels(task: Task, values: Sequence[Any], where: str) -> list[Any]:
    """The sorted label set of the data, with a clear error for values the task cannot use."""
    if task.name == "regression":
        _check_numbers(values, where)
        return []
    if task.name == "token_classification":  # tags per word, read and checked by data/tagging.py
        return sorted({tag for row in values for tag in row})
    if task.name == "multi_label":
        not_lists = [i for i, v in enumerate(values) if not isinstance(v, (list, tuple))]
        if not_lists:
            raise DataError(
                f"{where}: task='multi_label' needs a list of label names per row; rows {not_lists[:5]} have "
                f"{[values[i] for i in not_lists[:5]]}. Use lists such as ['sports', 'politics'], or task='single_label'."
            )
        flat = [v for row in values for v in row]
    else:
        lists = [i for i, v in enumerate(values) if isinstance(v, (list, tuple))]
        if lists:
            raise DataError(f"{where}: rows {lists[:5]} hold lists of labels; for several labels per text use task='multi_label'.")
        flat = list(values)
    missing = [i for i, v in enumerate(flat) if v is None or (isinstance(v, float) and math.isnan(v))]
    if missing:
        raise DataError(f"{where}: {len(missing)} label(s) are empty (first at row {missing[0]}). Fill or drop them.")
    kinds = {"number" if _is_number(v) else type(v).__name__ for v in flat}
    if len(kinds) > 1:
        raise DataError(
            f"{where}: the label column mixes types ({', '.join(sorted(kinds))}), e.g. {_examples(flat)}. "
            "Use one type: all names (strings) or all integer ids."
        )
    if kinds == {"number"} and any(float(v) != int(v) for v in flat):
        raise DataError(
            f"{where}: labels such as {_examples(flat)} are not whole numbers; for numeric targets use task='regression'."
        )
    return sorted(set(flat))


def check_learnable(task: Task, found: Sequence[Any], where: str) -> None:
    """Training data a classifier can learn from: at least two classes (single-label), at least one
    label somewhere (multi-label). `found` is what `infer_labels` returned for the training data."""
    if task.name == "single_label" and len(found) < 2:
        raise DataError(
            f"{where}: every example has the label {found[0]!r}; a classifier needs examples of at least two "
            "classes to learn to tell them apart. Add examples of the other class(es), or, to predict a number "
            "per example, use task='regression'."
        )
    if task.name == "multi_label" and not found:
        raise DataError(
            f"{where}: every row has an empty label list, so there is no label to learn. Give each row the "
            "list of labels that apply (e.g. ['sports']), at least for some rows."
        )


def _check_numbers(values: Sequence[Any], where: str) -> None:
    bad = [i for i, v in enumerate(values) if not _is_number(v) or math.isnan(float(v))]
    if bad:
        raise DataError(
            f"{where}: regression needs a number in every label; rows {bad[:5]} have "
            f"{[values[i] for i in bad[:5]]}. Drop or fill these rows."
        )


def _check_known(seen: set[Any], label2id: dict[Any, int], where: str) -> None:
    unknown = sorted(seen - set(label2id), key=str)
    if unknown:
        raise DataError(
            f"{where}: label(s) {unknown[:10]} are not among the model's labels {list(label2id)}. "
            "Evaluate on data with the labels the model was trained on, or retrain with these labels included."
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _examples(values: Sequence[Any]) -> str:
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(type(v).__name__, v)
    return ", ".join(repr(v) for v in seen.values())
