"""F1 score (harmonic mean of precision and recall), bundled for offline use.

Computed with scikit-learn's ``f1_score``. Inputs: ``predictions`` and ``references``,
lists of int class ids (default config) or, with the ``"multilabel"`` config, lists of
multi-hot int lists. Keyword arguments: ``average`` (default ``"macro"``, unlike sklearn's
``"binary"``; also ``"micro"``, ``"weighted"``, ``"samples"``, ``"binary"`` or None for
per-class scores), ``labels``, ``pos_label``, ``sample_weight`` and ``zero_division`` (default
0, so classes that are never predicted or never present score 0 without warnings).
Returns ``{"f1": float}``, or a list of floats when ``average=None``.
"""

import datasets
import evaluate
from sklearn.metrics import f1_score


class F1(evaluate.Metric):
    def _info(self):
        value = datasets.Value("int32")
        if self.config_name == "multilabel":
            value = datasets.Sequence(value)
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description=__doc__,
            features=datasets.Features({"predictions": value, "references": value}),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
        )

    def _compute(
        self, predictions, references, average="macro", labels=None, pos_label=1, sample_weight=None, zero_division=0
    ):
        score = f1_score(
            references,
            predictions,
            labels=labels,
            pos_label=pos_label,
            average=average,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        return {"f1": score.tolist() if getattr(score, "ndim", 0) else float(score)}
