"""How well frozen features will transfer, measured without fine-tuning: LogME and a linear probe.

LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
ICML 2021) fits a Bayesian linear model ``y = F w + noise`` with prior ``w ~ N(0, 1/alpha)`` and
noise ``N(0, 1/beta)`` to each target (one one-hot column per class), chooses alpha and beta by
maximising the evidence ``p(y | F, alpha, beta)``, and reports that maximum log evidence divided
by the number of examples, averaged over the targets. Higher is better; the unit is nats per
example, comparable between backbones on the same data, not across datasets.

    >>> logme(features, labels)                      # features [n, d], labels [n] class ids
    -0.62
    >>> linear_probe_accuracy(features, labels)      # 5-fold accuracy of a logistic regression
    0.83

Everything goes through one SVD of the features, shared by every target and every iteration.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from nlp_transfer.errors import DataError

__all__ = ["logme", "log_evidence", "linear_probe_accuracy"]

logger = logging.getLogger(__name__)

# The paper's fixed-point iteration converges in a handful of steps; its reference code stops at 11.
_MAX_ITERATIONS = 100
_TOLERANCE = 1e-6


def logme(features: Any, labels: Any, *, regression: bool = False) -> float:
    """LogME of `features` [n, d] for `labels`: class ids [n] (one-hot per class), or with
    ``regression=True`` real targets [n] or [n, k]. Mean over targets of max log evidence / n."""
    f, y = _as_arrays(features, labels, regression)
    evidence, _, _ = _maximise(f, y)
    return float(evidence.mean())


def log_evidence(features: Any, targets: Any, alpha: float, beta: float) -> float:
    """Log evidence / n of one real target vector at given alpha and beta (the paper's equation 2).

    The plain formula with explicit matrices: the reference `logme` is tested against.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64).reshape(-1)
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, log_det = np.linalg.slogdet(a)
    value = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
             - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * m @ m - log_det / 2)
    return float(value / n)


def _maximise(f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per target column: (max log evidence / n, alpha, beta), by the paper's fixed-point updates.

    With F = U diag(s) V^T and z = U^T y, every quantity is a sum over the singular values, so all
    targets iterate together as vectors.
    """
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    s, sigma = s[:, None], s[:, None] ** 2  # sigma: eigenvalues of F^T F (the other d - k are zero)
    z = u.T @ y  # [k, targets]
    outside = np.maximum((y**2).sum(axis=0) - (z**2).sum(axis=0), 0.0)  # |y|^2 outside F's column space

    def terms(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        denominator = alpha + beta * sigma
        gamma = (beta * sigma / denominator).sum(axis=0)  # effective number of well-determined weights
        m_norm = ((beta * s * z / denominator) ** 2).sum(axis=0)  # |m|^2, m the posterior mean
        residual = ((alpha * z / denominator) ** 2).sum(axis=0) + outside  # |F m - y|^2
        return gamma, m_norm, residual

    alpha, beta = np.ones(y.shape[1]), np.ones(y.shape[1])
    for _ in range(_MAX_ITERATIONS):
        gamma, m_norm, residual = terms(alpha, beta)
        new_alpha, new_beta = gamma / m_norm, (n - gamma) / residual
        change = max(np.abs(new_alpha / alpha - 1).max(), np.abs(new_beta / beta - 1).max())
        alpha, beta = new_alpha, new_beta
        if change < _TOLERANCE:
            break
    _, m_norm, residual = terms(alpha, beta)
    log_det = np.log(alpha + beta * sigma).sum(axis=0) + (d - len(sigma)) * np.log(alpha)  # log|alpha I + beta F^T F|
    evidence = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
                - beta / 2 * residual - alpha / 2 * m_norm - log_det / 2)
    return evidence / n, alpha, beta


def linear_probe_accuracy(features: Any, labels: Any, *, folds: int = 5, seed: int = 0) -> float:
    """Mean accuracy of a logistic regression on standardised features over stratified k folds.

    A second opinion beside LogME: a classifier actually trained and scored on held-out examples.
    Folds drop to the size of the smallest class when it is smaller than `folds`.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f, y = _as_arrays(features, labels, regression=False)
    ids = y.argmax(axis=1)
    smallest = int(np.bincount(ids).min())
    if smallest < 2:
        raise DataError(f"A class has only {smallest} example(s); the linear probe needs at least 2 per class. "
                        "Use more examples (max_samples), or drop the rare class.")
    splitter = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
    # C=1.0 (sklearn's default) on standardised features: no tuning per candidate, so the probe
    # compares features, not how well each one's regularisation was searched. tol=1e-3 (not 1e-4)
    # halves its time on 2,000 x 384 features and moved TREC probe accuracies by under 1 point.
    probe = make_pipeline(StandardScaler(), LogisticRegression(tol=1e-3, max_iter=500))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a second opinion, not a model to keep
        return float(cross_val_score(probe, f, ids, cv=splitter, scoring="accuracy").mean())


def _as_arrays(features: Any, labels: Any, regression: bool) -> tuple[np.ndarray, np.ndarray]:
    """float64 features [n, d] and targets [n, k] (one-hot for classes), checked."""
    if hasattr(features, "detach"):
        features = features.detach().cpu().float().numpy()
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise DataError(f"features must be a 2-D array [examples, dims] with at least 2 rows, got shape {f.shape}.")
    if not np.isfinite(f).all():
        raise DataError("features hold NaN or infinite values; check the encoder's output (mixed precision overflow?).")
    values = np.asarray(labels)
    if len(values) != len(f):
        raise DataError(f"{len(f)} feature rows but {len(values)} labels; give one label per example.")
    if regression:
        y = values.astype(np.float64).reshape(len(f), -1)
    else:
        if values.ndim != 1:
            raise DataError(f"labels must be one class id per example, got shape {values.shape}; "
                            "for real-valued targets pass regression=True.")
        _, ids = np.unique(values, return_inverse=True)
        y = np.eye(ids.max() + 1)[ids]
    return f, y
