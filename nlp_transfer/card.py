"""The model card (README.md) written with every run: what the model is, how well it did, how to use it.

The YAML header is built by `huggingface_hub.ModelCardData`, so the Hub reads it as it reads any
model card (base model, pipeline, tags, datasets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .run_config import RunConfig

__all__ = ["model_card"]

_STRATEGY_WORDS = {
    "feature_extraction": "the encoder frozen; only a new head was trained on its pooled features",
    "partial": "the top {unfreeze_last} encoder layers and a new head trained; the rest frozen",
    "full": "every weight trained",
    "lora": "LoRA adapters (r={r}, alpha={lora_alpha}) trained in the encoder, with a new head; the base weights frozen",
}
_PIPELINE = {"single_label": "text-classification", "multi_label": "text-classification", "regression": "text-classification"}
_SHOWN_METRICS = ("accuracy", "f1_macro", "f1_micro", "matthews_correlation", "pearsonr", "spearmanr", "mse", "loss")


def model_card(config: RunConfig, labels: list[Any] | None, final: dict[str, dict[str, Any]],
               environment: dict[str, Any], layout: str) -> str:
    """Markdown with a Hub-readable YAML header, for the run folder (and for a later push)."""
    from huggingface_hub import ModelCardData

    from . import __version__

    model, strategy = config.model, config.strategy
    base = None if model.random_init or _is_local(model.name_or_path) else model.name_or_path
    hub_dataset = config.data.dataset if config.data.dataset and "/" in config.data.dataset else None
    header = ModelCardData(
        library_name="nlp-transfer", base_model=base, pipeline_tag=_PIPELINE[model.task],
        tags=["nlp-transfer", f"strategy-{strategy.name}", model.task.replace("_", "-")],
        datasets=[hub_dataset] if hub_dataset else None,
    ).to_yaml()
    origin = "randomly initialised weights (trained from scratch)" if model.random_init else f"`{model.name_or_path}`"
    how = _STRATEGY_WORDS[strategy.name].format(**strategy.options())
    lines = [
        "---", header, "---", "",
        f"# {config.run.name}", "",
        f"A {model.task.replace('_', '-')} text classifier trained with "
        f"nlp_transfer {__version__} from {origin}, strategy **{strategy.name}**: {how}.",
        "", f"Data: {_data_words(config)}.", "",
    ]
    if labels:
        lines += ["## Labels", "", ", ".join(f"`{label}`" for label in labels), ""]
    lines += _results(final)
    lines += _training(config, environment)
    lines += _usage(config, layout)
    return "\n".join(lines)


def _results(final: dict[str, dict[str, Any]]) -> list[str]:
    if not final:
        return []
    names = [m for m in _SHOWN_METRICS if any(m in scores for scores in final.values())]
    lines = ["## Results", "", "| split | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for split, scores in final.items():
        cells = [f"{scores[m]:.4f}" if isinstance(scores.get(m), (int, float)) else "" for m in names]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _training(config: RunConfig, env: dict[str, Any]) -> list[str]:
    train = config.train
    rows = {
        "epochs": train.epochs, "batch size (per device)": train.batch_size,
        "learning rate (encoder / head)": f"{train.learning_rate} / {train.head_learning_rate}",
        "schedule": f"{train.scheduler}, warmup {train.warmup_ratio}", "weight decay": train.weight_decay,
        "max length": config.data.max_length, "precision": train.mixed_precision, "seed": train.seed,
        "processes": env.get("processes"), "device": env.get("device"),
    }
    lines = ["## Training", "", "| setting | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows.items()]
    return [*lines, "", "The full configuration is in `config.yaml` beside this card; "
            "`nlp-transfer train config.yaml` repeats the run.", ""]


def _usage(config: RunConfig, layout: str) -> list[str]:
    lines = ["## Use", "", "```python", "from nlp_transfer import TextClassifier", "",
             'clf = TextClassifier.load("path/to/model")', 'clf.predict(["an example text"])', "```", ""]
    if layout == "transformers":
        lines += ["The weights are in the architecture's own `*ForSequenceClassification` layout, so plain "
                  "transformers loads them too:", "", "```python", "from transformers import pipeline", "",
                  'pipeline("text-classification", model="path/to/model")', "```", ""]
    elif layout == "adapter":
        lines += ["The encoder is a peft LoRA adapter (`adapter/`) over the base model; the head is `head.safetensors`.", ""]
    return lines


def _data_words(config: RunConfig) -> str:
    data = config.data
    if data.dataset:
        where = f"`{data.dataset}`" + (f" ({data.dataset_config})" if data.dataset_config else "")
        return f"{where}, train split `{data.train}`"
    return f"`{Path(data.train).name}`" if data.train else "given in Python"


def _is_local(name_or_path: str) -> bool:
    return Path(name_or_path).exists() or name_or_path.startswith((".", "/", "~"))
