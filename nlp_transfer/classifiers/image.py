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
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch

from nlp_transfer.backbones.vision import TIMM_WEIGHTS_FILE, VisionBackbone, load_vision_backbone
from nlp_transfer.classifiers.base import Classifier
from nlp_transfer.config.settings import DataConfig
from nlp_transfer.data.images import ImageCollator, ImageColumns, ImageDataset, make_transform
from nlp_transfer.errors import ConfigError, ModelLoadError, did_you_mean
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

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        labels: list[Any] | None = None,
        num_labels: int | None = None,
        task: Literal["single_label", "multi_label", "regression"] | None = None,
        strategy: Literal["feature_extraction", "partial", "full", "lora", "gradual"] | None = None,
        head: Literal["auto", "linear", "mlp"] = "auto",
        dropout: float | None = None,
        threshold: float | None = None,
        image_size: int | None = None,
        architecture: str | None = None,
        model_args: dict[str, Any] | None = None,
        seed: int = 42,
        allow_pickle: bool = False,
        random_init: bool = False,
        **strategy_options: Any,
    ) -> ImageClassifier:
        """Load a timm backbone, add a head, apply the strategy.

        `name_or_path`: a timm model name (``resnet50``: pretrained weights from the Hub, online),
        an ``hf-hub:`` id, a folder in timm's format (config.json + model.safetensors), a weights
        file (with its config.json beside it, or `architecture`), or a folder written by `save`
        (loaded with its labels, head and strategy). `image_size` overrides the model's input
        resolution (e.g. 64 for small images); `model_args` are further `timm.create_model` arguments
        for a model name (e.g. ``{"channels": [32, 64, 128, 256]}``). The default head is linear (timm's own classifier
        shape, so the model saves in timm's format); ``head="mlp"`` adds a hidden layer. Unset
        settings take their defaults: task single_label, strategy feature_extraction, dropout 0.0,
        threshold 0.5.

        A saved folder (or pushed repo) continues as in `TextClassifier.from_pretrained`: a given
        strategy, its options, `threshold` and `dropout` apply to the saved weights; settings the
        trained head depends on (labels, task, head, image_size, architecture) must match or be unset.
        """
        name_or_path = str(name_or_path)
        saved = Path(name_or_path) if (Path(name_or_path) / METADATA_FILE).is_file() else None
        if saved is None and not Path(name_or_path).exists():
            from nlp_transfer.storage.hub import download_if_ours

            saved = download_if_ours(name_or_path.removeprefix("hf-hub:"))  # pushed by nlp_transfer: labels and all
        if saved is not None:
            clf = cls.load(saved)
            clf._continue_with(name_or_path, {
                "labels": (labels, clf.labels), "num_labels": (num_labels, clf._num_outputs), "task": (task, clf.task.name),
                "head": (None if head == "auto" else head, clf.model.head.config.kind),
                "image_size": (image_size, clf.image_size), "architecture": (architecture, clf.backbone.architecture),
                "model_args": (model_args or None, clf.backbone.model_args), "random_init": (random_init or None, clf.random_init)},
                strategy=strategy, strategy_options=strategy_options, threshold=threshold, dropout=dropout)
            return clf
        task_def = get_task(task or "single_label")
        strategy_obj = make_strategy(strategy or "feature_extraction", strategy_options)  # options checked before anything loads
        if head not in ("auto", "linear", "mlp"):
            raise ConfigError(f"Unknown head {head!r}: {did_you_mean(head, ['auto', 'linear', 'mlp'])}")
        if image_size is not None and (not isinstance(image_size, int) or image_size < 16):
            raise ConfigError(f"image_size must be an integer of at least 16 pixels, got {image_size!r}.")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            backbone = load_vision_backbone(name_or_path, architecture=architecture, random_init=random_init,
                                            allow_pickle=allow_pickle, model_args=model_args)
        head_options = {"kind": "linear" if head == "auto" else head, "activation": "relu",
                        "dropout": 0.0 if dropout is None else dropout}
        return cls(backbone, base_model=_source_name(name_or_path), image_size=image_size, random_init=random_init,
                   strategy=strategy_obj, task=task_def, labels=labels, num_labels=num_labels, head_options=head_options,
                   threshold=0.5 if threshold is None else threshold, seed=seed)

    # ----------------------------------------------------------------- hooks for Classifier
    def _examples(self, source: Any, config: DataConfig, where: str, need_labels: bool) -> ImageColumns:
        return ImageColumns.from_source(source, config, where, need_labels)

    def _dataset(self, examples: ImageColumns, targets: torch.Tensor | None,
                 config: DataConfig | None = None) -> ImageDataset:
        evaluation = make_transform(self.preprocessing, training=False)
        return ImageDataset(examples, targets, evaluation)

    def _training_dataset(self, examples: ImageColumns, targets: torch.Tensor | None, seed: int) -> ImageDataset:
        config = self.data_config
        training = make_transform(self.preprocessing, training=True, augment=config.augment, hflip=config.hflip)
        return ImageDataset(examples, targets, training, eval_transform=make_transform(self.preprocessing, training=False),
                            augment_seed=seed if config.augment else None)

    def _encoding_view(self, dataset: ImageDataset) -> ImageDataset:
        return dataset.deterministic()  # cached features come from un-augmented images

    def _collator(self, accelerator) -> ImageCollator:
        return ImageCollator()

    # ----------------------------------------------------------------- saving and loading
    def save(self, path: str | Path, *, merge_lora: bool = False) -> Path:
        """Write the model in timm's format plus ``nlp_transfer.json`` (labels, strategy, metrics); returns its path.

        With the default linear head the folder is a timm checkpoint: ``timm.create_model(arch,
        pretrained=True, num_classes=N, pretrained_cfg_overlay=dict(file=".../model.safetensors",
        num_classes=N))`` loads it, and after a push so does ``timm.create_model("hf-hub:<repo>")``.
        Unmerged LoRA saves the adapter and the head; ``merge_lora=True`` folds it into timm weights.
        """
        model = self._require_model()
        encoder, as_adapter, merged = self._encoder_to_save(merge_lora)
        head = model.head
        native = head.config.kind == "linear" and not head.config.normalize
        layout = "adapter" if as_adapter else ("timm" if native else "timm-backbone")
        metadata = self._metadata(layout, merged=merged)

        def write(folder: Path) -> None:
            if layout == "adapter":
                encoder.save_pretrained(folder / "adapter")
                save_tensors(head.state_dict(), folder / "head.safetensors")
            else:
                self._write_timm(folder, encoder, head if native else None)
                if not native:
                    save_tensors(head.state_dict(), folder / "head.safetensors")
            (folder / METADATA_FILE).write_text(metadata.to_json(), encoding="utf-8")
            (folder / "README.md").write_text(model_card(metadata), encoding="utf-8")

        from nlp_transfer.training.engine import process_state

        state = process_state()
        if state.is_main_process:
            write_folder(Path(path), write)
            logger.info("Saved the model to %s (%s layout).", path, layout)
        state.wait_for_everyone()
        return Path(path)

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

    @classmethod
    def load(cls, path: str | Path) -> ImageClassifier:
        """Rebuild a classifier saved by `save`: labels, head, strategy, preprocessing and weights."""
        folder = Path(path)
        if not folder.is_dir():
            raise ModelLoadError(f"Model folder {str(path)!r} does not exist.")
        meta = read_metadata(folder)
        if meta.modality != "vision":
            raise ModelLoadError(f"{str(path)!r} holds a {meta.modality} model; load it with TextClassifier.")
        settings = meta.backbone or {}
        if meta.layout == "adapter":
            named = not Path(meta.base_model).exists()
            backbone = load_vision_backbone(meta.base_model, architecture=None if named else settings.get("architecture"),
                                            random_init=bool(meta.strategy.get("random_init")),
                                            model_args=settings.get("model_args") if named else None)
            backbone.encoder = load_adapter(backbone.encoder, folder / "adapter")
        else:
            backbone = load_vision_backbone(str(folder / TIMM_WEIGHTS_FILE))
        strategy = make_strategy(meta.strategy["name"], meta.strategy.get("options"))
        head_options = {k: v for k, v in meta.head.items() if k not in ("in_features", "num_outputs")}
        clf = cls(backbone, base_model=meta.base_model, image_size=settings.get("image_size"), strategy=strategy,
                  task=get_task(meta.task), labels=meta.labels, num_labels=meta.num_outputs if meta.labels is None else None,
                  head_options=head_options, threshold=meta.threshold, seed=0,
                  random_init=bool(meta.strategy.get("random_init")), apply_strategy=not meta.strategy.get("merged"))
        clf._adapter_base_in_memory = bool(meta.strategy.get("merged"))  # merged LoRA: plain weights, no adapter base
        clf.target_scale = tuple(meta.target_scale) if meta.target_scale else None
        clf._load_head(folder, meta)
        clf.data_config = DataConfig(**(meta.data or {}))
        clf.metrics = meta.metrics
        return clf

    def _load_head(self, folder: Path, meta: ModelMetadata) -> None:
        if meta.layout == "timm":
            tensors = load_tensors(folder / TIMM_WEIGHTS_FILE)
            classifier = self.backbone.pretrained_cfg.get("classifier", "fc")
            state = dict(zip(("out.weight", "out.bias"), self._output_layer_standardised(
                tensors[f"{classifier}.weight"], tensors[f"{classifier}.bias"])))
        else:
            state = load_tensors(folder / "head.safetensors")
        self._set_head_weights(state, folder)

    def _metadata(self, layout: str, merged: bool) -> ModelMetadata:
        from nlp_transfer import __version__

        strategy = self._strategy_record(merged)
        backbone = {"architecture": self.backbone.architecture, "model_args": self.backbone.model_args,
                    "image_size": self.image_size, "preprocessing": self.preprocessing}
        return ModelMetadata(
            modality="vision", layout=layout, base_model=self.base_model, model_type=self.backbone.architecture,
            task=self.task.name, labels=self.labels, num_outputs=self._num_outputs, threshold=self.threshold,
            pooling=self.backbone.pooling, pool_layers=1, head=self.model.head.config.to_dict(), strategy=strategy,
            data=asdict(self.data_config), training=asdict(self.training) if self.training else None,
            metrics=self.metrics, parameters=self.parameter_summary(), backbone=backbone, library_version=__version__,
            target_scale=list(self.target_scale) if self.target_scale else None)


def _source_name(name_or_path: str) -> str:
    path = Path(name_or_path)
    return str(path.resolve()) if path.exists() else name_or_path

