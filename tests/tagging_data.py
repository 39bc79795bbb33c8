"""Learnable toy tagging data for tests/test_tokens.py.

A sentence is filler words tagged O, with entities dropped in, a filler word before each one: a
POS entity is two positive words (B-POS I-POS: one of the first half of POSITIVE, then one of the
second half), a NEG entity one negative word (B-NEG). Every word's tag follows from the word itself,
so a tiny random encoder learns it in a few epochs; POS still makes entities of two words.
"""

from __future__ import annotations

import random

from conftest import FILLER, NEGATIVE, POSITIVE, TINY, WORDS

TAGS = ["O", "B-NEG", "I-NEG", "B-POS", "I-POS"]  # tag_set's order: O, then B-/I- per type, sorted


def tagged_rows(n: int, seed: int = 0, *, words: int = 6, positive=POSITIVE, negative=NEGATIVE,
                filler=FILLER) -> list[dict]:
    """`n` rows {"tokens", "tags"} of `words` words, or up to two more (an entity may end past it)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tokens, tags = [], []
        while len(tokens) < words:  # entities never touch: a filler word before each one
            tokens.append(rng.choice(filler))
            tags.append("O")
            kind = rng.random()
            if kind < 0.35:
                half = len(positive) // 2
                tokens += [rng.choice(positive[:half]), rng.choice(positive[half:])]
                tags += ["B-POS", "I-POS"]
            elif kind < 0.7:
                tokens.append(rng.choice(negative))
                tags.append("B-NEG")
        rows.append({"tokens": tokens, "tags": tags})
    return rows


# --------------------------------------------------------------------------- words split into sub-tokens
# In the split BERT's vocab only as "##" continuations, one per entity type: a continuation's tag
# (I- of its word's type, with label_all_tokens) then follows from the sub-token itself, as a word's does.
SUFFIXES = {"POS": "ness", "NEG": "ly", "O": "s"}


def build_split_bert(folder) -> None:
    """A tiny random BERT whose vocab has conftest's words plus the continuations ##ness, ##ly, ##s,
    so "goodness" is two sub-tokens (good ##ness), "badly" two (bad ##ly), "films" two (film ##s)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *(f"##{s}" for s in SUFFIXES.values())]
    (folder / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    tokenizer = BertTokenizerFast(str(folder / "vocab.txt"))
    BertModel(BertConfig(vocab_size=len(vocab), max_position_embeddings=64, **TINY)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def split_rows(n: int, seed: int = 0, *, words: int = 6, share: float = 0.5) -> list[dict]:
    """`tagged_rows` with about `share` of the words given their type's suffix ("good" -> "goodness",
    "bad" -> "badly", "film" -> "films"), tags unchanged: those words are two sub-tokens for
    `build_split_bert`'s tokenizer."""
    rng = random.Random(seed + 7919)
    rows = tagged_rows(n, seed, words=words)
    for row in rows:
        row["tokens"] = [w + SUFFIXES[t[2:] or "O"] if rng.random() < share else w
                         for w, t in zip(row["tokens"], row["tags"])]
    return rows
