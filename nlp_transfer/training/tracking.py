"""Experiment tracking through accelerate's trackers (``train.report_to: [tensorboard]``).

What a tracker receives, from the main process only: the hyperparameters (the run's resolved
config under ``nlp-transfer train``, else the fit's settings), per logging step the training loss
and learning rate, per epoch the training loss and every evaluation metric, and at the end the
final metrics of each split the run scores.

A fit opens the trackers and closes them when it ends; `session` keeps them open around a fit and
the final evaluation that follows it, so one tracker run holds both.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from nlp_transfer.errors import ConfigError

__all__ = ["TRACKERS", "check_trackers", "session", "start", "log", "log_final", "end", "in_session"]

# tracker name (accelerate's) -> (module that must import, what to install)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", 'pip install "nlp-transfer[tensorboard]" (or pip install tensorboard)'),
    "trackio": ("trackio", "pip install trackio"),
    "mlflow": ("mlflow", "pip install mlflow"),
    "wandb": ("wandb", "pip install wandb"),
    "comet_ml": ("comet_ml", "pip install comet_ml"),
    "aim": ("aim", "pip install aim"),
    "clearml": ("clearml", "pip install clearml"),
    "dvclive": ("dvclive", "pip install dvclive"),
    "swanlab": ("swanlab", "pip install swanlab"),
}

_SESSION: ContextVar[dict[str, Any] | None] = ContextVar("nlp_transfer_tracking_session", default=None)


def check_trackers(names: list[str]) -> None:
    """Every tracker in `names` is known and its package installed; else a ConfigError with the fix."""
    from nlp_transfer.errors import did_you_mean

    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"train.report_to: unknown tracker {name!r}; {did_you_mean(name, list(TRACKERS))}")
        module, install = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"train.report_to: {name!r} needs the {module} package, which is not installed: "
                              f"{install}. Or remove {name!r} from train.report_to.")


@contextmanager
def session(hyperparameters: dict[str, Any], project: str = "nlp_transfer") -> Iterator[None]:
    """Keep the trackers a fit opens open until the block ends (for the final metrics), and log
    `hyperparameters` (the run's resolved config) in place of the fit's own settings, as `project`
    (the tracker's run name: TensorBoard's sub-folder, W&B's project)."""
    token = _SESSION.set({"hyperparameters": hyperparameters, "project": project, "accelerator": None})
    try:
        yield
    finally:
        accelerator = (_SESSION.get() or {}).get("accelerator")
        _SESSION.reset(token)
        if accelerator is not None:
            end(accelerator)


def in_session() -> bool:
    return _SESSION.get() is not None


def start(accelerator, hyperparameters: dict[str, Any]) -> None:
    """Open the accelerator's trackers (`Accelerator(log_with=...)`) with the hyperparameters."""
    current = _SESSION.get()
    project = "nlp_transfer"
    if current is not None:
        hyperparameters, project = current["hyperparameters"] or hyperparameters, current["project"]
        current["accelerator"] = accelerator
    accelerator.init_trackers(project, config=_flat(hyperparameters))


def log(accelerator, values: dict[str, Any], step: int) -> None:
    """Numbers only (a confusion matrix is no scalar); accelerate logs on the main process only."""
    scalars = {k: float(v) for k, v in values.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
    if scalars and accelerator.trackers:
        accelerator.log(scalars, step=step)


def log_final(accelerator, metrics: dict[str, dict[str, Any]], step: int) -> None:
    """The final metrics per split, as ``<split>/<metric>`` at the last step."""
    if accelerator is None or not accelerator.trackers:
        return
    log(accelerator, {f"{split}/{name}": value for split, scores in metrics.items() for name, value in scores.items()},
        step)


def end(accelerator) -> None:
    if accelerator is not None and accelerator.trackers:
        accelerator.end_training()


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one level of scalars (``train.learning_rate``): what TensorBoard's hparams take."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{name}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            flat[name] = "none" if value is None else value
        else:
            flat[name] = str(value)
    return flat
