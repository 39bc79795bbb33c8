"""Evaluation metrics for the four task kinds, computed offline.

Sequence-level tasks (single_label, multi_label, regression) go through :func:`compute_metrics`;
token classification (NER, IOB2 tag strings) goes through :func:`compute_token_metrics`, which
scores whole entities with seqeval.

``evaluate.load("accuracy")`` fetches the metric script from the Hugging Face Hub, which
fails without a network. The metrics needed by default are therefore shipped inside this
package (``nlp_transfer/training/evaluate_modules/<name>/<name>.py``) and loaded by path, which
works offline. Other ``evaluate`` metrics can still be requested by name (``extra``); those need the
Hub, and failing to load one raises :class:`MetricLoadError` with an explanation.

Everything returned is a plain Python ``float``/``int``/``list`` so results can be written
straight to JSON. ``evaluate`` is imported lazily because importing it takes seconds.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from nlp_transfer.errors import ConfigError, DataError, NLPTransferError, did_you_mean

if TYPE_CHECKING:
    from evaluate import EvaluationModule

logger = logging.getLogger(__name__)

__all__ = [
    "BUNDLED_METRICS",
    "METRIC_NAMES",
    "PRIMARY_METRIC",
    "MetricLoadError",
    "TaskType",
    "bundled_metric_path",
    "compute_metrics",
    "compute_token_metrics",
    "greater_is_better",
    "load_metric",
]

TaskType = Literal["single_label", "multi_label", "regression", "token_classification"]

#: Folder holding the evaluate metric scripts shipped with the package.
_MODULES_DIR = Path(__file__).resolve().parent / "evaluate_modules"

#: Metrics shipped with the package; these load without network access.
BUNDLED_METRICS: tuple[str, ...] = (
    "accuracy",
    "f1",
    "precision",
    "recall",
    "matthews_correlation",
    "pearsonr",
    "spearmanr",
    "seqeval",
)

#: Bundled metrics that have a "multilabel" config (multi-hot inputs).
_MULTILABEL_CONFIG_METRICS: frozenset[str] = frozenset({"accuracy", "f1", "precision", "recall"})

#: Metric used for model selection / early stopping, per task kind.
PRIMARY_METRIC: dict[str, str] = {
    "single_label": "accuracy",
    "multi_label": "f1_micro",
    "regression": "pearson",
    "token_classification": "f1",  # entity-level micro F1, as in CoNLL evaluations
}

#: Scalar metrics an evaluation reports per task (what metric_for_best_model may name): `compute_metrics`
#: and, for classification, the calibration scores (`calibration.py`).
METRIC_NAMES: dict[str, tuple[str, ...]] = {
    "single_label": ("accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro", "mcc", "ece", "brier"),
    "multi_label": ("subset_accuracy", "f1_micro", "f1_macro", "precision_micro", "recall_micro", "ece", "brier"),
    "regression": ("pearson", "spearman", "mse", "mae"),
    "token_classification": ("f1", "precision", "recall", "accuracy"),
}

#: Substrings marking metrics where lower is better (see :func:`greater_is_better`).
_LOWER_IS_BETTER_MARKERS: tuple[str, ...] = ("loss", "mse", "mae")

#: Loaded evaluate modules keyed by (name, config); loading copies the script each time,
#: so every module is loaded at most once per process.
_MODULE_CACHE: dict[tuple[str, str | None], EvaluationModule] = {}


class MetricLoadError(NLPTransferError):
    """An ``evaluate`` metric could not be loaded (typically: not bundled and offline).

    A ``ValueError`` (via :class:`~nlp_transfer.errors.NLPTransferError`), like every
    user-facing error of the package.
    """


def greater_is_better(metric_name: str) -> bool:
    """Tell whether a larger value of ``metric_name`` means a better model.

    Needed to pick the best checkpoint for any metric a user may choose: losses and error
    metrics (names containing "loss", "mse" or "mae") are minimised, everything else
    (accuracy, F1, correlations, ...) is maximised.
    """
    name = metric_name.lower()
    if name.removeprefix("eval_") in ("ece", "brier"):  # calibration errors (`calibration.py`)
        return False
    return not any(marker in name for marker in _LOWER_IS_BETTER_MARKERS)


def bundled_metric_path(name: str) -> Path:
    """Return the folder of a bundled metric, which ``evaluate.load`` accepts offline.

    Raises ``KeyError`` if ``name`` is not one of :data:`BUNDLED_METRICS`.
    """
    if name not in BUNDLED_METRICS:
        raise KeyError(f"{name!r} is not a bundled metric; bundled: {', '.join(BUNDLED_METRICS)}")
    return _MODULES_DIR / name


def load_metric(name: str, config_name: str | None = None) -> EvaluationModule:
    """Load (once per process) an evaluate metric, preferring the bundled offline copy.

    Bundled names are loaded from the package by path, so they work without network; any
    other name is passed to ``evaluate.load``, which needs the Hugging Face Hub (or a local
    path). Failures are re-raised as :class:`MetricLoadError` explaining the offline limit.
    """
    key = (name, config_name)
    if key in _MODULE_CACHE:
        return _MODULE_CACHE[key]

    import evaluate

    if name in BUNDLED_METRICS:
        source = str(bundled_metric_path(name))
    else:
        source = name
    logger.debug("Loading evaluate metric %r (config %r) from %s", name, config_name, source)
    try:
        module = evaluate.load(source, config_name, keep_in_memory=True)
    except Exception as exc:  # evaluate raises FileNotFoundError, ConnectionError, ImportError, ...
        if name in BUNDLED_METRICS:
            raise MetricLoadError(f"Could not load the bundled metric {name!r} from {source}: {exc}") from exc
        raise MetricLoadError(
            f"Could not load the evaluate metric {name!r}: it is not bundled with nlp_transfer, so it "
            "must be fetched from the Hugging Face Hub, and offline it cannot be loaded. "
            f"The bundled metrics work offline; {did_you_mean(name, BUNDLED_METRICS)} (Cause: {exc})"
        ) from exc
    _MODULE_CACHE[key] = module
    return module


def _to_builtin(value: Any) -> Any:
    """Convert numpy scalars/arrays (possibly nested) to JSON-serialisable Python values."""
    if isinstance(value, dict):
        return {str(k): _to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_builtin(v) for v in value]
    if isinstance(value, np.ndarray):
        return _to_builtin(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _compute(name: str, predictions: Any, references: Any, config_name: str | None = None, **kwargs: Any) -> Any:
    """Compute one metric and return the single value it reports under its own name."""
    result = load_metric(name, config_name).compute(predictions=predictions, references=references, **kwargs)
    return result[name]


def _single_label(predictions: np.ndarray, references: np.ndarray, num_labels: int) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix

    _check_class_ids(predictions, "predictions", num_labels)
    _check_class_ids(references, "references", num_labels)
    preds, refs = predictions.astype(np.int64).tolist(), references.astype(np.int64).tolist()
    with warnings.catch_warnings():
        # matthews_corrcoef warns when only one class occurs; the MCC (0.0) is still defined.
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        mcc = _compute("matthews_correlation", preds, refs)
    matrix = confusion_matrix(refs, preds, labels=list(range(num_labels)))
    return {
        "accuracy": _compute("accuracy", preds, refs),
        "f1_macro": _compute("f1", preds, refs, average="macro"),
        "f1_micro": _compute("f1", preds, refs, average="micro"),
        "precision_macro": _compute("precision", preds, refs, average="macro"),
        "recall_macro": _compute("recall", preds, refs, average="macro"),
        "mcc": mcc,
        "confusion_matrix": matrix.tolist(),
    }


def _multi_label(predictions: np.ndarray, references: np.ndarray, num_labels: int) -> dict[str, Any]:
    for array, what in ((predictions, "predictions"), (references, "references")):
        if array.ndim != 2 or array.shape[1] != num_labels:
            raise DataError(
                f"multi_label {what} must be a multi-hot array of shape [N, {num_labels}], got {array.shape}"
            )
        if not np.isin(array, (0, 1)).all():
            raise DataError(f"multi_label {what} must contain only 0 and 1")
    preds, refs = predictions.astype(np.int64).tolist(), references.astype(np.int64).tolist()
    return {
        "subset_accuracy": _compute("accuracy", preds, refs, "multilabel"),
        "f1_micro": _compute("f1", preds, refs, "multilabel", average="micro"),
        "f1_macro": _compute("f1", preds, refs, "multilabel", average="macro"),
        "precision_micro": _compute("precision", preds, refs, "multilabel", average="micro"),
        "recall_micro": _compute("recall", preds, refs, "multilabel", average="micro"),
    }


def _regression(predictions: np.ndarray, references: np.ndarray) -> dict[str, Any]:
    preds = predictions.astype(np.float64).reshape(-1)
    refs = references.astype(np.float64).reshape(-1)
    # Correlations are undefined for constant inputs (e.g. a collapsed model): report NaN
    # quietly instead of letting scipy warn on every evaluation step.
    if np.ptp(preds) == 0 or np.ptp(refs) == 0 or len(preds) < 2:
        logger.debug("Constant or too short regression input: pearson/spearman set to NaN")
        pearson = spearman = math.nan
    else:
        from scipy.stats import ConstantInputWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConstantInputWarning)
            pearson = _compute("pearsonr", preds.tolist(), refs.tolist())
            spearman = _compute("spearmanr", preds.tolist(), refs.tolist())
    diff = preds - refs
    return {
        "pearson": float(pearson),
        "spearman": float(spearman),
        "mse": float(np.mean(diff**2)),
        "mae": float(np.mean(np.abs(diff))),
    }


def _check_class_ids(array: np.ndarray, what: str, num_labels: int) -> None:
    if array.ndim != 1:
        raise DataError(f"single_label {what} must be a 1-D array of class ids, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer) and not np.all(np.equal(np.mod(array, 1), 0)):
        raise DataError(f"single_label {what} must be integer class ids")
    if array.min() < 0 or array.max() >= num_labels:
        raise DataError(
            f"single_label {what} contain class ids outside [0, {num_labels}): "
            f"min {array.min()}, max {array.max()}"
        )


def compute_metrics(
    task: TaskType,
    predictions: np.ndarray,
    references: np.ndarray,
    *,
    num_labels: int,
    extra: Sequence[str] = (),
) -> dict[str, float | list]:
    """Compute the standard metrics for ``task``, plus any ``extra`` evaluate metrics.

    One entry point keeps the metric set, names and JSON-friendly types identical across
    training, evaluation and reporting code.

    Args:
        task: "single_label" (``predictions``/``references`` are 1-D int class ids),
            "multi_label" (multi-hot 0/1 int arrays of shape [N, num_labels]) or
            "regression" (1-D floats).
        predictions: Model outputs, already converted to ids / multi-hot / floats.
        references: Gold values in the same format.
        num_labels: Number of classes (fixes the confusion-matrix shape; checked for
            multi-label; ignored for regression).
        extra: Names of further ``evaluate`` metrics to compute with
            ``predictions=..., references=...``; their result dicts are merged in, but on a
            key clash the standard metric is kept. Non-bundled names need the Hub.

    Returns:
        single_label: accuracy, f1_macro, f1_micro, precision_macro, recall_macro, mcc,
        confusion_matrix ([num_labels][num_labels] ints, rows = true, columns = predicted).
        multi_label: subset_accuracy, f1_micro, f1_macro, precision_micro, recall_micro.
        regression: pearson, spearman (NaN for constant inputs), mse, mae.

    Raises:
        ConfigError: unknown ``task``, or "token_classification" (see :func:`compute_token_metrics`).
        DataError: mismatched lengths, empty input or malformed arrays.
        MetricLoadError: an ``extra`` metric could not be loaded.
    """
    if task == "token_classification":
        raise ConfigError(
            "compute_metrics does not score token_classification: its inputs are tag sequences, not arrays; "
            "call compute_token_metrics(references, predictions) instead"
        )
    predictions = np.asarray(predictions)
    references = np.asarray(references)
    if len(predictions) != len(references):
        raise DataError(f"predictions ({len(predictions)}) and references ({len(references)}) differ in length")
    if len(predictions) == 0:
        raise DataError("cannot compute metrics on zero examples")

    if task == "single_label":
        results = _single_label(predictions, references, num_labels)
    elif task == "multi_label":
        results = _multi_label(predictions, references, num_labels)
    elif task == "regression":
        results = _regression(predictions, references)
    else:
        raise ConfigError(f"unknown task {task!r}; expected one of {list(PRIMARY_METRIC)}")

    for name in extra:
        # Bundled classification metrics need their "multilabel" config for multi-hot inputs.
        config = "multilabel" if task == "multi_label" and name in _MULTILABEL_CONFIG_METRICS else None
        module = load_metric(name, config)
        extra_results = module.compute(predictions=predictions.tolist(), references=references.tolist())
        for key, value in (extra_results or {}).items():
            if key in results:
                logger.warning(
                    "Extra metric %r returned key %r, which clashes with a standard metric; kept ours", name, key
                )
                continue
            results[key] = _to_builtin(value)
    return results


def _check_tag_sequences(references: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> None:
    if len(references) != len(predictions):
        raise DataError(
            f"references ({len(references)} sentences) and predictions ({len(predictions)} sentences) "
            "differ in length; pass one tag list per sentence in both"
        )
    if len(references) == 0:
        raise DataError("cannot compute token metrics on zero sentences")
    for index, (ref, pred) in enumerate(zip(references, predictions)):
        for tags, what in ((ref, "references"), (pred, "predictions")):
            if isinstance(tags, (str, bytes)) or not isinstance(tags, (Sequence, np.ndarray)):
                raise DataError(
                    f"{what}[{index}] must be a list of tag strings (one per word), got {type(tags).__name__} "
                    f"{tags!r:.60}; pass a list of sentences, each a list of tags such as ['B-PER', 'O']"
                )
        if len(ref) != len(pred):
            raise DataError(
                f"sentence {index}: references has {len(ref)} tags but predictions has {len(pred)}; "
                "predictions must have one tag per word of the reference (drop sub-word and special tokens)"
            )
    if not any(references):
        raise DataError("cannot compute token metrics on zero tokens: every sentence is empty")


def compute_token_metrics(references: list[list[str]], predictions: list[list[str]]) -> dict[str, Any]:
    """Entity-level micro precision/recall/f1 and token accuracy (word level), plus "per_type":
    {TYPE: {"precision", "recall", "f1", "support"}} (support = number of gold entities).

    Scored with the bundled seqeval module in its default (conlleval) mode: an entity is right
    only if its type and both boundaries match; an ``I-X`` after ``O`` starts an entity; entities
    never run across sentences. Ratios that are 0/0 (no predicted or no gold entities) are 0.

    >>> compute_token_metrics([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]])["f1"]
    0.0

    Raises:
        DataError: different numbers of sentences or of tags in a sentence (naming the sentence),
            zero sentences or zero tokens, or a sentence that is not a list of tags.
    """
    _check_tag_sequences(references, predictions)
    result = load_metric("seqeval").compute(
        predictions=[list(tags) for tags in predictions], references=[list(tags) for tags in references]
    )
    overall = {f"overall_{key}": key for key in ("precision", "recall", "f1", "accuracy")}
    per_type = {
        str(type_): {
            "precision": float(scores["precision"]),
            "recall": float(scores["recall"]),
            "f1": float(scores["f1"]),
            "support": int(scores["number"]),
        }
        for type_, scores in result.items()
        if type_ not in overall
    }
    metrics: dict[str, Any] = {name: float(result[key]) for key, name in overall.items()}
    metrics["per_type"] = per_type
    return metrics
