"""Dynamic int8 quantization of an exported graph, and the quality gate it must pass.

onnxruntime's dynamic quantization stores the MatMul (and embedding Gather) weights as int8 and
quantizes activations per batch at run time: no calibration data, about 4x smaller weights, and
integer matrix products on CPUs. It can cost accuracy, so `gate` compares the task's metric before
(fp32 ONNX) and after (int8) on the validation data, and an export whose drop exceeds ``max_drop``
points is refused.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nlp_transfer.export.manifest import ExportError

__all__ = ["QUANTIZATION", "GateResult", "quantize_int8", "gate"]

logger = logging.getLogger(__name__)

# Signed int8 weights with one scale per output channel: on MiniLM-L6 fine-tuned on SST-2, per-tensor
# scales cost 1.1 points of validation accuracy, per-channel 0.3, at the same speed (bench/predict_speed.py).
# Full 8-bit range: reduce_range is only for CPUs without VNNI, and costs accuracy.
QUANTIZATION: dict[str, Any] = {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8",
                                "per_channel": True, "reduce_range": False}


@dataclass(frozen=True)
class GateResult:
    """The metric before and after quantization, in points (metric x 100), and the verdict."""

    metric: str
    fp32: float
    int8: float
    max_drop: float
    examples: int

    @property
    def drop(self) -> float:
        return round(self.fp32 - self.int8, 4)

    @property
    def passed(self) -> bool:
        return self.drop <= self.max_drop

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drop": self.drop, "passed": self.passed}


def quantize_int8(source: Path, target: Path) -> None:
    """`source` (fp32 ONNX) -> `target` (int8 weights), after onnxruntime's recommended pre-processing
    (graph optimisation and shape inference, so every MatMul's shapes are known to the quantizer)."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as error:
        raise ExportError("quantize='int8' needs onnxruntime: pip install onnxruntime") from error
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # ONNX shape inference only: onnxruntime's symbolic shape inference cannot finish on the dynamo
        # exporter's graphs (its SDPA decomposition) and then leaves sym_shape_infer_temp.onnx and a
        # <uuid>.data weights file in the current folder; the quantizer needs only the MatMul shapes.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8,
                         per_channel=QUANTIZATION["per_channel"], reduce_range=QUANTIZATION["reduce_range"])
    logger.info("Wrote the int8 graph %s (%.1f MB, fp32 %.1f MB).", target, target.stat().st_size / 1e6,
                source.stat().st_size / 1e6)


def gate(metric: str, fp32_metrics: dict[str, Any], int8_metrics: dict[str, Any], max_drop: float,
         examples: int) -> GateResult:
    """Compare the primary metric; raise `ExportError` naming both numbers when int8 lost more than
    `max_drop` points."""
    points = lambda metrics: round(100 * float(metrics[metric]), 4)  # noqa: E731
    result = GateResult(metric, points(fp32_metrics), points(int8_metrics), max_drop, examples)
    logger.info("int8 quality gate: %s %.2f (fp32) -> %.2f (int8), drop %.2f points, allowed %.2f.", metric,
                result.fp32, result.int8, result.drop, max_drop)
    if not result.passed:
        raise ExportError(
            f"int8 quantization costs too much: validation {metric} {result.fp32:.2f} (fp32 ONNX) -> {result.int8:.2f} "
            f"(int8), a drop of {result.drop:.2f} points, more than max_drop={max_drop:g}. The fp32 export is kept; "
            "use it (leave quantize unset), or allow a larger drop with max_drop=... (--max-drop).")
    return result
