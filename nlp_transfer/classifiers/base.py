"""What every classifier does, whatever its modality: fit, evaluate, predict, summarise.

`TextClassifier` (and the vision classifier) add only how raw inputs become batches and how the
backbone is loaded and saved; labels, strategies, the training loop, metrics and the feature
cache live here once.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nlp_transfer.config.keywords import ModelSettings, fit_settings
from nlp_transfer.config.run import ModelSection
from nlp_transfer.config.settings import (DataConfig, TrainingConfig, build, check_threshold, passes_per_epoch,
                                          resolve_training)
from nlp_transfer.data.batching import FeatureCollator, LengthGroupedBatchSampler, SortedBatchSampler
from nlp_transfer.data.streams import DEFAULT_CHUNK_SIZE
from nlp_transfer.errors import ConfigError, DataError, ModelLoadError, NLPTransferError, did_you_mean
from nlp_transfer.modeling.heads import ClassificationHead, HeadConfig
from nlp_transfer.modeling.transfer_model import TransferModel
from nlp_transfer.strategies import Strategy, make_strategy, parameter_groups
from nlp_transfer.storage.model_folder import METADATA_FILE, ModelMetadata, read_metadata, save_tensors, write_folder
from nlp_transfer.tasks import Task, check_learnable, get_task, infer_labels, predicted_labels
from nlp_transfer.training.calibration import check_calibration, choose_temperature, fold_temperature
from nlp_transfer.training.engine import TrainingHistory, make_accelerator, run_inference, train_loop
from nlp_transfer.training.features import FeatureCache, FeatureDataset, default_cache_dir, encode_features

__all__ = ["Classifier"]

logger = logging.getLogger(__name__)

class Classifier:
    """Base class: a backbone, a strategy, a task and (once labels are known) a head.

    Subclasses implement `_examples`, `_dataset`, `_collator` and saving.
    """

    modality: str  # "text" or "vision": the subclass's data, and which strategy defaults apply
    # rows that predict / evaluate read and tokenise at once: memory is bounded by it, not by the input
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def __init__(self, backbone: torch.nn.Module, strategy: Strategy, task: Task, *, labels: list[Any] | None,
                 num_labels: int | None, head_options: dict[str, Any], threshold: float, seed: int,
                 apply_strategy: bool = True) -> None:
        check_threshold(threshold)
        self.backbone = backbone
        self.strategy = strategy
        self.task = task
        self.labels = list(labels) if labels is not None else None
        self.threshold = threshold
        self.seed = seed
        self.head_options = head_options
        self.data_config = DataConfig()
        self.training: TrainingConfig | None = None
        self.metrics: dict[str, Any] | None = None
        self.calibration: dict[str, Any] | None = None  # the temperature-scaling record of the last fit (`_calibrate`)
        # regression: (mean, std) of the first fit's targets. The head learns standardised targets
        # (targets around 1000 otherwise start a head whose outputs are near 0 a long way off, and
        # it ends predicting a constant); predictions and metrics are in the user's units.
        self.target_scale: tuple[float, float] | None = None
        self.history: TrainingHistory | None = None
        self.model: TransferModel | None = None
        self._initial_seed: int | None = seed  # None once the weights are trained or loaded
        # False for a model loaded from merged LoRA weights: plain weights until a fit adds adapters
        self._apply_strategy = apply_strategy
        # True when LoRA adapters would sit on weights that exist only in this model (merged, or
        # fine-tuned before): such adapters cannot be saved apart from their base, so saves merge them
        self._adapter_base_in_memory = False
        self._accelerator = None
        strategy.check(backbone)  # a strategy that cannot fit this model (or task) fails now, not at fit
        strategy.check_task(task.name)
        self._num_outputs = self._outputs_for(labels, num_labels)
        if self._num_outputs is not None:
            self._build_head(self._num_outputs)

    # ----------------------------------------------------------------- labels and head
    def _outputs_for(self, labels: Sequence[Any] | None, num_labels: int | None) -> int | None:
        if self.task.name == "regression":
            if labels is not None or num_labels not in (None, 1):
                raise ConfigError("task='regression' predicts one number: leave labels unset and num_labels at 1 or unset.")
            return 1
        if labels is not None:
            if len(set(labels)) != len(labels) or not labels:
                raise ConfigError(f"labels must be a non-empty list of distinct names, got {labels!r}.")
            if num_labels is not None and num_labels != len(labels):
                raise ConfigError(
                    f"num_labels={num_labels} contradicts labels={list(labels)!r} ({len(labels)} names). "
                    "Give only labels (num_labels follows from them), or make them agree."
                )
            return len(labels)
        if num_labels is not None and (not isinstance(num_labels, int) or num_labels < 2):
            raise ConfigError(f"num_labels must be an integer of at least 2, got {num_labels!r}; for one number use task='regression'.")
        return num_labels

    def _build_head(self, num_outputs: int) -> None:
        with torch.random.fork_rng(devices=[]):  # seeded head and adapters, global RNG untouched
            torch.manual_seed(self.seed)
            head = ClassificationHead(HeadConfig(self.backbone.feature_size, num_outputs, **self.head_options))
            self._init_head(head)
            model = TransferModel(self.backbone, head, self.task)
            if self._apply_strategy:
                self.strategy.apply(model)
            else:  # plain weights: frozen until a fit applies the strategy
                model.backbone.requires_grad_(False)
        self.model = model  # only a model whose strategy applied cleanly
        self._initial_seed = self.seed  # untrained: a later fit(seed=...) may draw the head and adapters again

    def _seed_initialisation(self, seed: int) -> None:
        """Draw the untrained head (and LoRA adapters) with `seed`: the initialisation is part of what
        a fit's seed fixes. A trained or loaded model keeps its weights."""
        if self._initial_seed is None or seed == self._initial_seed:
            return
        self.seed = seed
        if self.model is None:
            return  # the head is built from the training labels, with this seed
        if self.backbone.has_adapters:
            self.backbone.encoder = self.backbone.encoder.unload()  # untrained adapters go; new ones are drawn
        self._build_head(self._num_outputs)

    def _init_head(self, head: ClassificationHead) -> None:
        """Hook: start the head from pretrained weights where the architecture has them."""

    def _settle_labels(self, values: Sequence[Any], where: str) -> None:
        """Fix the label set from the training data (first fit) or check it against the model's."""
        found = infer_labels(self.task, values, where)
        check_learnable(self.task, found, where)
        if self.task.name == "regression":
            if self.target_scale is None:  # the first fit fixes the units the head learns in
                self.target_scale = _standardisation(values, where)
            return
        if self.labels is not None:
            return
        if self._num_outputs is not None and len(found) != self._num_outputs:
            if all(isinstance(v, int) and 0 <= v < self._num_outputs for v in found):
                found = list(range(self._num_outputs))  # integer ids, some absent from this data
            else:
                raise DataError(
                    f"num_labels={self._num_outputs}, but {where} has {len(found)} labels: {found[:20]}. "
                    f"Set num_labels={len(found)}, or pass labels=[...] listing every label."
                )
        if self.model is None:
            self._build_head(len(found))
            self._num_outputs = len(found)
        self.labels = found

    @property
    def label2id(self) -> dict[Any, int] | None:
        return {label: i for i, label in enumerate(self.labels)} if self.labels is not None else None

    def _targets(self, values: Sequence[Any], where: str) -> torch.Tensor:
        """Training targets: label ids, multi-hot rows, or standardised numbers (see `target_scale`)."""
        targets = self.task.encode(values, self.label2id, where)
        if self.task.name == "regression" and self.target_scale is not None:
            mean, std = self.target_scale
            targets = (targets - mean) / std
        return targets

    def _user_units(self, values: np.ndarray) -> np.ndarray:
        """Regression outputs (or standardised targets) back in the units of the user's labels."""
        if self.task.name != "regression" or self.target_scale is None or values is None:
            return values
        mean, std = self.target_scale
        return values * std + mean

    def _require_model(self) -> TransferModel:
        if self.model is None:
            raise NLPTransferError("The head does not exist yet: pass labels or num_labels to from_pretrained, or call fit first.")
        return self.model

    # ----------------------------------------------------------------- public API
    def parameter_summary(self) -> dict[str, int]:
        """Trainable and total parameter counts under the current strategy."""
        model = self._require_model()
        return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "total": sum(p.numel() for p in model.parameters())}

    def fit(self, train: Any, eval_data: Any = None, *, resume: bool = False, training: TrainingConfig | None = None,
            data: DataConfig | None = None, **settings: Any) -> TrainingHistory:
        """Train on `train`; evaluate on `eval_data` (or a seeded hold-out of train) after each epoch.

        Settings are a `TrainingConfig` and a `DataConfig` (the ``train:`` and ``data:`` config
        sections), or their fields as keywords on top, e.g.
        ``clf.fit("train.jsonl", epochs=3, batch_size=16, text_column="sentence")``. Data settings
        not given carry over from the model (max_length, columns of an earlier fit). With
        ``checkpoint_dir=...`` it saves resumable checkpoints; ``resume=True`` continues from the
        newest one (same data and settings), with the same result as an uninterrupted run.
        """
        training, data_config = fit_settings(settings, training=training, data=data or self.data_config)
        data_config = self._check_data_config(data_config)
        resolved = resolve_training(training, self.strategy.name, self.modality)
        if resolved.report_to:  # a missing tracker package fails now, not after the data is read
            from nlp_transfer.training.tracking import check_trackers

            check_trackers(resolved.report_to)
        if "seed" in settings or training is not None:  # a seed the caller chose redraws an untrained head
            self._seed_initialisation(resolved.seed)
        train_ex, eval_ex = self._train_and_eval_examples(train, eval_data, resolved, data_config)
        self.strategy.check_task(self.task.name, pairs=getattr(self, "uses_text_pair", False))
        metric = self._check_best_metric(resolved, eval_ex is not None)
        check_calibration(resolved.calibration, self.task.name, eval_ex is not None)
        train_set = self._training_dataset(train_ex, self._targets(train_ex.labels, "train"), resolved.seed)
        eval_set = self._evaluation_dataset(eval_ex, self._targets(eval_ex.labels, "eval_data")) if eval_ex else None
        eval_set_inputs = eval_set  # what the scores are computed for (the cache swaps the dataset, not the examples)

        from accelerate.utils import set_seed

        accelerator = self._accelerator = make_accelerator(resolved)
        # from here on the settings say what runs: the launcher may have chosen the precision
        resolved = dataclasses.replace(resolved, mixed_precision=accelerator.mixed_precision)
        set_seed(resolved.seed)
        self._check_fits_the_launch(accelerator)
        model = self._require_model().to(accelerator.device)
        collate = self._collator(accelerator)
        tuned = None
        if self.strategy.tunes_backbone_first:  # contrastive: the encoder learns from pairs before the head trains
            tuned = self.strategy.tune_backbone(model, self._encoding_view(train_set), collate, resolved.seed,
                                                resolved.learning_rate, accelerator)
        cached = self.strategy.frozen_backbone and resolved.cache_features
        if cached:
            train_set, eval_set, collate = self._cached(train_set, eval_set, collate, resolved, accelerator)
        workers = 0 if cached else self._workers(resolved, len(train_set), resolved.batch_size)  # features: no reading
        passes = self._passes_per_epoch(resolved, len(train_set), accelerator.num_processes)
        train_loader = DataLoader(train_set, collate_fn=collate, num_workers=workers, batch_sampler=LengthGroupedBatchSampler(
            train_set.lengths, resolved.batch_size, resolved.seed, group=resolved.group_by_length, passes=passes))
        eval_loader = None
        if eval_set is not None:
            eval_workers = 0 if cached else self._workers(resolved, len(eval_set), resolved.eval_batch_size)
            eval_loader = self._eval_loader(eval_set, resolved.eval_batch_size, collate, eval_workers)
        from nlp_transfer.training.metrics import greater_is_better

        self.strategy.apply(model)  # every fit starts from the strategy's first state (gradual unfreezing starts over)
        groups = lambda: parameter_groups(model, self.strategy, resolved.learning_rate,  # noqa: E731
                                          resolved.head_learning_rate, resolved.weight_decay)
        checkpointer = None
        if resolved.checkpoint_dir:
            from nlp_transfer.training.checkpoints import Checkpointer

            checkpointer = Checkpointer(resolved.checkpoint_dir, accelerator, resolved.save_total_limit)
        history = train_loop(model, groups, train_loader, eval_loader, resolved,
                             self._score(resolved.extra_metrics, eval_set_inputs),
                             accelerator, metric, greater_is_better(metric), checkpointer=checkpointer, resume=resume,
                             identity=self._identity(resolved, len(train_set), accelerator.num_processes),
                             on_epoch_start=lambda epoch: self.strategy.on_epoch_start(model, epoch),
                             on_unsharded=self._adopt_unsharded, hyperparameters=self._hyperparameters(resolved))
        from nlp_transfer.training import tracking

        if not tracking.in_session():  # else the caller logs its final metrics and closes them
            tracking.end(accelerator)
        if tuned is not None:
            history = dataclasses.replace(history, backbone_tuning=tuned)
        self.training, self.history = resolved, history
        self._initial_seed = None  # trained: a later fit continues from these weights
        self.metrics = _final_metrics(history, resolved.load_best_model_at_end)
        self._calibrate(resolved, eval_loader, eval_set_inputs)
        return history

    def _calibrate(self, settings: TrainingConfig, eval_loader: DataLoader | None, dataset: Dataset | None) -> None:
        """Temperature scaling (`settings.calibration`) on the evaluation split's logits of the final weights.

        T is folded into the head's output layer, so predictions, every saved layout and exports carry
        it; `metrics` are re-scored as the model now predicts (the per-epoch history stays as trained)."""
        self.calibration = None  # a record describes this fit's weights only
        if eval_loader is None or self.task.name != "single_label" or settings.calibration == "none":
            return
        model = self._require_model().eval()  # after FSDP, the plain copy `_adopt_unsharded` took
        forward = lambda batch: model(**{k: v for k, v in batch.items() if k != "labels"})["logits"]  # noqa: E731
        logits, targets = run_inference(forward, eval_loader, self._accelerator, "Calibrating")
        fit = choose_temperature(logits, targets, settings.calibration, seed=settings.seed)
        logger.info("%s", fit.summary())
        self.calibration = fit.record()
        if fit.applied:
            fold_temperature(model.head.out, fit.temperature)
            epoch = (self.metrics or {}).get("epoch")
            self.metrics = self._score(settings.extra_metrics, dataset)(logits / fit.temperature, targets) | {"epoch": epoch}

    def _check_fits_the_launch(self, accelerator) -> None:
        from nlp_transfer.training.sharding import is_sharded

        # FSDP fixes which parameters train when it wraps the model; gradual unfreezing changes that
        # every epoch (DDP is wrapped again for it; an FSDP model cannot be re-wrapped in place)
        if self.strategy.name == "gradual" and is_sharded(accelerator):
            raise ConfigError("strategy 'gradual' cannot run under FSDP: it unfreezes more layers each epoch, and FSDP "
                              "fixes the trainable parameters when it shards the model. Use 'partial' (a fixed number "
                              "of top layers) or 'full' under FSDP, or launch gradual with DDP (--multi_gpu).")

    @staticmethod
    def _passes_per_epoch(settings: TrainingConfig, examples: int, processes: int) -> int:
        passes = passes_per_epoch(settings, examples, processes)
        if passes > 1:  # few-shot data: a handful of steps per pass leaves a fine-tuned model near chance
            logger.info("%d training examples: each of the %d epochs passes over them %d times (reshuffled), to make "
                        "at least min_steps=%d optimizer steps (min_steps: 0 keeps one pass per epoch).",
                        examples, settings.epochs, passes, settings.min_steps)
        return passes

    def _hyperparameters(self, settings: TrainingConfig) -> dict[str, Any]:
        """What a tracker records of a plain `fit` (`nlp-transfer train` records its whole config)."""
        return {"model": {"name_or_path": self.base_model, "task": self.task.name, "labels": len(self.labels or [])},
                "strategy": self.strategy.describe(), "train": dataclasses.asdict(settings)}

    def _adopt_unsharded(self, model: TransferModel) -> None:
        """After a sharded (FSDP) fit: continue with the plain copy of the trained model, as after DDP."""
        self.model, self.backbone = model, model.backbone

    def _identity(self, settings: TrainingConfig, examples: int, processes: int) -> dict[str, Any]:
        """What a checkpoint must match to be resumed by this run."""
        trainable = {n: list(p.shape) for n, p in self._require_model().named_parameters() if p.requires_grad}
        return {"labels": self.labels, "task": self.task.name, "strategy": self.strategy.name, "trainable": trainable,
                "train_examples": examples, "epochs": settings.epochs, "min_steps": settings.min_steps,
                "batch_size": settings.batch_size,
                "gradient_accumulation_steps": settings.gradient_accumulation_steps, "seed": settings.seed,
                "processes": processes}

    def evaluate(self, data: Any, **data_settings: Any) -> dict[str, Any]:
        """Loss and metrics (and a confusion matrix for single-label tasks) on labelled data.

        Read and run `chunk_size` rows at a time (files and an `IterableDataset` stream): only the
        outputs and targets of every row are kept until the scores, never their tokens.
        """
        config = build(DataConfig, {**_fields_of(self.data_config), **data_settings}, source="evaluate")
        config = self._check_data_config(config)
        chunks, first = [], None
        for examples in self._example_chunks(data, config, "data", need_labels=True):
            dataset = self._evaluation_dataset(examples, self._targets(examples.labels, "data"), config)
            outputs, targets = self._logits(dataset)
            first = first or (dataset, outputs, targets)
            chunks.append(_per_example(dataset, outputs, targets))
        # one chunk is scored as one dataset, exactly as before chunking
        dataset, outputs, targets = first if len(chunks) == 1 else _joined(chunks)
        scores = self._score(self.training.extra_metrics if self.training else [], dataset)(outputs, targets)
        if self.task.name == "regression":
            _warn_if_constant(self._user_units(outputs), self._user_units(targets))
        return scores

    def features(self, data: Any, *, feature_cache_dir: str | None = None, batch_size: int = 64,
                 mixed_precision: str | None = None, **data_settings: Any) -> torch.Tensor:
        """The backbone's pooled features [n, feature_size] for `data`, in order: what the head sees.

        Goes through the disk feature cache (`feature_cache_dir`, as in `fit`; "memory" skips it),
        so asking again for the same data and backbone does not run the encoder. Labels are not
        needed. ``clf.features(["a text", "another"])``.
        """
        config = build(DataConfig, {**_fields_of(self.data_config), **data_settings}, source="features")
        config = self._check_data_config(config)
        settings = build(TrainingConfig, {"feature_cache_dir": feature_cache_dir, "eval_batch_size": batch_size,
                                          "mixed_precision": mixed_precision}, source="features")
        examples = self._examples(data, config, "data", need_labels=False)
        if self.history is None:  # not trained yet: the inputs (single texts or pairs) are what this data has
            self._adopt_inputs(examples)
        dataset = self._dataset(examples, None, config)
        accelerator = make_accelerator(settings)  # first: the precision that runs is part of the cache key
        settings = dataclasses.replace(settings, mixed_precision=accelerator.mixed_precision)
        disk = self._feature_cache(settings)
        found = disk.load(dataset) if disk is not None else None
        if found is not None:
            return found
        self.backbone.to(accelerator.device)
        workers = self._workers(settings, len(dataset), settings.eval_batch_size)
        loader = self._eval_loader(dataset, settings.eval_batch_size, self._collator(accelerator), workers)
        encoded = encode_features(self.backbone, loader, accelerator)
        if disk is not None and accelerator.is_main_process:
            disk.store(dataset, encoded)
        return encoded

    def predict(self, inputs: Any) -> list[Any]:
        """Labels (single-label), lists of labels (multi-label) or numbers (regression), in input order.

        Inputs are tokenised and run `chunk_size` rows at a time, so a million texts (or a file, or
        an `IterableDataset`) need the memory of one chunk plus the returned labels. To write
        predictions of a large file as they come, use `nlp_transfer.api.write_predictions`.
        """
        return self.predict_with_scores(inputs)[0]

    def predict_with_scores(self, inputs: Any) -> tuple[list[Any], np.ndarray | None]:
        """`predict` and `predict_proba` from one pass over the data (scores are None for regression)."""
        logits = self._predict_logits(inputs)
        return self._decide(logits), (None if self.task.name == "regression" else self.task.scores(logits))

    def _decide(self, logits: np.ndarray) -> list[Any]:
        return predicted_labels(self.task, logits, self.threshold, self.labels)

    def predict_proba(self, inputs: Any) -> np.ndarray:
        """Class probabilities [n, num_labels] (softmax; per-label sigmoid for multi-label)."""
        if self.task.name == "regression":
            raise NLPTransferError("predict_proba has no meaning for regression; use predict for the predicted values.")
        return self.task.scores(self._predict_logits(inputs))

    # ----------------------------------------------------------------- building, loading, saving (both modalities)
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, model: ModelSection | None = None, strategy: Any = None,
                        **settings: Any) -> Classifier:
        """Load a pretrained model, add a head, apply the strategy; or reload a folder `save` wrote.

        Settings are the fields of the ``model:`` config section (`ModelSection`: labels, task,
        head, dropout, ...; `nlp-transfer show-config --defaults` lists them with their help),
        ``max_length`` (text), ``seed``, ``strategy`` (a name, a `StrategySection` or a strategy's
        options such as ``LoraOptions(r=16)``) and the chosen strategy's options as keywords
        (``unfreeze_last=2``, ``r=16``). `model=` takes a whole `ModelSection`. Unknown names are
        errors with a "did you mean"; unset ones take the field's default.

        A folder written by `save` (or a Hub repo nlp_transfer pushed) loads with its labels, head,
        strategy and settings. Given a strategy or its options, it continues from the saved weights
        with that strategy (a fine-tuned model trained further with LoRA); `max_length`, `threshold`
        and `dropout` apply too; settings the trained head depends on must match or be left unset.
        """
        from nlp_transfer.config.keywords import model_settings

        name_or_path = str(name_or_path)
        chosen = model_settings(cls.modality, name_or_path, dict(settings), model=model, strategy=strategy)
        saved = cls._saved_folder(name_or_path)
        if saved is None:
            return cls._from_base_model(chosen)
        clf = cls.load(saved, trust_remote_code=chosen.model.trust_remote_code)
        clf._continue_with(name_or_path, chosen)
        return clf

    @classmethod
    def _saved_folder(cls, name_or_path: str) -> Path | None:
        """The nlp_transfer folder `name_or_path` names: local, or a Hub repo nlp_transfer pushed."""
        if (Path(name_or_path) / METADATA_FILE).is_file():
            return Path(name_or_path)
        if not cls._may_be_ours_on_the_hub(name_or_path):
            return None
        from nlp_transfer.storage.hub import download_if_ours

        return download_if_ours(name_or_path.removeprefix("hf-hub:"))  # labels, head, strategy and all

    @classmethod
    def load(cls, path: str | Path, *, trust_remote_code: bool = False) -> Classifier:
        """Rebuild a classifier saved by `save`: labels, head, strategy, settings and weights."""
        folder = Path(path)
        if not folder.is_dir():
            raise ModelLoadError(f"Model folder {str(path)!r} does not exist.")
        meta = read_metadata(folder)
        if meta.modality != cls.modality:
            other = "ImageClassifier" if meta.modality == "vision" else "TextClassifier"
            raise ModelLoadError(f"{str(path)!r} holds a {meta.modality} model; load it with {other} "
                                 "(or nlp_transfer.api.load_model, which picks the class).")
        strategy = make_strategy(meta.strategy["name"], meta.strategy.get("options"))
        head_options = {k: v for k, v in meta.head.items() if k not in ("in_features", "num_outputs")}
        common = dict(strategy=strategy, task=get_task(meta.task), labels=meta.labels,
                      num_labels=meta.num_outputs if meta.labels is None else None, head_options=head_options,
                      threshold=meta.threshold, seed=0, apply_strategy=not meta.strategy.get("merged"))
        clf = cls._from_saved(folder, meta, common, trust_remote_code=trust_remote_code)
        clf._adapter_base_in_memory = bool(meta.strategy.get("merged"))  # merged LoRA: plain weights, no adapter base
        clf.target_scale = tuple(meta.target_scale) if meta.target_scale else None
        clf._set_head_weights(clf._saved_head(folder, meta), folder)
        clf.metrics = meta.metrics
        clf.calibration = meta.temperature_scaling
        return clf

    def save(self, path: str | Path, *, merge_lora: bool = False) -> Path:
        """Write a self-describing folder (layouts: `storage/model_folder.py`); returns its path.

        The architecture's own layout where the head allows it (transformers'
        ``*ForSequenceClassification``, timm's classifier), so other tools load it without
        nlp_transfer. Unmerged LoRA saves the adapter and the head; ``merge_lora=True`` folds the
        adapter into plain weights (loadable without peft).
        """
        from nlp_transfer.storage.card import model_card
        from nlp_transfer.training.engine import process_state

        self._require_model()
        encoder, as_adapter, merged = self._encoder_to_save(merge_lora)
        layout = "adapter" if as_adapter else self._weights_layout()
        metadata = self._metadata(layout, merged)

        def write(folder: Path) -> None:
            if layout == "adapter":
                encoder.save_pretrained(folder / "adapter")
                self._name_the_base(folder / "adapter")
                save_tensors(self.model.head.state_dict(), folder / "head.safetensors")
            else:
                self._write_weights(folder, layout, encoder)
            self._write_preprocessing(folder)
            (folder / METADATA_FILE).write_text(metadata.to_json(), encoding="utf-8")
            (folder / "README.md").write_text(model_card(metadata), encoding="utf-8")

        state = process_state()
        if state.is_main_process:  # under several processes, one writer
            write_folder(Path(path), write)
            logger.info("Saved the model to %s (%s layout).", path, layout)
        state.wait_for_everyone()
        return Path(path)

    def _metadata(self, layout: str, merged: bool) -> ModelMetadata:
        from nlp_transfer import __version__

        return ModelMetadata(
            modality=self.modality, layout=layout, base_model=self.base_model, model_type=self.backbone.model_type,
            task=self.task.name, labels=self.labels, num_outputs=self._num_outputs, threshold=self.threshold,
            pooling=self.backbone.pooling, pool_layers=self.backbone.pool_layers, head=self.model.head.config.to_dict(),
            strategy=self._strategy_record(merged), data=dataclasses.asdict(self.data_config),
            training=dataclasses.asdict(self.training) if self.training else None, metrics=self.metrics,
            parameters=self.parameter_summary(), library_version=__version__,
            target_scale=list(self.target_scale) if self.target_scale else None, temperature_scaling=self.calibration,
            **self._metadata_extras())

    def push_to_hub(self, repo_id: str, *, private: bool = False, token: str | None = None,
                    commit_message: str | None = None, merge_lora: bool = False, license: str | None = None) -> str | None:
        """Save (with a model card naming `repo_id`) and upload to the Hub; returns the repo URL.

        Token: the argument, else HF_TOKEN, else the saved login; it is never logged or written.
        A failed push raises `HubError` and changes nothing local. Under several processes only the
        main one uploads (the others return None).
        """
        import tempfile

        from nlp_transfer.storage.hub import push_folder
        from nlp_transfer.training.engine import process_state

        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save(Path(tmp) / "model", merge_lora=merge_lora)
            if not process_state().is_main_process:
                return None
            hint = (f"Nothing local changed. Save the model with clf.save(path) and push it later with: "
                    f"nlp-transfer push path --repo-id {repo_id}")
            return push_folder(folder, repo_id, private=private, token=token, commit_message=commit_message,
                               retry_hint=hint, card={"license": license})

    # ----------------------------------------------------------------- continuing from a saved model
    def _continue_with(self, where: str, chosen: ModelSettings) -> None:
        """`from_pretrained(saved_folder, ...)`: apply what may change, refuse what may not.

        The trained head depends on the `_fixed_settings`: a chosen value that differs from the
        saved one is an error. A new strategy (or new options) applies to the saved weights:
        "continue from my fine-tuned model with LoRA" is a real use.
        """
        for name, saved in self._fixed_settings().items():
            given = getattr(chosen.model, name)
            if chosen.chose(name) and given not in ("auto", saved) and not (name == "random_init" and not given):
                raise ConfigError(
                    f"{where} is a saved model with {name}={saved!r}; from_pretrained cannot make it {given!r}, because the "
                    f"trained head depends on it. Leave {name} unset to continue from the saved model, or start a new "
                    f"one from its base model ({self.base_model}) with {name}={given!r}.")
        if chosen.chose("threshold"):
            self.threshold = chosen.model.threshold
        if chosen.chose("dropout"):
            self._set_dropout(chosen.model.dropout)
        if chosen.max_length is not None:
            self.data_config = dataclasses.replace(self.data_config, max_length=chosen.max_length)
            self.data_config = self._check_data_config(self.data_config)
        options = chosen.strategy.options()
        options_given = any(chosen.chose(name) for name in options)
        if chosen.chose("strategy") or options_given:
            keep = chosen.strategy.name == self.strategy.name and not options_given  # same strategy: its saved options
            self._switch_strategy(make_strategy(chosen.strategy.name, self.strategy.options if keep else options))

    def _fixed_settings(self) -> dict[str, Any]:
        """The saved settings the trained head depends on (name -> saved value)."""
        return {"labels": self.labels, "num_labels": self._num_outputs, "task": self.task.name,
                "head": self.model.head.config.kind, "random_init": self.random_init}

    def _switch_strategy(self, new: Strategy) -> None:
        """Train the current weights with `new` from now on (trained adapters are merged in first)."""
        if new.describe() == self.strategy.describe():
            return
        encoder = self.backbone.encoder
        if self.backbone.has_adapters:  # the trained adapters become part of what the next strategy starts from
            self.backbone.encoder = encoder.merge_and_unload()
        self._adapter_base_in_memory = True  # any new adapters sit on these weights, which no Hub id names
        new.check(self.backbone)
        new.check_task(self.task.name)
        self.strategy, self._apply_strategy = new, True
        new.apply(self._require_model())
        logger.info("Continuing from the saved weights with strategy %s %s.", new.name, new.describe()["options"])

    def _set_dropout(self, dropout: float) -> None:
        head = self._require_model().head
        for module in head.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = dropout
        head.config = dataclasses.replace(head.config, dropout=dropout)
        self.head_options = {**self.head_options, "dropout": dropout}

    # ----------------------------------------------------------------- saving helpers (both modalities)
    def _encoder_to_save(self, merge_lora: bool) -> tuple[torch.nn.Module, bool, bool]:
        """(encoder, saved as an adapter, LoRA merged into the weights) for `save`.

        Adapters are merged when asked, and always when their base exists only in this model (a
        merged or fine-tuned model trained further with LoRA): an adapter file naming the original
        base would lose the weights under it.
        """
        encoder = self.backbone.encoder
        is_adapter = self.backbone.has_adapters
        merge = is_adapter and (merge_lora or self._adapter_base_in_memory)
        if merge:
            if not merge_lora:
                logger.info("Saving LoRA merged into the weights: its base exists only in this model.")
            encoder = copy.deepcopy(encoder).cpu().merge_and_unload()
        merged = merge or (self._adapter_base_in_memory and self.strategy.name == "lora")
        return encoder, is_adapter and not merge, merged

    def _output_layer_in_user_units(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's last linear layer with the regression standardisation folded in: what a plain
        transformers or timm model needs to predict in the user's units. Exact: y = (Wx + b) std + mean."""
        if self.target_scale is None:
            return weight, bias
        mean, std = self.target_scale
        return weight * std, bias * std + mean

    def _output_layer_standardised(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The inverse of `_output_layer_in_user_units`, for loading such a layout."""
        if self.target_scale is None:
            return weight, bias
        mean, std = self.target_scale
        return weight / std, (bias - mean) / std

    def _strategy_record(self, merged: bool) -> dict[str, Any]:
        """The strategy as saved: name and options, and whether LoRA was merged or the model trained from scratch."""
        strategy = self.strategy.describe()
        if merged:
            strategy["merged"] = True
        if getattr(self, "random_init", False):
            strategy["random_init"] = True  # trained from scratch: the base model gave only its shape
        return strategy

    def _set_head_weights(self, state: dict[str, torch.Tensor], folder: Path) -> None:
        from nlp_transfer.errors import ModelLoadError

        try:
            self._require_model().head.load_state_dict(state)
        except RuntimeError as error:
            raise ModelLoadError(f"The head weights in {folder} do not fit the saved head settings: {error}") from error
        self._initial_seed = None  # trained weights: a fit's seed no longer redraws them

    # ----------------------------------------------------------------- internals
    def _train_and_eval_examples(self, train: Any, eval_data: Any, settings: TrainingConfig, data_config: DataConfig):
        """Read and check all data; only then adopt its labels and column settings."""
        from nlp_transfer.data.tables import limit_per_class, split_validation

        limit = data_config.per_class_limit
        if limit is not None and self.task.name != "single_label":  # "per class" needs one class per example
            raise ConfigError(f"per_class_limit={limit} needs single-label data, but the task is {self.task.name!r}; "
                              "set data.per_class_limit=null (or cut the training file yourself).")
        train_ex = self._examples(train, data_config, "train", need_labels=True)
        eval_ex = None
        if eval_data is not None:
            eval_ex = self._examples(eval_data, data_config, "eval_data", need_labels=True)
            infer_labels(self.task, eval_ex.labels, "eval_data")
            self._check_same_inputs(train_ex, eval_ex, data_config)
        self._settle_labels(train_ex.labels, "train")
        self.data_config = data_config
        self._adopt_inputs(train_ex)
        if eval_ex is None and data_config.validation_split > 0:
            train_ex, eval_ex = split_validation(train_ex, data_config.validation_split, settings.seed,
                                                 stratify=self.task.name == "single_label")
            logger.info("No eval_data: holding out %d of the training examples for evaluation.", len(eval_ex))
        if limit is not None:  # after the hold-out, which draws from all of train: evaluation keeps its size
            train_ex = limit_per_class(train_ex, limit, settings.seed)
        return train_ex, eval_ex

    def _check_best_metric(self, settings: TrainingConfig, has_eval: bool) -> str:
        from nlp_transfer.training.metrics import METRIC_NAMES, PRIMARY_METRIC, load_metric

        for name in settings.extra_metrics:  # a metric that cannot load fails now, not after an epoch
            load_metric(name, "multilabel" if self.task.name == "multi_label" else None)

        metric = settings.metric_for_best_model or PRIMARY_METRIC[self.task.name]
        metric = metric.removeprefix("eval_")
        known = [*METRIC_NAMES[self.task.name], "loss"]
        if metric not in known and not settings.extra_metrics:
            raise ConfigError(f"metric_for_best_model={metric!r} is not computed for task {self.task.name!r}: {did_you_mean(metric, known)}")
        if settings.early_stopping_patience is not None and not has_eval:
            raise ConfigError("early_stopping_patience needs evaluation data: pass eval_data or set validation_split > 0.")
        return metric

    def _score(self, extra: Sequence[str], dataset: Dataset | None = None):
        """The scoring function of evaluations on `dataset`: outputs and targets in its order -> loss and metrics."""
        from nlp_transfer.training.calibration import calibration_metrics
        from nlp_transfer.training.metrics import compute_metrics

        def score(logits: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
            target_tensor = torch.as_tensor(targets)
            if self.task.name == "single_label":
                target_tensor = target_tensor.long()
            # the loss is the one training minimises (standardised regression targets); metrics in the user's units
            loss = float(self.task.loss(torch.as_tensor(logits), target_tensor))
            logits, targets = self._user_units(logits), self._user_units(targets)
            truth = self.task.targets_for_metrics(targets)
            metrics = compute_metrics(self.task.name, self.task.decide(logits, self.threshold), truth,
                                      num_labels=self._num_outputs, extra=extra)
            # do the probabilities mean what they say? (nothing for regression)
            metrics.update(calibration_metrics(self.task.name, self.task.scores(logits), truth))
            return {"loss": loss, **metrics}

        return score

    def _cached(self, train_set: Dataset, eval_set: Dataset | None, collate, settings: TrainingConfig, accelerator):
        """With a frozen backbone, run it once (or load its output from disk) and train the head on the features."""
        disk = self._feature_cache(settings)
        sets = [train_set] if eval_set is None else [train_set, eval_set]
        found = [disk.load(self._encoding_view(dataset)) if disk is not None else None for dataset in sets]
        accelerator.wait_for_everyone()  # every process decides hit or miss before anyone writes
        features = []
        for dataset, hit in zip(sets, found):
            if hit is None:
                view = self._encoding_view(dataset)
                workers = self._workers(settings, len(view), settings.eval_batch_size)
                loader = self._eval_loader(view, settings.eval_batch_size, collate, workers)
                hit = encode_features(self.model.backbone, loader, accelerator)
                if disk is not None and accelerator.is_main_process:
                    disk.store(view, hit)
            features.append(hit)
        accelerator.wait_for_everyone()
        cached_train = self._cached_dataset(features[0], train_set)
        cached_eval = self._cached_dataset(features[1], eval_set) if eval_set is not None else None
        return cached_train, cached_eval, self._cached_collator()

    @staticmethod
    def _cached_dataset(features: torch.Tensor, dataset: Dataset) -> Dataset:
        """Hook: the cached features of `dataset` as a training set (tagging: features per word)."""
        return FeatureDataset(features, dataset.targets, dataset.lengths)

    @staticmethod
    def _cached_collator():
        """Hook: what batches `_cached_dataset` rows."""
        return FeatureCollator()

    def _feature_cache(self, settings: TrainingConfig) -> FeatureCache | None:
        if settings.feature_cache_dir == "memory":
            return None
        backbone = self.backbone  # the model's own (also before a head exists)
        key_settings = {"backbone": type(backbone).__name__, "pooling": backbone.pooling,
                        "pool_layers": backbone.pool_layers, "precision": settings.mixed_precision}
        if getattr(backbone, "combine_layers", "mean") != "mean":  # concatenated layers: other (wider) features
            key_settings["combine_layers"] = backbone.combine_layers
        folder = Path(settings.feature_cache_dir) if settings.feature_cache_dir else default_cache_dir()
        return FeatureCache(folder, backbone, key_settings)

    @staticmethod
    def _eval_loader(dataset: Dataset, batch_size: int, collate, workers: int = 0) -> DataLoader:
        return DataLoader(dataset, batch_sampler=SortedBatchSampler(dataset.lengths, batch_size), collate_fn=collate,
                          num_workers=workers)

    def _workers(self, settings: TrainingConfig, examples: int, batch_size: int) -> int:
        """DataLoader workers: the user's number, else the modality's default, but none for data that
        fits in one batch (starting a worker costs more than reading it)."""
        if settings.num_workers is not None:
            return settings.num_workers
        return self._default_workers() if examples > batch_size else 0

    @staticmethod
    def _default_workers() -> int:
        """Hook: text is tokenised before training, so reading a batch is cheap; no worker processes."""
        return 0

    def _logits(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray | None]:
        model = self._require_model()
        if self._accelerator is None:
            self._accelerator = make_accelerator(self.training or TrainingConfig())
        accelerator = self._accelerator
        model.to(accelerator.device).eval()
        settings = self.training or TrainingConfig()
        workers = self._workers(settings, len(dataset), settings.eval_batch_size)
        loader = self._eval_loader(dataset, settings.eval_batch_size, self._collator(accelerator), workers)
        forward = lambda batch: model(**{k: v for k, v in batch.items() if k != "labels"})["logits"]  # noqa: E731
        return run_inference(forward, loader, accelerator)

    def _predict_logits(self, inputs: Any) -> np.ndarray:
        self._require_model()
        if self.labels is None and self.task.name != "regression":
            raise NLPTransferError("The model has no labels yet; call fit first.")
        chunks = [self._user_units(self._logits(self._dataset(examples, None))[0])
                  for examples in self._example_chunks(inputs, self.data_config, "inputs", need_labels=False)]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def _example_chunks(self, source: Any, config: DataConfig, where: str, need_labels: bool):
        """The examples of `source`, at most `chunk_size` at a time, in order.

        Sources `data/streams.py` reads lazily (table files, datasets, lists, iterators) are read a
        chunk at a time; the rest (image folders, CoNLL files, one text) are read whole by `_examples`
        and cut. Vision tables are read whole too: their relative image paths are resolved against
        the file's folder, which rows alone do not know (a row holds only a path, so this stays small).
        """
        from nlp_transfer.data.streams import check_chunk_size, row_chunks, streams

        size = check_chunk_size(self.chunk_size)
        if self.modality != "vision" and streams(source):
            first = 0
            for rows in row_chunks(source, where, size):
                yield self._chunk_examples(rows, config, where, need_labels, first)
                first += len(rows)
            return
        examples = self._examples(source, config, where, need_labels)
        if len(examples) <= size:
            yield examples
            return
        for start in range(0, len(examples), size):
            yield examples.take(range(start, min(start + size, len(examples))))

    def _chunk_examples(self, rows: list[Any], config: DataConfig, where: str, need_labels: bool, first: int):
        """`_examples` of one chunk; its errors say where the chunk starts (their row numbers count from there)."""
        from nlp_transfer.data.streams import in_chunk

        try:
            return self._examples(rows, config, where, need_labels)
        except DataError as error:
            if not first:
                raise
            raise in_chunk(error, first) from error

    # ----------------------------------------------------------------- modality hooks
    @classmethod
    def _may_be_ours_on_the_hub(cls, name_or_path: str) -> bool:
        """Whether `name_or_path` could name a Hub repo nlp_transfer pushed (worth a metadata look-up)."""
        raise NotImplementedError

    @classmethod
    def _from_base_model(cls, chosen: ModelSettings) -> Classifier:
        """A new, untrained classifier on the pretrained model `chosen.model` names."""
        raise NotImplementedError

    @classmethod
    def _from_saved(cls, folder: Path, meta: ModelMetadata, common: dict[str, Any], *,
                    trust_remote_code: bool) -> Classifier:
        """The classifier of a saved folder (backbone and settings; `load` sets the head weights)."""
        raise NotImplementedError

    def _weights_layout(self) -> str:
        """The layout `save` writes when the model has no unmerged adapter (see `storage/model_folder.py`)."""
        raise NotImplementedError

    def _write_weights(self, folder: Path, layout: str, encoder: torch.nn.Module) -> None:
        """Write the encoder and head weights in `layout`."""
        raise NotImplementedError

    def _saved_head(self, folder: Path, meta: ModelMetadata) -> dict[str, torch.Tensor]:
        """The head's state dict as saved in `folder`, in our head's names and units."""
        raise NotImplementedError

    def _write_preprocessing(self, folder: Path) -> None:
        """Write what turns raw inputs into model inputs, where it is a file (text: the tokenizer)."""

    def _name_the_base(self, adapter_folder: Path) -> None:
        """Adjust the saved adapter's config so it names its base where the base is public."""

    def _metadata_extras(self) -> dict[str, Any]:
        """Modality settings for `nlp_transfer.json`."""
        return {}

    def _examples(self, source: Any, config: DataConfig, where: str, need_labels: bool):
        raise NotImplementedError

    def _dataset(self, examples: Any, targets: torch.Tensor | None, config: DataConfig | None = None) -> Dataset:
        """Model inputs for `examples`, prepared as `config` says (default: the model's data settings)."""
        raise NotImplementedError

    def _evaluation_dataset(self, examples: Any, targets: Any, config: DataConfig | None = None) -> Dataset:
        """The dataset evaluations score; differs from `_dataset` where each example must be scored once
        (tagging: windows of a long sentence overlap)."""
        return self._dataset(examples, targets, config)

    def _training_dataset(self, examples: Any, targets: torch.Tensor | None, seed: int) -> Dataset:
        """The training set; differs from `_dataset` where training adds randomness (image augmentation,
        drawn from its own generator seeded by `seed`)."""
        return self._dataset(examples, targets)

    def _encoding_view(self, dataset: Dataset) -> Dataset:
        """What cached features are computed from: the same examples without training randomness."""
        return dataset


    def _check_same_inputs(self, train: Any, eval_data: Any, config: DataConfig) -> None:
        """Raise when evaluation data lacks an input the training data has."""

    def _adopt_inputs(self, train: Any) -> None:
        """Remember what the (validated) training inputs look like."""

    def _check_data_config(self, config: DataConfig) -> DataConfig:
        """The data settings as this model can use them; raises for settings it cannot (text: max_length)."""
        return config

    def _collator(self, accelerator):
        raise NotImplementedError


class _PerSentence:
    """Stands for the evaluation datasets of several chunks once their window outputs are regrouped
    per sentence (`_joined`): each output is already one sentence's."""

    @staticmethod
    def sentence_outputs(outputs: list[np.ndarray]) -> list[np.ndarray]:
        return list(outputs)


def _per_example(dataset: Any, outputs: Any, targets: Any) -> tuple[Any, Any]:
    """A chunk's outputs and targets, one per example: outputs per position (tagging's windows, whose
    chunk datasets are not kept) regrouped per sentence; arrays as they are."""
    if isinstance(outputs, list):
        return dataset.sentence_outputs(outputs), dataset.sentence_outputs(targets)
    return outputs, targets


def _joined(chunks: list[tuple[Any, Any]]) -> tuple[Any, Any, Any]:
    """The per-example outputs and targets of every chunk as those of one dataset (what `_score` takes).
    Per-sentence outputs score the same words as their windows did (only each window's own words
    carry targets), so the scores are those of one pass over all the data."""
    if isinstance(chunks[0][0], list):
        return (_PerSentence(), [row for outputs, _ in chunks for row in outputs],
                [row for _, targets in chunks for row in targets])
    return None, np.concatenate([outputs for outputs, _ in chunks]), np.concatenate([targets for _, targets in chunks])


def _final_metrics(history: TrainingHistory, restored_best: bool) -> dict[str, Any] | None:
    """Evaluation metrics of the weights the model ends with: the best epoch's, or the last's."""
    if history.metric_name is None:
        return None
    # no best epoch when every evaluation was NaN: nothing was restored, the last epoch's weights stand
    wanted = history.best_epoch if restored_best and history.best_epoch is not None else history.epochs[-1]["epoch"]
    row = next(row for row in history.epochs if row["epoch"] == wanted)
    return {k.removeprefix("eval_"): v for k, v in row.items() if k.startswith("eval_")} | {"epoch": wanted}


def _standardisation(values: Sequence[Any], where: str) -> tuple[float, float]:
    numbers = np.asarray(values, dtype=np.float64)
    std = float(numbers.std())
    if not std > 0:
        raise DataError(f"{where}: every regression target is {numbers[0]:g}, so there is nothing to learn; "
                        "check the label column, or give targets that vary.")
    return float(numbers.mean()), std


def _warn_if_constant(predictions: np.ndarray, targets: np.ndarray) -> None:
    spread, wanted = float(np.std(predictions)), float(np.std(targets))
    if wanted > 0 and spread < 1e-3 * wanted:
        logger.warning("The model predicts (nearly) the same value for every example (spread %.3g, targets' spread "
                       "%.3g): it has not learnt the targets. Train longer, raise the learning rate, or check the data.",
                       spread, wanted)


def _fields_of(config: Any) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}
