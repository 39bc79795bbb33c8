"""`TokenClassifier`: a tag per word (named entities, ...), on any encoder, with every strategy.

    >>> clf = TokenClassifier.from_pretrained("bert-base-cased", strategy="full")
    >>> clf.fit("train.conll", eval_data="dev.conll", epochs=3)       # or JSONL with tokens / tags
    >>> clf.predict(["Angela Merkel visited Paris."])
    [[{'entity_group': 'PER', 'word': 'Angela Merkel', 'start': 0, 'end': 13, 'score': 0.98, ...}, ...]]
    >>> clf.save("ner-model")   # a linear head on the top layer: loads in AutoModelForTokenClassification

Words, not sub-tokens, are what is tagged and scored: each word's feature is its first sub-token's
(or the mean of its sub-tokens) and metrics are entity-level on words (seqeval), so a word split in
four sub-tokens counts once (`data/windows.py`). Sentences longer than max_length are read in
overlapping windows; each word is scored by one of them.
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlp_transfer.backbones.words import WordBackbone
from nlp_transfer.classifiers.text import TextClassifier
from nlp_transfer.config.settings import DataConfig
from nlp_transfer.data.windows import (
    TagWindows,
    WordCollator,
    WordFeatureCollator,
    WordFeatureDataset,
    only_owned,
    tag_windows,
)
from nlp_transfer.errors import DataError, NLPTransferError
from nlp_transfer.storage.model_folder import ModelMetadata, load_tensors, save_tensors
from nlp_transfer.tasks import IGNORED

__all__ = ["TokenClassifier", "entities_of"]

logger = logging.getLogger(__name__)

# transformers' *ForTokenClassification of these model types is the encoder plus one Linear named
# `classifier` on each token: our linear head on first sub-tokens of the top layer is that model.
_NATIVE_TOKEN_HEADS = {"bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra", "deberta", "deberta-v2",
                       "mpnet", "albert"}


class TokenClassifier(TextClassifier):
    """Token classification: IOB2 tags per word, trained with any strategy; entities out."""

    tasks = ("token_classification",)
    backbone_class = WordBackbone

    @classmethod
    def from_pretrained(cls, name_or_path, *, model=None, strategy=None, **settings: Any) -> TokenClassifier:
        """As `TextClassifier.from_pretrained`; the task is token_classification (``pooling``: first or mean
        sub-token of each word; ``labels``: the tag set, default the training data's)."""
        if model is None and "task" not in settings:
            settings["task"] = "token_classification"
        return super().from_pretrained(name_or_path, model=model, strategy=strategy, **settings)

    @classmethod
    def _pooling(cls, pooling: str, frozen: bool) -> str:
        """A frozen encoder's words are the mean of their sub-tokens; a fine-tuned one's their first
        sub-token (as transformers' *ForTokenClassification reads them). Chosen on CoNLL-2003
        validation with frozen MiniLM-L6 (bench/conll_ner.py): mean beat first in all three layer
        settings, by 1.4 to 2.4 F1 points (top 4 layers averaged: 81.3 vs 78.9)."""
        return "mean" if pooling == "auto" and frozen else pooling

    # ----------------------------------------------------------------- labels
    def _settle_labels(self, values: list[list[str]], where: str) -> None:
        from nlp_transfer.data.tagging import check_known_tags, tag_set

        found = tag_set(values)
        if found == ["O"]:  # also with the tag set given: nothing here teaches it
            raise DataError(f"{where}: every word is tagged O, so there is no entity to learn. Tag the entities "
                            "(B-TYPE on a first word, I-TYPE on the words after it).")
        if self.labels is not None:
            check_known_tags(values, self.labels, where)
            return
        if self._num_outputs is not None and len(found) != self._num_outputs:
            raise DataError(f"num_labels={self._num_outputs}, but {where} has {len(found)} tags: {found}. Set "
                            f"num_labels={len(found)}, or pass labels=[...] listing every tag.")
        if self.model is None:
            self._build_head(len(found))
            self._num_outputs = len(found)
        self.labels = found

    def _targets(self, values: list[list[str]] | None, where: str) -> list[list[int]] | None:
        from nlp_transfer.data.tagging import check_known_tags

        if values is None:
            return None
        check_known_tags(values, self.labels, where)  # a type the model never saw: an error before any work
        index = self.label2id
        return [[index[tag] for tag in row] for row in values]

    def _continuations(self) -> dict[int, int]:
        """Tag id -> the id a word's later sub-tokens get with label_all_tokens (B-X -> I-X)."""
        index = self.label2id
        return {i: index.get("I-" + tag[2:], i) for tag, i in index.items() if tag.startswith("B-")}

    # ----------------------------------------------------------------- data (hooks for Classifier)
    def _examples(self, source: Any, config: DataConfig, where: str, need_labels: bool):
        from nlp_transfer.data.tagging import TaggedSentences

        if not need_labels and _raw_texts(source):
            texts = [source] if isinstance(source, str) else list(source)
            return TaggedSentences([[word for word, _ in self.split_words(text, where)] for text in texts], None)
        return TaggedSentences.from_source(source, config, where, need_labels)

    def _check_same_inputs(self, train, eval_data, config: DataConfig) -> None:
        """Tagging has no second text."""

    def _adopt_inputs(self, train) -> None:
        self.uses_text_pair = False

    def _dataset(self, examples, targets, config: DataConfig | None = None) -> TagWindows:
        config = config or self.data_config
        return tag_windows(self.tokenizer, examples.tokens, targets, max_length=config.max_length, stride=config.stride)

    def _evaluation_dataset(self, examples, targets, config: DataConfig | None = None) -> TagWindows:
        return only_owned(self._dataset(examples, targets, config))

    def _training_dataset(self, examples, targets, seed: int) -> TagWindows:
        config = self.data_config
        return tag_windows(self.tokenizer, examples.tokens, targets, max_length=config.max_length, stride=config.stride,
                           all_tokens=config.label_all_tokens, continuation=self._continuations())

    def _collator(self, accelerator) -> WordCollator:
        multiple = 8 if accelerator.device.type == "cuda" else 1
        return WordCollator(self.tokenizer.pad_token_id or 0, multiple)

    @staticmethod
    def _cached_dataset(features: torch.Tensor, dataset: TagWindows) -> WordFeatureDataset:
        return WordFeatureDataset(features, dataset)

    @staticmethod
    def _cached_collator() -> WordFeatureCollator:
        return WordFeatureCollator()

    # ----------------------------------------------------------------- scoring
    def _score(self, extra, dataset: TagWindows | None = None):
        """Loss over the scored words, then entity-level precision / recall / F1 and word accuracy
        (seqeval, `compute_token_metrics`) on the sentences the windows came from."""
        from nlp_transfer.training.metrics import compute_token_metrics

        if extra:
            raise NLPTransferError(f"extra_metrics {list(extra)} are not available for token classification; the "
                                   "entity-level and per-type scores are computed already.")

        def score(outputs: list[np.ndarray], targets: list[np.ndarray]) -> dict[str, Any]:
            logits, gold = np.concatenate(outputs), np.concatenate(targets).astype(np.int64)
            scored = gold != IGNORED
            loss = float(torch.nn.functional.cross_entropy(torch.as_tensor(logits[scored]), torch.as_tensor(gold[scored])))
            names = np.asarray(self.labels, dtype=object)
            predicted = [names[rows.argmax(axis=-1)].tolist() for rows in dataset.sentence_outputs(outputs)]
            references = [names[rows.astype(np.int64)].tolist() for rows in dataset.sentence_outputs(targets)]
            return {"loss": loss, **compute_token_metrics(references, predicted)}

        return score

    # ----------------------------------------------------------------- prediction
    def split_words(self, text: str, where: str = "inputs") -> list[tuple[str, tuple[int, int]]]:
        """A raw text's words with their character spans, split as the tokenizer's own pre-tokenizer
        splits it (whitespace and punctuation for BERT), so a `pipeline` on the saved model sees the
        same words. Pass pre-split words to `predict` to choose the words yourself."""
        if not text.strip():
            raise DataError(f"{where}: an empty text has no words to tag; drop it.")
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        pre = backend.pre_tokenizer if backend is not None else None
        pieces = pre.pre_tokenize_str(text) if pre is not None else [(m.group(), m.span()) for m in re.finditer(r"\S+", text)]
        words = []
        for _, (start, end) in pieces:
            piece = text[start:end]
            stripped = piece.lstrip()
            start += len(piece) - len(stripped)
            stripped = stripped.rstrip()
            if stripped:
                words.append((stripped, (start, start + len(stripped))))
        return words

    def predict_proba(self, inputs: Any) -> list[np.ndarray]:
        """Tag probabilities per word: one [words, tags] array per input (softmax at each word's feature)."""
        return [self.task.scores(rows) for rows in self._word_logits(self._inputs(inputs))[1]]

    def predict_tags(self, inputs: Any) -> list[list[str]]:
        """The IOB2 tag of every word, per input (texts are split by `split_words`)."""
        return [[self.labels[i] for i in rows.argmax(axis=-1)] for rows in self._word_logits(self._inputs(inputs))[1]]

    def predict(self, inputs: Any) -> list[list[dict[str, Any]]]:
        """The entities of each input: a text, a list of texts (split by `split_words`), or sentences
        as lists of words (``[["Angela", "Merkel", "visited", "Paris"]]``).

        Each entity is ``{"entity_group", "word", "words", "start", "end", "score"}``: its type, its
        text (``text[start:end]``; for pre-split words, spans in the words joined by single spaces),
        its words, and its score: the mean over its words of the probability of each word's tag, read
        at the word's feature (its first sub-token by default; transformers' "first" aggregation).
        """
        return self.predict_with_scores(inputs)[0]

    def predict_with_scores(self, inputs: Any):
        """The entities (`predict`) and the tag probabilities per word (`predict_proba`) from one pass."""
        parsed = self._inputs(inputs)
        texts, logits = self._word_logits(parsed)
        entities = []
        for (text, spans), rows in zip(texts, logits):
            ids = rows.argmax(axis=-1)
            entities.append(entities_of([self.labels[i] for i in ids], self.task.scores(rows)[np.arange(len(ids)), ids],
                                        text, spans))
        return entities, [self.task.scores(rows) for rows in logits]

    def _inputs(self, inputs: Any) -> list[tuple[str, list[tuple[str, tuple[int, int]]]]]:
        """(text, [(word, span)]) per input: a text, a list of texts, or sentences as lists of words."""
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise DataError("inputs: give a text, a list of texts, or a list of sentences as lists of words.")
        parsed = []
        for i, words in enumerate(inputs):
            if isinstance(words, str):  # a text; pre-split words come as a list of words
                parsed.append((words, self.split_words(words, f"inputs[{i}]")))
                continue
            if not isinstance(words, (list, tuple)) or not words or not all(isinstance(w, str) and w.strip() for w in words):
                raise DataError(f"inputs[{i}]: a sentence must be a non-empty list of non-empty words, got {words!r}.")
            spans, at = [], 0
            for word in words:
                spans.append((word, (at, at + len(word))))
                at += len(word) + 1
            parsed.append((" ".join(words), spans))
        return parsed

    def _word_logits(self, parsed) -> tuple[list[tuple[str, list]], list[np.ndarray]]:
        from nlp_transfer.data.tagging import TaggedSentences

        self._require_model()
        if self.labels is None:
            raise NLPTransferError("The model has no tags yet; call fit first.")
        sentences = TaggedSentences([[word for word, _ in spans] for _, spans in parsed], None)
        dataset = self._evaluation_dataset(sentences, None)
        outputs, _ = self._logits(dataset)
        return [(text, [span for _, span in spans]) for text, spans in parsed], dataset.sentence_outputs(outputs)

    # ----------------------------------------------------------------- saving (hooks for Classifier)
    def _native_export(self):
        """transformers' *ForTokenClassification layout fits a linear head on the top layer's first sub-tokens."""
        head = self.model.head.config
        fits = (self.backbone.model_type in _NATIVE_TOKEN_HEADS and self.backbone.pooling == "first"
                and self.backbone.pool_layers == 1 and head.kind == "linear" and not head.normalize)
        return _token_architecture(self.backbone.model_type) if fits else None

    def _write_transformers(self, folder: Path, encoder, head: dict[str, torch.Tensor], architecture) -> None:
        prefix = encoder.base_model_prefix
        tensors = {f"{prefix}.{k}": v for k, v in encoder.state_dict().items()}
        tensors["classifier.weight"], tensors["classifier.bias"] = head["out.weight"], head["out.bias"]
        save_tensors(tensors, folder / "model.safetensors")
        config = copy.deepcopy(encoder.config)
        config.architectures = [architecture]
        config.id2label = dict(enumerate(self.labels))
        config.label2id = {name: i for i, name in enumerate(self.labels)}
        config.save_pretrained(folder)

    def _saved_head(self, folder: Path, meta: ModelMetadata) -> dict[str, torch.Tensor]:
        if meta.layout != "transformers":
            return load_tensors(folder / "head.safetensors")
        tensors = load_tensors(folder / "model.safetensors")
        return {"out.weight": tensors["classifier.weight"], "out.bias": tensors["classifier.bias"]}

    def _metadata_extras(self) -> dict[str, Any]:
        return {**super()._metadata_extras(), "uses_text_pair": False}


def entities_of(tags: list[str], scores: np.ndarray, text: str, spans: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Entities from IOB2 word tags, as seqeval reads them: B-X starts one; I-X continues an entity of
    type X and starts one after O or another type."""
    found: list[dict[str, Any]] = []
    current: list[int] = []
    kind = None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-")
        continues = prefix == "I" and name == kind
        if current and not continues:
            start, end = spans[current[0]][0], spans[current[-1]][1]
            found.append({"entity_group": kind, "word": text[start:end], "words": [text[a:b] for a, b in
                          (spans[j] for j in current)], "start": start, "end": end,
                          "score": round(float(np.mean([scores[j] for j in current])), 6)})
            current, kind = [], None
        if prefix in ("B", "I") and not continues:
            current, kind = [i], name
        elif continues:
            current.append(i)
    return found


def _token_architecture(model_type: str) -> str | None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES

    return MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES.get(model_type)


def _raw_texts(source: Any) -> bool:
    from nlp_transfer.data.tables import looks_like_data_file

    if isinstance(source, str):
        return not looks_like_data_file(source)
    return isinstance(source, (list, tuple)) and bool(source) and all(isinstance(s, str) for s in source)


