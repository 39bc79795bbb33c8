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
from pathlib import Path
from typing import Any

import torch

from nlp_transfer.backbones.embedded import local_model
from nlp_transfer.backbones.text import NATIVE_HEADS, TextBackbone, check_max_length, load_text_backbone
from nlp_transfer.classifiers.base import Classifier
from nlp_transfer.config.keywords import ModelSettings
from nlp_transfer.config.settings import DataConfig
from nlp_transfer.data.batching import PaddingCollator, TokenizedDataset
from nlp_transfer.data.tables import TextColumns, looks_like_data_file, read_table
from nlp_transfer.errors import ConfigError, DataError, ModelLoadError
from nlp_transfer.modeling.heads import ClassificationHead
from nlp_transfer.storage.model_folder import (
    ModelMetadata,
    load_adapter,
    load_tensors,
    save_tensors,
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
    tasks: tuple[str, ...] = ("single_label", "multi_label", "regression")  # what this class trains
    backbone_class: type[TextBackbone] = TextBackbone  # pools the encoder's output per text

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

    # ----------------------------------------------------------------- building and saving (hooks for Classifier)
    @classmethod
    def _may_be_ours_on_the_hub(cls, name_or_path: str) -> bool:
        return local_model(name_or_path) is None  # the embedded default is a plain model, never a pushed one

    @classmethod
    def _from_base_model(cls, chosen: ModelSettings) -> TextClassifier:
        """A new classifier on a pretrained encoder (local folder, or Hub id when online).

        Defaults (README, "How defaults are chosen"): `pooling` is the checkpoint's own (mean for
        sentence-transformers models, CLS otherwise); with a frozen encoder the features average the
        top 4 layers (`pool_layers`) and the head is a normalised MLP, otherwise features come from
        the top layer and the head has the architecture's own shape. ``random_init=True`` keeps the
        architecture and tokenizer but starts from random weights (seeded): the from-scratch control.
        """
        settings = chosen.model
        task = cls._task(settings.task)
        strategy = make_strategy(chosen.strategy.name, chosen.strategy.options())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(chosen.seed)
            tokenizer, backbone = load_text_backbone(
                settings.name_or_path, pooling=cls._pooling(settings.pooling, strategy.frozen_backbone),
                pool_layers=1 if settings.pool_layers is None else settings.pool_layers,
                trust_remote_code=settings.trust_remote_code, allow_pickle=settings.allow_pickle,
                random_init=settings.random_init, num_layers=settings.num_layers,
                combine_layers=settings.combine_layers, backbone_class=cls.backbone_class)
        # the top 4 layers carry more than the last for a frozen encoder; a contrastively tuned one is
        # tuned on its own pooled output (the last layer's), which the head must then see
        if settings.pool_layers is None and strategy.frozen_backbone and not strategy.tunes_backbone_first:
            backbone.pool_layers = min(_FROZEN_POOL_LAYERS, len(backbone.blocks()))
        pooler = _detach_pooler(backbone)
        return cls(tokenizer, backbone, base_model=_source_name(settings.name_or_path),
                   max_length=check_max_length(backbone, chosen.max_length),
                   pretrained_pooler=None if settings.random_init else pooler, random_init=settings.random_init,
                   num_layers=settings.num_layers, strategy=strategy, task=task, labels=settings.labels,
                   num_labels=settings.num_labels,
                   head_options=_default_head(backbone, settings.head, settings.dropout, strategy.frozen_backbone),
                   threshold=settings.threshold, seed=chosen.seed)

    @classmethod
    def _pooling(cls, pooling: str, frozen: bool) -> str:
        """The pooling asked for; "auto" is resolved by the backbone (the checkpoint's own)."""
        return pooling

    @classmethod
    def _from_saved(cls, folder: Path, meta: ModelMetadata, common: dict[str, Any], *,
                    trust_remote_code: bool) -> TextClassifier:
        cls._task(meta.task, folder)
        source = {"transformers": folder, "encoder": folder / "encoder", "adapter": meta.base_model}[meta.layout]
        # Saved encoder configs already hold the truncated depth; an adapter's base is rebuilt from the full model.
        truncate = meta.num_layers if meta.layout == "adapter" else None
        tokenizer, backbone = load_text_backbone(str(source), pooling=meta.pooling, pool_layers=meta.pool_layers,
                                                 trust_remote_code=trust_remote_code, tokenizer_path=str(folder),
                                                 expect_extra_weights=True, num_layers=truncate,
                                                 combine_layers=meta.combine_layers, backbone_class=cls.backbone_class)
        _detach_pooler(backbone)
        if meta.layout == "adapter":
            backbone.encoder = load_adapter(backbone.encoder, folder / "adapter")
        clf = cls(tokenizer, backbone, base_model=meta.base_model, max_length=meta.max_length or 128,
                  random_init=bool(meta.strategy.get("random_init")), num_layers=meta.num_layers, **common)
        clf.uses_text_pair = meta.uses_text_pair
        clf.data_config = DataConfig(**{"max_length": meta.max_length or 128, **(meta.data or {})})
        return clf

    def _fixed_settings(self) -> dict[str, Any]:
        return {**super()._fixed_settings(), "pooling": self.backbone.pooling, "pool_layers": self.backbone.pool_layers,
                "combine_layers": self.backbone.combine_layers, "num_layers": self.num_layers}

    @classmethod
    def _task(cls, name: str, saved: Path | None = None):
        """The task, when this class trains it; else an error naming the class that does."""
        if name not in cls.tasks:
            other = "TokenClassifier" if name == "token_classification" else "TextClassifier"
            where = f"{str(saved)!r} holds a {name} model" if saved else f"task={name!r}"
            error = ModelLoadError if saved else ConfigError
            raise error(f"{where}: {cls.__name__} handles {', '.join(cls.tasks)}; use {other} (or "
                        "nlp_transfer.api.load_model, which picks the class).")
        return get_task(name)

    def _weights_layout(self) -> str:
        return "transformers" if self._native_export() else "encoder"

    def _write_weights(self, folder: Path, layout: str, encoder: torch.nn.Module) -> None:
        head = self.model.head.state_dict()
        if layout == "transformers":
            self._write_transformers(folder, encoder, head, self._native_export())
        else:
            encoder.save_pretrained(folder / "encoder")
            save_tensors(head, folder / "head.safetensors")

    def _write_preprocessing(self, folder: Path) -> None:
        """The tokenizer, with our max_length as its model_max_length: `pipeline(..., truncation=True)`
        on the saved folder then cuts long texts where `predict` does."""
        saved_length = self.tokenizer.model_max_length
        self.tokenizer.model_max_length = self.max_length
        try:
            self.tokenizer.save_pretrained(folder)
        finally:
            self.tokenizer.model_max_length = saved_length

    def _name_the_base(self, adapter_folder: Path) -> None:
        """peft records the folder the base was loaded from; record its Hub id where there is one, so
        the adapter config makes sense on another machine."""
        import json

        config_file = adapter_folder / "adapter_config.json"
        if Path(self.base_model).exists() or not config_file.is_file():
            return
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = self.base_model
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")

    def _metadata_extras(self) -> dict[str, Any]:
        return {"num_layers": self.num_layers, "max_length": self.max_length, "uses_text_pair": self.uses_text_pair,
                "combine_layers": self.backbone.combine_layers}

    def export(self, output_dir: str | Path, *, format: str = "onnx", quantize: str | None = None,
               max_drop: float = 1.0, validation: Any = None, allow_mismatch: bool = False):
        """Write an ONNX export that `nlp_transfer.export.OnnxClassifier` (or plain onnxruntime) serves.

        One graph from tokens to ``logits`` and ``probabilities`` (LoRA merged into a copy; this
        classifier is unchanged). It must match `predict_proba` within 1e-4 on `validation` (or a
        built-in sample), else nothing is written unless ``allow_mismatch=True``. ``quantize="int8"``
        adds ``model_int8.onnx`` when its validation metric drops at most `max_drop` points; it needs
        `validation`. ``clf.export("exports/sst2", quantize="int8", validation="dev.jsonl")``.
        Returns an `ExportResult` with the checks' numbers.
        """
        from nlp_transfer.export.folder import export_classifier

        return export_classifier(self, output_dir, format=format, quantize=quantize, max_drop=max_drop,
                                 validation=validation, allow_mismatch=allow_mismatch)

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

    def _saved_head(self, folder: Path, meta: ModelMetadata) -> dict[str, torch.Tensor]:
        if meta.layout != "transformers":
            return load_tensors(folder / "head.safetensors")
        native = NATIVE_HEADS[meta.model_type]
        tensors = load_tensors(folder / "model.safetensors")
        state = {f"{ours}.{kind}": tensors[f"{theirs}.{kind}"] for ours, theirs in
                 (("dense", native.dense_key), ("out", native.out_key)) for kind in ("weight", "bias")}
        state["out.weight"], state["out.bias"] = self._output_layer_standardised(state["out.weight"], state["out.bias"])
        return state


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

