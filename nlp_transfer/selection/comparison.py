"""Which strategy for my data? Each strategy on the same data and budget, plus a from-scratch control.

The control is the same architecture and tokenizer with random weights, trained in full: the gap
between it and the strategies is what pretraining contributes on this data.

    from nlp_transfer import compare
    result = compare("configs/offline/minilm-intents-feature-extraction.yaml")
    print(result.table())          # also in <output>/compare.json and compare.md

Output folder: one run folder per strategy (config, metrics, history, environment); the best
strategy's folder also holds its model and model card.

Choose on validation, report on test: the best strategy is the one with the best validation score
(data.validation, or the part of train held out by data.validation_split, the split each fit chose
its best epoch on), and the table shows the test scores beside it, which the choice never saw. With
no validation data the best is chosen on the split it is scored on, and the table says so.

Peak memory per strategy is its own: the rise in the process's memory over the level right before
its model was built (`PeakMemory.increase_megabytes`), so the models and leftovers of the strategies
that ran before it in this process are not counted. Two biases remain in one process: the first
strategy also carries one-off costs (libraries loaded on first use), and memory an earlier strategy
freed but the allocator kept can be reused by a later one without showing up.

A strategy that does not clearly beat the control (or, with no control, the majority label) is
flagged as negative transfer in the table, compare.json and its metrics.json (`negative_transfer.py`).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlp_transfer.api import RunResult, as_config, fit_run, write_run
from nlp_transfer.config.run import RunConfig, resolve
from nlp_transfer.strategies import STRATEGIES
from nlp_transfer.errors import ConfigError, did_you_mean
from nlp_transfer.selection.charts import plot_comparison
from nlp_transfer.selection.negative_transfer import (
    baseline_warning,
    majority_baseline,
    random_init_warning,
    scratch_warning,
)

__all__ = ["compare", "Comparison", "StrategyScore", "SCRATCH", "DEFAULT_STRATEGIES"]

logger = logging.getLogger(__name__)

SCRATCH = "scratch"
DEFAULT_STRATEGIES = ("feature_extraction", "partial", "lora", "full", SCRATCH)
# Random weights need a larger step than fine-tuning to be a fair control. Measured on the demo
# (support_intents, MiniLM-L6 shape, 10 epochs, batch 16), test accuracy from scratch by learning rate:
# 5e-5 58.4, 1e-4 62.4, 3e-4 66.4, 1e-3 72.8, 2e-3 38.4 (diverges), 5e-3 20.0 (chance).
SCRATCH_LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class StrategyScore:
    """One row of the comparison."""

    strategy: str
    metrics: dict[str, Any]
    fit_seconds: float
    samples_per_second: float
    peak_memory_mb: float
    trainable_parameters: int
    total_parameters: int
    epochs: int
    learning_rate: float
    warning: str | None = None  # negative transfer: not clearly better than the control (or the majority label)
    selection_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)  # on the split the best is chosen on
    per_type: dict[str, dict[str, Any]] | None = None  # tagging: entity-level scores per type on the reported split

    @property
    def is_control(self) -> bool:
        return self.strategy == SCRATCH


@dataclass(frozen=True)
class Comparison:
    """The scores of every strategy, and which did best: chosen on `selection_split`, scored on `split`."""

    split: str
    metric: str
    rows: list[StrategyScore]
    best: str
    memory_kind: str = "rss increase"
    title: str = ""
    path: Path | None = None
    majority_baseline: float | None = None  # accuracy of always predicting the split's most frequent label
    selection_split: str = "validation"  # "validation", "held-out" (from train), or `split` itself when there is no validation data
    task: str = "single_label"  # which scores the table shows (`_COLUMNS`)

    @property
    def warnings(self) -> list[str]:
        return [row.warning for row in self.rows if row.warning]

    @property
    def chosen_on(self) -> str:
        """Which split chose the best strategy, and what that means for the scores shown."""
        if self.selection_split == self.split:
            missing, fix = (("validation", "set data.validation, or data.validation_split > 0") if self.split == "test"
                            else ("test", "set data.test"))
            return f"chosen on the {self.split} split it is scored on (no {missing} data: {fix}), so the best's score is optimistic"
        where = ("the part of train held out by data.validation_split" if self.selection_split == "held-out"
                 else "the validation split")
        return f"chosen on {where}; the {self.split} scores are on data the choice never saw"

    @property
    def memory_measured(self) -> str:
        return (f"peak mem is each strategy's own ({self.memory_kind}): the rise over the process's memory right "
                "before its model was built, so earlier strategies' memory is not counted")

    def table(self) -> str:
        """A plain-text table, one row per strategy, the control marked."""
        separate = self.selection_split != self.split
        chooser = {"validation": "val", "held-out": "held-out"}.get(self.selection_split, self.selection_split)
        shown = {"validation": "val", "held-out": "held-out"}.get(self.split, self.split)
        columns = _COLUMNS.get(self.task, _COLUMNS["single_label"])
        header = (f"{'strategy':<22}" + (f"{chooser + ' ' + _short(self.metric):>14}" if separate else "")
                  + "".join(f"{shown + ' ' + title:>{width}}" for _, title, width in columns)
                  + f"{'fit time':>10}{'samples/s':>11}{'peak mem':>10}  {'trainable parameters':<24}")
        lines = [f"Best by {self.metric}, {self.chosen_on}:", header, "-" * len(header)]
        for row in self.rows:
            name = (row.strategy + (" (control)" if row.is_control else "") + (" *" if row.strategy == self.best else "")
                    + (" !" if row.warning else ""))
            share = 100.0 * row.trainable_parameters / max(row.total_parameters, 1)
            chosen = f"{_cell(row.selection_metrics.get(self.metric)):>14}" if separate else ""
            cells = "".join(f"{_cell(row.metrics.get(key)):>{width}}" for key, _, width in columns)
            lines.append(f"{name:<22}{chosen}{cells}"
                         f"{row.fit_seconds:>9.1f}s{row.samples_per_second:>11.1f}{row.peak_memory_mb:>8.0f}MB"
                         f"  {row.trainable_parameters:>12,} ({share:5.1f}%)")
        lines.append(f"* best by {chooser} {self.metric}. Fit time and samples/s cover the whole fit (encoding, "
                     f"evaluation); {self.memory_measured}.")
        lines.append("The control is the same architecture trained from random weights.")
        if self.majority_baseline is not None:
            lines.append(f"Always predicting the most frequent label scores accuracy {self.majority_baseline:.4f} "
                         f"on the {self.split} split.")
        lines += [f"! {warning}" for warning in self.warnings]
        return "\n".join(lines + self._per_type_lines())

    def _per_type_lines(self) -> list[str]:
        """Tagging: entity-level F1 per type for every strategy, on the reported split."""
        rows = [row for row in self.rows if row.per_type]
        if not rows:
            return []
        types = sorted({name for row in rows for name in row.per_type})
        lines = ["", f"Entity-level F1 per type on the {self.split} split (support: entities):",
                 f"{'strategy':<22}" + "".join(f"{name + ' (' + str(rows[0].per_type.get(name, {}).get('support', '?')) + ')':>16}"
                                               for name in types)]
        for row in rows:
            lines.append(f"{row.strategy:<22}" + "".join(f"{_cell(row.per_type.get(name, {}).get('f1')):>16}" for name in types))
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "split": self.split, "selection_split": self.selection_split,
                "chosen_on": self.chosen_on, "metric": self.metric, "best": self.best,
                "memory": self.memory_kind, "memory_measured": self.memory_measured,
                "majority_baseline": self.majority_baseline, "warnings": self.warnings,
                "strategies": [dataclasses.asdict(row) | {"control": row.is_control} for row in self.rows]}


def compare(config: RunConfig | str | Path, strategies: Sequence[str] = DEFAULT_STRATEGIES,
            overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> Comparison:
    """Train each strategy (and the scratch control) on the configured data; write and return the table."""
    from nlp_transfer.data.sources import load_splits
    from nlp_transfer.storage.run_folder import check_output_folder, staged_run_folder, write_json
    from nlp_transfer.training.engine import process_state
    from nlp_transfer.training.metrics import PRIMARY_METRIC, greater_is_better

    base = as_config(config, overrides)
    _check_names(strategies)
    name = base.run.name or "compare"
    out = Path(output_dir or base.output.dir or f"runs/{name}")
    check_output_folder(out, base.output.overwrite)
    splits = load_splits(base.data)
    metric = PRIMARY_METRIC[base.model.task]
    higher = greater_is_better(metric)
    rows: list[StrategyScore] = []
    baseline: float | None = None
    best: tuple[str, RunResult, float] | None = None  # name, result, validation score
    with staged_run_folder(out) as folder:
        for strategy in strategies:
            logger.info("compare: training %s (%d of %d)", strategy, len(rows) + 1, len(strategies))
            result = fit_run(variant(base, strategy, f"{name}-{strategy}", out / strategy), splits)
            (split, scores), (chosen_on, chosen) = _splits_of(result, splits)
            baseline = majority_baseline(scores) if baseline is None else baseline  # the same split for every run
            rows.append(_score(strategy, result, scores, chosen))
            if best is None or _better(chosen[metric], best[2], higher):  # chosen on validation, never on test
                if best is not None:  # the previous best loses its place: write it without its model
                    write_run(folder / best[0], best[1], save_model=False, splits=splits)
                best = (strategy, result, chosen[metric])
            else:
                write_run(folder / strategy, result, save_model=False, splits=splits)
            del result
            gc.collect()
        write_run(folder / best[0], best[1], save_model=best[1].config.output.save_model, splits=splits)
        rows = _with_warnings(rows, metric, higher, baseline,
                              base.model.name_or_path if base.model.random_init else None)
        comparison = Comparison(split, metric, rows, best[0], best[1].memory_kind, _title(base, splits),
                                majority_baseline=baseline, selection_split=chosen_on, task=base.model.task)
        if process_state().is_main_process:
            _add_warnings_to_runs(folder, rows)
            write_json(folder / "compare.json", comparison.to_dict())
            (folder / "compare.md").write_text("```\n" + comparison.table() + "\n```\n", encoding="utf-8")
            plot_comparison(comparison, folder / "compare.png")
    return dataclasses.replace(comparison, path=out)


def variant(base: RunConfig, strategy: str, run_name: str, folder: Path) -> RunConfig:
    """The config of one compared strategy: the base config with this strategy (or the control).

    Its output is the strategy's own folder (never replaced by a rerun of its config.yaml).
    """
    model, train = base.model, base.train
    if strategy == SCRATCH:
        model = dataclasses.replace(model, random_init=True)
        train = dataclasses.replace(train, learning_rate=train.learning_rate or SCRATCH_LEARNING_RATE)
        strategy = "full"
    return resolve(dataclasses.replace(
        base, model=model, train=train, strategy=dataclasses.replace(base.strategy, name=strategy),
        run=dataclasses.replace(base.run, name=run_name),
        output=dataclasses.replace(base.output, dir=str(folder), overwrite=False)))


def _title(config: RunConfig, splits) -> str:
    from nlp_transfer.data.tables import read_table

    model = config.model.name_or_path.rstrip("/").rsplit("/", 1)[-1]
    data = config.data.dataset or Path(str(config.data.train)).stem
    try:
        size = f", {len(next(iter(read_table(splits.train, 'train').values())))} training examples"
    except Exception:  # the title is decoration; never fail a finished comparison over it
        size = ""
    return f"{model} on {data}{size}"


def _with_warnings(rows: list[StrategyScore], metric: str, higher: bool, baseline: float | None,
                   random_model: str | None = None) -> list[StrategyScore]:
    """Mark transfer strategies that are not clearly better than the scratch control, or, without a
    control, than always predicting the majority label; with `random_model` (model.random_init on),
    every strategy, since none of them had pretrained weights to transfer."""
    control = next((row for row in rows if row.is_control), None)
    marked = []
    for row in rows:
        warning = None
        if not row.is_control and control is not None and metric in row.metrics and metric in control.metrics:
            warning = scratch_warning(row.strategy, metric, row.metrics[metric], control.metrics[metric], higher)
        elif not row.is_control and control is None and baseline is not None and "accuracy" in row.metrics:
            warning = baseline_warning(row.strategy, "accuracy", row.metrics["accuracy"], baseline)
        if not row.is_control and random_model is not None:
            warning = f"{row.strategy}: {random_init_warning(random_model)}" + (f" {warning}" if warning else "")
        if warning:
            logger.warning("%s", warning)
        marked.append(dataclasses.replace(row, warning=warning))
    return marked


def _add_warnings_to_runs(folder: Path, rows: list[StrategyScore]) -> None:
    """Each warned strategy's metrics.json gets its warning too (its run was written before the control ran)."""
    import json

    from nlp_transfer.storage.run_folder import write_json

    for row in rows:
        path = folder / row.strategy / "metrics.json"
        if row.warning and path.is_file():
            metrics = json.loads(path.read_text(encoding="utf-8"))
            metrics["warnings"] = [*metrics.get("warnings", []), row.warning]
            write_json(path, metrics)


def _check_names(strategies: Sequence[str]) -> None:
    valid = [*STRATEGIES, SCRATCH]
    if not strategies:
        raise ConfigError(f"No strategies to compare; choose some of: {', '.join(valid)}.")
    for name in strategies:
        if name not in valid:
            raise ConfigError(f"Unknown strategy {name!r} to compare: {did_you_mean(name, valid)}")
    if len(set(strategies)) != len(strategies):
        raise ConfigError(f"A strategy is listed twice: {list(strategies)}.")


def _splits_of(result: RunResult, splits) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
    """(the split the table reports, its scores), (the split the best is chosen on, its scores).

    Reported: test when there is one. Chosen on: validation data, or the held-out part of train the
    fit chose its best epoch on (the classifier's metrics are that epoch's); with neither, on the
    reported split itself (the table says so).
    """
    chosen = None
    if "validation" in result.metrics:
        chosen = ("validation", result.metrics["validation"])
    elif result.classifier is not None and result.classifier.metrics:
        chosen = ("validation" if splits.validation is not None else "held-out", result.classifier.metrics)
    reported = ("test", result.metrics["test"]) if "test" in result.metrics else chosen
    if reported is None:
        raise ConfigError("compare needs data to score on: set data.test or data.validation, or keep "
                          "data.validation_split > 0.")
    return reported, chosen or reported


def _score(strategy: str, result: RunResult, scores: dict[str, Any], chosen: dict[str, Any]) -> StrategyScore:
    def numbers(metrics: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "epoch"}

    return StrategyScore(strategy, numbers(scores), result.fit_seconds, result.train_samples_per_second,
                         result.peak_memory_mb, result.parameters["trainable"], result.parameters["total"],
                         result.config.train.epochs, result.config.train.learning_rate,
                         selection_metrics=numbers(chosen), per_type=scores.get("per_type"))


def _better(value: float, other: float, higher: bool) -> bool:
    return value > other if higher else value < other


# The scores a comparison table shows per task: (metric, column title, width).
_COLUMNS = {
    "single_label": (("accuracy", "acc", 11), ("f1_macro", "F1", 10)),
    "multi_label": (("subset_accuracy", "exact", 11), ("f1_micro", "F1 micro", 13)),
    "regression": (("pearson", "pearson", 13), ("mae", "MAE", 10)),
    "token_classification": (("f1", "entity F1", 16), ("precision", "P", 9), ("recall", "R", 9), ("accuracy", "word acc", 15)),
}


def _short(metric: str) -> str:
    return {"accuracy": "acc", "f1_macro": "F1", "f1_micro": "F1 micro", "f1": "F1"}.get(metric, metric)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"
