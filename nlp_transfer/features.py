"""Frozen-feature cache: with a frozen backbone, encode the data once and train the head on it.

A frozen backbone in eval mode is a fixed function, so its pooled output for an example never
changes between epochs. Running it once (no grad, batches sorted by length) and training the head
on the stored vectors gives the same result as running it every epoch, at the cost of one pass.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .engine import run_inference

__all__ = ["FeatureDataset", "encode_features"]


def encode_features(backbone: nn.Module, loader: DataLoader, accelerator) -> torch.Tensor:
    """Pooled features [n, feature_size] for every example of the loader's dataset, in its order."""
    was_training = backbone.training
    backbone.eval()
    # Iterating a DataLoader draws from the global RNG; keep it untouched so training afterwards
    # sees the same random stream (dropout, order) with and without the cache.
    with torch.random.fork_rng(devices=[]):
        inputs = lambda batch: {k: v for k, v in batch.items() if k not in ("labels", "index")}  # noqa: E731
        features, _ = run_inference(lambda batch: backbone(**inputs(batch)), loader, accelerator, desc="Encoding features")
    backbone.train(was_training)
    return torch.from_numpy(features)


class FeatureDataset(Dataset):
    """Cached features with their targets.

    Keeps the token lengths of the examples they came from, so length-grouped batching draws the
    same batches as on the uncached data and both paths train the same head.
    """

    def __init__(self, features: torch.Tensor, targets: torch.Tensor | None, lengths: list[int]) -> None:
        self.features = features
        self.targets = targets
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"features": self.features[index], "index": torch.tensor(index)}
        if self.targets is not None:
            item["labels"] = self.targets[index]
        return item
