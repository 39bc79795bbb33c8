"""Matthews correlation coefficient (MCC), bundled for offline use.

A correlation between true and predicted classes in [-1, 1] that stays informative on
imbalanced data (0 means no better than chance). Computed with scikit-learn's
``matthews_corrcoef``. Inputs: ``predictions`` and ``references``, lists of int class ids
(binary or multiclass); keyword ``sample_weight``. Returns ``{"matthews_correlation": float}``.
"""

import datasets
import evaluate
from sklearn.metrics import matthews_corrcoef


class MatthewsCorrelation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description=__doc__,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.matthews_corrcoef.html"],
        )

    def _compute(self, predictions, references, sample_weight=None):
        score = matthews_corrcoef(references, predictions, sample_weight=sample_weight)
        return {"matthews_correlation": float(score)}
