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

One seed cannot tell a real difference from the luck of one draw (head, data order, hold-out). With
``seeds=N`` (``--seeds N``, ``train.seeds``) every strategy runs on seeds train.seed ... train.seed+N-1
(folders ``<strategy>/seed-<s>/``); rows show the mean ± sample std, and the top mean on the selection
split is called the best only when its mean ± std interval clears every other strategy's
(`tied_with_top`); otherwise the comparison reports a tie. The top mean's best-validation seed keeps
its model either way.
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
from nlp_transfer.selection.charts import plot_comparison, plot_reliability
from nlp_transfer.selection.seeds import is_number, mean_over_seeds, pooled_reliability, std_over_seeds, tied_with_top
from nlp_transfer.selection.negative_transfer import (
    baseline_warning,
    majority_baseline,
    random_init_warning,
    scratch_warning,
)

__all__ = ["compare", "Comparison", "StrategyScore", "SCRATCH", "DEFAULT_STRATEGIES", "tied_with_top", "pooled_reliability"]

logger = logging.getLogger(__name__)

SCRATCH = "scratch"
# compared when none are named: those of them that can learn the configured task (`default_strategies`)
DEFAULT_STRATEGIES = ("feature_extraction", "partial", "lora", "full", "contrastive", SCRATCH)
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
    # With several seeds `metrics`, `selection_metrics` and the costs are means over seeds; the stds are
    # sample stds (ddof=1), empty for one seed.
    metrics_std: dict[str, float] = dataclasses.field(default_factory=dict)
    selection_std: dict[str, float] = dataclasses.field(default_factory=dict)
    seeds: list[int] = dataclasses.field(default_factory=list)
    per_seed: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # seed, metrics, selection_metrics, fit_seconds
    reliability: dict[str, Any] | None = None  # reported split, pooled over seeds: confidence, accuracy, count per bin; ece

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
    seeds: int = 1  # fits per strategy
    tied: list[str] = dataclasses.field(default_factory=list)  # the top mean and those within one std of it; [] = clear win

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
        wide, named = (9, 26) if self.seeds > 1 else (0, 22)  # room for " ± 0.0034" and the tie mark
        header = (f"{'strategy':<{named}}" + (f"{chooser + ' ' + _short(self.metric):>{14 + wide}}" if separate else "")
                  + "".join(f"{shown + ' ' + title:>{width + wide}}" for _, title, width in columns)
                  + f"{'fit time':>10}{'samples/s':>11}{'peak mem':>10}  {'trainable parameters':<24}")
        lines = [f"Best by {self.metric}, {self.chosen_on}:", header, "-" * len(header)]
        for row in self.rows:
            name = (row.strategy + (" (control)" if row.is_control else "") + (" *" if row.strategy == self.best else "")
                    + (" =" if row.strategy in self.tied else "") + (" !" if row.warning else ""))
            share = 100.0 * row.trainable_parameters / max(row.total_parameters, 1)
            chosen = (f"{_cell(row.selection_metrics.get(self.metric), row.selection_std.get(self.metric)):>{14 + wide}}"
                      if separate else "")
            cells = "".join(f"{_cell(row.metrics.get(key), row.metrics_std.get(key)):>{width + wide}}" for key, _, width in columns)
            lines.append(f"{name:<{named}}{chosen}{cells}"
                         f"{row.fit_seconds:>9.1f}s{row.samples_per_second:>11.1f}{row.peak_memory_mb:>8.0f}MB"
                         f"  {row.trainable_parameters:>12,} ({share:5.1f}%)")
        lines.append(f"* best by {chooser} {self.metric}. Fit time and samples/s cover the whole fit (encoding, "
                     f"evaluation); {self.memory_measured}.")
        lines += self._seed_lines()
        lines.append("The control is the same architecture trained from random weights.")
        if self.majority_baseline is not None:
            lines.append(f"Always predicting the most frequent label scores accuracy {self.majority_baseline:.4f} "
                         f"on the {self.split} split.")
        lines += [f"! {warning}" for warning in self.warnings]
        return "\n".join(lines + self._calibration_lines() + self._per_type_lines())

    @property
    def rule(self) -> str:
        """How the best is called, in words (the table footer and compare.json)."""
        from nlp_transfer.training.metrics import greater_is_better

        below = "" if greater_is_better(self.metric) else " (lower is better: its mean + std below their mean - std)"
        return (f"with 2 or more seeds the top mean {self.metric} on {self._chooser_words} is called best only when its "
                f"mean - std is above every other strategy's mean + std{below}; overlapping mean ± std is a tie")

    @property
    def _chooser_words(self) -> str:
        return {"held-out": "the held-out part of train"}.get(self.selection_split, self.selection_split)

    def _seed_lines(self) -> list[str]:
        if self.seeds == 1:
            return [("One seed cannot tell a difference from noise (head, data order and hold-out are one draw): "
                     "rerun with --seeds 3 for mean ± std and a tie check.")]
        seeds = next((row.seeds for row in self.rows if row.seeds), [])
        lines = [f"Mean ± sample std over {self.seeds} seeds ({', '.join(map(str, seeds))}); {self.rule}."]
        if self.tied:
            lines.append(f"= tie between {', '.join(self.tied)}: within one standard deviation on {self._chooser_words} "
                         f"over {self.seeds} seeds; * marks the top mean, whose model is saved.")
        else:
            lines.append(f"{self.best} is best: its interval on {self._chooser_words} clears every other strategy's.")
        return lines

    def _calibration_lines(self) -> list[str]:
        rows = [row for row in self.rows if row.reliability]
        if not rows:
            return []
        pooled = " pooled over seeds," if self.seeds > 1 else ""
        return [f"Calibration on the {self.split} split (ECE,{pooled} lower is better): "
                + ", ".join(f"{row.strategy} {row.reliability['ece']:.4f}" for row in rows)
                + "; reliability diagram (confidence against accuracy): reliability.png."]

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
                "seeds": self.seeds, "best_rule": self.rule, "tied": self.tied,
                "strategies": [dataclasses.asdict(row) | {"control": row.is_control} for row in self.rows]}


def compare(config: RunConfig | str | Path, strategies: Sequence[str] | None = None,
            overrides: Sequence[str] = (), output_dir: str | Path | None = None, seeds: int | None = None) -> Comparison:
    """Train each strategy (and the scratch control) on the configured data; write and return the table.

    `strategies` default: `default_strategies`, every default one that can learn this task and data.

    `seeds` (default: train.seeds) fits each strategy that many times, on train.seed, train.seed+1, ...
    """
    from nlp_transfer.data.sources import load_splits
    from nlp_transfer.storage.run_folder import check_output_folder, staged_run_folder
    from nlp_transfer.training.engine import process_state
    from nlp_transfer.training.metrics import PRIMARY_METRIC, greater_is_better

    base = _with_seeds(as_config(config, overrides), seeds)
    if strategies is not None:
        _check_names(strategies)
    name = base.run.name or "compare"
    out = Path(output_dir or base.output.dir or f"runs/{name}")
    check_output_folder(out, base.output.overwrite)
    splits = load_splits(base.data)
    strategies = default_strategies(base, splits) if strategies is None else strategies
    _check_supported(strategies, base, splits)  # before the first strategy trains, not after it
    metric = PRIMARY_METRIC[base.model.task]
    higher = greater_is_better(metric)
    seed_list = [base.train.seed + i for i in range(base.train.seeds)]
    rows: list[StrategyScore] = []
    baseline: float | None = None
    best: tuple[str, str, RunResult, float] | None = None  # name, its kept run's folder, result, mean validation score
    with staged_run_folder(out) as folder:
        for strategy in strategies:
            logger.info("compare: training %s (%d of %d)", strategy, len(rows) + 1, len(strategies))
            fits, (where, result) = _fit_seeds(base, strategy, name, out, folder, splits, seed_list, metric, higher)
            split, chosen_on = fits[0].split, fits[0].chosen_on
            baseline = majority_baseline(fits[0].scores) if baseline is None else baseline  # the same split for every run
            rows.append(_score(strategy, fits))
            mean = rows[-1].selection_metrics[metric]
            if best is None or _better(mean, best[3], higher):  # chosen on validation, never on test
                if best is not None:  # the previous best loses its place: write it without its model
                    write_run(folder / best[1], best[2], save_model=False, splits=splits)
                best = (strategy, where, result, mean)
            else:
                write_run(folder / where, result, save_model=False, splits=splits)
            del result
            gc.collect()
        write_run(folder / best[1], best[2], save_model=best[2].config.output.save_model, splits=splits)
        rows = _with_warnings(rows, metric, higher, baseline,
                              base.model.name_or_path if base.model.random_init else None)
        tied = tied_with_top(_intervals(rows, metric), higher) if len(seed_list) > 1 else []
        comparison = Comparison(split, metric, rows, best[0], best[2].memory_kind, _title(base, splits),
                                majority_baseline=baseline, selection_split=chosen_on, task=base.model.task,
                                seeds=len(seed_list), tied=tied)
        if process_state().is_main_process:
            _add_warnings_to_runs(folder, rows)
            _write_outputs(folder, comparison)
    return dataclasses.replace(comparison, path=out)


def _write_outputs(folder: Path, comparison: Comparison) -> None:
    from nlp_transfer.storage.run_folder import write_json

    write_json(folder / "compare.json", comparison.to_dict())
    (folder / "compare.md").write_text("```\n" + comparison.table() + "\n```\n", encoding="utf-8")
    plot_comparison(comparison, folder / "compare.png")
    plot_reliability(comparison, folder / "reliability.png")  # nothing when the scores carry no reliability bins


def _with_seeds(config: RunConfig, seeds: int | None) -> RunConfig:
    """`config` with `seeds` (compare's argument) in place of train.seeds."""
    if seeds is None:
        return config
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds must be a whole number of runs per strategy, at least 1; got {seeds!r}. "
                          "Try --seeds 3.")
    return dataclasses.replace(config, train=dataclasses.replace(config.train, seeds=seeds))


@dataclass(frozen=True)
class _Fit:
    """What one seed's fit leaves for the table once its model is gone."""

    seed: int
    split: str  # reported
    scores: dict[str, Any]
    chosen_on: str
    chosen: dict[str, Any]
    result: dict[str, Any]  # fit_seconds, samples_per_second, peak_memory_mb, trainable, total, epochs, learning_rate


def _fit_seeds(base: RunConfig, strategy: str, name: str, out: Path, folder: Path, splits, seeds: list[int],
               metric: str, higher: bool) -> tuple[list[_Fit], tuple[str, RunResult]]:
    """Fit `strategy` once per seed. Every run but the best-validation one is written (without its model)
    at once; that one is returned unwritten, with its folder, for `compare` to decide on its model."""
    fits: list[_Fit] = []
    kept: tuple[str, RunResult, float] | None = None
    for seed in seeds:
        where, run_name = (strategy, f"{name}-{strategy}") if len(seeds) == 1 else (
            f"{strategy}/seed-{seed}", f"{name}-{strategy}-seed-{seed}")
        if len(seeds) > 1:
            logger.info("compare: %s, seed %d (%d of %d)", strategy, seed, len(fits) + 1, len(seeds))
        result = fit_run(variant(base, strategy, run_name, out / where, seed=seed), splits)
        (split, scores), (chosen_on, chosen) = _splits_of(result, splits)
        fits.append(_Fit(seed, split, scores, chosen_on, chosen, {
            "fit_seconds": result.fit_seconds, "samples_per_second": result.train_samples_per_second,
            "peak_memory_mb": result.peak_memory_mb, "trainable": result.parameters["trainable"],
            "total": result.parameters["total"], "epochs": result.config.train.epochs,
            "learning_rate": result.config.train.learning_rate}))
        if kept is None or _better(chosen[metric], kept[2], higher):
            if kept is not None:
                write_run(folder / kept[0], kept[1], save_model=False, splits=splits)
            kept = (where, result, chosen[metric])
        else:
            write_run(folder / where, result, save_model=False, splits=splits)
        del result
        gc.collect()
    return fits, (kept[0], kept[1])


def variant(base: RunConfig, strategy: str, run_name: str, folder: Path, seed: int | None = None) -> RunConfig:
    """The config of one compared strategy: the base config with this strategy (or the control).

    Its output is the strategy's own folder (never replaced by a rerun of its config.yaml). Each run is
    one seed (`seed`, default train.seed), so its config.yaml replays with `nlp-transfer train`.
    """
    model = base.model
    train = dataclasses.replace(base.train, seed=base.train.seed if seed is None else seed, seeds=1)
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
        if not row.warning:
            continue
        for path in [folder / row.strategy / "metrics.json", *sorted((folder / row.strategy).glob("seed-*/metrics.json"))]:
            if path.is_file():  # one seed: the strategy's folder; several: each seed's
                metrics = json.loads(path.read_text(encoding="utf-8"))
                metrics["warnings"] = [*metrics.get("warnings", []), row.warning]
                write_json(path, metrics)


def default_strategies(config: RunConfig, splits) -> tuple[str, ...]:
    """`DEFAULT_STRATEGIES` that run on this modality and task (contrastive: single texts, one label each)."""
    return tuple(name for name in DEFAULT_STRATEGIES if name == SCRATCH or not _unsupported(name, config, splits))


def _check_supported(strategies: Sequence[str], config: RunConfig, splits) -> None:
    for name in strategies:
        why = _unsupported(name, config, splits) if name != SCRATCH else None
        if why:
            raise ConfigError(f"compare: strategy {name!r} cannot run here: {why} Leave it out of --strategies.")


def _unsupported(name: str, config: RunConfig, splits) -> str | None:
    """Why strategy `name` cannot learn the configured data, or None."""
    from nlp_transfer.strategies import supports

    modality = "vision" if config.model.type == "vision" else "text"
    if not supports(name, modality, config.model.task):
        return f"it does not learn {modality} {config.model.task} data."
    if name == "contrastive" and modality == "text" and _has_pairs(config, splits):
        return f"its pairs are built from single texts, and this data has sentence pairs ({config.data.text_pair_column})."
    return None


def _has_pairs(config: RunConfig, splits) -> bool:
    from nlp_transfer.data.tables import read_table

    column = config.data.text_pair_column
    if not column:
        return False
    try:
        return column in read_table(splits.train, "train")
    except Exception:  # not a table we read here (a Dataset, a generator): fit refuses pairs itself
        return False


def _check_names(strategies: Sequence[str]) -> None:
    valid = [*STRATEGIES, SCRATCH]
    if "auto" in strategies:
        raise ConfigError("compare: 'auto' picks one of the strategies compare runs anyway; leave it out of "
                          f"--strategies (choose from: {', '.join(valid)}).")
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


def _score(strategy: str, fits: list[_Fit]) -> StrategyScore:
    """One row: the mean over seeds (one seed: its numbers as they are), with sample stds."""
    reported = [_numbers(fit.scores) for fit in fits]
    selection = [_numbers(fit.chosen) for fit in fits]
    cost = mean_over_seeds([fit.result for fit in fits])
    first = fits[0].result
    per_type = fits[0].scores.get("per_type")
    if len(fits) > 1 and per_type:
        per_type = {name: mean_over_seeds([fit.scores["per_type"].get(name, {}) for fit in fits]) for name in per_type}
    return StrategyScore(strategy, mean_over_seeds(reported), cost["fit_seconds"], cost["samples_per_second"],
                         cost["peak_memory_mb"], first["trainable"], first["total"], first["epochs"],
                         first["learning_rate"], selection_metrics=mean_over_seeds(selection), per_type=per_type,
                         metrics_std=std_over_seeds(reported), selection_std=std_over_seeds(selection),
                         seeds=[fit.seed for fit in fits],
                         per_seed=[{"seed": fit.seed, "metrics": numbers, "selection_metrics": chosen,
                                    "fit_seconds": fit.result["fit_seconds"]}
                                   for fit, numbers, chosen in zip(fits, reported, selection)],
                         reliability=pooled_reliability([fit.scores.get("reliability") for fit in fits]))


def _numbers(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}


def _intervals(rows: list[StrategyScore], metric: str) -> dict[str, tuple[float, float]]:
    return {row.strategy: (row.selection_metrics[metric], row.selection_std.get(metric, 0.0))
            for row in rows if is_number(row.selection_metrics.get(metric))}


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


def _cell(value: Any, std: float | None = None) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.4f}" + (f" ± {std:.4f}" if isinstance(std, (int, float)) else "")
