"""The charts: strategies compared (`compare.png`) and candidate backbones ranked (`rank.png`).

The comparison answers at a glance: how much accuracy does each strategy buy, at what cost, and how
far above training from scratch is each? Points further up and to the left are better; the dashed
line is the from-scratch control, so the height above it is what pretraining contributed. The
points are the reported (test) scores; the star marks the best by the split it was chosen on
(validation), which the footer names. With several seeds a point is the mean, its bar the sample
std, and the small dots the single seeds, so the spread is seen next to the gaps.

The reliability diagram (`reliability.png`) plots each strategy's confidence against its accuracy
on the reported split (pooled over seeds): the diagonal is perfect calibration, a line below it an
overconfident model; the legend gives each ECE.

The ranking shows each candidate's LogME (one row each, best on top) beside its probe accuracy; the
random twin is grey with a dashed line at its score, and a flagged candidate is red.

Drawn with matplotlib's object API (`Figure`, no pyplot): nothing global changes, so a notebook
keeps its backend and no figure is left open in pyplot's registry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nlp_transfer.selection.comparison import Comparison
    from nlp_transfer.selection.ranking import Ranking

__all__ = ["plot_comparison", "plot_ranking", "plot_reliability"]

logger = logging.getLogger(__name__)

_COLOURS = {"feature_extraction": "#1b9e77", "partial": "#7570b3", "lora": "#d95f02", "full": "#e7298a", "gradual": "#66a61e",
            "scratch": "#666666"}


def _figure(filename: str, **options):
    """A matplotlib `Figure` that draws to files only, or None (with a warning) when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("matplotlib is not installed, so no %s (pip install matplotlib).", filename)
        return None
    return Figure(**options)


def plot_comparison(comparison: Comparison, path: Path) -> Path | None:
    """Write the chart as a PNG; returns its path (None when matplotlib is missing)."""
    fig = _figure("compare.png", figsize=(8, 5.2), dpi=150)
    if fig is None:
        return None
    from matplotlib.ticker import FuncFormatter

    # accuracy where the task has it, but tagging's accuracy counts words: its chart shows entity F1
    tagging = comparison.task == "token_classification"
    metric = "accuracy" if not tagging and all("accuracy" in row.metrics for row in comparison.rows) else comparison.metric
    rows = [row for row in comparison.rows if metric in row.metrics]
    ax = fig.subplots()
    control = next((row for row in rows if row.is_control), None)
    if control is not None:
        ax.axhline(control.metrics[metric], color=_COLOURS["scratch"], linestyle="--", linewidth=1, zorder=1)
    largest = max((row.trainable_parameters for row in rows), default=1) or 1
    for row in rows:
        size = 60 + 440 * (row.trainable_parameters / largest) ** 0.5  # area grows with what trains
        marker = "X" if row.is_control else ("*" if row.strategy == comparison.best else "o")
        ax.scatter(max(row.fit_seconds, 1e-3), row.metrics[metric], s=size * (1.6 if marker == "*" else 1), marker=marker,
                   color=_COLOURS.get(row.strategy, "#333333"), edgecolor="black", linewidth=0.6, zorder=3)
        _seed_spread(ax, row, metric)
    times = [row.fit_seconds for row in rows if row.fit_seconds > 0]
    if times and max(times) / min(times) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("training time (s, whole fit)")
    ax.set_ylabel(f"{metric} on the {comparison.split} split")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.3, y=0.15)
    _label_points(ax, rows, metric)
    subtitle = comparison.title
    best = next((row for row in rows if row.strategy == comparison.best), None)
    if control is not None and best is not None and not best.is_control:
        gain = 100 * (best.metrics[metric] - control.metrics[metric])
        subtitle += f"\nthe best, {best.strategy}, is {gain:+.1f} points above training from scratch"
    ax.set_title(f"Which strategy for this data?\n{subtitle}", fontsize=10)
    chooser = {"held-out": "held-out part of train"}.get(comparison.selection_split, comparison.selection_split)
    spread = (f"   bars: mean ± std over {comparison.seeds} seeds, dots: single seeds" if comparison.seeds > 1 else "")
    fig.text(0.01, 0.01, f"point area ~ trainable parameters   ★ best by {chooser} {comparison.metric}   "
             f"✕ from-scratch control (random init), dashed line{spread}", fontsize=7, color="#555555")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _seed_spread(ax, row, metric: str) -> None:
    """Several seeds: a std bar through the mean, and each seed as a small dot at its own fit time."""
    colour = _COLOURS.get(row.strategy, "#333333")
    if metric in row.metrics_std:
        ax.errorbar(max(row.fit_seconds, 1e-3), row.metrics[metric], yerr=row.metrics_std[metric], color=colour,
                    capsize=4, linewidth=1.2, zorder=2)
    seeds = [(run["fit_seconds"], run["metrics"][metric]) for run in row.per_seed if metric in run["metrics"]]
    if len(seeds) > 1:
        ax.scatter([max(x, 1e-3) for x, _ in seeds], [y for _, y in seeds], s=12, color=colour, alpha=0.7,
                   edgecolor="none", zorder=4)


def plot_reliability(comparison: Comparison, path: Path) -> Path | None:
    """Write the reliability diagram as a PNG; None (and no file) when no strategy has reliability bins."""
    rows = [row for row in comparison.rows if row.reliability and row.reliability.get("count")]
    if not rows:
        return None
    fig = _figure("reliability.png", figsize=(5.6, 5.2), dpi=150)
    if fig is None:
        return None
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfect calibration")
    for row in rows:
        bins = row.reliability
        ax.plot(bins["confidence"], bins["accuracy"], marker="o", markersize=4, linewidth=1.2,
                color=_COLOURS.get(row.strategy, "#333333"),
                label=f"{row.strategy}{' (control)' if row.is_control else ''}: ECE {bins['ece']:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top predicted probability)")
    ax.set_ylabel("accuracy")
    pooled = f", {comparison.seeds} seeds pooled" if comparison.seeds > 1 else ""
    ax.set_title(f"Calibration on the {comparison.split} split{pooled}\nbelow the diagonal: overconfident", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _label_points(ax, rows, metric: str) -> None:
    """Two-line labels beside each point, moved to another side where they would overlap."""
    ax.figure.draw_without_rendering()  # fixes the axes limits, so data -> pixel positions are final
    placed: list[tuple[float, float, float, float]] = []
    candidates = [(8, 4, "left", "bottom"), (8, -4, "left", "top"), (-8, 4, "right", "bottom"), (-8, -4, "right", "top")]
    for row in sorted(rows, key=lambda r: -r.metrics[metric]):
        x, y = max(row.fit_seconds, 1e-3), row.metrics[metric]
        share = 100.0 * row.trainable_parameters / max(row.total_parameters, 1)
        name = row.strategy + (" (control)" if row.is_control else "")
        text = f"{name}\n{y:.1%} · {row.fit_seconds:.0f}s · {share:.1f}% trained"
        px, py = ax.transData.transform((x, y))
        width, height = 5.2 * max(len(line) for line in text.splitlines()) * 150 / 72 * 0.8, 24 * 150 / 72
        for dx, dy, ha, va in candidates:
            left = px + dx * 150 / 72 - (width if ha == "right" else 0)
            bottom = py + dy * 150 / 72 - (height if va == "top" else 0)
            box = (left, bottom, left + width, bottom + height)
            if not any(_overlap(box, other) for other in placed):
                break
        placed.append(box)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va, fontsize=8)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def plot_ranking(ranking: Ranking, path: Path) -> Path | None:
    """Write the ranking chart as a PNG; returns its path (None when matplotlib is missing)."""
    rows = list(reversed(ranking.rows))  # best at the top
    fig = _figure("rank.png", figsize=(10, 1.4 + 0.55 * len(rows)), dpi=150)
    if fig is None:
        return None
    ax = fig.subplots()
    for y, row in enumerate(rows):
        colour = "#666666" if row.control else ("#d62728" if row.warning else "#1b9e77")
        ax.scatter(row.logme, y, s=70, marker="X" if row.control else "o", color=colour, edgecolor="black",
                   linewidth=0.6, zorder=3)
        ax.annotate(f"probe {row.probe_accuracy:.1%} · {row.seconds:.1f} s", (row.logme, y), textcoords="offset points",
                    xytext=(8, 0), va="center", fontsize=8)
        if row.control:
            ax.axvline(row.logme, color="#666666", linestyle="--", linewidth=1, zorder=1)
    ax.set_yticks(range(len(rows)), [row.candidate + (" (control)" if row.control else "") for row in rows], fontsize=8)
    ax.set_xlabel("LogME (log evidence per example, higher is better)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.margins(x=0.45, y=0.15)  # room for the probe labels right of the best point
    ax.set_title(f"Which pretrained model for {ranking.target.replace('_', ' ')}?\n{ranking.examples} training "
                 f"examples, {ranking.num_labels} labels, {ranking.seconds:.0f} s in all", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path
