"""`onnx_config.json`: what an ONNX export is (task, labels, inputs, files) and how it was checked.

Written beside the graphs by `folder.py`, read by `OnnxClassifier.load`; it is the one file that
marks a folder as an ONNX export (`is_onnx_export`), so `nlp_transfer.api.load_model` can tell it
from a PyTorch model folder without importing onnxruntime.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nlp_transfer.errors import ModelLoadError, NLPTransferError

__all__ = ["MANIFEST_FILE", "FP32_FILE", "INT8_FILE", "ExportError", "ExportManifest", "read_manifest",
           "is_onnx_export"]

MANIFEST_FILE = "onnx_config.json"
FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
FORMAT_VERSION = 1


class ExportError(NLPTransferError):
    """An export that cannot be made, or whose result failed a check (parity, quality gate)."""


@dataclass
class ExportManifest:
    """Everything `OnnxClassifier` needs besides the graph and the tokenizer, and the export's checks."""

    task: str
    labels: list[Any] | None
    threshold: float
    inputs: list[str]  # the graph's inputs, in order: input_ids, attention_mask[, token_type_ids]
    max_length: int
    uses_text_pair: bool
    data: dict[str, Any]  # the classifier's DataConfig (columns), so predict reads the same files
    strategy: dict[str, Any]
    base_model: str
    model_type: str
    opset: int
    exporter: str
    files: dict[str, str]  # precision -> graph file ("fp32" always; "int8" once the gate passed)
    # regression: [mean, std] of the training targets. The graph already answers in the user's units;
    # this only lets `evaluate` report the loss training minimised (on standardised targets).
    target_scale: list[float] | None = None
    parity: dict[str, Any] | None = None  # max |p_onnx - p_torch| on which examples, and the tolerance
    quantization: dict[str, Any] | None = None  # int8: settings, metric before and after, the gate
    metrics: dict[str, Any] | None = None  # fp32 ONNX metrics on the validation data, when given
    versions: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


def is_onnx_export(path: str | Path) -> bool:
    """True for a folder `Classifier.export` wrote."""
    return (Path(path) / MANIFEST_FILE).is_file()


def read_manifest(folder: Path) -> ExportManifest:
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise ModelLoadError(f"{str(folder)!r} has no {MANIFEST_FILE}, so it is not an ONNX export of nlp_transfer. "
                             "Export a model with clf.export(folder) or `nlp-transfer export RUN --output folder`.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path} is damaged ({error}); export the model again.") from error
    known = {f.name for f in fields(ExportManifest)}
    try:
        return ExportManifest(**{k: v for k, v in raw.items() if k in known})
    except TypeError as error:
        raise ModelLoadError(f"{path} lacks required entries ({error}); export the model again.") from error
