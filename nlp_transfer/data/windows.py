"""Words to model inputs for tagging: sub-token alignment, windows over long sentences, batches.

Alignment: a word's tag goes to its first sub-token; the model reads one feature per word (see
`backbones/words.py`), so predictions and metrics are per word, never per sub-token. With
``label_all_tokens`` (training only) every sub-token is a slot of its own, continuations tagged
``I-`` of their word's type.

Windows: a sentence longer than ``max_length`` sub-tokens is cut at word boundaries into windows
that overlap by about ``stride`` sub-tokens. Every window trains on all its words; for evaluation
and prediction each word is scored by exactly one window (the one where it sits further from the
edge: overlaps are split in the middle), so no word is dropped or counted twice.

    >>> windows = tag_windows(tokenizer, [["EU", "rejects", "German", "call"]], [[1, 0, 3, 0]], max_length=128)
    >>> windows.owned[0]            # (sentence, first word, end word) this window scores
    (0, 0, 4)
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from nlp_transfer.data.batching import TokenizedDataset
from nlp_transfer.errors import ConfigError
from nlp_transfer.tasks import IGNORED

__all__ = ["TagWindows", "tag_windows", "only_owned", "WordCollator", "WordFeatureDataset", "WordFeatureCollator"]

logger = logging.getLogger(__name__)


@dataclass
class _Window:
    sentence: int
    start: int  # first word of the sentence in the window
    end: int  # one past the last word
    own_start: int  # the words [own_start, own_end) are scored by this window
    own_end: int


class TagWindows(TokenizedDataset):
    """Windows of tokenised sentences, with the word slots of each and (when given) their targets.

    ``encodings`` holds per window ``input_ids``, ``attention_mask`` and ``word_ids`` (slot of each
    sub-token, -1 for special tokens), so the feature cache fingerprints the alignment too;
    ``word_starts`` the first sub-token of each slot; ``targets`` the tag id of each slot
    (`IGNORED` where the window does not score it). ``owned`` is (sentence, first, end) per window.
    """

    def __init__(self, encodings: dict[str, list[list[int]]], word_starts: list[list[int]],
                 targets: list[list[int]] | None, windows: list[_Window], sentences: int) -> None:
        super().__init__(encodings, targets)
        self.word_starts = word_starts
        self.windows = windows
        self.sentences = sentences

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**super().__getitem__(index), "word_starts": self.word_starts[index]}

    @property
    def owned(self) -> list[tuple[int, int, int]]:
        return [(w.sentence, w.own_start, w.own_end) for w in self.windows]

    def slots(self, index: int) -> int:
        return len(self.word_starts[index])

    def feature_rows(self) -> int:
        """Rows of cached features: one per word slot of every window."""
        return sum(len(row) for row in self.word_starts)

    def fingerprint(self) -> str:
        """What the cached word features depend on: the token ids and the word alignment of every window."""
        digest = hashlib.sha256()
        for key in ("input_ids", "word_ids"):
            rows = self.encodings[key]
            digest.update(key.encode())
            digest.update(np.asarray([len(row) for row in rows], dtype=np.int64).tobytes())
            digest.update(np.fromiter((v for row in rows for v in row), dtype=np.int64).tobytes())
        digest.update(np.fromiter((v for row in self.word_starts for v in row), dtype=np.int64).tobytes())
        return digest.hexdigest()

    def sentence_outputs(self, outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-slot outputs of every window (in window order) -> one array per sentence, one row per word."""
        pieces: list[list[np.ndarray]] = [[] for _ in range(self.sentences)]
        for window, rows in zip(self.windows, outputs):
            pieces[window.sentence].append(rows[window.own_start - window.start: window.own_end - window.start])
        return [np.concatenate(parts) for parts in pieces]


def tag_windows(tokenizer, sentences: Sequence[Sequence[str]], tag_ids: Sequence[Sequence[int]] | None, *,
                max_length: int, stride: int, all_tokens: bool = False,
                continuation: dict[int, int] | None = None) -> TagWindows:
    """Tokenise pre-split `sentences` and cut them into windows of at most `max_length` sub-tokens.

    `all_tokens` (training with label_all_tokens): every sub-token is a slot; `continuation` maps a
    tag id to the id its continuation sub-tokens get (B-X -> I-X).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("Tagging needs a fast (Rust) tokenizer, which knows which word each sub-token came from; "
                          "this model's tokenizer is a slow one. Save the model with a tokenizer.json, or use a model "
                          "that has one.")
    # whole sentences, cut into windows below: no truncation, and no warning about their length
    encoded = tokenizer([list(words) for words in sentences], is_split_into_words=True, add_special_tokens=False,
                        verbose=False)
    before, after = _special_tokens(tokenizer)
    capacity = max_length - len(before) - len(after)
    if capacity < 2:
        raise ConfigError(f"max_length={max_length} leaves no room for words next to the special tokens; raise it.")
    overlap = min(stride, capacity // 2)
    unknown = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
    encodings: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "word_ids": []}
    starts: list[list[int]] = []
    targets: list[list[int]] | None = [] if tag_ids is not None else None
    windows: list[_Window] = []
    cut_words = 0
    for number, words in enumerate(sentences):
        ids, word_of = encoded["input_ids"][number], encoded.word_ids(number)
        pieces = _word_pieces(ids, word_of, len(words), capacity, unknown)
        cut_words += sum(1 for word, count in Counter(w for w in word_of if w is not None).items() if count > capacity)
        tags = tag_ids[number] if tag_ids is not None else None
        for window in _windows_of([len(p) for p in pieces], capacity, overlap, number):
            token_ids, slot_ids, slot_starts, slot_targets = _window_inputs(window, pieces, tags, len(before), all_tokens,
                                                                            continuation or {})
            encodings["input_ids"].append([*before, *token_ids, *after])
            encodings["attention_mask"].append([1] * (len(before) + len(token_ids) + len(after)))
            encodings["word_ids"].append([-1] * len(before) + slot_ids + [-1] * len(after))
            starts.append(slot_starts)
            if targets is not None:
                targets.append(slot_targets)
            windows.append(window)
    if cut_words:
        logger.warning("%d word(s) have more sub-tokens than fit in max_length=%d; only their first sub-tokens are "
                       "read (they are still tagged). Raise max_length to keep them whole.", cut_words, max_length)
    result = TagWindows(encodings, starts, targets, windows, len(sentences))
    long = sum(1 for w in windows if w.start > 0)
    if long:
        logger.info("%d sentence(s) longer than max_length=%d were cut into %d extra overlapping windows.",
                    len({w.sentence for w in windows if w.start > 0}), max_length, long)
    return result


def _window_inputs(window: _Window, pieces: list[list[int]], tags: Sequence[int] | None, offset: int, all_tokens: bool,
                   continuation: dict[int, int]) -> tuple[list[int], list[int], list[int], list[int]]:
    """The sub-token ids of a window's words, each sub-token's slot, each slot's first position (after
    `offset` special tokens) and each slot's target: a slot per word, or per sub-token with `all_tokens`."""
    token_ids: list[int] = []
    slot_ids: list[int] = []
    slot_starts: list[int] = []
    slot_targets: list[int] = []
    for word in range(window.start, window.end):
        for position, token in enumerate(pieces[word]):
            if position == 0 or all_tokens:
                slot_starts.append(offset + len(token_ids))
                if tags is not None:
                    slot_targets.append(tags[word] if position == 0 else continuation.get(tags[word], tags[word]))
            slot_ids.append(len(slot_starts) - 1)
            token_ids.append(token)
    return token_ids, slot_ids, slot_starts, slot_targets


def only_owned(windows: TagWindows) -> TagWindows:
    """The windows with targets only on the words each window scores (evaluation: every word once).
    Word-level windows only (one slot per word), as evaluation builds them."""
    if windows.targets is None:
        return windows
    masked = []
    for window, row in zip(windows.windows, windows.targets):
        masked.append([tag if window.own_start <= window.start + slot < window.own_end else IGNORED
                       for slot, tag in enumerate(row)])
    windows.targets = masked
    return windows


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids a single sequence gets before and after its own ([CLS] ... [SEP], <s> ... </s>)."""
    encoded = tokenizer([["a"]], is_split_into_words=True)  # the tokenizer's own template, around one word
    ids, words = encoded["input_ids"][0], encoded.word_ids(0)
    first = words.index(0)
    last = len(words) - 1 - words[::-1].index(0)
    return list(ids[:first]), list(ids[last + 1:])


def _word_pieces(ids: list[int], word_of: list[int | None], words: int, capacity: int, unknown: int) -> list[list[int]]:
    """The sub-token ids of each word; a word longer than a whole window keeps its first `capacity`."""
    pieces: list[list[int]] = [[] for _ in range(words)]
    for token, word in zip(ids, word_of):
        if word is not None and len(pieces[word]) < capacity:
            pieces[word].append(token)
    for word, piece in enumerate(pieces):
        if not piece:  # a word the tokenizer drops entirely (e.g. a lone control character): keep a slot for it
            pieces[word] = [unknown]
    return pieces


def _windows_of(sizes: list[int], capacity: int, overlap: int, sentence: int) -> list[_Window]:
    """Windows of whole words, each at most `capacity` sub-tokens, overlapping by at most `overlap`."""
    windows: list[_Window] = []
    start = 0
    while True:
        end, used = start, 0
        while end < len(sizes) and used + sizes[end] <= capacity:
            used += sizes[end]
            end += 1
        end = max(end, start + 1)
        windows.append(_Window(sentence, start, end, start, end))
        if end >= len(sizes):
            break
        nxt, shared = end, 0
        while nxt - 1 > start and shared + sizes[nxt - 1] <= overlap:  # the next window starts past this one's start
            nxt -= 1
            shared += sizes[nxt]
        start = nxt
    for left, right in zip(windows, windows[1:]):  # split each overlap in the middle
        middle = (right.start + left.end + 1) // 2
        left.own_end, right.own_start = middle, middle
    return windows


class WordCollator:
    """Pads a batch of windows: tokens to the longest window, word slots to the most slots.

    Adds ``output_lengths`` (slots per window), by which inference trims each window's outputs.
    """

    def __init__(self, pad_token_id: int, multiple_of: int = 1) -> None:
        self.pad_token_id = pad_token_id
        self.multiple_of = multiple_of

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(item["input_ids"]) for item in items)
        width = -(-longest // self.multiple_of) * self.multiple_of
        slots = max(1, max(len(item["word_starts"]) for item in items))
        batch = {key: torch.tensor([item[key] + [pad] * (width - len(item[key])) for item in items], dtype=torch.long)
                 for key, pad in (("input_ids", self.pad_token_id), ("attention_mask", 0), ("word_ids", -1))}
        if "token_type_ids" in items[0]:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        batch["word_starts"] = _padded([item["word_starts"] for item in items], slots, 0)
        batch["output_lengths"] = torch.tensor([len(item["word_starts"]) for item in items], dtype=torch.long)
        batch["index"] = torch.tensor([item["index"] for item in items], dtype=torch.long)
        if "labels" in items[0]:
            batch["labels"] = _padded([item["labels"] for item in items], slots, IGNORED)
        return batch


def _padded(rows: list[list[int]], width: int, pad: int) -> torch.Tensor:
    return torch.tensor([row + [pad] * (width - len(row)) for row in rows], dtype=torch.long)


class WordFeatureDataset(Dataset):
    """Cached word features of windows (one row per slot, all windows flat) with their targets."""

    def __init__(self, features: torch.Tensor, windows: TagWindows) -> None:
        sizes = [windows.slots(i) for i in range(len(windows))]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        if len(features) != self.offsets[-1]:
            raise RuntimeError(f"internal error: {len(features)} cached word features for {self.offsets[-1]} word slots")
        self.features = features
        self.targets = windows.targets
        self.lengths = windows.lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"features": self.features[self.offsets[index]:self.offsets[index + 1]], "index": index}
        if self.targets is not None:
            item["labels"] = self.targets[index]
        return item


class WordFeatureCollator:
    """Pads cached word features [slots, features] of a batch to its most slots."""

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        slots = max(1, max(len(item["features"]) for item in items))
        width = items[0]["features"].shape[-1]
        features = torch.zeros(len(items), slots, width, dtype=items[0]["features"].dtype)
        for row, item in enumerate(items):
            features[row, : len(item["features"])] = item["features"]
        batch = {"features": features, "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
                 "output_lengths": torch.tensor([len(item["features"]) for item in items], dtype=torch.long)}
        if "labels" in items[0]:
            batch["labels"] = _padded([item["labels"] for item in items], slots, IGNORED)
        return batch
