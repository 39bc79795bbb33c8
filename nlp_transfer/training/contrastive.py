"""SetFit's first stage: tune the encoder on sentence pairs built from the labelled examples.

Tunstall et al. (2022): with 8 to 64 labelled examples per class, fine-tuning a sentence encoder so
that same-label pairs embed close and different-label pairs far apart, then fitting a head on the
tuned embeddings, beats fine-tuning the encoder with a head directly. Pairs grow quadratically
with the examples, so a handful per class already gives hundreds of training signals.

Pairs: for each example and each of `num_iterations` rounds, one positive (a random other example
of its class) and one negative (a random example of another class), as the `setfit` package
builds them; seeded, capped at `max_pairs`. Loss: SetFit's default, CosineSimilarityLoss (the
squared error between the cosine of the two pooled embeddings and 1 or 0). The embeddings are the
backbone's own pooled features, so the head afterwards sees exactly what was tuned.

This stage is a plain loop on one process (it is short: minutes on a CPU); under several
processes every process runs the same seeded pairs and ends with the same weights.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nlp_transfer.errors import DataError

__all__ = ["PairSettings", "sample_pairs", "tune_encoder"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairSettings:
    """How the encoder is tuned on pairs (the `contrastive` strategy's options)."""

    num_iterations: int
    max_pairs: int | None
    epochs: int
    batch_size: int
    learning_rate: float
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0


def sample_pairs(labels: np.ndarray, num_iterations: int, seed: int, max_pairs: int | None = None) -> np.ndarray:
    """Rows (first, second, target): one positive and one negative pair per example and round.

    Balanced by construction (as many positives as negatives), in a seeded random order. A class
    with a single example has no positive partner: it still takes part in negative pairs.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise DataError("strategy 'contrastive' needs examples of at least two labels to build negative pairs; "
                        f"the training data has only {classes.tolist()!r}.")
    rng = np.random.default_rng(seed)
    members = {label: np.flatnonzero(labels == label) for label in classes}
    others = {label: np.flatnonzero(labels != label) for label in classes}
    rows: list[tuple[int, int, float]] = []
    for _ in range(num_iterations):
        for anchor, label in enumerate(labels):
            same = members[label]
            if len(same) > 1:
                partner = anchor
                while partner == anchor:
                    partner = int(same[rng.integers(len(same))])
                rows.append((anchor, partner, 1.0))
            rows.append((anchor, int(others[label][rng.integers(len(others[label]))]), 0.0))
    pairs = np.asarray(rows, dtype=np.float64)
    pairs = pairs[rng.permutation(len(pairs))]
    if max_pairs is not None and len(pairs) > max_pairs:
        pairs = pairs[:max_pairs]  # a random subset: the order is already random
    return pairs


def tune_encoder(backbone: nn.Module, dataset: Any, collate, pairs: np.ndarray, settings: PairSettings,
                 accelerator, seed: int) -> dict[str, float]:
    """Train every backbone weight on `pairs` of `dataset` rows; returns what it did (for the history).

    Each batch encodes each distinct example once, however many of its pairs the batch holds.
    """
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    from nlp_transfer.training.engine import quiet

    device = accelerator.device
    backbone.to(device)
    trainable = list(backbone.parameters())
    flags = [p.requires_grad for p in trainable]
    backbone.requires_grad_(True)
    backbone.train()
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=settings.learning_rate)
    steps_per_epoch = math.ceil(len(pairs) / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    schedule = get_scheduler("linear", optimizer, num_warmup_steps=math.ceil(total * settings.warmup_ratio),
                             num_training_steps=total)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    started = time.perf_counter()
    bar = tqdm(total=total, desc="Contrastive pairs", disable=quiet(accelerator))
    try:
        for epoch in range(settings.epochs):
            order = pairs if epoch == 0 else pairs[torch.randperm(len(pairs), generator=generator).numpy()]
            for start in range(0, len(order), settings.batch_size):
                batch = order[start : start + settings.batch_size]
                loss = _pair_loss(backbone, dataset, collate, batch, device, accelerator)
                loss.backward()
                if settings.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                bar.update(1)
                if len(losses) % 20 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    finally:
        bar.close()
        for parameter, flag in zip(trainable, flags):
            parameter.requires_grad_(flag)
    seconds = time.perf_counter() - started
    first, last = losses[: max(1, len(losses) // 10)], losses[-max(1, len(losses) // 10) :]
    logger.info("Contrastive tuning: %d pairs x %d epoch(s), %d steps in %.1f s; pair loss %.4f -> %.4f.",
                len(pairs), settings.epochs, total, seconds, float(np.mean(first)), float(np.mean(last)))
    return {"pairs": int(len(pairs)), "steps": total, "seconds": seconds, "first_loss": float(np.mean(first)),
            "last_loss": float(np.mean(last))}


def _pair_loss(backbone: nn.Module, dataset: Any, collate, batch: np.ndarray, device, accelerator) -> torch.Tensor:
    """CosineSimilarityLoss of one batch of pairs."""
    first, second = batch[:, 0].astype(np.int64), batch[:, 1].astype(np.int64)
    rows, where = np.unique(np.concatenate([first, second]), return_inverse=True)
    inputs = collate([dataset[int(row)] for row in rows])
    inputs = {k: v.to(device) for k, v in inputs.items() if k not in ("labels", "index")}
    with accelerator.autocast():
        embeddings = backbone(**inputs).float()
    left, right = embeddings[where[: len(first)]], embeddings[where[len(first) :]]
    cosine = torch.nn.functional.cosine_similarity(left, right, dim=-1)
    target = torch.as_tensor(batch[:, 2], dtype=cosine.dtype, device=cosine.device)
    return torch.nn.functional.mse_loss(cosine, target)
