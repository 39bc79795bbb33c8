"""Spearman rank correlation coefficient (strength of the monotonic relationship), bundled for offline use.

Computed with scipy's ``stats.spearmanr``; the result is in [-1, 1], and NaN (without a
warning) when either input is constant. Inputs: ``predictions`` and ``references``, lists
of floats; keyword ``return_pvalue`` (default False). Returns ``{"spearmanr": float}``, plus
``"p-value"`` when ``return_pvalue=True``.
"""

import warnings

import datasets
import evaluate
from scipy import stats


class Spearmanr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description=__doc__,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
            reference_urls=["https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.spearmanr.html"],
        )

    def _compute(self, predictions, references, return_pvalue=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.ConstantInputWarning)
            result = stats.spearmanr(references, predictions)
        if return_pvalue:
            return {"spearmanr": float(result[0]), "p-value": float(result[1])}
        return {"spearmanr": float(result[0])}
