"""The saved-model folder: its metadata file, safe tensor I/O, and replacing a folder without loss.

Every folder nlp_transfer writes holds ``nlp_transfer.json`` (what the model is: task, labels,
strategy, head, layout, settings, metrics, versions) next to the weights. The weights layout is one
of:

- ``transformers``: ``config.json`` + ``model.safetensors`` in the architecture's own
  ``*ForSequenceClassification`` layout, loadable without nlp_transfer;
- ``encoder``: ``encoder/`` (a plain ``save_pretrained`` folder) + ``head.safetensors``;
- ``adapter``: ``adapter/`` (a peft LoRA adapter) + ``head.safetensors``; the base model is named
  in the metadata and in the adapter config.

Vision models (timm) use timm's own format, so timm loads them without nlp_transfer:

- ``timm``: ``config.json`` + ``model.safetensors`` as timm's ``save_for_hf`` writes them, the head
  in the architecture's own classifier (e.g. ResNet's ``fc``);
- ``timm-backbone``: the same without a classifier (``num_classes=0``) + ``head.safetensors``, for
  heads timm has no equivalent of;
- ``adapter``: as for text, with a timm base model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from nlp_transfer.errors import ModelLoadError

__all__ = ["METADATA_FILE", "FORMAT_VERSION", "ModelMetadata", "write_folder", "read_metadata", "save_tensors", "load_tensors",
           "load_adapter"]

logger = logging.getLogger(__name__)

METADATA_FILE = "nlp_transfer.json"
FORMAT_VERSION = 1


@dataclass
class ModelMetadata:
    """Everything needed to rebuild a classifier, apart from the weights."""

    modality: str
    layout: str
    base_model: str
    model_type: str
    task: str
    labels: list[Any] | None
    num_outputs: int
    threshold: float
    pooling: str
    pool_layers: int
    head: dict[str, Any]
    strategy: dict[str, Any]
    max_length: int | None = None
    uses_text_pair: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    parameters: dict[str, int] | None = None
    backbone: dict[str, Any] | None = None  # modality-specific settings (vision: architecture, model_args, preprocessing)
    num_layers: int | None = None  # the encoder kept only its first N layers (None: all; older folders lack it)
    combine_layers: str = "mean"  # text: how the top pool_layers layers combine ("mean" or "concat")
    # regression: [mean, std] of the training targets; head.safetensors holds the standardised head,
    # the architectures' own layouts (transformers, timm) the output layer in the user's units
    target_scale: list[float] | None = None
    # single-label: the temperature fitted on validation after training (`calibration.TemperatureFit.record`);
    # when applied, 1/T is already folded into the saved output layer, so loaders need do nothing
    temperature_scaling: dict[str, Any] | None = None
    library_version: str = ""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, indent=2, default=str)


def read_metadata(folder: Path) -> ModelMetadata:
    path = folder / METADATA_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{str(folder)!r} has no {METADATA_FILE}, so it was not saved by nlp_transfer. To start from a plain "
            "Hugging Face model, use TextClassifier.from_pretrained(path, labels=...)."
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path} is damaged ({error}); save the model again.") from error
    known = {f.name for f in fields(ModelMetadata)}
    unknown = sorted(set(raw) - known)
    if unknown:  # a newer nlp_transfer wrote it: keep going with what we understand
        logger.warning("%s has settings this version does not know (%s); they are ignored.", path, ", ".join(unknown))
    if raw.get("format_version", 0) > FORMAT_VERSION:
        logger.warning("%s was written in format %s, newer than this version's %s.", path, raw["format_version"], FORMAT_VERSION)
    try:
        return ModelMetadata(**{k: v for k, v in raw.items() if k in known})
    except TypeError as error:
        raise ModelLoadError(f"{path} lacks required entries ({error}); save the model again.") from error


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelLoadError(f"Missing weights file {str(path)!r}; the model folder is incomplete. Save the model again.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelLoadError(f"{str(path)!r} is corrupt or truncated ({error}); save the model again.") from error


def load_adapter(encoder: torch.nn.Module, adapter_folder: Path):
    """`encoder` with the peft LoRA adapter saved in `adapter_folder`, trainable (text or vision alike)."""
    try:
        from peft import PeftModel
    except ImportError as error:
        raise ModelLoadError("This model holds a LoRA adapter; loading it needs peft: pip install peft") from error
    if not (adapter_folder / "adapter_config.json").is_file():
        raise ModelLoadError(f"Missing {adapter_folder / 'adapter_config.json'}; the model folder is incomplete.")
    return PeftModel.from_pretrained(encoder, str(adapter_folder), is_trainable=True)


def write_folder(target: Path, write: Callable[[Path], None]) -> None:
    """Write a model folder through `write(tmp)` into a sibling staging folder, then swap it in.

    A failure (full disk, interrupted process) leaves any previous model at `target` untouched.
    """
    from nlp_transfer.storage.atomic import staged_folder

    target = Path(target)
    try:
        with staged_folder(target) as staging:
            write(staging)
    except OSError as error:  # a full disk, a quota, a permission: the previous model stays as it was
        from nlp_transfer.errors import NLPTransferError

        kept = "the model already there is unchanged" if target.exists() else "nothing was written"
        raise NLPTransferError(f"Could not write the model to {target} ({error.strerror or error}); {kept}. "
                               "Free some space or choose another folder, then save again.") from error
