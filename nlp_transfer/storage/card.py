"""The model card (README.md) of every saved model: what it is, how well it did, how to use it.

Built from the model's own metadata (`nlp_transfer.json`), so a folder saved from Python, a run
folder and a Hub push all carry the same card; a run adds its title, per-split results, dataset
and environment. The YAML header comes from `huggingface_hub.ModelCardData`, so the Hub reads it
as any model card (base model, pipeline, tags, datasets, license, model-index results).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nlp_transfer.backbones.offline_weights import describe as describe_weights
from nlp_transfer.storage.model_folder import ModelMetadata

__all__ = ["model_card"]

# The names compute_metrics returns (metrics.METRIC_NAMES); a card column for a name never computed stays empty.
_SHOWN_METRICS = ("f1", "precision", "recall", "accuracy", "subset_accuracy", "f1_macro", "f1_micro", "mcc", "pearson",
                  "spearman", "mse", "ece", "brier", "loss")
_TRAINING_ROWS = (("epochs", "epochs"), ("batch_size", "batch size (per device)"), ("learning_rate", "learning rate (encoder)"),
                  ("head_learning_rate", "learning rate (head)"), ("scheduler", "schedule"), ("warmup_ratio", "warmup"),
                  ("weight_decay", "weight decay"), ("mixed_precision", "precision"), ("seed", "seed"))


def model_card(meta: ModelMetadata, *, title: str | None = None, repo_id: str | None = None,
               results: dict[str, dict[str, Any]] | None = None, dataset: str | None = None,
               dataset_config: str | None = None, environment: dict[str, Any] | None = None,
               license: str | None = None) -> str:
    """Markdown with a Hub-readable YAML header. `results` maps split -> metrics (default: the
    evaluation kept with the model); `repo_id` makes the usage snippets load from the Hub."""
    vision = meta.modality == "vision"
    kind = "image classifier" if vision else "tagger" if meta.task == "token_classification" else "text classifier"
    title = title or (repo_id.rsplit("/", 1)[-1] if repo_id else f"nlp_transfer {kind}")
    results = results if results is not None else ({"validation": meta.metrics} if meta.metrics else {})
    strategy = meta.strategy
    scratch = bool(strategy.get("random_init"))
    base = None if scratch or _is_local(meta.base_model) else meta.base_model
    lines = ["---", _header(meta, title, base, results, dataset, dataset_config, license), "---", "", f"# {title}", ""]
    origin = "randomly initialised weights (trained from scratch)" if scratch else f"`{meta.base_model}`"
    from nlp_transfer.strategies import STRATEGIES

    how = STRATEGIES[strategy["name"]].card.format(**(strategy.get("options") or {}))
    if vision:  # a CNN has a backbone of stages, not an encoder of layers
        how = how.replace("encoder layers", "stages").replace("encoder", "backbone")
    lines += [f"A {meta.task.replace('_', '-')} {kind} trained with nlp_transfer {meta.library_version} "
              f"from {origin}, strategy **{strategy['name']}**: {how}{' (merged into the encoder weights)' if strategy.get('merged') else ''}."]
    weights = (meta.backbone or {}).get("weights_source")
    if weights and not scratch:
        lines.append(describe_weights(weights))
    if meta.parameters:
        share = 100.0 * meta.parameters["trainable"] / max(meta.parameters["total"], 1)
        lines.append(f"Trainable parameters: {meta.parameters['trainable']:,} of {meta.parameters['total']:,} ({share:.2f}%).")
    if dataset:
        lines.append(f"Data: `{dataset}`{f' ({dataset_config})' if dataset_config else ''}.")
    lines.append("")
    if meta.labels:
        heading = "Tags (IOB2)" if meta.task == "token_classification" else "Labels"
        lines += [f"## {heading}", "", ", ".join(f"`{label}`" for label in meta.labels), ""]
    lines += _results(results) + _calibration(meta) + _per_type(results) + _training(meta, environment) + _usage(meta, repo_id)
    return "\n".join(lines)


def _header(meta: ModelMetadata, title: str, base: str | None, results: dict[str, dict[str, Any]],
            dataset: str | None, dataset_config: str | None, license: str | None) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    hub_dataset = dataset if dataset and "/" in dataset else None
    vision = meta.modality == "vision"
    tagging = meta.task == "token_classification"
    pipeline = "image-classification" if vision else "token-classification" if tagging else "text-classification"
    reported = ("f1", "precision", "recall", "accuracy") if tagging else ("accuracy", "subset_accuracy", "f1_macro", "pearson")
    evals = [EvalResult(task_type=pipeline, dataset_type=hub_dataset or "custom",
                        dataset_name=hub_dataset or dataset or "custom", dataset_config=dataset_config, dataset_split=split,
                        metric_type=metric, metric_value=float(scores[metric]))
             for split, scores in results.items() for metric in reported
             if isinstance(scores.get(metric), (int, float))]
    tags = ["nlp-transfer", f"strategy-{meta.strategy['name']}", meta.task.replace("_", "-")]
    if meta.layout == "adapter":
        tags += ["peft", "lora"]
    # a folder in timm's format is a timm model on the Hub (its loading snippet, its widget)
    library = "timm" if meta.layout in ("timm", "timm-backbone") else "nlp-transfer"
    if vision:
        tags += ["image-classification", "timm"] if library == "nlp-transfer" else ["image-classification"]
    data = ModelCardData(library_name=library, base_model=base, pipeline_tag=pipeline, tags=tags,
                         datasets=[hub_dataset] if hub_dataset else None, license=license,
                         model_name=title if evals else None, eval_results=evals or None)
    return data.to_yaml()


def _results(results: dict[str, dict[str, Any]]) -> list[str]:
    if not results:
        return []
    names = [m for m in _SHOWN_METRICS if any(m in scores for scores in results.values())]
    lines = ["## Results", "", "| split | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for split, scores in results.items():
        cells = [f"{scores[m]:.4f}" if isinstance(scores.get(m), (int, float)) else "" for m in names]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _calibration(meta: ModelMetadata) -> list[str]:
    """One line on temperature scaling, when the fit tried it."""
    fit = meta.temperature_scaling
    if not fit:
        return []
    verdict = ("applied: the probabilities (and the results above) are those of the scaled logits" if fit["applied"]
               else f"not applied ({fit['reason']})")
    line = (f"Temperature scaling: T={fit['temperature']:.3f} fitted on {fit['examples']} validation examples, ECE "
            f"{fit['validation_ece_before']:.4f} -> {fit['validation_ece_after']:.4f}, NLL {fit['validation_nll_before']:.4f} "
            f"-> {fit['validation_nll_after']:.4f}; {verdict}.")
    return [line, ""]


def _per_type(results: dict[str, dict[str, Any]]) -> list[str]:
    """Tagging: entity-level F1 per entity type and split (seqeval), with the number of gold entities."""
    splits = {split: scores["per_type"] for split, scores in results.items() if isinstance(scores.get("per_type"), dict)}
    if not splits:
        return []
    types = sorted({name for per_type in splits.values() for name in per_type})
    lines = ["Entity-level F1 per type (support: entities in the split):", "",
             "| type | " + " | ".join(f"{split} F1 (support)" for split in splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for name in types:
        cells = [f"{per_type[name]['f1']:.4f} ({per_type[name]['support']})" if name in per_type else ""
                 for per_type in splits.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _training(meta: ModelMetadata, environment: dict[str, Any] | None) -> list[str]:
    settings = meta.training or {}
    rows = [(label, settings[key]) for key, label in _TRAINING_ROWS if key in settings]
    if meta.modality == "vision":
        size = ((meta.backbone or {}).get("preprocessing") or {}).get("input_size")
        rows += [("architecture", meta.model_type), ("input size", "x".join(str(v) for v in size[1:]) if size else None),
                 ("head", meta.head.get("kind"))]
    else:
        rows += [("max length", meta.max_length), ("pooling", f"{meta.pooling} (top {meta.pool_layers} layer(s))"),
                 ("head", meta.head.get("kind"))]
    if environment:
        rows += _launch_rows(environment.get("launch"))
        rows += [("processes", environment.get("processes")), ("device", environment.get("device")),
                 ("torch / transformers", f"{environment['packages'].get('torch')} / {environment['packages'].get('transformers')}")]
    lines = ["## Training", "", "| setting | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], ""]
    if environment:
        lines += ["The full configuration is in the run's `config.yaml`; `nlp-transfer train config.yaml` repeats the run.", ""]
    return lines


def _launch_rows(launch: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """How training was distributed, as it ran; and a request that did not run (FSDP asked on CPUs)."""
    if not launch:
        return []
    ran = launch["distributed_type"]
    rows = [("distributed", f"{ran}: {launch['num_processes']} process(es) on {launch['num_machines']} machine(s)")]
    if launch.get("fsdp"):
        fsdp = launch["fsdp"]
        rows.append(("FSDP", f"version {fsdp.get('fsdp_version')}, reshard after forward {fsdp.get('reshard_after_forward')}, "
                             f"wrap {fsdp.get('auto_wrap_policy')}"))
    unmet = [engine for engine in launch.get("requested") or [] if engine != ran]
    if unmet:
        rows.append(("requested but not run", ", ".join(unmet) + f" (trained as {ran})"))
    return rows


def _usage(meta: ModelMetadata, repo_id: str | None) -> list[str]:
    where = repo_id or "path/to/model"
    if meta.modality == "vision":
        return _vision_usage(meta, where, repo_id)
    if meta.task == "token_classification":
        return _tagging_usage(meta, where)
    lines = ["## Use", "", "```python", "from nlp_transfer import TextClassifier", "",
             f'clf = TextClassifier.from_pretrained("{where}")', 'clf.predict(["an example text"])', "```", ""]
    if meta.layout == "transformers":
        lines += ["The weights are in the architecture's own `*ForSequenceClassification` layout, so plain "
                  "transformers loads them too:", "", "```python", "from transformers import pipeline", "",
                  f'pipeline("text-classification", model="{where}", truncation=True)  # cuts at the max_length trained with',
                  "```", ""]
    elif meta.layout == "adapter":
        lines += [f"`adapter/` is a peft LoRA adapter for the encoder `{meta.base_model}` and `head.safetensors` is the "
                  "classification head, so nlp_transfer (or peft plus the head) is needed to use it; "
                  "save or push with `merge_lora=True` for weights that need neither.", ""]
    else:
        lines += ["`encoder/` is a plain transformers encoder folder (`AutoModel`); `head.safetensors` is the head.", ""]
    return lines


def _tagging_usage(meta: ModelMetadata, where: str) -> list[str]:
    lines = ["## Use", "", "```python", "from nlp_transfer import TokenClassifier", "",
             f'ner = TokenClassifier.from_pretrained("{where}")',
             'ner.predict("Angela Merkel visited Paris.")   # entities: type, text, character span, score', "```", ""]
    if meta.layout == "transformers":
        lines += ["The weights are in the architecture's own `*ForTokenClassification` layout, so plain transformers "
                  "loads them too; the \"first\" aggregation reads each word at its first sub-token, as the model "
                  "was trained:", "", "```python", "from transformers import pipeline", "",
                  f'pipeline("token-classification", model="{where}", aggregation_strategy="first")', "```", ""]
    elif meta.layout == "adapter":
        lines += [f"`adapter/` is a peft LoRA adapter for `{meta.base_model}` and `head.safetensors` the tagging head; "
                  "save or push with `merge_lora=True` for weights that need neither.", ""]
    else:
        lines += ["`encoder/` is a plain transformers encoder folder (`AutoModel`); `head.safetensors` is the tagging head "
                  f"({meta.head.get('kind')} on {meta.pooling}-sub-token word features of the top {meta.pool_layers} "
                  "layer(s)).", ""]
    return lines


def _vision_usage(meta: ModelMetadata, where: str, repo_id: str | None) -> list[str]:
    lines = ["## Use", "", "```python", "from nlp_transfer import ImageClassifier", "",
             f'clf = ImageClassifier.from_pretrained("{where}")', 'clf.predict(["photo.jpg"])', "```", ""]
    if meta.layout == "timm":
        n = meta.num_outputs
        load = (f'timm.create_model("hf-hub:{repo_id}", pretrained=True)' if repo_id else
                f'timm.create_model("{meta.model_type}", pretrained=True, num_classes={n},\n'
                f'                          pretrained_cfg_overlay=dict(file="{where}/model.safetensors", num_classes={n}))')
        lines += ["`config.json` and `model.safetensors` are in timm's own format (the head is the architecture's "
                  "classifier), so timm loads the model without nlp_transfer:", "", "```python", "import timm", "",
                  f"model = {load}", "```", ""]
    elif meta.layout == "adapter":
        lines += [f"`adapter/` is a peft LoRA adapter for `{meta.base_model}` and `head.safetensors` the head; "
                  "save or push with `merge_lora=True` for plain timm weights.", ""]
    else:
        lines += ["`model.safetensors` is the timm backbone (timm's format, no classifier); `head.safetensors` is the head.", ""]
    return lines


def _is_local(name_or_path: str) -> bool:
    return Path(name_or_path).exists() or name_or_path.startswith((".", "/", "~"))
