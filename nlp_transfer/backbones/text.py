"""Hugging Face text encoders as backbones: loading, pooling, layer groups and LoRA targets.

    >>> tokenizer, backbone = load_text_backbone("path/to/bert", pooling="auto")
    >>> features = backbone(**tokenizer(["a text"], return_tensors="pt"))   # [1, hidden]
"""

from __future__ import annotations

import inspect
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from nlp_transfer.config.settings import DataConfig
from nlp_transfer.errors import ConfigError, ModelLoadError, StrategyError, did_you_mean

__all__ = ["TextBackbone", "NativeHead", "NATIVE_HEADS", "LORA_TARGETS", "load_text_backbone", "default_pooling",
           "check_max_length"]

logger = logging.getLogger(__name__)

Pooling = Literal["cls", "mean"]


@dataclass(frozen=True)
class NativeHead:
    """An architecture's own sequence-classification head, and where its weights live in HF's layout.

    Our ``mlp`` head on CLS features has the same computation, so a model trained with it can be
    saved as ``<architecture>`` and loaded by `AutoModelForSequenceClassification` or `pipeline`.
    """

    activation: Literal["tanh", "relu"]
    architecture: str
    dense_key: str  # where our head.dense goes in the HF state dict
    out_key: str  # where our head.out goes
    init_from_pooler: bool = False  # BERT: the pretrained pooler is the head's dense layer


NATIVE_HEADS: dict[str, NativeHead] = {
    "bert": NativeHead("tanh", "BertForSequenceClassification", "bert.pooler.dense", "classifier", True),
    "roberta": NativeHead("tanh", "RobertaForSequenceClassification", "classifier.dense", "classifier.out_proj"),
    "xlm-roberta": NativeHead("tanh", "XLMRobertaForSequenceClassification", "classifier.dense", "classifier.out_proj"),
    "camembert": NativeHead("tanh", "CamembertForSequenceClassification", "classifier.dense", "classifier.out_proj"),
    "distilbert": NativeHead("relu", "DistilBertForSequenceClassification", "pre_classifier", "classifier"),
}

# Attention projections LoRA adapts by default (the choice of the LoRA paper: query and value).
LORA_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "mpnet": ["q", "v"],
    "distilbert": ["q_lin", "v_lin"],
    "deberta": ["in_proj"],
    "deberta-v2": ["query_proj", "value_proj"],
    "albert": ["query", "value"],
}


class TextBackbone(nn.Module):
    """A Hugging Face encoder (``AutoModel``) plus pooling: a batch of tokens -> [batch, hidden].

    Implements `nlp_transfer.backbones.Backbone` (pooling "cls" or "mean"; blocks are the
    transformer layers, the stem the embeddings). Text-only extras: ``hf_config`` (the encoder's
    transformers config, which saving and the native heads read) and ``max_positions()`` (the
    longest input, which checks max_length).
    """

    def __init__(self, encoder: nn.Module, pooling: Pooling, pool_layers: int = 1,
                 combine_layers: Literal["mean", "concat"] = "mean") -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling  # "cls" or "mean" ("first" or "mean" per word: `WordBackbone`)
        if combine_layers not in ("mean", "concat"):
            raise StrategyError(f"combine_layers={combine_layers!r}: {did_you_mean(str(combine_layers), ['mean', 'concat'])}")
        self.combine_layers = combine_layers
        self._accepted = set(inspect.signature(self.base_encoder.forward).parameters)
        self.pool_layers = pool_layers

    @property
    def feature_size(self) -> int:
        """The hidden size, times pool_layers when the top layers are concatenated."""
        width = int(self.hf_config.hidden_size)
        return width * self.pool_layers if self.combine_layers == "concat" else width

    @property
    def encoder(self) -> nn.Module:
        """The transformers model (a peft model once LoRA is applied): what LoRA wraps and saving writes."""
        return self._modules["encoder"]

    @encoder.setter
    def encoder(self, module: nn.Module) -> None:  # nn.Module.__setattr__ registers a module itself; same effect
        self._modules["encoder"] = module

    @property
    def base_encoder(self) -> nn.Module:
        """The plain transformers model, also when peft has wrapped it."""
        return self.encoder.get_base_model() if hasattr(self.encoder, "get_base_model") else self.encoder

    @property
    def has_adapters(self) -> bool:
        """True when peft has wrapped the encoder (LoRA adapters in place)."""
        return hasattr(self.encoder, "peft_config")

    @property
    def hf_config(self):
        """The encoder's transformers config (text only)."""
        return self.base_encoder.config

    @property
    def model_type(self) -> str:
        """transformers' model type ("bert", "roberta", ...)."""
        return str(self.hf_config.model_type)

    @property
    def pool_layers(self) -> int:
        """How many top layers' outputs are averaged before pooling (1: the last layer only)."""
        return self._pool_layers

    @pool_layers.setter
    def pool_layers(self, value: int) -> None:  # checked on every change: the classifiers and ranking set it too
        depth = len(self.blocks())
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= depth:
            raise StrategyError(f"pool_layers={value!r}, but this model has {depth} layers: set pool_layers to a "
                                f"whole number from 1 to {depth} (how many top layers to average), or leave it unset.")
        self._pool_layers = value

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        """Pooled features [batch, feature_size]; extra inputs the encoder does not take (e.g. token_type_ids) are dropped."""
        hidden = self.token_features(input_ids, attention_mask, **extra)
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    @classmethod
    def resolve_pooling(cls, pooling: str, source: str) -> str:
        """The pooling "auto" stands for with this checkpoint; an error for a pooling texts do not have."""
        if pooling not in ("auto", "cls", "mean"):
            hint = " ('first' pools the sub-tokens of a word, for task='token_classification')" if pooling == "first" else ""
            raise StrategyError(f"Unknown pooling {pooling!r} for text classification{hint}: "
                                f"{did_you_mean(pooling, ['auto', 'cls', 'mean'])}")
        return (default_pooling(source) or "cls") if pooling == "auto" else pooling

    @classmethod
    def tokenizer_options(cls, source: str) -> dict:
        """Extra `AutoTokenizer.from_pretrained` arguments this kind of backbone needs."""
        return {}

    def token_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        """Per-token features [batch, tokens, feature_size]: the top layer, or the top `pool_layers` combined."""
        kwargs = {k: v for k, v in extra.items() if k in self._accepted}
        if self.pool_layers == 1:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        # several top layers: lower layers keep features the top layer has specialised away
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **kwargs).hidden_states
        top = states[-self.pool_layers :]
        return torch.cat(top, dim=-1) if self.combine_layers == "concat" else torch.stack(top).mean(dim=0)

    def max_positions(self) -> int | None:
        """The most tokens the position table serves; None when there is no absolute position table.

        RoBERTa-style embeddings (they have a `padding_idx`) number positions from padding_idx + 1,
        so they serve max_position_embeddings - padding_idx - 1 tokens (514 -> 512).
        """
        config = self.hf_config
        table = getattr(config, "max_position_embeddings", None)
        if table is None or getattr(config, "position_biased_input", True) is False:  # DeBERTa: relative only
            return None
        offset = getattr(getattr(self.base_encoder, "embeddings", None), "padding_idx", None)
        return int(table) - (int(offset) + 1 if isinstance(offset, int) else 0)

    def stem(self) -> nn.Module:
        """The embeddings (token, position, type), below the first layer."""
        base = self.base_encoder
        if not hasattr(base, "embeddings"):
            raise StrategyError(f"Cannot find the embeddings of this {type(base).__name__}; use strategy='full' or 'lora'.")
        return base.embeddings

    def blocks(self) -> list[nn.Module]:
        """The transformer layers, bottom to top: the largest ModuleList with one entry per layer."""
        config = self.hf_config
        depth = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
        for _, module in self.base_encoder.named_modules():
            if isinstance(module, nn.ModuleList) and len(module) == depth:
                return list(module)
        raise StrategyError(
            f"Cannot find the {depth} layers of this {type(self.base_encoder).__name__}; "
            "strategy='partial' needs them. Use strategy='full' or 'lora' instead."
        )

    def default_lora_targets(self) -> list[str]:
        """The attention query and value projections (`LORA_TARGETS`, by model type)."""
        if self.model_type in LORA_TARGETS:
            return list(LORA_TARGETS[self.model_type])
        raise StrategyError(
            f"No default LoRA target modules for model type {self.model_type!r}. Set target_modules to some of "
            f"its Linear layers: {', '.join(self.linear_layer_names())}."
        )

    def linear_layer_names(self) -> list[str]:
        """The short names of the Linear layers (peft matches a target against the end of a layer's name)."""
        names = {name.rsplit(".", 1)[-1] for name, m in self.base_encoder.named_modules() if isinstance(m, nn.Linear)}
        return sorted(names)


_DEFAULT_MAX_LENGTH = DataConfig.__dataclass_fields__["max_length"].default


def check_max_length(backbone: TextBackbone, max_length: int | None) -> int:
    """`max_length` that the model can take: longer than its position table fails at the first long
    text, mid-epoch, so it is a `ConfigError` now. Unset, or the default (128), becomes the model's
    limit when that is smaller.

    >>> check_max_length(bert_backbone, 1024)   # doctest: +SKIP
    ConfigError: max_length=1024, but this bert model has positions for 512 tokens ...
    """
    limit = backbone.max_positions()
    wanted = _DEFAULT_MAX_LENGTH if max_length is None else max_length
    if limit is None or wanted <= limit:
        return wanted
    if wanted == _DEFAULT_MAX_LENGTH:
        logger.info("max_length: this model has positions for %d tokens, fewer than the default %d; using %d.",
                    limit, wanted, limit)
        return limit
    table = backbone.hf_config.max_position_embeddings
    offset = f", of which {table - limit} are reserved for the padding offset" if table != limit else ""
    detail = f"max_position_embeddings={table}{offset}"
    raise ConfigError(f"max_length={wanted}, but this {backbone.model_type} model has positions for {limit} tokens "
                      f"({detail}). Set max_length to at most {limit} (longer texts are truncated).")


def default_pooling(name_or_path: str) -> Pooling | None:
    """The pooling a sentence-transformers checkpoint was trained with, or None for other checkpoints.

    Sentence-embedding models (e.g. all-MiniLM-L6-v2) were trained so that their *mean* token
    embedding carries the meaning; their CLS token was never trained for that.
    """
    folder = Path(name_or_path)
    pooling_file = folder / "1_Pooling" / "config.json"
    if not (folder / "modules.json").is_file() or not pooling_file.is_file():
        return None
    settings = json.loads(pooling_file.read_text(encoding="utf-8"))
    if settings.get("pooling_mode_mean_tokens"):
        return "mean"
    if settings.get("pooling_mode_cls_token"):
        return "cls"
    return None


def load_text_backbone(
    name_or_path: str,
    *,
    pooling: Literal["auto", "cls", "mean"] = "auto",
    pool_layers: int = 1,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    tokenizer_path: str | None = None,
    expect_extra_weights: bool = False,
    random_init: bool = False,
    num_layers: int | None = None,
    combine_layers: Literal["mean", "concat"] = "mean",
    backbone_class: type[TextBackbone] | None = None,
):
    """Load tokenizer and encoder (safetensors only unless `allow_pickle`), return (tokenizer, TextBackbone).

    An embedded Hub id (see `embedded.py`) loads from its installed local copy. `random_init`
    keeps the architecture and tokenizer but not the weights: the from-scratch control (the
    caller seeds the RNG). `num_layers` keeps only the first N transformer layers (with their
    pretrained weights): a smaller, faster encoder whose features are those of layer N.
    `backbone_class` is what pools the encoder's output (`TextBackbone` per text; `WordBackbone` per word).
    """
    backbone_class = backbone_class or TextBackbone
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from nlp_transfer.backbones.embedded import install_hint, local_model

    source = local_model(name_or_path) or name_or_path
    if source != name_or_path:
        logger.debug("Using the installed offline copy of %s (%s).", name_or_path, source)
    _check_source(source, allow_pickle)
    resolved = backbone_class.resolve_pooling(pooling, source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or source, trust_remote_code=trust_remote_code,
                                                  **backbone_class.tokenizer_options(tokenizer_path or source))
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        if num_layers is not None:
            _truncate(config, num_layers, name_or_path)
        # A truncated model leaves the upper layers' weights unused on purpose: no report about them.
        with _transformers_quiet(expect_extra_weights or num_layers is not None):
            if random_init:
                encoder = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
            else:
                encoder = AutoModel.from_pretrained(source, config=config, trust_remote_code=trust_remote_code,
                                                    use_safetensors=not allow_pickle)
    except ConfigError:
        raise  # a bad num_layers, already explained (it is a ValueError too)
    except SafetensorError as error:
        raise ModelLoadError(
            f"The weights in {source!r} are damaged or truncated ({error}); save or download the model again."
        ) from error
    except (OSError, RuntimeError, ValueError) as error:
        raise ModelLoadError(
            f"Could not load a model from {name_or_path!r}: {error}. Give a folder saved with "
            "`save_pretrained` (config.json, model.safetensors, tokenizer files) or a Hub id while online."
            + install_hint(name_or_path)
        ) from error
    logger.info("Loaded %s (%s%s%s) with %s pooling", name_or_path, encoder.config.model_type,
                ", random weights" if random_init else "", f", first {num_layers} layers" if num_layers else "", resolved)
    return tokenizer, backbone_class(encoder, resolved, pool_layers, combine_layers)


def _truncate(config, num_layers: int, name_or_path: str) -> None:
    """Set the config to build only the first `num_layers` layers (checked against the model's depth)."""
    depth = getattr(config, "num_hidden_layers", None)
    if depth is None:
        raise ConfigError(f"num_layers is not supported for {name_or_path!r} ({config.model_type}): its config has "
                          "no num_hidden_layers. Leave num_layers unset.")
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or not 1 <= num_layers <= depth:
        raise ConfigError(f"num_layers={num_layers!r}, but {name_or_path!r} has {depth} layers; use 1 to {depth}, "
                          "or leave it unset for all of them.")
    config.num_hidden_layers = num_layers


@contextmanager
def _transformers_quiet(quiet: bool):
    """Silence transformers' load report where we know why keys differ (our own head weights)."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    if quiet:
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def _check_source(name_or_path: str, allow_pickle: bool) -> None:
    path = Path(name_or_path)
    looks_local = path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if not looks_local:
        return  # a Hub id: transformers resolves it (online) or fails with its own message
    if not path.is_dir():
        raise ModelLoadError(f"Model folder {name_or_path!r} does not exist. Check the path, or give a Hub id.")
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{name_or_path!r} has no config.json, so it is not a Hugging Face model folder. "
            "Save the model with `save_pretrained`, or give the folder that contains config.json."
        )
    has_safetensors = any(path.glob("*.safetensors")) or any(path.glob("*.safetensors.index.json"))
    has_pickle = any(path.glob("*.bin")) or any(path.glob("*.pt")) or any(path.glob("*.pth"))
    if not has_safetensors and has_pickle and not allow_pickle:
        raise ModelLoadError(
            f"{name_or_path!r} holds its weights only as pickle files (.bin/.pt), which can run code when loaded. "
            "Convert them to safetensors (`model.save_pretrained(folder)` with a recent transformers), or, if you "
            "trust the file, pass allow_pickle=True."
        )
    if not has_safetensors and not has_pickle:
        raise ModelLoadError(f"{name_or_path!r} has a config.json but no weights file (model.safetensors).")
