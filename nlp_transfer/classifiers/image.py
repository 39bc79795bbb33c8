"""`ImageClassifier`: a timm CNN (ResNet, EfficientNet, ConvNeXt, ...), a strategy and a head, on the user's images.

The same `Classifier` as text: the strategies, the training loop, metrics, the feature cache and
checkpoints are shared; this module adds only how images are read and preprocessed and how a timm
backbone is loaded and saved.

    >>> clf = ImageClassifier.from_pretrained("resnet50", strategy="partial", unfreeze_last=1)
    >>> clf.fit("photos/train", epochs=5)            # photos/train/<label>/<image>.jpg
    >>> clf.predict(["photos/new/cat.jpg"])
    ['cat']
    >>> clf.save("my-model")   # timm format: timm.create_model("hf-hub:...") loads it after a push
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from nlp_transfer.backbones.vision import TIMM_WEIGHTS_FILE, VisionBackbone, load_vision_backbone
from nlp_transfer.classifiers.base import Classifier
from nlp_transfer.config.keywords import ModelSettings
from nlp_transfer.config.settings import DataConfig
from nlp_transfer.data.images import ImageCollator, ImageColumns, ImageDataset, decode_size, make_transform
from nlp_transfer.storage.model_folder import (
    ModelMetadata,
    load_adapter,
    load_tensors,
    save_tensors,
)
from nlp_transfer.strategies import make_strategy
from nlp_transfer.tasks import get_task

__all__ = ["ImageClassifier"]

logger = logging.getLogger(__name__)


class ImageClassifier(Classifier):
    """Image classification (single- or multi-label) and regression on a timm backbone."""

    modality = "vision"

    def __init__(self, backbone: VisionBackbone, *, base_model: str, image_size: int | None = None,
                 random_init: bool = False, **kwargs: Any) -> None:
        self.base_model = base_model
        self.random_init = random_init
        self.image_size = image_size
        self.preprocessing = backbone.data_config(image_size)
        super().__init__(backbone, **kwargs)

    # ----------------------------------------------------------------- hooks for Classifier
    def _examples(self, source: Any, config: DataConfig, where: str, need_labels: bool) -> ImageColumns:
        return ImageColumns.from_source(source, config, where, need_labels)

    def _dataset(self, examples: ImageColumns, targets: torch.Tensor | None,
                 config: DataConfig | None = None) -> ImageDataset:
        evaluation = make_transform(self.preprocessing, training=False)
        return ImageDataset(examples, targets, evaluation, min_side=decode_size(self.preprocessing))

    def _training_dataset(self, examples: ImageColumns, targets: torch.Tensor | None, seed: int) -> ImageDataset:
        config = self.data_config
        training = make_transform(self.preprocessing, training=True, augment=config.augment, hflip=config.hflip)
        return ImageDataset(examples, targets, training, eval_transform=make_transform(self.preprocessing, training=False),
                            augment_seed=seed if config.augment else None, min_side=decode_size(self.preprocessing))

    def _encoding_view(self, dataset: ImageDataset) -> ImageDataset:
        return dataset.deterministic()  # cached features come from un-augmented images

    def _collator(self, accelerator) -> ImageCollator:
        return ImageCollator()

    @staticmethod
    def _default_workers() -> int:
        """Decoding and resizing photos (JPEGs of several megapixels) costs about as much as a small
        CNN's forward pass; worker processes do it beside the model, leaving it a core."""
        return min(4, max(0, (os.cpu_count() or 1) - 1))

    # ----------------------------------------------------------------- building and saving (hooks for Classifier)
    @classmethod
    def _may_be_ours_on_the_hub(cls, name_or_path: str) -> bool:
        return not Path(name_or_path).exists()

    @classmethod
    def _from_base_model(cls, chosen: ModelSettings) -> ImageClassifier:
        """A new classifier on a timm backbone: a timm model name (``resnet50``: pretrained weights
        from the Hub, online), an ``hf-hub:`` id, a folder in timm's format (config.json +
        model.safetensors), or a weights file (with its config.json beside it, or `architecture`).
        `image_size` overrides the model's input resolution; `model_args` are further
        `timm.create_model` arguments for a model name. The default head is linear (timm's own
        classifier shape, so the model saves in timm's format); ``head="mlp"`` adds a hidden layer."""
        settings = chosen.model
        strategy = make_strategy(chosen.strategy.name, chosen.strategy.options())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(chosen.seed)
            backbone = load_vision_backbone(settings.name_or_path, architecture=settings.architecture,
                                            random_init=settings.random_init, allow_pickle=settings.allow_pickle,
                                            model_args=settings.model_args)
        head_options = {"kind": "linear" if settings.head == "auto" else settings.head, "activation": "relu",
                        "dropout": settings.dropout}
        return cls(backbone, base_model=_source_name(settings.name_or_path), image_size=settings.image_size,
                   random_init=settings.random_init, strategy=strategy, task=get_task(settings.task),
                   labels=settings.labels, num_labels=settings.num_labels, head_options=head_options,
                   threshold=settings.threshold, seed=chosen.seed)

    @classmethod
    def _from_saved(cls, folder: Path, meta: ModelMetadata, common: dict[str, Any], *,
                    trust_remote_code: bool) -> ImageClassifier:
        settings = meta.backbone or {}
        if meta.layout == "adapter":
            named = not Path(meta.base_model).exists()
            backbone = load_vision_backbone(meta.base_model, architecture=None if named else settings.get("architecture"),
                                            random_init=bool(meta.strategy.get("random_init")),
                                            model_args=settings.get("model_args") if named else None)
            backbone.encoder = load_adapter(backbone.encoder, folder / "adapter")
        else:
            backbone = load_vision_backbone(str(folder / TIMM_WEIGHTS_FILE))
        backbone.weights_source = settings.get("weights_source")  # where the pretrained weights came from
        clf = cls(backbone, base_model=meta.base_model, image_size=settings.get("image_size"),
                  random_init=bool(meta.strategy.get("random_init")), **common)
        clf.data_config = DataConfig(**(meta.data or {}))
        return clf

    def _fixed_settings(self) -> dict[str, Any]:
        return {**super()._fixed_settings(), "image_size": self.image_size, "architecture": self.backbone.architecture,
                "model_args": self.backbone.model_args}

    def _weights_layout(self) -> str:
        return "timm" if self._native_head() else "timm-backbone"

    def _native_head(self) -> bool:
        config = self.model.head.config
        return config.kind == "linear" and not config.normalize

    def _write_weights(self, folder: Path, layout: str, encoder: torch.nn.Module) -> None:
        """timm's format: ``timm.create_model(arch, pretrained=True, num_classes=N,
        pretrained_cfg_overlay=dict(file=".../model.safetensors", num_classes=N))`` loads it, and
        after a push so does ``timm.create_model("hf-hub:<repo>")``."""
        head = self.model.head
        self._write_timm(folder, encoder, head if layout == "timm" else None)
        if layout != "timm":
            save_tensors(head.state_dict(), folder / "head.safetensors")

    def _metadata_extras(self) -> dict[str, Any]:
        extras = {"architecture": self.backbone.architecture, "model_args": self.backbone.model_args,
                  "image_size": self.image_size, "preprocessing": self.preprocessing}
        if self.backbone.weights_source and not self.random_init:
            extras["weights_source"] = self.backbone.weights_source
        return {"backbone": extras}

    def _write_timm(self, folder: Path, encoder: torch.nn.Module, head) -> None:
        """timm's own save_for_hf, on a timm model whose classifier is our head (or none)."""
        import timm
        from timm.models._hub import save_for_hf

        num_classes = head.config.num_outputs if head is not None else 0
        args = {k: v for k, v in self.backbone.model_args.items() if k != "num_classes"}
        full = timm.create_model(self.backbone.architecture, pretrained=False, num_classes=num_classes, **args)
        state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
        if head is not None:
            classifier = full.pretrained_cfg.get("classifier", "fc")
            weight, bias = self._output_layer_in_user_units(head.out.weight.detach().cpu(), head.out.bias.detach().cpu())
            state[f"{classifier}.weight"], state[f"{classifier}.bias"] = weight, bias
        full.load_state_dict(state)
        full.pretrained_cfg = {**full.pretrained_cfg, **self.backbone.pretrained_cfg, "num_classes": num_classes}
        labels = [str(label) for label in self.labels] if self.labels is not None else None
        save_for_hf(full, str(folder), model_config={"label_names": labels} if labels else None, model_args=args,
                    safe_serialization=True, data_config={"input_size": self.preprocessing["input_size"]})

    def _saved_head(self, folder: Path, meta: ModelMetadata) -> dict[str, torch.Tensor]:
        if meta.layout != "timm":
            return load_tensors(folder / "head.safetensors")
        tensors = load_tensors(folder / TIMM_WEIGHTS_FILE)
        classifier = self.backbone.pretrained_cfg.get("classifier", "fc")
        return dict(zip(("out.weight", "out.bias"), self._output_layer_standardised(
            tensors[f"{classifier}.weight"], tensors[f"{classifier}.bias"])))


def _source_name(name_or_path: str) -> str:
    path = Path(name_or_path)
    return str(path.resolve()) if path.exists() else name_or_path

