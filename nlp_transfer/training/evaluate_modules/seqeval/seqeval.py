"""Entity-level precision, recall and F1 for sequence labelling (NER), bundled for offline use.

Computed with the ``seqeval`` package. Inputs: ``predictions`` and ``references``, lists of
sentences, each a list of tag strings such as ``["B-PER", "I-PER", "O"]`` (IOB2). An entity
counts as correct only if its type and both boundaries match. By default the chunking is
conlleval's (lenient: an ``I-X`` after ``O`` or after another type starts a new entity);
``mode="strict"`` with a ``scheme`` (``"IOB2"``, ``"IOE2"``, ``"IOBES"``, ``"BILOU"``, ...)
accepts only entities that are well formed in that scheme. ``zero_division`` (default 0)
is the score reported when a ratio is 0/0, without warnings. Sentences never merge: an entity
at the end of one sentence and an ``I-`` at the start of the next are separate.

Returns, for each entity type ``TYPE``, ``{"precision", "recall", "f1", "number"}`` (number =
gold entities of that type), plus ``overall_precision``, ``overall_recall``, ``overall_f1``
(micro averages over all entities) and ``overall_accuracy`` (token-level accuracy).

    >>> seqeval = evaluate.load("nlp_transfer/training/evaluate_modules/seqeval")
    >>> seqeval.compute(predictions=[["B-PER", "O"]], references=[["B-PER", "I-PER"]])["overall_f1"]
    0.0
"""

import importlib
import warnings

import datasets
import evaluate
from seqeval.metrics import accuracy_score, classification_report

#: Tagging schemes defined in ``seqeval.scheme`` (for ``mode="strict"``).
_SCHEMES = ("IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU")
_MODES = (None, "strict")
_AVERAGES = ("micro avg", "macro avg", "weighted avg")


def _scheme_class(mode, scheme):
    if mode not in _MODES:
        raise ValueError(f"seqeval mode must be one of {list(_MODES)}, got {mode!r}")
    if scheme is None:
        if mode == "strict":
            # seqeval silently ignores mode="strict" without a scheme in its scores.
            raise ValueError(f'seqeval mode="strict" needs a scheme; pass scheme=, one of {list(_SCHEMES)}')
        return None
    if scheme not in _SCHEMES:
        raise ValueError(f"seqeval scheme must be one of {list(_SCHEMES)}, got {scheme!r}")
    if mode != "strict":
        raise ValueError(f'seqeval scheme={scheme!r} only applies with mode="strict"; pass mode="strict"')
    return getattr(importlib.import_module("seqeval.scheme"), scheme)


class Seqeval(evaluate.Metric):
    def _info(self):
        tags = datasets.Sequence(datasets.Value("string"))
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description=__doc__,
            features=datasets.Features({"predictions": tags, "references": tags}),
            reference_urls=["https://github.com/chakki-works/seqeval"],
        )

    def _compute(self, predictions, references, mode=None, scheme=None, zero_division=0):
        scheme_class = _scheme_class(mode, scheme)
        if not any(references):
            raise ValueError("seqeval needs at least one tagged token; every reference sentence is empty")
        with warnings.catch_warnings():
            # Without any entity the macro/weighted averages (dropped below) are means of nothing.
            warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
            warnings.filterwarnings("ignore", message="invalid value encountered", category=RuntimeWarning)
            report = classification_report(
                references,
                predictions,
                output_dict=True,
                mode=mode,
                scheme=scheme_class,
                zero_division=zero_division,
            )
        micro = report["micro avg"]
        results = {
            type_: {
                "precision": float(scores["precision"]),
                "recall": float(scores["recall"]),
                "f1": float(scores["f1-score"]),
                "number": int(scores["support"]),
            }
            for type_, scores in report.items()
            if type_ not in _AVERAGES
        }
        results["overall_precision"] = float(micro["precision"])
        results["overall_recall"] = float(micro["recall"])
        results["overall_f1"] = float(micro["f1-score"])
        results["overall_accuracy"] = float(accuracy_score(references, predictions))
        return results
