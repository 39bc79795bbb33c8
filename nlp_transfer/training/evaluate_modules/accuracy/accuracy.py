"""Accuracy, bundled for offline use: the fraction of predictions equal to the references.

Computed with scikit-learn's ``accuracy_score``. Inputs: ``predictions`` and ``references``,
lists of int class ids (default config) or, with the ``"multilabel"`` config, lists of
multi-hot int lists, in which case it is the subset (exact-match) accuracy. Keyword
arguments: ``normalize`` (default True; False returns the count of correct examples) and
``sample_weight``. Returns ``{"accuracy": float}``.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score


class Accuracy(evaluate.Metric):
    def _info(self):
        value = datasets.Value("int32")
        if self.config_name == "multilabel":
            value = datasets.Sequence(value)
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description=__doc__,
            features=datasets.Features({"predictions": value, "references": value}),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"],
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        score = accuracy_score(references, predictions, normalize=normalize, sample_weight=sample_weight)
        return {"accuracy": float(score)}
