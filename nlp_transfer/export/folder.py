"""`export_classifier`: a trained classifier -> a folder onnxruntime serves, checked as it is written.

    exports/sst2/
      model.onnx          fp32 graph: input_ids, attention_mask[, token_type_ids] -> logits, probabilities
      model_int8.onnx     with quantize="int8", once it passed the quality gate
      tokenizer files     as the classifier saves them (model_max_length = its max_length)
      onnx_config.json    task, labels, threshold, strategy, inputs, parity, gate, versions
      README.md           the card: what it is, the checks' numbers, how to run it

The fp32 folder is written through a staging folder, so a failed export (parity refused, a crash)
leaves nothing half-written; int8 is added afterwards, so a refused int8 leaves the fp32 export intact.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from nlp_transfer.errors import ConfigError
from nlp_transfer.export.manifest import (
    FP32_FILE,
    INT8_FILE,
    MANIFEST_FILE,
    ExportError,
    ExportManifest,
    is_onnx_export,
)
from nlp_transfer.export.parity import TOLERANCE, Parity, measure_parity, parity_examples
from nlp_transfer.export.quantize import QUANTIZATION, GateResult, gate, quantize_int8

__all__ = ["ExportResult", "export_classifier", "export_run", "SUPPORTED_TASKS"]

logger = logging.getLogger(__name__)

SUPPORTED_TASKS = ("single_label", "multi_label", "regression")
_VERSIONED = ("nlp-transfer", "torch", "transformers", "peft", "onnx", "onnxscript", "onnxruntime")


@dataclass(frozen=True)
class ExportResult:
    """What `export` wrote and measured."""

    path: Path
    files: dict[str, str]
    parity: Parity
    metrics: dict[str, Any] | None = None  # fp32 ONNX on the validation data
    gate: GateResult | None = None  # int8 before/after, when quantized


def export_classifier(clf, output_dir: str | Path, *, format: Literal["onnx"] = "onnx",
                      quantize: Literal["int8"] | None = None, max_drop: float = 1.0, validation: Any = None,
                      allow_mismatch: bool = False) -> ExportResult:
    """Export `clf` (see `TextClassifier.export` for the arguments); returns the checks' numbers."""
    target = Path(output_dir)
    _check_request(clf, target, format, quantize, max_drop, validation)
    valid = _validation_examples(clf, validation)
    from nlp_transfer.storage.atomic import staged_folder

    with staged_folder(target) as staging:
        manifest, onnx = _write_fp32(clf, staging)
        parity = _check_parity(clf, onnx, valid, allow_mismatch)
        manifest.parity = dataclasses.asdict(parity)
        metrics = onnx.score(valid) if valid is not None else None
        manifest.metrics = metrics
        _write_texts(staging, manifest)
        del onnx  # close the session before the staged folder moves: Windows cannot move an open file
    result = ExportResult(target, dict(manifest.files), parity, metrics)
    if quantize == "int8":
        result = _add_int8(target, manifest, result, valid, max_drop)
    logger.info("Exported to %s: %s.", target, ", ".join(result.files.values()))
    return result


def export_run(run_or_model: str | Path, output_dir: str | Path, *, quantize: Literal["int8"] | None = None,
               max_drop: float = 1.0, validation: Any = None, allow_mismatch: bool = False) -> ExportResult:
    """Export the model of a run folder (or a saved model folder); what `nlp-transfer export` calls.

    Without `validation`, a run folder's own validation split (``data.validation`` in its
    config.yaml) is used, so the parity check and the int8 gate run on the data the run chose on.
    """
    from nlp_transfer.api import load_model

    if is_onnx_export(run_or_model):
        raise ConfigError(f"{str(run_or_model)!r} is already an ONNX export; export the run or model folder it "
                          "came from.")
    clf = load_model(run_or_model)
    if validation is None:
        validation = run_validation(Path(run_or_model))
        if validation is not None:
            logger.info("Checking the export on the run's validation split: %s.", validation)
    return export_classifier(clf, output_dir, quantize=quantize, max_drop=max_drop, validation=validation,
                             allow_mismatch=allow_mismatch)


def run_validation(run: Path) -> Any:
    """The validation data a run folder's config.yaml names (a file or a dataset split), else None."""
    if not (run / "config.yaml").is_file():
        return None
    from nlp_transfer.config.run import load_config
    from nlp_transfer.data.sources import _load  # the one place a data section's split becomes data

    from nlp_transfer.errors import DataError

    data = load_config(run / "config.yaml").data
    if data.validation is None:
        return None
    try:
        return _load(data, data.validation, "data.validation")
    except DataError as error:  # moved since the run: the export can still go ahead on the built-in sample
        logger.warning("The run's validation data cannot be read (%s); pass it with validation= (--data).", error)
        return None


def _check_request(clf, target: Path, format: str, quantize: str | None, max_drop: float, validation: Any) -> None:
    if format != "onnx":
        raise ConfigError(f"format={format!r}: export writes 'onnx' only so far.")
    if quantize not in (None, "int8"):
        raise ConfigError(f"quantize={quantize!r}: choose 'int8' or leave it unset (fp32 only).")
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)):
        raise ConfigError(f"max_drop={max_drop!r}: give the largest metric drop int8 may cost, in points (e.g. 1.0).")
    if clf.modality != "text" or clf.task.name not in SUPPORTED_TASKS:
        kind = "an image classifier" if clf.modality != "text" else f"a {clf.task.name} model"
        raise ExportError(f"Cannot export {kind}: export covers text classification so far (single-label, "
                          "multi-label, regression, sentence pairs). Save it with clf.save(path) instead.")
    if clf.model is None or (clf.labels is None and clf.task.name != "regression"):
        raise ExportError("The model has no trained head yet; call fit (or load a saved model) before export.")
    if quantize and validation is None:
        raise ExportError("quantize='int8' needs validation data: the quality gate measures the metric before and "
                          "after quantization. Pass validation=... (CLI: --data VALID_FILE).")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"The export folder {str(target)!r} is a file; choose another --output.")
    if target.is_dir() and any(target.iterdir()) and not is_onnx_export(target):
        raise ConfigError(f"{str(target)!r} already holds files and is not an earlier ONNX export, so export will not "
                          "replace it; choose an empty or new folder.")


def _validation_examples(clf, validation: Any):
    if validation is None:
        return None
    if isinstance(validation, str):
        from nlp_transfer.data.sources import resolve_data

        validation = resolve_data(validation, "validation")
    return clf._examples(validation, clf.data_config, "validation", need_labels=True)


def _write_fp32(clf, folder: Path):
    from nlp_transfer.export.graph import write_graph
    from nlp_transfer.export.runtime import OnnxClassifier

    graph = write_graph(clf, folder / FP32_FILE)
    clf._write_preprocessing(folder)  # the tokenizer, cut at the classifier's max_length
    manifest = ExportManifest(
        task=clf.task.name, labels=clf.labels, threshold=clf.threshold, inputs=graph["inputs"],
        max_length=clf.max_length, uses_text_pair=clf.uses_text_pair, data=dataclasses.asdict(clf.data_config),
        # a LoRA model's graph holds plain weights, the adapter merged in
        strategy=clf._strategy_record(merged=clf.strategy.name == "lora"), base_model=clf.base_model,
        model_type=clf.backbone.model_type, opset=graph["opset"], exporter=graph["exporter"],
        files={"fp32": FP32_FILE}, target_scale=list(clf.target_scale) if clf.target_scale else None,
        versions=_versions())
    (folder / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
    return manifest, OnnxClassifier.from_graph(folder, folder / FP32_FILE, precision="fp32", manifest=manifest,
                                               batch_size=8)  # small batches: padded rows beside long ones


def _check_parity(clf, onnx, valid, allow_mismatch: bool) -> Parity:
    examples, source = parity_examples(valid, clf.uses_text_pair)
    theirs = onnx.outputs(examples, sort_by_length=False)[1]
    ours = clf.task.scores(clf._user_units(clf._logits(clf._dataset(examples, None))[0]))
    scale = clf.target_scale[1] if clf.task.name == "regression" and clf.target_scale else 1.0
    parity = measure_parity(ours, theirs, len(examples), source, scale)
    if not parity.passed:
        what = "values (in units of the targets' spread)" if clf.task.name == "regression" else "probabilities"
        message = (f"The ONNX graph does not match the PyTorch model: max |difference| of the {what} is "
                   f"{parity.max_abs_diff:.3g} on {parity.examples} examples ({source}), above the tolerance "
                   f"{TOLERANCE:g}.")
        if not allow_mismatch:
            raise ExportError(f"{message} Nothing was written. Report it with the model type "
                              f"({clf.backbone.model_type}); allow_mismatch=True writes the export anyway.")
        logger.warning("%s Written anyway (allow_mismatch=True).", message)
    return parity


def _add_int8(target: Path, manifest: ExportManifest, result: ExportResult, valid, max_drop: float) -> ExportResult:
    from nlp_transfer.export.runtime import OnnxClassifier
    from nlp_transfer.storage.atomic import staged_file
    from nlp_transfer.training.metrics import PRIMARY_METRIC

    with staged_file(target / INT8_FILE) as staging:
        quantize_int8(target / FP32_FILE, staging)
        int8 = OnnxClassifier.from_graph(target, staging, precision="int8", manifest=manifest)
        verdict = gate(PRIMARY_METRIC[manifest.task], result.metrics, int8.score(valid), max_drop, len(valid))
        del int8
    manifest.files["int8"] = INT8_FILE
    manifest.quantization = {**QUANTIZATION, **verdict.to_dict()}
    _write_texts(target, manifest)
    return dataclasses.replace(result, files=dict(manifest.files), gate=verdict)


def _write_texts(folder: Path, manifest: ExportManifest) -> None:
    from nlp_transfer.export.card import export_card
    from nlp_transfer.storage.atomic import staged_file

    for name, text in ((MANIFEST_FILE, manifest.to_json()), ("README.md", export_card(manifest, folder))):
        with staged_file(folder / name) as staging:
            staging.write_text(text, encoding="utf-8")


def _versions() -> dict[str, str]:
    found = {}
    for package in _VERSIONED:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found
