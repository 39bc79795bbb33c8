"""Pearson correlation coefficient (strength of the linear relationship), bundled for offline use.

Computed with scipy's ``stats.pearsonr``; the result is in [-1, 1], and NaN (without a
warning) when either input is constant. Inputs: ``predictions`` and ``references``, lists
of floats; keyword ``return_pvalue`` (default False). Returns ``{"pearsonr": float}``, plus
``"p-value"`` when ``return_pvalue=True``.
"""

import warnings

import datasets
import evaluate
from scipy import stats


class Pearsonr(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description=__doc__,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
            reference_urls=["https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.pearsonr.html"],
        )

    def _compute(self, predictions, references, return_pvalue=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.ConstantInputWarning)
            result = stats.pearsonr(references, predictions)
        if return_pvalue:
            return {"pearsonr": float(result[0]), "p-value": float(result[1])}
        return {"pearsonr": float(result[0])}
