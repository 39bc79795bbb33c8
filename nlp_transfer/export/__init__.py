"""Export a trained text classifier to ONNX, check it, optionally quantize it, and serve it.

| module | holds |
|---|---|
| `graph` | the classifier as one ONNX graph (encoder, LoRA merged, pooling, head, softmax/sigmoid) |
| `parity` | the PyTorch-vs-ONNX comparison every export must pass |
| `quantize` | dynamic int8 quantization and its quality gate |
| `folder` | `export_classifier`: writes and checks the export folder |
| `manifest` | `onnx_config.json`, the file that marks and describes an export |
| `card` | the export's README.md |
| `runtime` | `OnnxClassifier`: onnxruntime behind our prediction API |

    >>> clf.export("exports/sst2", quantize="int8", validation="dev.jsonl")
    >>> OnnxClassifier.load("exports/sst2").predict(["a fine film"])

Names resolve on first use, so importing this package loads neither torch nor onnxruntime.
"""

from __future__ import annotations

from typing import Any

from nlp_transfer.export.manifest import ExportError, is_onnx_export

__all__ = ["ExportError", "ExportResult", "OnnxClassifier", "export_classifier", "is_onnx_export"]

_LAZY = {"OnnxClassifier": "nlp_transfer.export.runtime", "ExportResult": "nlp_transfer.export.folder",
         "export_classifier": "nlp_transfer.export.folder"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nlp_transfer.export' has no attribute {name!r}")
