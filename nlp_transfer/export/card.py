"""README.md of an ONNX export: what it is, the numbers of its checks, and how to run it."""

from __future__ import annotations

from pathlib import Path

from nlp_transfer.export.manifest import ExportManifest

__all__ = ["export_card"]


def export_card(manifest: ExportManifest, folder: Path) -> str:
    kind = {"single_label": "text classifier", "multi_label": "multi-label text classifier",
            "regression": "text regressor"}[manifest.task]
    merged = " (merged into the weights)" if manifest.strategy.get("merged") else ""
    strategy = manifest.strategy.get("name", "?") + merged
    lines = [f"# ONNX {kind}", "",
             f"Exported by nlp_transfer from a `{manifest.model_type}` model (base `{manifest.base_model}`, strategy "
             f"{strategy}) with torch.onnx ({manifest.exporter} exporter, opset {manifest.opset}).", "",
             "| file | precision | size |", "|---|---|---|"]
    for precision, file in manifest.files.items():
        size = (folder / file).stat().st_size / 1e6 if (folder / file).is_file() else float("nan")
        lines.append(f"| `{file}` | {precision} | {size:.1f} MB |")
    outputs = {"single_label": "softmax over the labels", "multi_label": "a sigmoid per label",
               "regression": "the predicted value, in the units of the training targets"}[manifest.task]
    lines += ["", f"Inputs: {', '.join(f'`{name}`' for name in manifest.inputs)} (int64, [batch, sequence]; both axes "
              f"dynamic; texts cut at {manifest.max_length} tokens). Outputs: `logits` and `probabilities` "
              f"({outputs}).",
              f"Labels: {manifest.labels if manifest.labels is not None else 'none (regression)'}"
              + (f"; threshold {manifest.threshold}" if manifest.task == "multi_label" else "") + ".", ""]
    lines += _checks(manifest)
    lines += ["## Use", "", "```python", "from nlp_transfer.export import OnnxClassifier", "",
              'clf = OnnxClassifier.load("path/to/this/folder")   # int8 when present; precision="fp32" to choose',
              "clf.predict([\"a text\"]), clf.predict_proba([\"a text\"])", "```", "",
              "or `nlp-transfer predict path/to/this/folder --text \"a text\"`. Without nlp_transfer: tokenize with "
              "`transformers.AutoTokenizer.from_pretrained(folder)` and run the graph with "
              "`onnxruntime.InferenceSession`.", ""]
    if manifest.versions:
        versions = ", ".join(f"{name} {version}" for name, version in manifest.versions.items())
        lines += [f"Versions: {versions}.", ""]
    return "\n".join(lines)


def _checks(manifest: ExportManifest) -> list[str]:
    lines = ["## Checks at export", ""]
    parity = manifest.parity
    if parity:
        lines.append(f"- Parity with the PyTorch model: max |difference| {parity['max_abs_diff']:.2e} on "
                     f"{parity['examples']} examples ({parity['source']}); tolerance {parity['tolerance']:g}.")
    if manifest.metrics:
        shown = {k: v for k, v in manifest.metrics.items() if isinstance(v, float)}
        lines.append("- fp32 ONNX on the validation data: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()) + ".")
    gate = manifest.quantization
    if gate:
        lines += ["", "| int8 quality gate | fp32 | int8 | drop | allowed |", "|---|---|---|---|---|",
                  f"| validation {gate['metric']} (points) | {gate['fp32']:.2f} | {gate['int8']:.2f} | "
                  f"{gate['drop']:.2f} | {gate['max_drop']:g} |", "",
                  f"int8: `quantize_dynamic`, {gate['weight_type']} weights, per_channel={gate['per_channel']}, "
                  f"reduce_range={gate['reduce_range']}, on {gate['examples']} validation examples."]
    return [*lines, ""]
