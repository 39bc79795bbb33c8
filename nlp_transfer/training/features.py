"""Frozen-feature cache: with a frozen backbone, encode the data once and train the head on it.

A frozen backbone in eval mode is a fixed function, so its pooled output for an example never
changes between epochs. Running it once (no grad, batches sorted by length) and training the head
on the stored vectors gives the same result as running it every epoch, at the cost of one pass.

Features are also kept on disk, under a key made of what determines them: the backbone's weights
(a hash of every tensor), its pooling, the autocast precision, and the token ids of the data (which
stand for the text, the tokenizer and max_length together). A second run, or a second head on the
same data, loads them instead of encoding again; any change to the key is a different file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nlp_transfer.storage.atomic import staged_file
from nlp_transfer.storage.cache import cache_root
from nlp_transfer.training.engine import run_inference

__all__ = ["FeatureDataset", "encode_features", "FeatureCache", "default_cache_dir"]

logger = logging.getLogger(__name__)

_FORMAT = 1  # bump when the stored layout or the meaning of the key changes


def encode_features(backbone: nn.Module, loader: DataLoader, accelerator) -> torch.Tensor:
    """Pooled features [n, feature_size] for every example of the loader's dataset, in its order; with
    per-word features (tagging), one row per word slot, the examples' slots one after another."""
    was_training = backbone.training
    backbone.eval()
    # Iterating a DataLoader draws from the global RNG; keep it untouched so training afterwards
    # sees the same random stream (dropout, order) with and without the cache.
    with torch.random.fork_rng(devices=[]):
        inputs = lambda batch: {k: v for k, v in batch.items() if k not in ("labels", "index")}  # noqa: E731
        features, _ = run_inference(lambda batch: backbone(**inputs(batch)), loader, accelerator, desc="Encoding features")
    backbone.train(was_training)
    if isinstance(features, list):  # per-word outputs: ragged, stored flat
        features = np.concatenate(features) if features else np.zeros((0, 0), dtype=np.float32)
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

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """A whole batch sliced from the tensors at once (the DataLoader calls this when it exists):
        no per-row dicts to build and stack, the bulk of a small head's step otherwise."""
        rows = torch.as_tensor(indices, dtype=torch.long)
        batch = {"features": self.features[rows], "index": rows}
        if self.targets is not None:
            batch["labels"] = self.targets[rows]
        return batch


def default_cache_dir() -> Path:
    """~/.cache/nlp_transfer/features (or under $XDG_CACHE_HOME, or $NLP_TRANSFER_CACHE)."""
    return cache_root() / "features"


class FeatureCache:
    """Pooled features on disk, one safetensors file per (backbone state, settings, data) key."""

    def __init__(self, folder: Path, backbone: nn.Module, settings: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self._prefix = hashlib.sha256()
        self._prefix.update(json.dumps({"format": _FORMAT, **settings}, sort_keys=True).encode())
        self._prefix.update(weights_fingerprint(backbone).encode())

    def key(self, dataset: Dataset) -> str:
        digest = self._prefix.copy()
        digest.update(data_fingerprint(dataset).encode())
        return digest.hexdigest()[:40]

    def load(self, dataset: Dataset) -> torch.Tensor | None:
        path = self.folder / f"{self.key(dataset)}.safetensors"
        if not path.is_file():
            return None
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            features = load_file(str(path))["features"]
        except (SafetensorError, OSError, KeyError) as error:  # a damaged entry is a miss, not a failure
            logger.warning("Ignoring the damaged feature cache file %s (%s); encoding again.", path, error)
            return None
        rows = dataset.feature_rows() if hasattr(dataset, "feature_rows") else len(dataset)  # tagging: one per word
        if len(features) != rows:
            return None
        logger.info("Reusing cached features of %d examples from %s", len(features), path)
        order = _content_order(dataset)
        if order is not None:  # stored by content: put the rows back in this dataset's order
            restored = torch.empty_like(features)
            restored[order] = features
            return restored
        return features

    def store(self, dataset: Dataset, features: torch.Tensor) -> None:
        """Keep `features` for `dataset`; a cache that cannot be written is a warning, not a failure."""
        from safetensors.torch import save_file

        target = self.folder / f"{self.key(dataset)}.safetensors"
        order = _content_order(dataset)
        if order is not None:
            features = features[order]
        try:
            with staged_file(target) as temporary:  # readers never see a half-written file
                save_file({"features": features.contiguous()}, str(temporary))
        except OSError as error:
            logger.warning("Could not write the feature cache %s (%s); continuing without it.", target, error)


def _content_order(dataset: Dataset) -> torch.Tensor | None:
    """For datasets keyed by content (`row_keys`: images), the rows sorted by key: the order their
    features are stored in, so the same images in another order or under other names hit the cache."""
    if not hasattr(dataset, "row_keys"):
        return None
    keys = dataset.row_keys()
    return torch.tensor(sorted(range(len(keys)), key=keys.__getitem__), dtype=torch.long)


def weights_fingerprint(module: nn.Module) -> str:
    """A hash of every tensor in the module's state (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{value.dtype}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def data_fingerprint(dataset: Dataset) -> str:
    """A hash of the model inputs of every example (token ids, masks, type ids), in order, or the
    dataset's own `fingerprint()`."""
    if hasattr(dataset, "fingerprint"):  # datasets that know what stands for their inputs (images)
        return dataset.fingerprint()
    digest = hashlib.sha256()
    encodings = getattr(dataset, "encodings", None)
    if encodings is None:
        raise TypeError(f"cannot fingerprint a {type(dataset).__name__}: it has no encodings")
    for key in sorted(encodings):
        digest.update(key.encode())
        rows = encodings[key]
        digest.update(np.asarray([len(row) for row in rows], dtype=np.int64).tobytes())
        digest.update(np.fromiter((v for row in rows for v in row), dtype=np.int64).tobytes())
    return digest.hexdigest()
