"""`TextClassifier`: a Hugging Face encoder, a strategy and a head, trained on the user's texts.

    >>> clf = TextClassifier.from_pretrained("bert-base-uncased", labels=["neg", "pos"], strategy="lora")
    >>> clf.fit("train.jsonl", epochs=3)
    >>> clf.predict(["a fine film"])
    ['pos']
    >>> clf.save("my-model"); TextClassifier.load("my-model")
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch

from nlp_transfer.backbones.embedded import local_model
from nlp_transfer.backbones.text import NATIVE_HEADS, TextBackbone, check_max_length, load_text_backbone
from nlp_transfer.classifiers.base import Classifier
from nlp_transfer.config.settings import DataConfig
from nlp_transfer.data.batching import PaddingCollator, TokenizedDataset
from nlp_transfer.data.tables import TextColumns, looks_like_data_file, read_table
from nlp_transfer.errors import ConfigError, DataError, ModelLoadError, did_you_mean
from nlp_transfer.modeling.heads import ClassificationHead
from nlp_transfer.storage.card import model_card
from nlp_transfer.storage.model_folder import (
    METADATA_FILE,
    ModelMetadata,
    load_adapter,
    load_tensors,
    read_metadata,
    save_tensors,
    write_folder,
)
from nlp_transfer.strategies import make_strategy
from nlp_transfer.tasks import get_task

__all__ = ["TextClassifier"]

# Measured on SST-2 with frozen MiniLM-L6 (mean pooling, LayerNorm+MLP head): top layer only
# 81.3, mean of the top 4 layers 84.1 dev accuracy.
_FROZEN_POOL_LAYERS = 4

logger = logging.getLogger(__name__)


class TextClassifier(Classifier):
    """Text classification (single- or multi-label), regression and sentence pairs."""

    modality = "text"

    def __init__(self, tokenizer, backbone: TextBackbone, *, base_model: str, max_length: int,
                 pretrained_pooler: torch.nn.Module | None = None, random_init: bool = False,
                 num_layers: int | None = None, **kwargs: Any) -> None:
        self.tokenizer = tokenizer
        self.random_init = random_init
        self.num_layers = num_layers
        self._truncation_warned: set[int] = set()
        self._pretrained_pooler = pretrained_pooler
        self.base_model = base_model
        self.uses_text_pair = False
        super().__init__(backbone, **kwargs)
        self.data_config = dataclasses.replace(self.data_config, max_length=max_length)

    @property
    def max_length(self) -> int:
        """Longer texts are truncated to this many tokens (a data setting, so `fit` can change it)."""
        return self.data_config.max_length

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        labels: list[Any] | None = None,
        num_labels: int | None = None,
        task: Literal["single_label", "multi_label", "regression"] | None = None,
        strategy: Literal["feature_extraction", "partial", "full", "lora", "gradual"] | None = None,
        pooling: Literal["auto", "cls", "mean"] = "auto",
        pool_layers: int | None = None,
        head: Literal["auto", "linear", "mlp"] = "auto",
        dropout: float | None = None,
        threshold: float | None = None,
        max_length: int | None = None,
        seed: int = 42,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        random_init: bool = False,
        num_layers: int | None = None,
        **strategy_options: Any,
    ) -> TextClassifier:
        """Load an encoder (local folder, or Hub id when online), add a head, apply the strategy.

        `strategy_options` are the strategy's settings, e.g. ``unfreeze_last=2`` or ``r=16``. Unset
        settings take their defaults: task single_label, strategy feature_extraction, dropout 0.1,
        threshold 0.5, max_length 128.

        A folder written by `save` (or a Hub repo nlp_transfer pushed) loads with its labels, head,
        strategy and settings. Given a strategy or its options, it continues from the saved weights
        with that strategy (a fine-tuned model trained further with LoRA); `max_length`, `threshold`
        and `dropout` apply too; settings the trained head depends on (labels, task, pooling, head,
        pool_layers, num_layers) must match the saved ones or be left unset.

        Defaults (see README, "How defaults are chosen"): `pooling` is the checkpoint's own (mean
        for sentence-transformers models, CLS otherwise); with a frozen encoder the features average
        the top 4 layers (`pool_layers`) and the head is a normalised MLP, otherwise features come
        from the top layer and the head has the architecture's own shape.

        ``random_init=True`` keeps the architecture and tokenizer but starts from random weights
        (seeded): the from-scratch control that `compare` measures transfer against.
        ``num_layers=N`` keeps only the encoder's first N layers (pretrained weights and all).
        """
        name_or_path = str(name_or_path)
        saved = Path(name_or_path) if (Path(name_or_path) / METADATA_FILE).is_file() else None
        if saved is None and local_model(name_or_path) is None:
            from nlp_transfer.storage.hub import download_if_ours

            saved = download_if_ours(name_or_path)  # a model nlp_transfer pushed: labels, head, strategy and all
        if saved is not None:
            clf = cls.load(saved, trust_remote_code=trust_remote_code)
            clf._continue_with(name_or_path, {
                "labels": (labels, clf.labels), "num_labels": (num_labels, clf._num_outputs), "task": (task, clf.task.name),
                "pooling": (None if pooling == "auto" else pooling, clf.backbone.pooling),
                "pool_layers": (pool_layers, clf.backbone.pool_layers), "num_layers": (num_layers, clf.num_layers),
                "head": (None if head == "auto" else head, clf.model.head.config.kind),
                "random_init": (random_init or None, clf.random_init)},
                strategy=strategy, strategy_options=strategy_options, threshold=threshold, dropout=dropout)
            if max_length is not None:
                clf.data_config = dataclasses.replace(clf.data_config, max_length=check_max_length(clf.backbone, max_length))
            return clf
        task_def = get_task(task or "single_label")
        strategy_obj = make_strategy(strategy or "feature_extraction", strategy_options)  # checks options before loading anything
        if head not in ("auto", "linear", "mlp"):
            raise ConfigError(f"Unknown head {head!r}: {did_you_mean(head, ['auto', 'linear', 'mlp'])}")
        frozen = strategy_obj.frozen_backbone
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tokenizer, backbone = load_text_backbone(
                name_or_path, pooling=pooling, pool_layers=1 if pool_layers is None else pool_layers,
                trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, random_init=random_init,
                num_layers=num_layers)
        if pool_layers is None and frozen:
            backbone.pool_layers = min(_FROZEN_POOL_LAYERS, len(backbone.blocks()))
        pooler = _detach_pooler(backbone)
        return cls(tokenizer, backbone, base_model=_source_name(name_or_path), max_length=check_max_length(backbone, max_length),
                   pretrained_pooler=None if random_init else pooler, random_init=random_init, num_layers=num_layers,
                   strategy=strategy_obj, task=task_def, labels=labels, num_labels=num_labels,
                   head_options=_default_head(backbone, head, 0.1 if dropout is None else dropout, frozen),
                   threshold=0.5 if threshold is None else threshold, seed=seed)

    # ----------------------------------------------------------------- hooks for Classifier
    def _init_head(self, head: ClassificationHead) -> None:
        pooler = self._pretrained_pooler
        native = NATIVE_HEADS.get(self.backbone.model_type)
        if pooler is not None and native is not None and native.init_from_pooler and head.config.kind == "mlp" \
                and self.backbone.pooling == "cls":
            head.dense.load_state_dict(pooler.dense.state_dict())  # BERT's pretrained pooler is its head's first layer

    def _examples(self, source: Any, config: DataConfig, where: str, need_labels: bool) -> TextColumns:
        if isinstance(source, str) and not need_labels and not looks_like_data_file(source):
            source = [source]  # one text for predict
        if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, tuple, list)) for s in source):
            source = [_row_of(item, config) for item in source]
        examples = TextColumns.from_table(read_table(source, where), config, where, need_labels)
        if where != "train" and self.uses_text_pair and examples.pairs is None:
            raise _missing_pair(where, config)
        return examples

    def _check_same_inputs(self, train: TextColumns, eval_data: TextColumns, config: DataConfig) -> None:
        if train.pairs is not None and eval_data.pairs is None:
            raise _missing_pair("eval_data", config)

    def _adopt_inputs(self, train: TextColumns) -> None:
        self.uses_text_pair = train.pairs is not None

    def _check_data_config(self, config: DataConfig) -> DataConfig:
        length = check_max_length(self.backbone, config.max_length)  # past the position table: an error now
        return config if length == config.max_length else dataclasses.replace(config, max_length=length)

    def _dataset(self, examples: TextColumns, targets: torch.Tensor | None,
                 config: DataConfig | None = None) -> TokenizedDataset:
        pairs = examples.pairs if self.uses_text_pair else None
        max_length = (config or self.data_config).max_length
        encodings = self.tokenizer(examples.texts, pairs, truncation=True, max_length=max_length)
        truncated = sum(1 for ids in encodings["input_ids"] if len(ids) >= max_length)
        if truncated and max_length not in self._truncation_warned:  # once per length, not per batch or call
            self._truncation_warned.add(max_length)
            logger.warning("%d of %d texts were truncated to max_length=%d tokens (shown once); raise max_length "
                           "to keep more of each text.", truncated, len(examples), max_length)
        keep = ("input_ids", "attention_mask", "token_type_ids")
        return TokenizedDataset({k: list(v) for k, v in encodings.items() if k in keep}, targets)

    def _collator(self, accelerator) -> PaddingCollator:
        # Tensor cores want multiples of 8; on a CPU extra padding is only extra work.
        multiple = 8 if accelerator.device.type == "cuda" else 1
        return PaddingCollator(self.tokenizer.pad_token_id or 0, multiple)

    # ----------------------------------------------------------------- saving and loading
    def save(self, path: str | Path, *, merge_lora: bool = False) -> Path:
        """Write a self-describing folder (see `saving.py` for the layouts); returns its path.

        Unmerged LoRA saves the adapter and the head; ``merge_lora=True`` folds the adapter into
        plain encoder weights (loadable without peft).
        """
        model = self._require_model()
        encoder, as_adapter, merged = self._encoder_to_save(merge_lora)
        native = self._native_export()
        layout = "adapter" if as_adapter else ("transformers" if native else "encoder")
        metadata = self._metadata(layout, merged=merged)

        def write(folder: Path) -> None:
            self._save_tokenizer(folder)
            head = model.head.state_dict()
            if layout == "adapter":
                encoder.save_pretrained(folder / "adapter")
                _name_the_base(folder / "adapter", self.base_model)
                save_tensors(head, folder / "head.safetensors")
            elif layout == "transformers":
                self._write_transformers(folder, encoder, head, native)
            else:
                encoder.save_pretrained(folder / "encoder")
                save_tensors(head, folder / "head.safetensors")
            (folder / METADATA_FILE).write_text(metadata.to_json(), encoding="utf-8")
            (folder / "README.md").write_text(model_card(metadata), encoding="utf-8")

        from nlp_transfer.training.engine import process_state

        state = process_state()
        if state.is_main_process:  # under several processes, one writer
            write_folder(Path(path), write)
            logger.info("Saved the model to %s (%s layout).", path, layout)
        state.wait_for_everyone()
        return Path(path)

    def _save_tokenizer(self, folder: Path) -> None:
        """The tokenizer, with our max_length as its model_max_length: `pipeline(..., truncation=True)`
        on the saved folder then cuts long texts where `predict` does."""
        saved_length = self.tokenizer.model_max_length
        self.tokenizer.model_max_length = self.max_length
        try:
            self.tokenizer.save_pretrained(folder)
        finally:
            self.tokenizer.model_max_length = saved_length

    @classmethod
    def load(cls, path: str | Path, *, trust_remote_code: bool = False) -> TextClassifier:
        """Rebuild a classifier saved by `save`: labels, head, strategy and weights."""
        folder = Path(path)
        if not folder.is_dir():
            raise ModelLoadError(f"Model folder {str(path)!r} does not exist.")
        meta = read_metadata(folder)
        if meta.modality != "text":
            raise ModelLoadError(f"{str(path)!r} holds a {meta.modality} model; load it with the matching classifier.")
        source = {"transformers": folder, "encoder": folder / "encoder", "adapter": meta.base_model}[meta.layout]
        # Saved encoder configs already hold the truncated depth; an adapter's base is rebuilt from the full model.
        truncate = meta.num_layers if meta.layout == "adapter" else None
        tokenizer, backbone = load_text_backbone(str(source), pooling=meta.pooling, pool_layers=meta.pool_layers,
                                                 trust_remote_code=trust_remote_code, tokenizer_path=str(folder),
                                                 expect_extra_weights=True, num_layers=truncate)
        _detach_pooler(backbone)
        if meta.layout == "adapter":
            backbone.encoder = load_adapter(backbone.encoder, folder / "adapter")
        strategy = make_strategy(meta.strategy["name"], meta.strategy.get("options"))
        head_options = {k: v for k, v in meta.head.items() if k not in ("in_features", "num_outputs")}
        clf = cls(tokenizer, backbone, base_model=meta.base_model, max_length=meta.max_length or 128, strategy=strategy,
                  task=get_task(meta.task), labels=meta.labels, num_labels=meta.num_outputs if meta.labels is None else None,
                  head_options=head_options, threshold=meta.threshold, seed=0,
                  random_init=bool(meta.strategy.get("random_init")), num_layers=meta.num_layers,
                  apply_strategy=not meta.strategy.get("merged"))
        clf._adapter_base_in_memory = bool(meta.strategy.get("merged"))  # merged LoRA: plain weights, no adapter base
        clf.target_scale = tuple(meta.target_scale) if meta.target_scale else None
        clf._load_head(folder, meta)
        clf.uses_text_pair = meta.uses_text_pair
        clf.data_config = DataConfig(**{"max_length": meta.max_length or 128, **(meta.data or {})})
        clf.metrics = meta.metrics
        return clf

    def _native_export(self):
        """The architecture's own head layout, when this model's head matches it (else None)."""
        native = NATIVE_HEADS.get(self.backbone.model_type)
        head = self.model.head.config
        if (native and self.backbone.pooling == "cls" and self.backbone.pool_layers == 1 and head.kind == "mlp"
                and head.activation == native.activation and not head.normalize):
            return native
        return None

    def _write_transformers(self, folder: Path, encoder, head: dict[str, torch.Tensor], native) -> None:
        prefix = encoder.base_model_prefix
        tensors = {f"{prefix}.{k}": v for k, v in encoder.state_dict().items()}
        for ours, theirs in (("dense", native.dense_key), ("out", native.out_key)):
            tensors[f"{theirs}.weight"] = head[f"{ours}.weight"]
            tensors[f"{theirs}.bias"] = head[f"{ours}.bias"]
        out = native.out_key
        tensors[f"{out}.weight"], tensors[f"{out}.bias"] = self._output_layer_in_user_units(tensors[f"{out}.weight"],
                                                                                            tensors[f"{out}.bias"])
        save_tensors(tensors, folder / "model.safetensors")
        config = copy.deepcopy(encoder.config)
        config.architectures = [native.architecture]
        names = [str(label) for label in self.labels] if self.labels is not None else ["score"]
        config.id2label = dict(enumerate(names))
        config.label2id = {name: i for i, name in enumerate(names)}
        config.problem_type = self.task.hf_problem_type
        config.save_pretrained(folder)

    def _load_head(self, folder: Path, meta: ModelMetadata) -> None:
        if meta.layout == "transformers":
            native = NATIVE_HEADS[meta.model_type]
            tensors = load_tensors(folder / "model.safetensors")
            state = {f"{ours}.{kind}": tensors[f"{theirs}.{kind}"] for ours, theirs in
                     (("dense", native.dense_key), ("out", native.out_key)) for kind in ("weight", "bias")}
            state["out.weight"], state["out.bias"] = self._output_layer_standardised(state["out.weight"], state["out.bias"])
        else:
            state = load_tensors(folder / "head.safetensors")
        self._set_head_weights(state, folder)

    def _metadata(self, layout: str, merged: bool) -> ModelMetadata:
        from nlp_transfer import __version__

        strategy = self._strategy_record(merged)
        return ModelMetadata(
            modality="text", layout=layout, base_model=self.base_model, model_type=self.backbone.model_type,
            task=self.task.name, labels=self.labels, num_outputs=self._num_outputs, threshold=self.threshold,
            pooling=self.backbone.pooling, pool_layers=self.backbone.pool_layers, head=self.model.head.config.to_dict(), strategy=strategy,
            num_layers=self.num_layers, target_scale=list(self.target_scale) if self.target_scale else None,
            max_length=self.max_length, uses_text_pair=self.uses_text_pair, data=asdict(self.data_config),
            training=asdict(self.training) if self.training else None, metrics=self.metrics,
            parameters=self.parameter_summary(), library_version=__version__)


def _missing_pair(where: str, config: DataConfig) -> DataError:
    return DataError(
        f"{where}: the model is trained on sentence pairs, but there is no {config.text_pair_column!r} column. "
        "Give both texts (a column, or (text, text_pair) tuples)."
    )


def _row_of(item: Any, config: DataConfig) -> dict[str, Any]:
    """A bare text or a (text, text_pair) tuple as a row with the configured column names."""
    if isinstance(item, str):
        return {config.text_column: item}
    if len(item) != 2:
        raise DataError(f"A sentence pair must be (text, text_pair); got {len(item)} items: {item!r}.")
    return {config.text_column: item[0], config.text_pair_column or "text_pair": item[1]}


def _name_the_base(adapter_folder: Path, base_model: str) -> None:
    """peft records the folder the base was loaded from; record its Hub id where there is one, so
    the adapter config makes sense on another machine."""
    import json

    config_file = adapter_folder / "adapter_config.json"
    if Path(base_model).exists() or not config_file.is_file():
        return
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_model
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")


def _detach_pooler(backbone: TextBackbone):
    """Take BERT-style pooler layers out of the encoder: an unused trainable layer breaks DDP, and
    the head owns pooling. Returns the pooler (its weights may seed the head)."""
    base = backbone.base_encoder
    pooler = getattr(base, "pooler", None)
    if pooler is not None:
        base.pooler = None
    return pooler


def _default_head(backbone: TextBackbone, head: str, dropout: float, frozen: bool) -> dict[str, Any]:
    """Frozen encoder: a LayerNorm + GELU MLP (the head is all the capacity there is). Otherwise the
    architecture's own head shape on CLS features, and a linear head on mean-pooled features."""
    if frozen:
        return {"kind": "mlp" if head == "auto" else head, "activation": "gelu", "dropout": dropout, "normalize": True}
    native = NATIVE_HEADS.get(backbone.model_type)
    if head == "auto":
        head = "mlp" if backbone.pooling == "cls" else "linear"
    return {"kind": head, "activation": native.activation if native else "tanh", "dropout": dropout}


def _source_name(name_or_path: str) -> str:
    path = Path(name_or_path)
    return str(path.resolve()) if path.is_dir() else name_or_path

