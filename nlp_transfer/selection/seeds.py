"""Numbers over several seeds: means and sample stds, the tie rule, and pooled reliability bins.

`compare --seeds N` reports mean ± std per strategy; `tied_with_top` says whether the top mean is
clear of the rest, and `pooled_reliability` merges each seed's calibration bins into one diagram.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

__all__ = ["mean_over_seeds", "std_over_seeds", "is_number", "tied_with_top", "pooled_reliability"]


def mean_over_seeds(values: list[dict[str, Any]]) -> dict[str, Any]:
    """Key by key mean of numbers over seeds; one seed's numbers are returned as they are."""
    if len(values) == 1:
        return dict(values[0])
    keys = dict.fromkeys(key for value in values for key in value)  # first-seen order
    return {key: statistics.fmean(v[key] for v in values if is_number(v.get(key))) for key in keys
            if any(is_number(v.get(key)) for v in values)}


def std_over_seeds(values: list[dict[str, Any]]) -> dict[str, float]:
    """Key by key sample std (ddof=1) over seeds; empty for one seed."""
    if len(values) < 2:
        return {}
    keys = dict.fromkeys(key for value in values for key in value)
    return {key: statistics.stdev(found) for key in keys
            if len(found := [v[key] for v in values if is_number(v.get(key))]) >= 2}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def tied_with_top(scores: dict[str, tuple[float, float]], higher: bool = True) -> list[str]:
    """The strategies tied with the top mean, top first; [] when the top wins clearly.

    `scores` maps each strategy to its (mean, std) on the selection split. The top (highest mean, or
    lowest when not `higher`; the first listed on equal means) wins clearly only when its mean ± std
    interval overlaps no other strategy's; intervals that touch count as overlapping.

        tied_with_top({"lora": (0.90, 0.01), "full": (0.85, 0.01)})   # [] : lora wins
        tied_with_top({"lora": (0.90, 0.03), "full": (0.85, 0.03)})   # ["lora", "full"]
    """
    if len(scores) < 2:
        return []
    top = max(scores, key=lambda name: scores[name][0] if higher else -scores[name][0])
    mean, std = scores[top]
    tied = [name for name, (other, spread) in scores.items()
            if name != top and other - spread <= mean + std and mean - std <= other + spread]
    return [top, *tied] if tied else []


def pooled_reliability(entries: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Seeds' reliability bins (``{"confidence", "accuracy", "count"}`` lists) pooled into one diagram.

    Each bin's accuracy is sum(count * accuracy) / sum(count), its confidence the count-weighted mean;
    bins are matched by confidence range, so lists that leave out empty bins pool correctly. None when
    no seed has bins (tasks without them, or an evaluation that does not compute them).
    """
    from nlp_transfer.training.calibration import BINS

    found = [entry for entry in entries if isinstance(entry, dict) and entry.get("count")]
    if not found:
        return None
    totals = [[0.0, 0.0, 0] for _ in range(BINS)]  # count * confidence, count * accuracy, count
    for entry in found:
        for confidence, accuracy, count in zip(entry["confidence"], entry["accuracy"], entry["count"]):
            if count:
                index = min(max(math.ceil(confidence * BINS) - 1, 0), BINS - 1)  # as calibration.reliability_bins
                totals[index][0] += count * confidence
                totals[index][1] += count * accuracy
                totals[index][2] += count
    kept = [(c / n, a / n, n) for c, a, n in totals if n]
    total = sum(n for *_, n in kept)
    return {"confidence": [c for c, _, _ in kept], "accuracy": [a for _, a, _ in kept], "count": [n for *_, n in kept],
            "ece": sum(n * abs(a - c) for c, a, n in kept) / total, "seeds": len(found)}
