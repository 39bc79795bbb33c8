"""A text encoder that gives one feature vector per word: what a tagging head classifies.

A word may be split into several sub-tokens. Its feature is its first sub-token's (``first``: the
convention of BERT's paper and of transformers' ``*ForTokenClassification``, so a linear head on
it exports to that layout) or the mean of its sub-tokens (``mean``). The collated batch says where
each word is: ``word_starts`` [batch, words] (the position of each word's first sub-token) and
``word_ids`` [batch, tokens] (the word each sub-token belongs to, -1 for special tokens and padding).

    >>> features = backbone(input_ids, attention_mask, word_starts=starts, word_ids=ids)   # [batch, words, hidden]
"""

from __future__ import annotations

import torch

from nlp_transfer.backbones.text import TextBackbone
from nlp_transfer.errors import StrategyError, did_you_mean

__all__ = ["WordBackbone", "WORD_POOLINGS"]

WORD_POOLINGS = ("first", "mean")

# Byte-level BPE tokenizers (RoBERTa, GPT-2 style) mark a word start by its leading space; words
# given one by one need that space added, or transformers refuses pre-split input.
_PREFIX_SPACE_TYPES = {"roberta", "longformer", "bart", "deberta", "gpt2", "mvp", "led", "bloom"}


class WordBackbone(TextBackbone):
    """`TextBackbone` with per-word pooling: a batch -> [batch, words, feature_size]."""

    @classmethod
    def resolve_pooling(cls, pooling: str, source: str) -> str:
        if pooling == "auto":
            return "first"
        if pooling not in WORD_POOLINGS:
            raise StrategyError(f"pooling={pooling!r} does not pool the sub-tokens of a word; for "
                                f"task='token_classification' use first or mean: {did_you_mean(pooling, WORD_POOLINGS)}")
        return pooling

    @classmethod
    def tokenizer_options(cls, source: str) -> dict:
        import json
        from pathlib import Path

        config = Path(source) / "config.json"
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type") if config.is_file() else None
        if model_type in _PREFIX_SPACE_TYPES or any(name in source.lower() for name in ("roberta", "gpt2", "bart")):
            return {"add_prefix_space": True}
        return {}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, word_starts: torch.Tensor,
                word_ids: torch.Tensor | None = None, **extra: torch.Tensor) -> torch.Tensor:
        """Word features [batch, words, feature_size]; padded word slots get the features of position 0."""
        hidden = self.token_features(input_ids, attention_mask, **extra)
        if self.pooling == "first":
            index = word_starts.clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
            return hidden.gather(1, index)
        if word_ids is None:
            raise ValueError("internal error: mean pooling over words needs word_ids in the batch")
        # mean over each word's sub-tokens: sum into word slots (slot `words` collects the rest), divide by counts
        words = word_starts.shape[1]
        slots = torch.where(word_ids >= 0, word_ids, torch.full_like(word_ids, words))
        sums = hidden.new_zeros(hidden.shape[0], words + 1, hidden.shape[-1])
        sums.scatter_add_(1, slots.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]), hidden)
        counts = hidden.new_zeros(hidden.shape[0], words + 1).scatter_add_(1, slots, torch.ones_like(hidden[..., 0]))
        return sums[:, :words] / counts[:, :words].clamp(min=1.0).unsqueeze(-1)
