"""The run-level Python API (what the CLI calls): train a configured run, evaluate and predict with it.

    from nlp_transfer import load_config, train
    result = train(load_config("configs/offline/minilm-intents-lora.yaml", ["train.epochs=5"]))
    result.metrics["test"]["accuracy"], result.path        # runs/<name>/ holds model, config, metrics

Training logic lives in `TextClassifier`; this module only connects a `RunConfig` to it and
writes the run folder (`runs.py`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlp_transfer.config.run import RunConfig, dump_config, load_config, resolve, with_overrides
from nlp_transfer.data.sources import Splits, load_splits
from nlp_transfer.data.streams import DEFAULT_CHUNK_SIZE
from nlp_transfer.errors import ConfigError
from nlp_transfer.training.memory import PeakMemory

__all__ = ["RunResult", "train", "fit_run", "build_classifier", "write_run", "push_run", "load_model", "evaluate", "predict", "iter_predictions",
           "write_predictions",
           "as_config"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """A finished run: its folder (None until written), resolved config, final metrics per split, history."""

    config: RunConfig
    metrics: dict[str, dict[str, Any]]
    history: Any
    fit_seconds: float
    parameters: dict[str, int]
    classifier: Any
    peak_memory_mb: float = 0.0
    memory_kind: str = "rss"
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. no better than predicting the majority label
    strategy_choice: str | None = None  # with strategy auto: which strategy it chose and why

    @property
    def train_samples_per_second(self) -> float:
        """Training examples processed per second of `fit`, end to end (encoding, evaluation included)."""
        seen = sum(row["train_samples_per_second"] * row["train_seconds"] for row in self.history.epochs)
        return seen / self.fit_seconds if self.fit_seconds else 0.0


def as_config(config: RunConfig | str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """A RunConfig from a config object or a YAML path, with overrides applied."""
    if isinstance(config, RunConfig):
        return with_overrides(config, tuple(overrides))
    return load_config(config, tuple(overrides))


def train(config: RunConfig | str | Path, overrides: Sequence[str] = (), *, resume: bool = False) -> RunResult:
    """Train the configured run and write its run folder; returns the result with the classifier.

    Checkpoints go to ``train.checkpoint_dir`` (default ``<output.dir>.checkpoints``) after every
    epoch (and every ``train.save_steps``); ``resume=True`` continues a killed run from its newest
    one. The default folder is removed once the run folder is written; a chosen one is kept.
    """
    import shutil

    from nlp_transfer.storage.run_folder import check_output_folder

    config, splits, choice = _with_auto_strategy(as_config(config, overrides))
    config = resolve(config)
    if config.train.seeds != 1:  # one run folder holds one seed's model; averaging over seeds is compare's job
        raise ConfigError(f"train.seeds={config.train.seeds} is for `compare` (`nlp-transfer compare --seeds N`); "
                          "train runs one seed (train.seed): set train.seeds=1, or run compare.")
    # derived here, not written into the config, so a replayed config.yaml checkpoints beside its own output
    checkpoints = config.train.checkpoint_dir or f"{config.output.dir.rstrip('/')}.checkpoints"
    check_output_folder(Path(config.output.dir), config.output.overwrite)  # before any work
    splits = splits or load_splits(config.data)
    # tracker files go beside the run while it trains, then into its folder (logs/) with the rest
    logs = f"{config.output.dir.rstrip('/')}.logs" if config.train.report_to and not config.train.logging_dir else None
    result = fit_run(config, splits, resume=resume, checkpoint_dir=checkpoints, logging_dir=logs)
    result = dataclasses.replace(result, strategy_choice=choice)
    if config.model.random_init:  # the random twin: said next to the numbers, so nobody reads them as transfer
        from nlp_transfer.selection.negative_transfer import random_init_warning

        result = dataclasses.replace(result, warnings=[random_init_warning(config.model.name_or_path), *result.warnings])
        logger.warning("%s", result.warnings[0])
    result = write_run(Path(config.output.dir), result, save_model=config.output.save_model, splits=splits,
                       tracker_logs=Path(logs) if logs else None)
    from nlp_transfer.training.engine import process_state

    if process_state().is_main_process and config.train.checkpoint_dir is None:
        shutil.rmtree(checkpoints, ignore_errors=True)  # the run is safe in its folder; a chosen checkpoint_dir is kept
    if config.output.push_to_hub:  # after the local save: a failed push loses nothing
        if process_state().is_main_process:
            push_run(result.path, config.output.hub_model_id, private=config.output.hub_private)
    return result


def _with_auto_strategy(config: RunConfig) -> tuple[RunConfig, Splits | None, str | None]:
    """With strategy.name auto: the config with the strategy the training data calls for, the splits
    read to count it, and why (`selection.auto`); otherwise the config as it is, nothing read."""
    from nlp_transfer.selection.auto import AUTO, choose_strategy

    if config.strategy.name != AUTO:
        return config, None, None
    from nlp_transfer.data.tables import read_table

    splits = load_splits(config.data)
    table = read_table(splits.train, "data.train")
    label = config.data.label_column
    if label not in table:
        raise ConfigError(f"strategy auto counts the labels in data.label_column={label!r}, which data.train does not "
                          f"have (columns: {', '.join(table)}); set data.label_column.")
    pair = config.data.text_pair_column
    choice = choose_strategy(table[label], task=config.model.task, modality=config.model.type,
                             pairs=bool(pair) and pair in table, per_class_limit=config.data.per_class_limit,
                             keep_share=1.0 if splits.validation is not None else 1.0 - config.data.validation_split)
    logger.info("strategy auto chose %s: %s.", choice.strategy, choice.reason)
    chosen = dataclasses.replace(config.strategy, name=choice.strategy)
    return dataclasses.replace(config, strategy=chosen), splits, f"auto chose {choice.strategy}: {choice.reason}"


def fit_run(config: RunConfig, splits: Splits, *, resume: bool = False, checkpoint_dir: str | None = None,
            logging_dir: str | None = None) -> RunResult:
    """Build the classifier the config describes, fit it, and score the configured splits (no files).

    `train` and `compare` hand it the config `resolve` made; given an unresolved one, the fit still
    fills the strategy's defaults (`resolve_training`, the one place they are resolved).
    """
    # the run's own memory: its model and fit, above what the process held before (in `compare`, the
    # earlier strategies' models and leftovers), so runs in one process do not inherit each other's
    from nlp_transfer.training import tracking

    # one tracker run holds the fit and the final scores; its hyperparameters are the resolved config
    with tracking.session(dataclasses.asdict(config), project=config.run.name or "nlp_transfer"):
        with PeakMemory() as peak:
            clf = build_classifier(config)
            started = time.perf_counter()
            training = dataclasses.replace(config.train, checkpoint_dir=checkpoint_dir or config.train.checkpoint_dir,
                                           logging_dir=logging_dir or config.train.logging_dir)
            history = clf.fit(splits.train, splits.validation, resume=resume, training=training,
                              data=config.data.data_config())
            fit_seconds = time.perf_counter() - started
        final = {split: clf.evaluate(getattr(splits, split)) for split in config.eval.splits
                 if getattr(splits, split) is not None}
        last_step = history.epochs[-1]["step"] if history.epochs else 0
        tracking.log_final(clf._accelerator, final, last_step)
    for split, scores in final.items():
        logger.info("%s: %s", split, ", ".join(f"{k}={v:.4f}" for k, v in scores.items() if isinstance(v, float)))
    warnings = _baseline_warnings(final or ({"held-out": clf.metrics} if clf.metrics else {}))
    for warning in warnings:
        logger.warning("%s", warning)
    from nlp_transfer.training.launch import launch_warnings

    warnings += launch_warnings(clf._accelerator)  # logged when training started
    return RunResult(config, final, history, fit_seconds, clf.parameter_summary(), clf, peak.increase_megabytes,
                     f"{peak.kind} increase", warnings=warnings)


def _baseline_warnings(metrics: dict[str, dict[str, Any]]) -> list[str]:
    """Splits whose accuracy is not clearly above always predicting their most frequent label."""
    from nlp_transfer.selection.negative_transfer import baseline_warning, majority_baseline

    found = []
    for split, scores in metrics.items():
        baseline = majority_baseline(scores)
        if baseline is not None and isinstance(scores.get("accuracy"), float):
            warning = baseline_warning(f"{split} split", "accuracy", scores["accuracy"], baseline)
            found += [warning] if warning else []
    return found


def build_classifier(config: RunConfig):
    """The classifier `config.model` describes (text or vision), its strategy applied, not yet trained."""
    if config.model.type == "vision":
        from nlp_transfer.classifiers.image import ImageClassifier

        return ImageClassifier.from_pretrained(config.model.name_or_path, model=config.model, strategy=config.strategy,
                                               seed=config.train.seed)
    from nlp_transfer.classifiers.text import TextClassifier
    from nlp_transfer.classifiers.tokens import TokenClassifier

    cls = TokenClassifier if config.model.task == "token_classification" else TextClassifier
    return cls.from_pretrained(config.model.name_or_path, model=config.model, strategy=config.strategy,
                               max_length=config.data.max_length, seed=config.train.seed)


def write_run(path: Path, result: RunResult, *, save_model: bool, splits: Splits | None = None,
              tracker_logs: Path | None = None) -> RunResult:
    """Write the run folder of `result` at `path` (see `runs.py` for the layout); `tracker_logs`, a
    folder the trackers wrote during training, moves into it as ``logs/``."""
    from nlp_transfer.storage.card import model_card
    from nlp_transfer.storage.model_folder import read_metadata
    from nlp_transfer.storage.run_folder import environment, staged_run_folder, write_json, write_jsonl
    from nlp_transfer.training.engine import process_state

    config, clf = result.config, result.classifier
    state = process_state()
    with staged_run_folder(path) as folder:
        if save_model:
            clf.save(folder / "model", merge_lora=config.output.merge_lora)
        if state.is_main_process:
            env = environment(state.num_processes, _precision_that_ran(clf), _launch_that_ran(clf))
            (folder / "config.yaml").write_text(dump_config(config), encoding="utf-8")
            write_json(folder / "metrics.json", run_metrics(result))
            write_jsonl(folder / "history.jsonl", result.history.steps)
            write_json(folder / "environment.json", env)
            if save_model:  # the card the model was saved with, now with the run's results and settings
                card = model_card(read_metadata(folder / "model"), title=config.run.name, results=result.metrics,
                                  dataset=config.data.dataset, dataset_config=config.data.dataset_config, environment=env)
                (folder / "README.md").write_text(card, encoding="utf-8")
                (folder / "model" / "README.md").write_text(card, encoding="utf-8")
        if config.eval.save_predictions and splits is not None:
            _write_predictions(folder, clf, splits, config, state.is_main_process)
        if tracker_logs is not None and tracker_logs.is_dir() and state.is_main_process:
            import shutil

            shutil.move(str(tracker_logs), str(folder / "logs"))
    return dataclasses.replace(result, path=path)


def run_metrics(result: RunResult) -> dict[str, Any]:
    """metrics.json: the final scores per split, and what the training loop saw epoch by epoch."""
    history = result.history
    return {"final": result.metrics, "metric": history.metric_name, "best_epoch": history.best_epoch,
            "best_metric": history.best_metric, "stopped_early": history.stopped_early,
            "train_seconds": history.train_seconds, "fit_seconds": result.fit_seconds,
            "train_samples_per_second": result.train_samples_per_second,
            "peak_memory_mb": result.peak_memory_mb, "memory_kind": result.memory_kind,
            "parameters": result.parameters, "mixed_precision": _precision_that_ran(result.classifier),
            "launch": _launch_that_ran(result.classifier),
            "epochs": history.epochs, "warnings": list(result.warnings),
            **({"strategy_choice": result.strategy_choice} if result.strategy_choice else {})}


def _launch_that_ran(clf) -> dict[str, Any] | None:
    """How the fit was launched, as the accelerator ran it (None before a fit)."""
    from nlp_transfer.training.launch import describe_launch

    accelerator = getattr(clf, "_accelerator", None)
    return describe_launch(accelerator) if accelerator is not None and clf.training is not None else None


def _precision_that_ran(clf) -> str | None:
    """The precision the accelerator trained in (the config may leave it to the launcher)."""
    return clf.training.mixed_precision if clf is not None and clf.training is not None else None


def push_run(run_or_model: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
             merge_lora: bool = False, commit_message: str | None = None) -> str:
    """Push a run's model with the run's card (results per split, settings, environment); returns the URL.

    ``merge_lora=True`` pushes LoRA merged into plain encoder weights instead of the adapter.
    """
    import json
    import shutil
    import tempfile

    from nlp_transfer.storage.hub import push_folder
    from nlp_transfer.storage.run_folder import find_model_folder

    model_folder = find_model_folder(run_or_model)
    run = model_folder.parent if (model_folder.parent / "config.yaml").is_file() else None
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model"
        if merge_lora:
            load_model(model_folder).save(staged, merge_lora=True)
        else:
            shutil.copytree(model_folder, staged)
        extra: dict[str, Any] = {}
        if run is not None:
            config = load_config(run / "config.yaml")
            metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8")) if (run / "metrics.json").is_file() else {}
            env_file = run / "environment.json"
            extra = {"title": config.run.name, "results": metrics.get("final"), "dataset": config.data.dataset,
                     "dataset_config": config.data.dataset_config,
                     "environment": json.loads(env_file.read_text(encoding="utf-8")) if env_file.is_file() else None}
        hint = f"The run is unchanged in {run_or_model}; push it later with: nlp-transfer push {run_or_model} --repo-id {repo_id}"
        return push_folder(staged, repo_id, private=private, token=token, commit_message=commit_message, retry_hint=hint,
                           card=extra)


def load_model(run_or_model: str | Path, *, precision: str = "auto"):
    """The classifier saved in a run folder (or in a model folder), text or vision; for a folder
    `Classifier.export` wrote, an `OnnxClassifier` (`precision`: "auto", "fp32" or "int8")."""
    from nlp_transfer.export.manifest import is_onnx_export
    from nlp_transfer.storage.model_folder import read_metadata
    from nlp_transfer.storage.run_folder import find_model_folder

    if is_onnx_export(run_or_model):
        from nlp_transfer.export.runtime import OnnxClassifier

        return OnnxClassifier.load(run_or_model, precision=precision)
    folder = find_model_folder(run_or_model)
    meta = read_metadata(folder)
    if meta.modality == "vision":
        from nlp_transfer.classifiers.image import ImageClassifier

        return ImageClassifier.load(folder)
    if meta.task == "token_classification":
        from nlp_transfer.classifiers.tokens import TokenClassifier

        return TokenClassifier.load(folder)
    from nlp_transfer.classifiers.text import TextClassifier

    return TextClassifier.load(folder)


def evaluate(run_or_model: str | Path, data: Any, **data_settings: Any) -> dict[str, Any]:
    """Metrics of a saved run or model on labelled data (a file, or e.g. ``support_intents:test``)."""
    from nlp_transfer.data.sources import resolve_data

    clf = load_model(run_or_model)
    return clf.evaluate(resolve_data(data) if isinstance(data, str) else data, **data_settings)


def predict(run_or_model: str | Path | Any, inputs: Any, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
            **data_settings: Any) -> list[dict[str, Any]]:
    """One dict per input: the text(s) or image path, the prediction and, for classification, each label's
    probability; for tagging, the text (or ``tokens``), its ``words``, their ``tags`` and the ``entities``.

    `inputs`: texts or images (tagging: also lists of words), or a data source (a file,
    ``support_intents:test``, an image folder, a `datasets.Dataset` or `IterableDataset`). Read and
    run `chunk_size` inputs at a time (`iter_predictions`); only the returned rows grow with the input.
    """
    return [row for rows in iter_predictions(run_or_model, inputs, chunk_size=chunk_size, **data_settings)
            for row in rows]


def iter_predictions(run_or_model: str | Path | Any, inputs: Any, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                     **data_settings: Any) -> Iterator[list[dict[str, Any]]]:
    """`predict`, chunk by chunk: the rows of each `chunk_size` inputs, in input order, as they are predicted.

    The source is read lazily (JSONL line by line, CSV in chunks, parquet by record batches, a
    `datasets.Dataset` by slices, an `IterableDataset` or a generator as a stream), so memory is
    that of one chunk however long the input. A missing column or an empty text fails on the first
    chunk, before the model runs. Image folders and CoNLL files are listed whole (paths and words).

        for rows in iter_predictions("runs/sst2", "big.jsonl", chunk_size=4096):
            ...
    """
    from nlp_transfer.data.streams import check_chunk_size

    check_chunk_size(chunk_size)
    clf = load_model(run_or_model) if isinstance(run_or_model, (str, Path)) else run_or_model
    if data_settings:
        clf.data_config = dataclasses.replace(clf.data_config, **data_settings)
    return _prediction_chunks(clf, _input_chunks(clf, inputs, "predict", chunk_size))


def write_predictions(run_or_model: str | Path | Any, inputs: Any, output: str | Path, *,
                      chunk_size: int = DEFAULT_CHUNK_SIZE, progress: bool = False, **data_settings: Any) -> int:
    """Predict on `inputs` (as `iter_predictions`) and write the rows to `output` chunk by chunk, in the
    format its suffix names (.jsonl, .csv with a ``prob_<label>`` column per label, .parquet); returns
    how many rows were written.

    The rows go to a temporary file beside `output`, renamed to it once complete: an interrupted run
    (Ctrl-C, a crash, a bad row halfway) leaves no file that looks complete, and an older `output`
    stays as it was. ``progress=True`` shows rows/s on stderr (main process only).

        write_predictions("runs/sst2", "big.jsonl", "predictions.parquet")
    """
    from tqdm.auto import tqdm

    from nlp_transfer.data.prediction_files import prediction_format, prediction_writer
    from nlp_transfer.storage.atomic import staged_file
    from nlp_transfer.training.engine import process_state

    output = Path(output)
    prediction_format(output)  # an unknown file type fails before the model loads
    chunks = iter_predictions(run_or_model, inputs, chunk_size=chunk_size, **data_settings)
    if not process_state().is_main_process:  # every process runs the model (outputs are gathered); one writes
        return sum(len(rows) for rows in chunks)
    with staged_file(output) as staging, prediction_writer(output, staging) as writer, \
            tqdm(desc=f"Predicting {output.name}", unit=" rows", disable=not progress, leave=False) as bar:
        for rows in chunks:
            writer.write(rows)
            bar.update(len(rows))
        _as_readable_as_any_file(staging)
    logger.info("%d predictions written to %s", writer.rows, output)
    return writer.rows


def _as_readable_as_any_file(path: Path) -> None:
    """The staging file is private (mkstemp's 0600); the predictions file gets the umask's permissions."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _prediction_chunks(clf, chunks: Iterator[list[Any]]) -> Iterator[list[dict[str, Any]]]:
    from nlp_transfer.data.streams import in_chunk
    from nlp_transfer.errors import DataError

    first = 0
    for inputs in chunks:
        try:
            rows = _prediction_rows(clf, inputs, first)
        except DataError as error:  # e.g. an empty text: its row number is the chunk's
            if not first:
                raise
            raise in_chunk(error, first) from error
        yield rows
        first += len(inputs)


def _input_chunks(clf, source: Any, where: str, size: int) -> Iterator[list[Any]]:
    """The inputs to predict on, `size` at a time (see `_inputs_of`); a data source named by a string is
    found now, so a missing file fails when `iter_predictions` is called."""
    from nlp_transfer.data.sources import resolve_data
    from nlp_transfer.data.streams import row_chunks, streams

    if isinstance(source, str) and _names_a_source(clf, source):
        source = resolve_data(source, where)
    if clf.modality != "vision" and streams(source):
        return (_chunk_inputs(clf, items, where) for items in row_chunks(source, where, size))
    examples = _inputs_of(clf, source, where)  # image folders and image tables, CoNLL files: read whole
    return (examples[start : start + size] for start in range(0, len(examples), size))


def _names_a_source(clf, text: str) -> bool:
    """Whether a string given as `inputs` names data (a file, ``support_intents:test``) rather than one image."""
    if clf.modality == "vision":
        from nlp_transfer.data.images import looks_like_image

        return not looks_like_image(text)
    return True  # text and tagging: texts come as a list


def _chunk_inputs(clf, items: list[Any], where: str) -> list[Any]:
    """One chunk of a streamed source as `_prediction_rows` takes it: row dicts for text, texts or
    lists of words for tagging."""
    if clf.task.name == "token_classification":
        if all(isinstance(item, (str, list, tuple)) for item in items):
            return list(items)
        from nlp_transfer.data.tagging import TaggedSentences

        return TaggedSentences.from_source(items, clf.data_config, where, need_labels=False).tokens
    return [_text_row(clf, item, where) for item in items]


def _inputs_of(clf, source: Any, where: str) -> list[Any]:
    """The examples to predict on, read whole, as a list: row dicts for text, images (paths, arrays) for
    vision, texts or lists of words for tagging. For what `_input_chunks` cannot stream (image
    folders and tables, CoNLL files) and the run folder's predictions of its splits."""
    from nlp_transfer.data.sources import resolve_data

    if clf.task.name == "token_classification":
        if isinstance(source, str):  # one string is a data source (a file, support_entities:test); texts come as a list
            source = resolve_data(source, where)
        if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, list, tuple)) for s in source):
            return list(source)
        from nlp_transfer.data.tagging import TaggedSentences

        return TaggedSentences.from_source(source, clf.data_config, where, need_labels=False).tokens

    if clf.modality == "vision":
        from nlp_transfer.data.images import ImageColumns, looks_like_image

        if isinstance(source, str) and not looks_like_image(source):
            source = resolve_data(source, where)
        return ImageColumns.from_source(source, clf.data_config, where, need_labels=False).images
    if isinstance(source, str):
        return _read_rows(resolve_data(source, where), where)
    if isinstance(source, (list, tuple)):
        return [_text_row(clf, item, where) for item in source]
    return _read_rows(source, where)


def _text_row(clf, item: Any, where: str) -> dict[str, Any]:
    """A text, a (text, text_pair) pair or a row dict, as a row with the model's column names."""
    from nlp_transfer.errors import DataError

    columns = clf.data_config
    if isinstance(item, str):
        return {columns.text_column: item}
    if isinstance(item, dict):
        return dict(item)
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(t, str) for t in item):
        if not getattr(clf, "uses_text_pair", False):
            raise DataError(f"{where}: got the pair {tuple(item)!r}, but this model was trained on single texts; "
                            "give one text per example.")
        return {columns.text_column: item[0], columns.text_pair_column or "text_pair": item[1]}
    raise DataError(f"{where}: cannot use {item!r} as an input; give a text, a (text, text_pair) tuple or a row dict.")


def _read_rows(source: Any, where: str) -> list[dict[str, Any]]:
    """Any readable data source as a list of row dicts (their text columns are echoed in predictions)."""
    from nlp_transfer.data.tables import read_table

    table = read_table(source, where)
    return [dict(zip(table, values)) for values in zip(*table.values())]


def _prediction_rows(clf, inputs: list[Any], first: int = 0) -> list[dict[str, Any]]:
    """The predictions of `inputs`, whose first is row `first` of the source (images in memory are named by row)."""
    if clf.task.name == "token_classification":  # per input: its words and tags, and the entities they make
        entities, probabilities = clf.predict_with_scores(inputs)
        rows = []
        for example, found, scores in zip(inputs, entities, probabilities):
            row = {"text": example, "words": [w for w, _ in clf.split_words(example)]} if isinstance(example, str) \
                else {"tokens": list(example)}
            rows.append({**row, "tags": [clf.labels[i] for i in scores.argmax(axis=-1)], "entities": found})
        return rows
    predicted, scores = clf.predict_with_scores(inputs)
    columns = clf.data_config
    out = []
    for i, example in enumerate(inputs):
        if isinstance(example, dict):  # a text row: echo its text columns
            item = {c: example[c] for c in (columns.text_column, columns.text_pair_column) if c and c in example}
        else:  # an image: echo its path (or its position, for an image in memory)
            item = {columns.image_column: str(example) if isinstance(example, (str, Path)) else first + i}
        item["prediction"] = predicted[i]
        if scores is not None:
            item["probabilities"] = {str(label): round(float(p), 6) for label, p in zip(clf.labels, scores[i])}
        out.append(item)
    return out


def _write_predictions(folder: Path, clf, splits: Splits, config: RunConfig, is_main: bool) -> None:
    from nlp_transfer.storage.run_folder import write_jsonl

    for split in config.eval.splits:
        source = getattr(splits, split)
        if source is None:
            continue
        predictions = _prediction_rows(clf, _inputs_of(clf, source, f"data.{split}"))
        if is_main:
            write_jsonl(folder / f"predictions-{split}.jsonl", predictions)
