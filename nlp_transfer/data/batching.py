"""Model inputs as datasets, and batches with little padding: length-grouped for training, sorted
for evaluation (outputs are put back in the dataset's order by each row's ``index``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["TokenizedDataset", "PaddingCollator", "FeatureCollator", "LengthGroupedBatchSampler", "SortedBatchSampler"]


class TokenizedDataset(Dataset):
    """Token ids per example plus its target and its row index (so outputs can be put back in order)."""

    def __init__(self, encodings: dict[str, list[list[int]]], targets: torch.Tensor | None) -> None:
        self.encodings = encodings
        self.targets = targets
        self.lengths = [len(ids) for ids in encodings["input_ids"]]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {key: values[index] for key, values in self.encodings.items()}
        item["index"] = index
        if self.targets is not None:
            item["labels"] = self.targets[index]
        return item


class PaddingCollator:
    """Pads each batch to its own longest example (rounded up to `multiple_of`)."""

    def __init__(self, pad_token_id: int, multiple_of: int = 1) -> None:
        self.pad_token_id = pad_token_id
        self.multiple_of = multiple_of

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(item["input_ids"]) for item in items)
        width = -(-longest // self.multiple_of) * self.multiple_of
        batch: dict[str, torch.Tensor] = {}
        for key in items[0]:
            if key in ("index", "labels"):
                continue
            pad = self.pad_token_id if key == "input_ids" else 0
            batch[key] = torch.tensor([item[key] + [pad] * (width - len(item[key])) for item in items], dtype=torch.long)
        batch["index"] = torch.tensor([item["index"] for item in items], dtype=torch.long)
        if "labels" in items[0]:
            batch["labels"] = torch.stack([item["labels"] for item in items])
        return batch


class FeatureCollator:
    """Stacks cached feature rows (no padding needed); a batch the dataset already sliced passes through."""

    def __call__(self, items: list[dict[str, Any]] | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if isinstance(items, dict):  # FeatureDataset.__getitems__: one batch, already stacked
            return items
        return {key: torch.stack([torch.as_tensor(item[key]) for item in items]) for key in items[0]}


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Training batches of similar length, in a seeded random order that changes every epoch.

    Shuffle all rows, cut them into windows of `window` batches, sort each window by length and cut it
    into batches, then shuffle the batches. Padding drops to near zero while every batch is still a
    random draw of similar-length rows. With `passes` > 1 an epoch is that many such shuffles in a
    row (few-shot data: enough optimizer steps between evaluations); the first is the one-pass epoch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group: bool = True, window: int = 50,
                 passes: int = 1) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group = group
        self.window = window
        self.passes = passes
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size) * self.passes

    def __iter__(self) -> Iterator[list[int]]:
        # seed and epoch kept apart: (seed 42, epoch 2) must not replay (seed 43, epoch 1)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        for _ in range(self.passes):  # one generator: each pass draws the next permutations
            yield from self._one_pass(generator)

    def _one_pass(self, generator: torch.Generator) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        if not self.group:
            yield from (order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size))
            return
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            window = sorted(order[start : start + span], key=lambda i: self.lengths[i], reverse=True)
            batches += [window[i : i + self.batch_size] for i in range(0, len(window), self.batch_size)]
        for position in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[position]


class SortedBatchSampler(Sampler[list[int]]):
    """Evaluation batches sorted by length (longest first, so memory peaks at once)."""

    def __init__(self, lengths: Sequence[int], batch_size: int) -> None:
        self.order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, len(self.order), self.batch_size):
            yield self.order[start : start + self.batch_size]
