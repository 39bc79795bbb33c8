"""The user-facing classifiers: one base that fits, evaluates, predicts, saves and loads, and one
small subclass per modality that says how raw inputs become batches and how its backbone is built.

| module | holds |
|---|---|
| `base` | `Classifier`: labels, head, strategy, the fit / evaluate / predict path, save / load / push |
| `text` | `TextClassifier`: tokenizing, sentence pairs, the transformers save layouts |
| `tokens` | `TokenClassifier`: a tag per word (words -> windows, entity-level scores, `*ForTokenClassification`) |
| `image` | `ImageClassifier`: image reading and preprocessing, the timm save layouts |
"""
