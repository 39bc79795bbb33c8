"""nlp_transfer: transfer learning for text (and vision) with one concept, the strategy.

    from nlp_transfer import TextClassifier
    clf = TextClassifier.from_pretrained("path/to/encoder", strategy="lora")
    clf.fit("train.jsonl", epochs=3)
    clf.predict(["an example"])

    from nlp_transfer import TokenClassifier                  # a tag per word: named entities
    ner = TokenClassifier.from_pretrained("path/to/encoder", strategy="full")
    ner.fit("train.conll", eval_data="dev.conll"); ner.predict("Angela Merkel visited Paris.")

    from nlp_transfer import ImageClassifier                  # the same strategies on timm CNNs
    clf = ImageClassifier.from_pretrained("resnet50", strategy="partial", unfreeze_last=1)

    from nlp_transfer import load_config, train, compare       # the run level, as the CLI uses it
    result = train(load_config("configs/offline/minilm-intents-lora.yaml", ["train.epochs=5"]))

    from nlp_transfer import rank_backbones                    # which pretrained model? before training any
    print(rank_backbones("train.jsonl", ["bert-base-uncased", "roberta-base@mean"]).table())

    from nlp_transfer import write_predictions, load_model    # deployment: stream a big file, serve an export
    write_predictions("runs/my-run", "big.jsonl", "predictions.parquet")
    clf.export("exports/my-run", quantize="int8", validation="dev.jsonl"); load_model("exports/my-run").predict(["hi"])

Importing the package is cheap: torch and transformers load on first use of a public name.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "TextClassifier",
    "TokenClassifier",
    "ImageClassifier",
    "RunConfig",
    "load_config",
    "train",
    "compare",
    "rank_backbones",
    "Candidate",
    "Ranking",
    "evaluate",
    "predict",
    "write_predictions",
    "load_model",
    "OnnxClassifier",
    "TrainingConfig",
    "DataConfig",
    "TrainingHistory",
    "STRATEGIES",
    "NLPTransferError",
    "ConfigError",
    "DataError",
    "StrategyError",
    "ModelLoadError",
    "__version__",
]

# public name -> module that defines it; resolved on first access (PEP 562)
_LAZY = {
    "TextClassifier": ".classifiers.text",
    "TokenClassifier": ".classifiers.tokens",
    "ImageClassifier": ".classifiers.image",
    "RunConfig": ".config.run",
    "load_config": ".config.run",
    "train": ".api",
    "compare": ".selection.comparison",
    "rank_backbones": ".selection.ranking",
    "Candidate": ".selection.ranking",
    "Ranking": ".selection.ranking",
    "evaluate": ".api",
    "predict": ".api",
    "write_predictions": ".api",
    "load_model": ".api",
    "OnnxClassifier": ".export.runtime",
    "TrainingConfig": ".config.settings",
    "DataConfig": ".config.settings",
    "TrainingHistory": ".training.engine",
    "STRATEGIES": ".strategies",
    "NLPTransferError": ".errors",
    "ConfigError": ".errors",
    "DataError": ".errors",
    "StrategyError": ".errors",
    "ModelLoadError": ".errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'nlp_transfer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
