"""Which pretrained model? Rank candidate backbones on your data before fine-tuning any of them.

Each candidate encodes a seeded sample of the training data once (frozen, through the feature
cache) and is scored by LogME and by the k-fold accuracy of a linear probe (`transferability.py`).
A randomly initialised twin of the best candidate is scored too: a pretrained backbone that does
not beat random weights of its own shape is flagged as negative transfer.

What is scored depends on what the winner will be used for (`target`):

- ``"fine_tuning"`` (default: full, partial, lora, gradual): the encoder's token states, mean-pooled
  over the top layers, whatever pooling the candidate names. Fine-tuning trains the position the
  head reads (a CLS vector that was never trained becomes a good one within an epoch), so the
  pooling is not a property of the pretrained weights; what they know lies in the token states.
- ``"feature_extraction"``: exactly the readout a frozen-encoder classifier would train on, with the
  candidate's pooling, so ``@cls`` and ``@mean`` of one model score differently.

    from nlp_transfer import rank_backbones
    ranking = rank_backbones("train.jsonl", ["sentence-transformers/all-MiniLM-L6-v2",
                                             "sentence-transformers/all-MiniLM-L6-v2@layers=2"])
    print(ranking.table())                   # also rank.json, rank.md, rank.png with output_dir

    nlp-transfer rank my.yaml --candidates bert-base-uncased,roberta-base@mean,distilroberta-base

A candidate is ``NAME[@option...]``: ``cls`` / ``mean`` (pooling), ``layers=N`` (only the first N
layers), ``random`` (the architecture with random weights). How to rank (sample size, folds, twin,
target, ...) is one `RankConfig`: the ``rank:`` section of a run config, the CLI's options, and the
keywords of `rank_backbones` (``folds=3``), with its defaults and checks.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nlp_transfer.config.rank import RankConfig, Target
from nlp_transfer.config.settings import build
from nlp_transfer.errors import ConfigError, DataError, did_you_mean

__all__ = ["Candidate", "CandidateScore", "Ranking", "rank_backbones", "rank_from_config", "parse_candidates"]

logger = logging.getLogger(__name__)

_OPTIONS = ["cls", "mean", "layers=N", "random"]


@dataclass(frozen=True)
class Candidate:
    """A backbone to rank: a model folder or Hub id, its pooling, its depth, pretrained or random."""

    name: str
    pooling: Literal["auto", "cls", "mean"] = "auto"
    layers: int | None = None  # only the first N transformer layers; None: all
    random: bool = False  # same architecture and tokenizer, random weights: the control

    @classmethod
    def parse(cls, spec: str) -> Candidate:
        """``"roberta-base@mean@layers=4"`` -> Candidate("roberta-base", "mean", 4)."""
        name, *options = [part.strip() for part in str(spec).strip().split("@")]
        if not name:
            raise ConfigError(f"Candidate {spec!r} has no model name; write NAME[@option...], e.g. bert-base-uncased@cls.")
        values: dict[str, Any] = {}
        for option in options:
            key, sep, value = option.partition("=")
            if option in ("cls", "mean"):
                values["pooling"] = option
            elif option == "random":
                values["random"] = True
            elif key == "layers" and sep and value.isdigit() and int(value) >= 1:
                values["layers"] = int(value)
            elif key == "layers":
                raise ConfigError(f"Candidate {spec!r}: {option!r} needs a number of layers from 1 up, e.g. layers=4.")
            else:
                raise ConfigError(f"Unknown option {option!r} in candidate {spec!r}: "
                                  f"{did_you_mean(option if not sep else key + '=N', _OPTIONS)}")
        return cls(name, **values)

    @property
    def spec(self) -> str:
        """The shell form, which `parse` reads back to an equal candidate."""
        options = ([self.pooling] if self.pooling != "auto" else []) + ([f"layers={self.layers}"] if self.layers else [])
        return "@".join([self.name, *options, *(["random"] if self.random else [])])

    def twin(self) -> Candidate:
        """The same architecture (and readout) with random weights."""
        return dataclasses.replace(self, random=True)


@dataclass(frozen=True)
class CandidateScore:
    """One row of the ranking."""

    candidate: str
    logme: float
    probe_accuracy: float
    feature_dim: int
    seconds: float  # loading, encoding (or reading the cache) and scoring
    control: bool = False  # a randomly initialised twin
    added: bool = False  # the twin `rank_backbones` added itself
    warning: str | None = None


@dataclass(frozen=True)
class Ranking:
    """Candidates ranked by LogME (best first), with the linear-probe second opinion."""

    rows: list[CandidateScore]
    examples: int
    num_labels: int
    seconds: float
    folds: int
    target: Target
    path: Path | None = None

    @property
    def best(self) -> str:
        """The best-scoring pretrained (not random) candidate."""
        return next((row.candidate for row in self.rows if not row.control), self.rows[0].candidate)

    @property
    def warnings(self) -> list[str]:
        return [row.warning for row in self.rows if row.warning]

    def table(self) -> str:
        width = max(24, *(len(row.candidate) + 12 for row in self.rows))
        header = f"{'rank':<6}{'candidate':<{width}}{'LogME':>9}{'probe acc':>11}{'dim':>6}{'seconds':>9}"
        lines = [f"Ranked by LogME for {self.target.replace('_', ' ')} on {self.examples} training examples "
                 f"({self.num_labels} labels); higher is better:", header, "-" * len(header)]
        for place, row in enumerate(self.rows, 1):
            name = row.candidate + (" (control)" if row.control else "") + (" !" if row.warning else "")
            lines.append(f"{place:<6}{name:<{width}}{row.logme:>9.4f}{row.probe_accuracy:>11.4f}{row.feature_dim:>6}"
                         f"{row.seconds:>9.1f}")
        lines.append(f"LogME: log evidence per example of a Bayesian linear model on the frozen features (nats); "
                     f"probe acc: {self.folds}-fold logistic regression on the same features. Total {self.seconds:.1f} s.")
        if self.target == "fine_tuning":
            lines.append("Features: mean of the token states (fine-tuning learns the pooling, so @cls and @mean of a model "
                         "score alike); for a frozen encoder rank with target feature_extraction.")
        else:
            lines.append("Features: the readout a frozen encoder's head trains on, with each candidate's pooling.")
        lines.append("(control): the same architecture with random weights; a pretrained model should beat it.")
        lines += [f"! {warning}" for warning in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": "logme", "target": self.target, "best": self.best, "examples": self.examples,
                "num_labels": self.num_labels, "folds": self.folds, "seconds": self.seconds, "warnings": self.warnings,
                "candidates": [{"rank": place, **dataclasses.asdict(row)} for place, row in enumerate(self.rows, 1)]}


def parse_candidates(candidates: str | Sequence[str | Candidate]) -> list[Candidate]:
    """Candidates from ``"A,B@cls,C@layers=2"`` or a list of specs / `Candidate` objects."""
    items = [part for part in candidates.split(",") if part.strip()] if isinstance(candidates, str) else list(candidates)
    parsed = [item if isinstance(item, Candidate) else Candidate.parse(item) for item in items]
    if not parsed:
        raise ConfigError("No candidates to rank; give some, e.g. --candidates bert-base-uncased,roberta-base@mean.")
    specs = [c.spec for c in parsed]
    repeated = sorted({s for s in specs if specs.count(s) > 1})
    if repeated:
        raise ConfigError(f"Candidate {repeated[0]!r} is listed twice; list each once.")
    return parsed


def rank_backbones(train: Any, candidates: str | Sequence[str | Candidate] | None = None,
                   settings: RankConfig | None = None, *, text_column: str = "text",
                   text_pair_column: str | None = "text_pair", label_column: str = "label", max_length: int = 128,
                   seed: int = 42, feature_cache_dir: str | None = None, output_dir: str | Path | None = None,
                   **options: Any) -> Ranking:
    """Score each candidate's frozen features on (a seeded sample of) labelled training data.

    `train` is anything `fit` accepts (file, list of dicts, DataFrame, datasets.Dataset) with a
    single label per row. How to rank is a `RankConfig` (`settings`), and any of its fields may be
    given as keywords instead (``folds=3``, ``twin=False``, ``target="feature_extraction"``, ...),
    which take their defaults, and their checks, from it. `candidates` defaults to
    ``settings.candidates``. ``twin`` adds the random twin of the best candidate when no
    ``@random`` candidate of that model is listed. ``pool_layers`` averages each candidate's top N
    layers (capped at its depth) before pooling; the default is feature extraction's own readout
    (the top 4), which ranked better than the top layer alone in bench/rank_validation.py.
    ``target`` is what the best candidate will be used for (see the module docstring): pooled token
    states for ``"fine_tuning"``, the candidate's own pooling for ``"feature_extraction"``. With
    `output_dir`, writes rank.json, rank.md and rank.png there.
    """
    settings = _settings(settings, options, "rank_backbones")
    chosen = parse_candidates(candidates if candidates is not None else settings.candidates or [])
    rows, ids, num_labels = _sample(train, text_column, text_pair_column, label_column, settings.max_samples, seed)
    started = time.perf_counter()
    columns = {"text_column": text_column, "text_pair_column": text_pair_column}
    scoring = {"max_length": max_length, "folds": settings.folds, "seed": seed, "feature_cache_dir": feature_cache_dir,
               "pool_layers": settings.pool_layers, "target": settings.target, **columns}
    score = lambda c, added=False: _score(c, rows, ids, added=added, **scoring)  # noqa: E731
    scores = [score(c) for c in chosen]
    best = max((s for s, c in zip(scores, chosen) if not c.random), key=lambda s: s.logme, default=None)
    if settings.twin and best is not None:
        top = chosen[scores.index(best)]
        if not any(c.random and c.name == top.name for c in chosen):
            logger.info("rank: adding %s, the random twin of the best candidate, as the control", top.twin().spec)
            chosen, scores = [*chosen, top.twin()], [*scores, score(top.twin(), added=True)]
    if best is None:
        logger.warning("rank: every candidate has random weights, so there is no pretrained model to rank against "
                       "them; list the pretrained model too (e.g. %s)", chosen[0].name)
    scores = _with_warnings(chosen, scores, settings.target)
    ranking = Ranking(sorted(scores, key=lambda s: -s.logme), len(ids), num_labels, time.perf_counter() - started,
                      settings.folds, settings.target)
    for warning in ranking.warnings:
        logger.warning("%s", warning)
    if output_dir is not None:
        ranking = write_ranking(ranking, Path(output_dir))
    return ranking


def rank_from_config(config: Any, candidates: str | Sequence[str | Candidate] | None = None, *,
                     overrides: Sequence[str] = (), output_dir: str | Path | None = None, **options: Any) -> Ranking:
    """`rank_backbones` on the training data, columns, max_length and seed of a run config (what the CLI runs).

    How to rank is the config's ``rank`` section; keywords (``folds=3``, ...) change its fields.
    Without `candidates` (here or in ``rank.candidates``), the config's own model is ranked
    against its random twin.
    """
    from nlp_transfer.api import as_config
    from nlp_transfer.data.sources import load_splits

    config = as_config(config, overrides)
    settings = _settings(config.rank, options, "rank_from_config", prefix="rank.")
    candidates = candidates if candidates is not None else settings.candidates
    if candidates is None:
        model = config.model
        candidates = [Candidate(model.name_or_path, model.pooling, model.num_layers)]
    candidates = parse_candidates(candidates)  # a misspelt option fails before any data is read
    data = config.data
    train = load_splits(dataclasses.replace(data, validation=None, test=None)).train  # only train is read
    return rank_backbones(train, candidates, settings, text_column=data.text_column,
                          text_pair_column=data.text_pair_column, label_column=data.label_column,
                          max_length=data.max_length, seed=config.train.seed,
                          feature_cache_dir=config.train.feature_cache_dir, output_dir=output_dir)


def write_ranking(ranking: Ranking, folder: Path) -> Ranking:
    """rank.json, rank.md and rank.png in `folder` (created; other files there are left alone)."""
    from nlp_transfer.selection.charts import plot_ranking
    from nlp_transfer.storage.run_folder import write_json

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "rank.json", ranking.to_dict())
    (folder / "rank.md").write_text("```\n" + ranking.table() + "\n```\n", encoding="utf-8")
    plot_ranking(ranking, folder / "rank.png")
    return dataclasses.replace(ranking, path=folder)


# ----------------------------------------------------------------- internals
def _settings(settings: RankConfig | None, options: dict[str, Any], caller: str, prefix: str = "") -> RankConfig:
    """`settings` (default `RankConfig()`) with the keyword `options` set; unknown or bad ones raise."""
    settings = settings if settings is not None else RankConfig()
    if not isinstance(settings, RankConfig):
        raise ConfigError(f"{caller}: settings must be a RankConfig, got {type(settings).__name__}; "
                          "pass e.g. RankConfig(folds=3), or the fields as keywords (folds=3).")
    if not options:
        return settings
    return build(RankConfig, {**dataclasses.asdict(settings), **options}, prefix, f"the keywords of {caller}()")


def _sample(train: Any, text_column: str, pair_column: str | None, label_column: str, max_samples: int | None,
            seed: int) -> tuple[list[dict[str, Any]], np.ndarray, int]:
    """A seeded sample of the labelled rows (only the columns the encoder needs) and class ids."""
    from nlp_transfer.config.settings import DataConfig
    from nlp_transfer.data.tables import TextColumns, read_table
    from nlp_transfer.tasks import get_task, infer_labels

    config = DataConfig(text_column=text_column, text_pair_column=pair_column, label_column=label_column)
    examples = TextColumns.from_table(read_table(train, "train"), config, "train", need_labels=True)
    labels = infer_labels(get_task("single_label"), examples.labels, "train")
    if len(labels) < 2:
        raise DataError(f"train has a single label ({labels[0]!r}); ranking needs at least two classes to tell apart.")
    keep = np.arange(len(examples))
    if max_samples and len(examples) > max_samples:  # 0 or None: every example
        keep = np.sort(np.random.default_rng(seed).choice(len(examples), size=max_samples, replace=False))
        logger.info("rank: scoring a seeded sample of %d of the %d training examples", max_samples, len(examples))
    index = {label: i for i, label in enumerate(labels)}
    rows = [{text_column: examples.texts[i], **({pair_column: examples.pairs[i]} if examples.pairs else {})} for i in keep]
    return rows, np.array([index[examples.labels[i]] for i in keep]), len(labels)


def _score(candidate: Candidate, rows: list[dict[str, Any]], ids: np.ndarray, *, max_length: int, folds: int, seed: int,
           feature_cache_dir: str | None, pool_layers: int | None, target: Target, added: bool,
           **columns: Any) -> CandidateScore:
    from nlp_transfer.classifiers.text import TextClassifier
    from nlp_transfer.selection.transferability import linear_probe_accuracy, logme

    started = time.perf_counter()
    # Mean of the top 4 layers by default (feature extraction's readout): on SST-2 and TREC it ranked
    # the candidates as fine-tuning did, the top layer alone did not (bench/RESULTS.md). For
    # fine-tuning, mean-pooled token states whatever the candidate's pooling: a never-trained CLS
    # vector scored below random weights on TREC yet fine-tuned to within a point of mean pooling.
    pooling = "mean" if target == "fine_tuning" else candidate.pooling
    clf = TextClassifier.from_pretrained(candidate.name, strategy="feature_extraction", pooling=pooling,
                                         num_layers=candidate.layers, random_init=candidate.random,
                                         max_length=max_length, seed=seed)
    if pool_layers is not None:
        clf.backbone.pool_layers = min(pool_layers, len(clf.backbone.blocks()))
    features = clf.features(rows, feature_cache_dir=feature_cache_dir, **columns).numpy()
    del clf
    gc.collect()
    score = CandidateScore(candidate.spec, logme(features, ids), linear_probe_accuracy(features, ids, folds=folds, seed=seed),
                           int(features.shape[1]), time.perf_counter() - started, control=candidate.random, added=added)
    logger.info("rank: %s LogME %.4f, probe accuracy %.4f (%.1f s)", score.candidate, score.logme,
                score.probe_accuracy, score.seconds)
    return score


def _with_warnings(candidates: list[Candidate], scores: list[CandidateScore], target: Target) -> list[CandidateScore]:
    """Flag pretrained candidates that do not beat the random twin of their model (same depth if listed)."""
    twins = [(c, s) for c, s in zip(candidates, scores) if c.random]
    out = []
    for candidate, score in zip(candidates, scores):
        mine = [(c, s) for c, s in twins if c.name == candidate.name]
        same_depth = [(c, s) for c, s in mine if c.layers == candidate.layers]
        reference = max(same_depth or mine, key=lambda pair: pair[1].logme, default=None)
        if not candidate.random and reference is not None:
            from nlp_transfer.selection.negative_transfer import twin_warning

            warning = twin_warning(score.candidate, score.logme, reference[1].candidate, reference[1].logme,
                                   pooling_matters=target == "feature_extraction")
            score = dataclasses.replace(score, warning=warning)
        out.append(score)
    return out
