"""The classifier as one ONNX graph: tokens in, `logits` and `probabilities` out.

The graph holds everything between the tokenizer and the answer: the encoder (LoRA merged into its
weights), the pooling, the head and the task's output function (softmax; per-label sigmoid for
multi-label; for regression the value in the user's units). A runtime then needs only the
tokenizer and onnxruntime.
"""

from __future__ import annotations

import copy
import inspect
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["OPSET", "EXPORTER", "graph_inputs", "write_graph"]

logger = logging.getLogger(__name__)

# onnxruntime 1.32 runs opsets up to 23; 18 is the oldest the dynamo exporter translates to natively
# (no down-conversion pass), and every op BERT-style encoders need exists there.
OPSET = 18
# torch's default exporter since 2.9 (torch.export + onnxscript). It exports HF BERT, RoBERTa and
# MiniLM with exact parity, batch and sequence dynamic, so the TorchScript one is not needed.
EXPORTER = "dynamo"


class _Graph(nn.Module):
    """TransferModel -> (logits, probabilities): what the exported graph computes."""

    def __init__(self, model: nn.Module, task: str, inputs: list[str]) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.inputs = inputs

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(**dict(zip(self.inputs, tensors)))["logits"]
        if self.task == "single_label":
            return logits, torch.softmax(logits, dim=-1)
        if self.task == "multi_label":
            return logits, torch.sigmoid(logits)
        return logits, logits[:, 0]


def graph_inputs(clf) -> list[str]:
    """input_ids, attention_mask, and token_type_ids when the tokenizer makes them and the encoder
    reads them (BERT: they tell the two texts of a pair apart; RoBERTa has none)."""
    accepted = set(inspect.signature(clf.backbone.base_encoder.forward).parameters)
    typed = "token_type_ids" in clf.tokenizer.model_input_names and "token_type_ids" in accepted
    return ["input_ids", "attention_mask", *(["token_type_ids"] if typed else [])]


def _plain_copy(clf) -> nn.Module:
    """A CPU fp32 copy of the model with LoRA merged and (regression) the output layer in the user's
    units. A copy, so the user's classifier keeps its adapter, device and dtype."""
    model = copy.deepcopy(clf.model).cpu().float().eval()
    if model.backbone.has_adapters:
        model.backbone.encoder = model.backbone.encoder.merge_and_unload()
    out = model.head.out
    weight, bias = clf._output_layer_in_user_units(out.weight.data, out.bias.data)
    out.weight.data, out.bias.data = weight.clone(), bias.clone()
    return model.requires_grad_(False)


def _example_batch(clf, inputs: list[str]) -> tuple[torch.Tensor, ...]:
    """Two rows of 8 tokens: sizes that differ from each other and from 1, so torch.export keeps both axes symbolic."""
    texts = ["a short text", "x"]
    pairs = ["and its pair", "y"] if clf.uses_text_pair else None
    encoded = clf.tokenizer(texts, pairs, padding="max_length", truncation=True, max_length=min(8, clf.max_length),
                            return_tensors="pt")
    return tuple(encoded[name] for name in inputs)


def write_graph(clf, path: Path) -> dict[str, Any]:
    """Export `clf` to `path` (weights inside the file); returns what the manifest records about it."""
    inputs = graph_inputs(clf)
    graph = _Graph(_plain_copy(clf), clf.task.name, inputs).eval()
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    example = _example_batch(clf, inputs)
    with torch.no_grad(), warnings.catch_warnings():
        # every input shares the two dims; torch says so once per input, which is noise here
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
        torch.onnx.export(graph, example, str(path), input_names=inputs, output_names=["logits", "probabilities"],
                          opset_version=OPSET, dynamo=True, external_data=False, verbose=False,
                          dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in inputs),))
    logger.info("Exported the ONNX graph to %s (opset %d, inputs %s).", path, OPSET, ", ".join(inputs))
    return {"inputs": inputs, "opset": OPSET, "exporter": EXPORTER}
