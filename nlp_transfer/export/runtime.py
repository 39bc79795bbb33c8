"""`OnnxClassifier`: an exported classifier run by onnxruntime, with the prediction API of ours.

    >>> clf = OnnxClassifier.load("exports/sst2")             # int8 when exported, else fp32
    >>> OnnxClassifier.load("exports/sst2", precision="fp32")
    >>> clf.predict(["a fine film"]), clf.predict_proba(["a fine film"])
    >>> nlp_transfer.api.predict("exports/sst2", "new.jsonl")   # load_model picks this class

No torch model, no peft, no accelerate at prediction time: the tokenizer and one ONNX session
(CPU provider). Inputs are what `TextClassifier` takes: texts, (text, pair) tuples, row dicts or a
data source; batches are sorted by length, as in `TextClassifier.predict`, so little is padding.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nlp_transfer.config.settings import DataConfig, build
from nlp_transfer.data.batching import PaddingCollator, SortedBatchSampler, TokenizedDataset
from nlp_transfer.data.tables import TextColumns, looks_like_data_file, read_table
from nlp_transfer.errors import ConfigError, ModelLoadError, NLPTransferError
from nlp_transfer.export.manifest import ExportManifest, read_manifest
from nlp_transfer.tasks import Task, get_task

__all__ = ["OnnxClassifier", "Precision"]

logger = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "int8"]


class OnnxClassifier:
    """A text classifier exported by `Classifier.export`; `predict`, `predict_proba`,
    `predict_with_scores` and `evaluate` behave as `TextClassifier`'s."""

    modality = "text"

    def __init__(self, session, tokenizer, manifest: ExportManifest, *, precision: str, batch_size: int = 32) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.precision = precision  # the graph this session runs: "fp32" or "int8"
        self.task: Task = get_task(manifest.task)
        self.labels = manifest.labels
        self.threshold = manifest.threshold
        self.uses_text_pair = manifest.uses_text_pair
        self.data_config = DataConfig(**{**manifest.data, "max_length": manifest.max_length})
        self.batch_size = batch_size
        self._inputs = list(manifest.inputs)

    @property
    def max_length(self) -> int:
        return self.data_config.max_length

    @classmethod
    def load(cls, path: str | Path, *, precision: Precision = "auto", batch_size: int = 32,
             threads: int | None = None) -> OnnxClassifier:
        """The export in `path`. precision "auto": int8 when the folder has it (it exists only once it
        passed the export's quality gate, and it is the faster graph), else fp32.

        `threads` caps onnxruntime's intra-op threads (default: onnxruntime's, one per core).
        """
        folder = Path(path)
        manifest = read_manifest(folder)
        chosen = _choose_file(folder, manifest, precision)
        return cls.from_graph(folder, folder / manifest.files[chosen], precision=chosen, batch_size=batch_size,
                              threads=threads, manifest=manifest)

    @classmethod
    def from_graph(cls, folder: Path, graph: Path, *, precision: str, batch_size: int = 32, threads: int | None = None,
                   manifest: ExportManifest | None = None) -> OnnxClassifier:
        """The export in `folder` running the graph file `graph` (the export checks a graph before it
        joins the folder)."""
        try:
            import onnxruntime
        except ImportError as error:
            raise ModelLoadError("Running an ONNX export needs onnxruntime: pip install onnxruntime") from error
        from transformers import AutoTokenizer

        options = onnxruntime.SessionOptions()
        # idle worker threads sleep instead of spinning: the same reason the CLI sets OMP_WAIT_POLICY=PASSIVE
        # for torch (README, "Busy machines"); a spinning thread waits on a core another process holds
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        return cls(session, tokenizer, manifest or read_manifest(folder), precision=precision, batch_size=batch_size)

    # ----------------------------------------------------------------- the prediction API
    def predict(self, inputs: Any) -> list[Any]:
        """Labels (single-label), lists of labels (multi-label) or numbers (regression), in input order."""
        return self.predict_with_scores(inputs)[0]

    def predict_proba(self, inputs: Any) -> np.ndarray:
        """Class probabilities [n, num_labels] (softmax; per-label sigmoid for multi-label)."""
        if self.task.name == "regression":
            raise NLPTransferError("predict_proba has no meaning for regression; use predict for the predicted values.")
        return self.predict_with_scores(inputs)[1]

    def predict_with_scores(self, inputs: Any) -> tuple[list[Any], np.ndarray | None]:
        """`predict` and `predict_proba` from one pass (scores are None for regression)."""
        logits, scores = self.outputs(self._examples(inputs, self.data_config, "inputs", need_labels=False))
        return self._decide(logits), (None if self.task.name == "regression" else scores)

    def evaluate(self, data: Any, **data_settings: Any) -> dict[str, Any]:
        """Loss and metrics on labelled data, computed as `TextClassifier.evaluate` computes them."""
        config = build(DataConfig, {**dataclasses.asdict(self.data_config), **data_settings}, source="evaluate")
        return self.score(self._examples(data, config, "data", need_labels=True), config)

    def score(self, examples: TextColumns, config: DataConfig | None = None) -> dict[str, Any]:
        """`evaluate` on examples already read (the export's quality gate scores one split twice)."""
        import torch

        from nlp_transfer.training.calibration import calibration_metrics
        from nlp_transfer.training.metrics import compute_metrics

        label2id = {label: i for i, label in enumerate(self.labels)} if self.labels is not None else None
        targets = self.task.encode(examples.labels, label2id, "data").numpy()
        logits, _ = self.outputs(examples, config)
        target_tensor = torch.as_tensor(self._standardised(targets))
        if self.task.name == "single_label":
            target_tensor = target_tensor.long()
        loss = float(self.task.loss(torch.as_tensor(self._standardised(logits)), target_tensor))
        num_labels = 1 if self.labels is None else len(self.labels)
        truth = self.task.targets_for_metrics(targets)
        metrics = compute_metrics(self.task.name, self.task.decide(logits, self.threshold), truth, num_labels=num_labels)
        metrics.update(calibration_metrics(self.task.name, self.task.scores(logits), truth))
        return {"loss": loss, **metrics}

    def outputs(self, examples: TextColumns, config: DataConfig | None = None, *,
                sort_by_length: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(logits, probabilities) of the graph for `examples`, in their order; regression logits in user units.

        ``sort_by_length=False`` batches in input order (the parity check wants padded rows)."""
        dataset = self._dataset(examples, config or self.data_config)
        collate = PaddingCollator(self.tokenizer.pad_token_id or 0)
        logits, scores = [None] * len(dataset), [None] * len(dataset)
        batches = SortedBatchSampler(dataset.lengths, self.batch_size) if sort_by_length else \
            [list(range(i, min(i + self.batch_size, len(dataset)))) for i in range(0, len(dataset), self.batch_size)]
        for rows in batches:
            batch = collate([dataset[i] for i in rows])
            feed = {name: batch[name].numpy() for name in self._inputs}
            batch_logits, batch_scores = self.session.run(["logits", "probabilities"], feed)
            for position, row in enumerate(rows):
                logits[row], scores[row] = batch_logits[position], batch_scores[position]
        if not logits:
            raise NLPTransferError("There is nothing to predict: the inputs hold no examples.")
        return np.stack(logits), np.stack(scores)

    # ----------------------------------------------------------------- inputs (as TextClassifier reads them)
    def _examples(self, source: Any, config: DataConfig, where: str, need_labels: bool) -> TextColumns:
        from nlp_transfer.classifiers.text import _missing_pair, _row_of

        if isinstance(source, str) and not need_labels and not looks_like_data_file(source):
            source = [source]
        if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, tuple, list)) for s in source):
            source = [_row_of(item, config) for item in source]
        examples = TextColumns.from_table(read_table(source, where), config, where, need_labels)
        if self.uses_text_pair and examples.pairs is None:
            raise _missing_pair(where, config)
        return examples

    def _dataset(self, examples: TextColumns, config: DataConfig) -> TokenizedDataset:
        pairs = examples.pairs if self.uses_text_pair else None
        encodings = self.tokenizer(examples.texts, pairs, truncation=True, max_length=config.max_length)
        return TokenizedDataset({name: list(encodings[name]) for name in self._inputs}, None)

    def _decide(self, logits: np.ndarray) -> list[Any]:
        from nlp_transfer.tasks import predicted_labels

        return predicted_labels(self.task, logits, self.threshold, self.labels)

    def _standardised(self, values: np.ndarray) -> np.ndarray:
        scale = self.manifest.target_scale
        if self.task.name != "regression" or not scale:
            return values
        return (values - scale[0]) / scale[1]

    def __repr__(self) -> str:
        return f"OnnxClassifier(task={self.task.name!r}, labels={self.labels!r}, precision={self.precision!r})"


def _choose_file(folder: Path, manifest: ExportManifest, precision: str) -> str:
    available = [name for name, file in manifest.files.items() if (folder / file).is_file()]
    if precision not in ("auto", "fp32", "int8"):
        raise ConfigError(f"precision={precision!r}: choose 'auto', 'fp32' or 'int8'.")
    if not available:
        raise ModelLoadError(f"{str(folder)!r} lists {sorted(manifest.files.values())} but none of them is there; "
                             "export the model again.")
    if precision == "auto":
        return "int8" if "int8" in available else available[0]
    if precision not in available:
        hint = " Export with quantize='int8' (--quantize int8) to add it." if precision == "int8" else ""
        raise ModelLoadError(f"{str(folder)!r} has no {precision} graph (it has: {', '.join(available)}).{hint}")
    return precision
