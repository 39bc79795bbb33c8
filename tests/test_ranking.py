"""Ranking backbones before training: LogME against its definition, the probe, candidate specs,
`rank_backbones` and `nlp-transfer rank` (and their one `RankConfig`), the charts, and the negative-transfer
warnings of rank, train and compare."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SAFETY_NET_SECONDS, sentiment_rows

from nlp_transfer import Candidate, TextClassifier, rank_backbones
from nlp_transfer.config import RankConfig, RunConfig, defaults_yaml
from nlp_transfer.errors import ConfigError
from nlp_transfer.selection.ranking import rank_from_config
from nlp_transfer.selection.transferability import _as_arrays, _maximise, linear_probe_accuracy, log_evidence, logme


# ----------------------------------------------------------------- LogME
def _linear_data(n: int, d: int, scale: float = 0.5, seed: int = 0):
    """Features and a real target that depends linearly on them, plus noise: the evidence has an interior maximum."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d))
    return features, features @ rng.normal(size=d) * scale + rng.normal(size=n)


# More examples than dimensions, and fewer (where the noise is large enough that beta stays finite).
@pytest.mark.parametrize("n, d, scale", [(60, 8, 0.5), (25, 30, 0.2)])
def test_logme_is_the_maximum_of_the_evidence_computed_directly(n, d, scale):
    from scipy.stats import multivariate_normal

    features, target = _linear_data(n, d, scale)
    evidence, alpha, beta = (v[0] for v in _maximise(*_as_arrays(features, target, regression=True)))
    # the closed form at the fixed point equals the textbook formula and the Gaussian marginal likelihood
    assert evidence == pytest.approx(log_evidence(features, target, alpha, beta), abs=1e-9)
    covariance = np.eye(n) / beta + features @ features.T / alpha  # y ~ N(0, I/beta + F F^T / alpha)
    assert evidence == pytest.approx(multivariate_normal(np.zeros(n), covariance).logpdf(target) / n, abs=1e-9)
    grid = [log_evidence(features, target, alpha * a, beta * b) for a in (0.5, 0.8, 0.95, 1.05, 1.25, 2)
            for b in (0.5, 0.8, 0.95, 1.05, 1.25, 2)]
    assert max(grid) < evidence  # no (alpha, beta) around the fixed point has more evidence


def test_logme_of_classes_is_the_mean_over_one_hot_targets():
    features, _ = _linear_data(50, 6)
    labels = np.random.default_rng(1).integers(0, 3, 50)
    per_class = [logme(features, (labels == k).astype(float), regression=True) for k in range(3)]
    assert logme(features, labels) == pytest.approx(np.mean(per_class))
    assert logme(features, np.array(["b", "a", "c"])[labels]) == pytest.approx(logme(features, labels))


def test_features_that_separate_the_classes_score_higher_than_random_ones():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    noise = rng.normal(size=(300, 16))
    separating = noise + 5.0 * np.eye(16)[labels]  # class k shifts dimension k
    assert logme(separating, labels) > logme(noise, labels) + 0.1
    assert linear_probe_accuracy(separating, labels) > 0.95
    assert linear_probe_accuracy(noise, labels) < 0.5
    assert logme(torch.from_numpy(separating).float(), labels) == pytest.approx(logme(separating, labels), abs=1e-4)


def test_logme_and_probe_reject_unusable_input():
    from nlp_transfer.errors import DataError

    with pytest.raises(DataError, match="one label per example"):
        logme(np.zeros((4, 2)), [0, 1])
    with pytest.raises(DataError, match="NaN"):
        logme(np.full((4, 2), np.nan), [0, 1, 0, 1])
    with pytest.raises(DataError, match="at least 2 per class"):
        linear_probe_accuracy(np.random.default_rng(0).normal(size=(5, 2)), [0, 0, 0, 0, 1])


# ----------------------------------------------------------------- candidate specs
@pytest.mark.parametrize("spec, expected", [
    ("bert-base-uncased", Candidate("bert-base-uncased")),
    ("roberta-base@mean", Candidate("roberta-base", pooling="mean")),
    ("m@cls@layers=2", Candidate("m", pooling="cls", layers=2)),
    ("./models/mine@layers=4@random", Candidate("./models/mine", layers=4, random=True)),
])
def test_candidate_specs_parse_and_print_back(spec, expected):
    assert Candidate.parse(spec) == expected
    assert Candidate.parse(expected.spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("bert@layer=2", "did you mean 'layers=N'"),
    ("bert@clss", "did you mean 'cls'"),
    ("bert@layers=0", "from 1 up"),
    ("bert@layers", "from 1 up"),
    ("@cls", "no model name"),
])
def test_a_bad_candidate_names_the_option_and_the_valid_ones(spec, message):
    with pytest.raises(ConfigError, match=message) as error:
        Candidate.parse(spec)
    assert spec in str(error.value)


def test_a_candidate_listed_twice_is_an_error():
    from nlp_transfer.selection.ranking import parse_candidates

    with pytest.raises(ConfigError, match="listed twice"):
        parse_candidates("bert@cls,bert@cls")


# ----------------------------------------------------------------- truncated encoders
def test_a_truncated_encoder_keeps_the_first_layers_and_saves_and_reloads(model_dirs, tmp_path):
    full = TextClassifier.from_pretrained(model_dirs["bert"], labels=["neg", "pos"], strategy="full")
    for strategy in ("full", "lora"):
        clf = TextClassifier.from_pretrained(model_dirs["bert"], labels=["neg", "pos"], strategy=strategy, num_layers=1)
        assert len(clf.backbone.blocks()) == 1
        kept = clf.backbone.base_encoder.state_dict()
        name = next(k for k in kept if "layer.0.attention.self.query" in k and k.endswith("weight") and "lora" not in k)
        torch.testing.assert_close(kept[name], full.backbone.encoder.state_dict()["encoder.layer.0.attention.self.query.weight"])
        clf.save(tmp_path / strategy)
        again = TextClassifier.load(tmp_path / strategy)
        assert len(again.backbone.blocks()) == 1 and again.num_layers == 1
        texts = ["good film", "awful plot"]
        np.testing.assert_allclose(again.predict_proba(texts), clf.predict_proba(texts), atol=1e-5)
    with pytest.raises(ConfigError, match="has 2 layers; use 1 to 2"):
        TextClassifier.from_pretrained(model_dirs["bert"], labels=["neg", "pos"], num_layers=3)


def test_old_metadata_without_num_layers_still_loads(model_dirs, tmp_path):
    clf = TextClassifier.from_pretrained(model_dirs["bert"], labels=["neg", "pos"], strategy="lora")
    clf.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "nlp_transfer.json").read_text())
    del meta["num_layers"]
    (tmp_path / "m" / "nlp_transfer.json").write_text(json.dumps(meta))
    assert TextClassifier.load(tmp_path / "m").num_layers is None


# ----------------------------------------------------------------- rank_backbones
@pytest.fixture
def count_encoder_passes(monkeypatch):
    from nlp_transfer.backbones.text import TextBackbone

    calls = {"n": 0}
    forward = TextBackbone.forward

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(TextBackbone, "forward", counting)
    return calls


def test_rank_writes_a_ranked_table_and_reuses_cached_features(model_dirs, tmp_path, count_encoder_passes):
    bert = str(model_dirs["bert"])
    candidates = [bert, f"{bert}@cls", Candidate(bert, layers=1), f"{bert}@random"]
    rows = sentiment_rows(60)
    first = rank_backbones(rows, candidates, max_samples=40, folds=3, feature_cache_dir=str(tmp_path / "cache"),
                           output_dir=tmp_path / "out")
    assert count_encoder_passes["n"] > 0
    saved = json.loads((tmp_path / "out" / "rank.json").read_text())
    scores = [row["logme"] for row in saved["candidates"]]
    assert scores == sorted(scores, reverse=True) and [row["rank"] for row in saved["candidates"]] == [1, 2, 3, 4]
    assert {row["candidate"] for row in saved["candidates"]} == {Candidate.parse(str(c)).spec if isinstance(c, str)
                                                                   else c.spec for c in candidates}
    assert saved["examples"] == 40 and all(row["feature_dim"] == 32 for row in saved["candidates"])
    assert not any(row["added"] for row in saved["candidates"])  # a twin was listed: none added
    assert (tmp_path / "out" / "rank.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "LogME" in (tmp_path / "out" / "rank.md").read_text()

    count_encoder_passes["n"] = 0
    second = rank_backbones(rows, candidates, max_samples=40, folds=3, feature_cache_dir=str(tmp_path / "cache"))
    assert count_encoder_passes["n"] == 0  # every candidate's features came from the cache
    assert [r.logme for r in second.rows] == [r.logme for r in first.rows]


def test_the_pooling_counts_only_when_ranking_for_a_frozen_encoder(model_dirs, tmp_path, count_encoder_passes):
    bert = str(model_dirs["bert"])
    rows, cache = sentiment_rows(60), str(tmp_path / "cache")
    tuned = rank_backbones(rows, [f"{bert}@cls", f"{bert}@mean"], max_samples=40, folds=3, twin=False,
                           feature_cache_dir=cache, output_dir=tmp_path / "tuned")
    cls_row, mean_row = sorted(tuned.rows, key=lambda row: row.candidate)
    # fine-tuning learns the pooling: one encoder, one score, and the second candidate read the first's features
    assert (cls_row.logme, cls_row.probe_accuracy) == (mean_row.logme, mean_row.probe_accuracy)
    passes = count_encoder_passes["n"]
    frozen = rank_backbones(rows, [f"{bert}@cls", f"{bert}@mean"], max_samples=40, folds=3, twin=False,
                            feature_cache_dir=cache, target="feature_extraction", output_dir=tmp_path / "frozen")
    assert count_encoder_passes["n"] > passes  # the CLS readout was never encoded for fine-tuning
    frozen_scores = {row.candidate: row.logme for row in frozen.rows}
    assert frozen_scores[f"{bert}@mean"] == mean_row.logme and frozen_scores[f"{bert}@cls"] != cls_row.logme
    assert json.loads((tmp_path / "tuned" / "rank.json").read_text())["target"] == "fine_tuning"
    assert json.loads((tmp_path / "frozen" / "rank.json").read_text())["target"] == "feature_extraction"
    assert "for fine tuning" in tuned.table() and "for feature extraction" in frozen.table()
    with pytest.raises(ConfigError, match="did you mean 'fine_tuning'"):
        rank_backbones(rows, [bert], target="finetuning")


def _degenerate_model(source: Path, folder: Path) -> Path:
    """A 'pretrained' model whose word embeddings are all equal: its features ignore the words."""
    clf = TextClassifier.from_pretrained(source, strategy="feature_extraction")
    with torch.no_grad():
        words = clf.backbone.encoder.embeddings.word_embeddings.weight
        words.copy_(words[0].expand_as(words))
    clf.backbone.encoder.save_pretrained(folder)
    clf.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def learnt_model(model_dirs, tmp_path_factory) -> Path:
    """A tiny encoder fine-tuned on the toy sentiment task: pretrained, for that task, in earnest."""
    clf = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full", pooling="mean")
    clf.fit(sentiment_rows(128), epochs=8, batch_size=16, learning_rate=3e-3, head_learning_rate=3e-3, validation_split=0)
    folder = tmp_path_factory.mktemp("learnt") / "model"
    clf.backbone.encoder.save_pretrained(folder)
    clf.tokenizer.save_pretrained(folder)
    return folder


def test_a_backbone_below_its_random_twin_is_flagged(model_dirs, tmp_path, caplog):
    bad = _degenerate_model(model_dirs["bert"], tmp_path / "bad")
    with caplog.at_level("WARNING", logger="nlp_transfer"):
        ranking = rank_backbones(sentiment_rows(60), [str(bad)], folds=3, feature_cache_dir="memory",
                                 output_dir=tmp_path / "out")
    assert [row.candidate for row in ranking.rows] == [f"{bad}@random", str(bad)]  # the twin was added, and won
    assert ranking.rows[0].added and ranking.rows[0].control
    assert "negative transfer" in ranking.rows[1].warning and "negative transfer" in caplog.text
    assert "other pooling" not in ranking.rows[1].warning  # fine-tuning learns the pooling: not advice here
    saved = json.loads((tmp_path / "out" / "rank.json").read_text())
    assert saved["warnings"] == [ranking.rows[1].warning] and saved["candidates"][1]["warning"]


def test_a_learnt_backbone_beats_its_twin_without_a_warning(learnt_model):
    ranking = rank_backbones(sentiment_rows(60, seed=3), [str(learnt_model)], folds=3, feature_cache_dir="memory")
    assert ranking.best == str(learnt_model) and ranking.rows[-1].control
    assert not ranking.warnings
    assert ranking.rows[0].probe_accuracy > 0.9


def test_rank_command(model_dirs, tmp_path, capsys):
    from test_cli import TINY, _write_data

    from nlp_transfer.cli import main

    data = _write_data(tmp_path / "data")
    bert = model_dirs["bert"]
    code = main(["rank", str(TINY), f"data.train={data['train']}", "--candidates", f"{bert},{bert}@layers=1",
                 "--folds", "3", "--output", str(tmp_path / "rank")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "LogME" in printed and "(control)" in printed  # the twin of the best was added
    assert len(json.loads((tmp_path / "rank" / "rank.json").read_text())["candidates"]) == 3
    assert main(["rank", str(TINY), f"data.train={data['train']}", "--candidates", f"{bert}@cls", "--folds", "3",
                 "--target", "feature_extraction", "--output", str(tmp_path / "frozen")]) == 0
    assert "for feature extraction" in capsys.readouterr().out
    assert json.loads((tmp_path / "frozen" / "rank.json").read_text())["target"] == "feature_extraction"
    assert main(["rank", str(TINY), "--candidates", f"{bert}@lyers=1", "--output", str(tmp_path / "x")]) == 2
    assert "did you mean 'layers=N'" in capsys.readouterr().err


# ----------------------------------------------------------------- RankConfig: one default for CLI, YAML and Python
def _rank_parser():
    from nlp_transfer.cli import _parser

    commands = next(action for action in _parser()._actions if isinstance(action, argparse._SubParsersAction))
    return commands.choices["rank"]


def test_rank_options_keys_and_keywords_are_the_fields_of_rank_config():
    fields = {f.name: f for f in dataclasses.fields(RankConfig)}
    defaults = RankConfig()
    options = {action.dest.removeprefix("rank."): action for action in _rank_parser()._actions
               if action.dest.startswith("rank.")}
    assert set(options) == set(fields)  # every field is an option, and no option is declared beside them
    for name, action in options.items():
        assert action.default is argparse.SUPPRESS  # the default is RankConfig's, shown in the help, set by nobody else
        assert action.help.startswith(fields[name].metadata["help"])
        default = getattr(defaults, name)
        if default is not None:
            assert f"(default: {str(default).lower() if isinstance(default, bool) else default})" in action.help
    assert options["target"].choices == ("fine_tuning", "feature_extraction")
    assert RunConfig().rank == defaults
    assert "\nrank:  # " in defaults_yaml() and "\n  folds: 5  # Folds of the linear probe" in defaults_yaml()
    for function in (rank_backbones, rank_from_config):  # no second copy of a default in a signature
        parameters = inspect.signature(function).parameters
        assert set(parameters) & set(fields) <= {"candidates"}
        assert "candidates" not in parameters or parameters["candidates"].default is None


@pytest.fixture
def fake_scoring(monkeypatch):
    """rank_backbones without models: a fixed sample, and each candidate's score records its settings."""
    from nlp_transfer.selection import ranking

    seen = {}

    def sample(train, text_column, pair_column, label_column, max_samples, seed):
        seen["max_samples"] = max_samples
        return [{"text": "x"}] * 4, np.array([0, 1, 0, 1]), 2

    def score(candidate, rows, ids, *, added, folds, target, pool_layers, **rest):
        seen.setdefault("scored", []).append(candidate.spec)
        seen.update(folds=folds, target=target, pool_layers=pool_layers)
        return ranking.CandidateScore(candidate.spec, -1.0 if candidate.random else 1.0, 0.5, 4, 0.0,
                                      control=candidate.random, added=added)

    monkeypatch.setattr(ranking, "_sample", sample)
    monkeypatch.setattr(ranking, "_score", score)
    return seen


def test_rank_backbones_keywords_set_rank_config_fields(fake_scoring):
    ranking = rank_backbones([], ["a"])
    defaults = RankConfig()
    assert (fake_scoring["max_samples"], fake_scoring["folds"], fake_scoring["target"], fake_scoring["pool_layers"]) == (
        defaults.max_samples, defaults.folds, defaults.target, defaults.pool_layers)
    assert fake_scoring["scored"] == ["a", "a@random"] and ranking.folds == defaults.folds  # twin on by default
    fake_scoring.clear()
    ranking = rank_backbones([], None, RankConfig(candidates=["b@cls"], folds=4), twin=False, max_samples=0,
                             target="feature_extraction")
    assert fake_scoring == {"max_samples": 0, "scored": ["b@cls"], "folds": 4, "target": "feature_extraction",
                            "pool_layers": None}
    assert (ranking.folds, ranking.target) == (4, "feature_extraction")
    with pytest.raises(ConfigError, match="Unknown setting 'foldz' in the keywords of rank_backbones.*did you mean 'folds'"):
        rank_backbones([], ["a"], foldz=3)
    with pytest.raises(ConfigError, match="folds must be at least 2"):
        rank_backbones([], ["a"], folds=1)


def test_yaml_rank_section_overrides_and_options_reach_the_ranking(tmp_path, monkeypatch, capsys):
    from test_cli import TINY, _write_data

    from nlp_transfer.cli import main
    from nlp_transfer.selection import ranking

    seen = []

    def fake_rank(train, candidates, settings, **rest):
        seen.append((candidates, settings))
        return ranking.Ranking([ranking.CandidateScore("a", 1.0, 0.5, 4, 0.0)], 4, 2, 0.0, settings.folds,
                               settings.target, path=Path(rest["output_dir"]))

    monkeypatch.setattr(ranking, "rank_backbones", fake_rank)
    data = _write_data(tmp_path / "data")
    recipe = tmp_path / "rank.yaml"
    recipe.write_text(TINY.read_text() + "rank:\n  folds: 3\n  candidates: [a, b@cls]\n")
    base = ["rank", str(recipe), f"data.train={data['train']}", "--output", str(tmp_path / "out")]
    assert main(base) == 0
    candidates, settings = seen.pop()
    assert [c.spec for c in candidates] == ["a", "b@cls"]
    assert settings == RankConfig(folds=3, candidates=["a", "b@cls"])  # the rest are RankConfig's defaults
    assert main([*base, "rank.twin=false", "--folds", "4", "--candidates", "c@layers=1,d", "--max-samples", "0",
                 "--target", "feature_extraction"]) == 0
    candidates, settings = seen.pop()
    assert [c.spec for c in candidates] == ["c@layers=1", "d"]
    assert settings == RankConfig(candidates=["c@layers=1", "d"], max_samples=0, folds=4, twin=False,
                                  target="feature_extraction")
    assert main([*base, "--twin", "rank.twin=false"]) == 0 and seen.pop()[1].twin  # an option given wins
    capsys.readouterr()
    assert main([*base, "rank.foldz=3"]) == 2 and "did you mean 'rank.folds'" in capsys.readouterr().err
    assert main([*base, "--folds", "1"]) == 2
    assert "rank.folds must be at least 2" in capsys.readouterr().err and not seen


def test_charts_leave_the_matplotlib_backend_alone(tmp_path):
    # In a fresh process with a backend of the user's choosing (not Agg): drawing both charts keeps it,
    # and pyplot is never imported (its figure registry would keep every chart alive in a notebook).
    script = f"""
import sys
from pathlib import Path
import matplotlib
before = matplotlib.get_backend()
from nlp_transfer.selection import charts
from nlp_transfer.selection.comparison import Comparison, StrategyScore
from nlp_transfer.selection.ranking import CandidateScore, Ranking
rows = [StrategyScore(name, {{"accuracy": acc}}, secs, 10.0, 100.0, trained, 1000, 3, 1e-3)
        for name, acc, secs, trained in [("lora", 0.85, 20, 50), ("full", 0.86, 60, 1000), ("scratch", 0.6, 30, 1000)]]
charts.plot_comparison(Comparison("test", "accuracy", rows, "full", title="t"), Path({str(tmp_path)!r}) / "compare.png")
scores = [CandidateScore("a", 1.0, 0.9, 8, 1.0), CandidateScore("a@random", 0.2, 0.5, 8, 1.0, control=True)]
charts.plot_ranking(Ranking(scores, 40, 2, 2.0, 3, "fine_tuning"), Path({str(tmp_path)!r}) / "rank.png")
assert matplotlib.get_backend() == before == "svg", (before, matplotlib.get_backend())
assert "matplotlib.pyplot" not in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=SAFETY_NET_SECONDS, env={**os.environ, "MPLBACKEND": "svg"})
    assert done.returncode == 0, done.stderr
    for name in ("compare.png", "rank.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------- negative transfer in train and compare
def _overrides(model: Path, data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [f"model.name_or_path={model}", *(f"data.{k}={v}" for k, v in data.items()), f"output.dir={out}", *extra]


def test_compare_warns_when_transfer_does_not_beat_the_control(model_dirs, tmp_path, capsys):
    from test_cli import TINY, _write_data

    from nlp_transfer.cli import main

    bad = _degenerate_model(model_dirs["bert"], tmp_path / "bad")
    data = _write_data(tmp_path / "data")
    out = tmp_path / "cmp"
    assert main(["compare", str(TINY), *_overrides(bad, data, out, "train.epochs=4"),
                 "--strategies", "feature_extraction,scratch"]) == 0
    assert "! feature_extraction:" in capsys.readouterr().out
    summary = json.loads((out / "compare.json").read_text())
    rows = {row["strategy"]: row for row in summary["strategies"]}
    assert "from-scratch control" in rows["feature_extraction"]["warning"] and rows["scratch"]["warning"] is None
    assert summary["warnings"] == [rows["feature_extraction"]["warning"]]
    metrics = json.loads((out / "feature_extraction" / "metrics.json").read_text())
    assert rows["feature_extraction"]["warning"] in metrics["warnings"]
    assert any("most frequent label" in w for w in metrics["warnings"])  # train's own check, against the majority


def test_a_learnt_backbone_beats_the_majority_baseline_without_a_warning(learnt_model, tmp_path):
    from test_cli import TINY, _write_data

    from nlp_transfer.config.run import load_config
    from nlp_transfer.selection.comparison import compare

    data = _write_data(tmp_path / "data")
    config = load_config(TINY, _overrides(learnt_model, data, tmp_path / "cmp", "train.epochs=4"))
    result = compare(config, ["feature_extraction"])
    assert result.majority_baseline is not None and result.warnings == []
    metrics = json.loads((tmp_path / "cmp" / "feature_extraction" / "metrics.json").read_text())
    assert metrics["warnings"] == []


def test_training_the_random_twin_says_nothing_was_transferred(model_dirs, tmp_path, capsys):
    from test_cli import TINY, _write_data

    from nlp_transfer.cli import main

    data = _write_data(tmp_path / "data")
    out = tmp_path / "twin"
    assert main(["train", str(TINY), *_overrides(model_dirs["bert"], data, out, "model.random_init=true")]) == 0
    assert "! model.random_init is on" in capsys.readouterr().out
    warnings = json.loads((out / "metrics.json").read_text())["warnings"]
    assert warnings and "nothing was transferred" in warnings[0]


def test_comparing_strategies_on_the_random_twin_flags_every_one(model_dirs, tmp_path):
    from test_cli import TINY, _write_data

    from nlp_transfer.config.run import load_config
    from nlp_transfer.selection.comparison import compare

    data = _write_data(tmp_path / "data")
    config = load_config(TINY, _overrides(model_dirs["bert"], data, tmp_path / "cmp", "model.random_init=true"))
    result = compare(config, ["feature_extraction", "scratch"])
    rows = {row.strategy: row for row in result.rows}
    assert "nothing was transferred" in rows["feature_extraction"].warning and rows["scratch"].warning is None
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert saved["warnings"] == [rows["feature_extraction"].warning]


def test_ranking_only_random_weights_says_so(model_dirs, caplog):
    bert = str(model_dirs["bert"])
    with caplog.at_level("WARNING", logger="nlp_transfer"):
        ranking = rank_backbones(sentiment_rows(40), [f"{bert}@random"], folds=3, feature_cache_dir="memory")
    assert [row.candidate for row in ranking.rows] == [f"{bert}@random"] and ranking.rows[0].control
    assert "every candidate has random weights" in caplog.text and bert in caplog.text
