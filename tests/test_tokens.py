"""Token classification: a tag per word, on any encoder, with every strategy.

What a user relies on: each strategy trains exactly the weights it promises and reloads to the same
tags; full fine-tuning learns; a linear head saves as transformers' *ForTokenClassification, which
`pipeline("token-classification")` reads to the same entities; words (never sub-tokens) are what is
tagged and scored, also in sentences longer than max_length; bad data fails before training with the
sentence named; the frozen-feature cache changes nothing but the time.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from tagging_data import TAGS, build_split_bert, split_rows, tagged_rows
from transformers import AutoModel

from nlp_transfer import TextClassifier, TokenClassifier, strategies
from nlp_transfer.data.windows import only_owned, tag_windows
from nlp_transfer.errors import ConfigError, DataError, NLPTransferError
from nlp_transfer.tasks import IGNORED
from nlp_transfer.training.metrics import compute_token_metrics

STRATEGIES = [n for n in strategies.STRATEGIES if strategies.supports(n, "text", "token_classification")]  # every tagging one
OPTIONS = {"partial": {"unfreeze_last": 1}, "lora": {"r": 4}}
FAST = {"batch_size": 16, "learning_rate": 5e-3, "head_learning_rate": 5e-3, "feature_cache_dir": "memory"}
# two epochs in which every strategy moves its weights and starts predicting entities (gradual: head, then top layer)
MATRIX = {"epochs": 2, "batch_size": 8, "learning_rate": 5e-3, "head_learning_rate": 3e-2, "feature_cache_dir": "memory",
          "load_best_model_at_end": False}
# The tiny RoBERTa's byte-level BPE (vocab 300) splits every word as "Ġ" + letters, so each word's first
# sub-token is the same "Ġ": "first" pooling sees the word only through attention and learns slowly.
# Mean pooling reads its letters. BERT keeps the default, "first".
LEARNS = {"bert": {}, "roberta": {"pooling": "mean"}}
ID = {tag: i for i, tag in enumerate(TAGS)}


def words_of(rows):
    return [row["tokens"] for row in rows]


def tags_of(rows):
    return [row["tags"] for row in rows]


def entity_scores(entities):
    return [e["score"] for sentence in entities for e in sentence]


def spans(entities):
    return [[(e["entity_group"], e["start"], e["end"]) for e in sentence] for sentence in entities]


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    """A tiny random BERT whose tokenizer splits "goodness" into good ##ness (see tagging_data)."""
    folder = tmp_path_factory.mktemp("split") / "bert"
    torch.manual_seed(0)
    build_split_bert(folder)
    return folder


@pytest.fixture(scope="module")
def trained(model_dirs):
    """Full fine-tuning on the toy tags, per backbone (module-scoped: several tests read these)."""
    models = {}
    for name in ("bert", "roberta"):
        clf = TokenClassifier.from_pretrained(model_dirs[name], strategy="full", seed=0, **LEARNS[name])
        clf.fit(tagged_rows(128, seed=0), tagged_rows(32, seed=100), epochs=8, seed=0, **FAST)
        models[name] = clf
    return models


@pytest.fixture(scope="module")
def split_model(split_dir, tmp_path_factory):
    """(classifier, saved folder): full fine-tuning, linear head, first sub-token alignment, on split words."""
    clf = TokenClassifier.from_pretrained(split_dir, strategy="full", seed=0)
    clf.fit(split_rows(96, seed=0), split_rows(32, seed=100), epochs=6, seed=0, **FAST)
    return clf, clf.save(tmp_path_factory.mktemp("saved") / "ner")


@pytest.fixture(scope="module")
def all_tokens_model(split_dir, tmp_path_factory):
    """(classifier, saved folder) trained with label_all_tokens: every sub-token learns its word's tag."""
    clf = TokenClassifier.from_pretrained(split_dir, strategy="full", seed=0)
    clf.fit(split_rows(96, seed=0), split_rows(32, seed=100), epochs=6, seed=0, label_all_tokens=True, **FAST)
    return clf, clf.save(tmp_path_factory.mktemp("saved") / "ner-all-tokens")


# --------------------------------------------------------------------------- strategy x backbone
def head_size(clf) -> int:
    config = clf.model.head.config
    h, c = config.in_features, config.num_outputs
    return h * c + c + (h * h + h if config.kind == "mlp" else 0) + (2 * h if config.normalize else 0)


def encoder_parameters(model_dir) -> dict[str, int]:
    """Parameter sizes of the plain encoder as transformers loads it, pooler excluded (unused)."""
    encoder = AutoModel.from_pretrained(model_dir)
    return {n: p.numel() for n, p in encoder.named_parameters() if not n.startswith("pooler.")}


def make(model_dir, strategy, **kwargs):
    return TokenClassifier.from_pretrained(model_dir, strategy=strategy, **{**OPTIONS.get(strategy, {}), **kwargs})


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_trainable_parameter_counts(tiny_model, strategy):
    clf = make(tiny_model, strategy, labels=TAGS)
    encoder = encoder_parameters(tiny_model)
    config = clf.backbone.hf_config
    hidden, layers = config.hidden_size, config.num_hidden_layers
    # the head: one row of logits per word; a frozen encoder gets the normalised MLP, others a linear layer
    frozen = strategy == "feature_extraction"
    assert (clf.model.head.config.kind, clf.model.head.config.normalize) == (("mlp", True) if frozen else ("linear", False))
    assert (clf.model.head.config.in_features, clf.model.head.config.num_outputs) == (hidden, len(TAGS))
    expected = {
        "feature_extraction": head_size(clf),
        "partial": head_size(clf) + sum(v for n, v in encoder.items() if n.startswith(f"encoder.layer.{layers - 1}.")),
        "full": head_size(clf) + sum(encoder.values()),
        "lora": head_size(clf) + layers * 2 * (4 * hidden + hidden * 4),  # A (r x h) and B (h x r) on query, value
        "gradual": head_size(clf),  # before training: the head alone
    }[strategy]
    extra_lora = layers * 2 * (4 * hidden * 2) if strategy == "lora" else 0
    assert clf.parameter_summary() == {"trainable": expected, "total": sum(encoder.values()) + head_size(clf) + extra_lora}


SAVED_LAYOUT = {"feature_extraction": "encoder", "lora": "adapter", "full": "transformers", "partial": "transformers",
                "gradual": "transformers"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fit_trains_what_the_strategy_promises_and_reloads_to_the_same_tags(tiny_model, strategy, tmp_path):
    clf = make(tiny_model, strategy, labels=TAGS, seed=0)
    before = {n: t.detach().clone() for n, t in clf.model.state_dict().items()}
    clf.fit(tagged_rows(64, seed=1), tagged_rows(16, seed=101), **MATRIX)
    after = clf.model.state_dict()
    trainable = {n for n, p in clf.model.named_parameters() if p.requires_grad}  # gradual: its last epoch's set
    for name in set(after) - trainable:  # frozen weights and buffers
        assert torch.equal(before[name], after[name]), f"{strategy}: frozen {name} changed"
    moved = {n for n in trainable if not torch.equal(before[n], after[n])}
    assert moved == trainable, f"{strategy} left trainable weights where they were: {sorted(trainable - moved)[:5]}"
    encoder = {n for n in trainable if not n.startswith("head.")}
    promised = {"feature_extraction": lambda n: False, "full": lambda n: True, "lora": lambda n: "lora_" in n,
                "partial": lambda n: ".layer.1." in n,  # tiny models have 2 layers; unfreeze_last=1
                "gradual": lambda n: ".layer.1." in n}[strategy]  # epoch 1 the head, epoch 2 + the top layer
    assert encoder == {n for n, _ in clf.model.named_parameters() if not n.startswith("head.") and promised(n)}

    folder = clf.save(tmp_path / "model")
    assert json.loads((folder / "nlp_transfer.json").read_text())["layout"] == SAVED_LAYOUT[strategy]
    if SAVED_LAYOUT[strategy] == "transformers":
        architecture = {"bert": "BertForTokenClassification", "roberta": "RobertaForTokenClassification"}[tiny_model.name]
        assert json.loads((folder / "config.json").read_text())["architectures"] == [architecture]
    loaded = TokenClassifier.load(folder)
    sentences = words_of(tagged_rows(8, seed=2))
    for mine, theirs in zip(clf.predict_proba(sentences), loaded.predict_proba(sentences)):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)
    mine, theirs = clf.predict(sentences), loaded.predict(sentences)
    assert sum(map(len, mine)) > 0, "entities are predicted, so comparing them means something"
    assert spans(mine) == spans(theirs)
    assert entity_scores(mine) == pytest.approx(entity_scores(theirs), abs=1e-5)
    assert loaded.labels == TAGS


# --------------------------------------------------------------------------- learning
@pytest.mark.parametrize("backbone", ["bert", "roberta"])
def test_full_fine_tuning_learns_the_toy_tags(trained, backbone):
    clf = trained[backbone]
    epochs = clf.history.epochs
    assert epochs[-1]["eval_loss"] < epochs[0]["eval_loss"] / 2
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    held_out = clf.evaluate(tagged_rows(48, seed=200))
    assert held_out["f1"] >= 0.9, held_out  # when written: BERT 1.0 on seeds 0-2, RoBERTa (mean) 0.95-1.0 on seeds 0-4
    assert set(held_out["per_type"]) == {"POS", "NEG"}


# --------------------------------------------------------------------------- the transformers layout
def test_linear_head_saves_as_bert_for_token_classification(split_model):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    clf, folder = split_model
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert {int(k): v for k, v in config["id2label"].items()} == dict(enumerate(TAGS))
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    sentences = words_of(split_rows(12, seed=300))
    ours = clf.predict_tags(sentences)
    for words, tags in zip(sentences, ours):
        encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            predicted = model(**encoded).logits[0].argmax(-1).tolist()
        word_ids = encoded.word_ids(0)
        firsts = [i for i, w in enumerate(word_ids) if w is not None and (i == 0 or word_ids[i - 1] != w)]
        assert len(firsts) < len(word_ids) - 2, "some words must be split for this test to mean anything"
        assert [model.config.id2label[predicted[i]] for i in firsts] == tags


TEXTS = ["the goodness loveness films, and the badly acting", "a greatness superbness plot was dull", "boring films"]


def test_pipeline_first_aggregation_gives_the_same_entities(split_model):
    from transformers import pipeline

    clf, folder = split_model
    tagger = pipeline("token-classification", model=str(folder), aggregation_strategy="first", device="cpu")
    theirs = [tagger(text) for text in TEXTS]
    ours = clf.predict(TEXTS)
    assert {e["entity_group"] for sentence in ours for e in sentence} == {"POS", "NEG"}, ours
    assert any(w.endswith(("ness", "ly")) for sentence in ours for e in sentence for w in e["words"])  # split words
    assert spans(ours) == [[(e["entity_group"], e["start"], e["end"]) for e in sentence] for sentence in theirs]
    assert entity_scores(ours) == pytest.approx([float(score) for score in entity_scores(theirs)], abs=1e-4)


def test_pipeline_simple_aggregation_agrees_when_trained_on_all_sub_tokens(all_tokens_model):
    """With label_all_tokens a word's later sub-tokens learn I- of its type, so the sub-token-level
    "simple" aggregation finds the entities the word-level `predict` finds (scores differ by design:
    "simple" averages over sub-tokens, `predict` over words)."""
    from transformers import pipeline

    clf, folder = all_tokens_model
    tagger = pipeline("token-classification", model=str(folder), aggregation_strategy="simple", device="cpu")
    texts = [" ".join(words) for words in words_of(split_rows(16, seed=400))] + TEXTS
    ours = clf.predict(texts)
    assert sum(1 for sentence in ours for e in sentence if any(w.endswith(("ness", "ly", "s")) for w in e["words"])) >= 5
    assert spans(ours) == [[(e["entity_group"], e["start"], e["end"]) for e in tagger(text)] for text in texts]


# --------------------------------------------------------------------------- words, not sub-tokens
def noisy(rows: list[dict], seed: int, share: float = 0.25) -> list[dict]:
    """The rows with about `share` of the gold tags redrawn (then made valid IOB2, as reading them does):
    a model right on the clean tags is wrong on known words, so counting sub-tokens, or a word twice,
    would change the numbers."""
    import random

    from nlp_transfer.data.tagging import to_iob2

    rng = random.Random(seed)
    tags = [[rng.choice(TAGS) if rng.random() < share else t for t in r["tags"]] for r in rows]
    return [{"tokens": r["tokens"], "tags": t} for r, t in zip(rows, to_iob2(tags, "iob2", "noisy"))]


def test_evaluate_scores_words_as_seqeval_does(split_model):
    clf, _ = split_model
    rows = noisy(split_rows(32, seed=500), seed=1)
    scores = clf.evaluate(rows)
    predicted = clf.predict_tags(words_of(rows))
    assert 0.0 < scores["accuracy"] < 1.0 and 0.0 < scores["f1"] < 1.0, "a model right on every word would prove nothing"
    expected = compute_token_metrics(tags_of(rows), predicted)
    import evaluate

    from nlp_transfer.training.metrics import bundled_metric_path

    seqeval = evaluate.load(str(bundled_metric_path("seqeval"))).compute(predictions=predicted, references=tags_of(rows))
    for key in ("precision", "recall", "f1", "accuracy"):
        assert scores[key] == pytest.approx(expected[key], abs=1e-12) == pytest.approx(seqeval[f"overall_{key}"])
    right = sum(p == g for ps, gs in zip(predicted, tags_of(rows)) for p, g in zip(ps, gs))
    assert scores["accuracy"] == pytest.approx(right / sum(len(r["tokens"]) for r in rows), abs=1e-12)
    probabilities = clf.predict_proba(words_of(rows))
    gold = [probabilities[i][np.arange(len(r["tags"])), [ID[t] for t in r["tags"]]] for i, r in enumerate(rows)]
    assert scores["loss"] == pytest.approx(float(-np.log(np.concatenate(gold)).mean()), rel=1e-4)


def long_rows(n: int, seed: int) -> list[dict]:
    return split_rows(n, seed=seed, words=40)


def test_sentences_longer_than_max_length_get_one_tag_per_word(split_model):
    _, folder = split_model
    clf = TokenClassifier.from_pretrained(folder, max_length=16)  # windows of 14 sub-tokens between [CLS] and [SEP]
    assert clf.data_config.max_length == 16
    rows = noisy(long_rows(6, seed=600), seed=2)
    assert all(len(clf.tokenizer(r["tokens"], is_split_into_words=True)["input_ids"]) > 3 * 16 for r in rows)
    predicted = clf.predict_tags(words_of(rows))
    assert [len(tags) for tags in predicted] == [len(r["tokens"]) for r in rows]
    probabilities = clf.predict_proba(words_of(rows))
    assert [p.shape for p in probabilities] == [(len(r["tokens"]), len(TAGS)) for r in rows]

    scores = clf.evaluate(rows)
    assert 0.0 < scores["accuracy"] < 1.0, "a model right on every word would prove nothing"
    right = sum(p == g for ps, gs in zip(predicted, tags_of(rows)) for p, g in zip(ps, gs))
    assert scores["accuracy"] == pytest.approx(right / sum(len(r["tokens"]) for r in rows), abs=1e-12)
    gold_entities = {kind: sum(t == f"B-{kind}" for r in rows for t in r["tags"]) for kind in ("POS", "NEG")}
    assert {k: v["support"] for k, v in scores["per_type"].items()} == gold_entities  # no entity counted twice
    expected = compute_token_metrics(tags_of(rows), predicted)
    assert scores.pop("per_type") == expected.pop("per_type")
    # the loss too is over words, each once: the mean cross-entropy of the per-word probabilities
    gold = [probabilities[i][np.arange(len(r["tags"])), [ID[t] for t in r["tags"]]] for i, r in enumerate(rows)]
    assert scores.pop("loss") == pytest.approx(float(-np.log(np.concatenate(gold)).mean()), rel=1e-4)
    assert scores == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("stride", [0, 3, 7, 100])
@pytest.mark.parametrize("backbone", ["split", "roberta"])
def test_windows_cover_every_word_exactly_once(split_dir, model_dirs, backbone, stride):
    from transformers import AutoTokenizer

    if backbone == "split":
        tokenizer = AutoTokenizer.from_pretrained(split_dir)
    else:
        tokenizer = AutoTokenizer.from_pretrained(model_dirs["roberta"], add_prefix_space=True)
    rows = long_rows(4, seed=700) + split_rows(3, seed=701)  # long and short sentences together
    # and a word of more sub-tokens than a window holds (split BERT: good + 20 x ##ness): cut, still one slot
    rows.append({"tokens": ["the", "good" + "ness" * 20, "film"], "tags": ["O", "B-POS", "O"]})
    ids = [[ID[t] for t in r["tags"]] for r in rows]
    windows = only_owned(tag_windows(tokenizer, words_of(rows), ids, max_length=16, stride=stride))
    assert all(len(window_ids) <= 16 for window_ids in windows.encodings["input_ids"])
    assert len(windows) > len(rows)  # the long sentences were cut
    owned = [[0] * len(r["tokens"]) for r in rows]
    for (sentence, start, end), window, targets in zip(windows.owned, windows.windows, windows.targets):
        for word in range(start, end):
            owned[sentence][word] += 1
        # targets only where the window scores the word, and there the word's own tag
        assert targets == [ids[sentence][window.start + slot] if start <= window.start + slot < end else IGNORED
                           for slot in range(window.end - window.start)]
    assert all(count == 1 for sentence in owned for count in sentence)
    # per-slot outputs come back as one row per word, each from the window that owns it
    outputs = [np.arange(w.start, w.end)[:, None] for w in windows.windows]
    assert [rows_.ravel().tolist() for rows_ in windows.sentence_outputs(outputs)] == [list(range(len(r["tokens"])))
                                                                                      for r in rows]


# --------------------------------------------------------------------------- label alignment
def test_a_word_is_one_slot_unless_all_sub_tokens_are_labelled(split_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(split_dir)
    words = ["goodness", "lovely", "the", "badly", "films"]  # good ##ness, love ##ly, the, bad ##ly, film ##s
    tags = [ID[t] for t in ["B-POS", "I-POS", "O", "B-NEG", "O"]]
    default = tag_windows(tokenizer, [words], [tags], max_length=32, stride=8)[0]
    pieces = tokenizer.convert_ids_to_tokens(default["input_ids"])
    assert pieces == ["[CLS]", "good", "##ness", "love", "##ly", "the", "bad", "##ly", "film", "##s", "[SEP]"]
    assert [pieces[i] for i in default["word_starts"]] == ["good", "love", "the", "bad", "film"]
    assert default["labels"] == tags
    continuation = {ID["B-POS"]: ID["I-POS"], ID["B-NEG"]: ID["I-NEG"]}
    every = tag_windows(tokenizer, [words], [tags], max_length=32, stride=8, all_tokens=True, continuation=continuation)[0]
    assert every["word_starts"] == list(range(1, 10))
    assert [TAGS[i] for i in every["labels"]] == ["B-POS", "I-POS", "I-POS", "I-POS", "O", "B-NEG", "I-NEG", "O", "O"]


def test_label_all_tokens_trains_continuations_as_inside_tags(split_dir, monkeypatch):
    """Through fit: the training windows with label_all_tokens carry I- on continuation sub-tokens."""
    from nlp_transfer.classifiers import base

    seen = {}

    def stop(model, groups, loader, *args, **kwargs):
        seen["dataset"] = loader.dataset
        raise KeyboardInterrupt

    monkeypatch.setattr(base, "train_loop", stop)
    clf = TokenClassifier.from_pretrained(split_dir, strategy="full")
    train = [{"tokens": ["goodness", "nicely", "the", "badly"], "tags": ["B-POS", "I-POS", "O", "B-NEG"]}]
    with pytest.raises(KeyboardInterrupt):
        clf.fit(train, train, label_all_tokens=True, feature_cache_dir="memory")
    assert [clf.labels[i] for i in seen["dataset"].targets[0]] == ["B-POS", "I-POS", "I-POS", "I-POS", "O", "B-NEG", "I-NEG"]


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def no_training(monkeypatch):
    """Any error must come before training starts: reaching the loop fails the test."""
    from nlp_transfer.classifiers import base

    def reached(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(base, "train_loop", reached)


GOOD = tagged_rows(8, seed=800)


@pytest.mark.parametrize("bad, message", [
    ({"tokens": ["the", "bad", "film"], "tags": ["O", "B-NEG"]}, r"sentence 8 \('the bad film'\): 3 words but 2 tags"),
    ({"tokens": [], "tags": []}, r"sentence 8 has no words"),
    ({"tokens": ["the", " ", "film"], "tags": ["O", "O", "O"]}, r"sentence 8 \('the   film'\): word 1"),
])
@pytest.mark.parametrize("where", ["train", "eval_data"])
def test_bad_sentences_fail_before_training_naming_the_sentence(model_dirs, no_training, bad, message, where):
    clf = TokenClassifier.from_pretrained(model_dirs["bert"], strategy="full")
    data = {"train": GOOD, "eval_data": GOOD}
    data[where] = GOOD + [bad]
    with pytest.raises(DataError, match=f"{where}: {message}"):
        clf.fit(data["train"], data["eval_data"], feature_cache_dir="memory")


def test_an_unknown_tag_at_evaluation_names_the_tag_and_the_sentence(trained, model_dirs, no_training):
    rows = GOOD + [{"tokens": ["the", "good", "story"], "tags": ["O", "B-PER", "O"]}]
    with pytest.raises(DataError, match=r"B-PER.*sentence 8") as error:
        trained["bert"].evaluate(rows)
    assert "B-NEG" in str(error.value)  # the model's tags are listed
    clf = TokenClassifier.from_pretrained(model_dirs["bert"], strategy="full")
    with pytest.raises(DataError, match=r"eval_data: .*B-PER.*sentence 8"):
        clf.fit(GOOD, rows, feature_cache_dir="memory")


@pytest.mark.parametrize("labels", [None, TAGS])
def test_all_o_training_data_has_nothing_to_learn(model_dirs, no_training, labels):
    rows = [{"tokens": r["tokens"], "tags": ["O"] * len(r["tokens"])} for r in GOOD]
    clf = TokenClassifier.from_pretrained(model_dirs["bert"], strategy="full", labels=labels)
    with pytest.raises(DataError, match="train: every word is tagged O"):
        clf.fit(rows, feature_cache_dir="memory")


def test_text_classifier_points_token_classification_to_token_classifier(model_dirs):
    with pytest.raises(ConfigError, match="use TokenClassifier"):
        TextClassifier.from_pretrained(model_dirs["bert"], task="token_classification")


def test_cls_pooling_is_refused_for_words(model_dirs):
    with pytest.raises(NLPTransferError, match=r"pooling='cls'.*first.*mean|pooling='cls'.*mean.*first"):
        TokenClassifier.from_pretrained(model_dirs["bert"], pooling="cls")


# --------------------------------------------------------------------------- the frozen-feature cache
def fe_fit(model_dir, **settings):
    clf = TokenClassifier.from_pretrained(model_dir, strategy="feature_extraction", seed=0,
                                          **{k: settings.pop(k) for k in ("pool_layers", "combine_layers") if k in settings})
    history = clf.fit(tagged_rows(64, seed=900), tagged_rows(16, seed=901), epochs=6, seed=0,
                      **{**FAST, "learning_rate": 1e-2, "head_learning_rate": 1e-2, **settings})
    return clf, history


def test_feature_cache_changes_nothing_but_the_time(model_dirs, tmp_path, caplog):
    cached, _ = fe_fit(model_dirs["bert"], feature_cache_dir=str(tmp_path))
    files = sorted(tmp_path.rglob("*.safetensors"))
    assert len(files) == 2  # train and eval windows
    uncached, _ = fe_fit(model_dirs["bert"], cache_features=False)
    sentences = words_of(tagged_rows(8, seed=902))
    for a, b in zip(cached.predict_proba(sentences), uncached.predict_proba(sentences)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with caplog.at_level(logging.INFO, logger="nlp_transfer"):
        again, _ = fe_fit(model_dirs["bert"], feature_cache_dir=str(tmp_path))
    assert caplog.text.count("Reusing cached features") == 2
    assert sorted(tmp_path.rglob("*.safetensors")) == files
    for a, b in zip(cached.predict_proba(sentences), again.predict_proba(sentences)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_label_all_tokens_windows_do_not_reuse_first_sub_token_features(split_dir, tmp_path, caplog):
    """The cache key holds the alignment: the same sentences with every sub-token a slot are other features."""
    def fit(**settings):
        clf = TokenClassifier.from_pretrained(split_dir, strategy="feature_extraction", seed=0)
        clf.fit(split_rows(32, seed=910), split_rows(8, seed=911), epochs=1, seed=0,
                **{**FAST, "feature_cache_dir": str(tmp_path), **settings})

    fit()
    with caplog.at_level(logging.INFO, logger="nlp_transfer"):
        fit(label_all_tokens=True)
    assert caplog.text.count("Reusing cached features") == 1  # the evaluation windows only
    assert len(list(tmp_path.rglob("*.safetensors"))) == 3


def test_concatenated_layers_double_the_head_input_and_still_train(model_dirs):
    clf, history = fe_fit(model_dirs["bert"], pool_layers=2, combine_layers="concat")
    hidden = clf.backbone.hf_config.hidden_size
    assert clf.model.head.config.in_features == 2 * hidden
    assert clf.model.head.norm.normalized_shape == (2 * hidden,)
    assert history.epochs[-1]["eval_loss"] < history.epochs[0]["eval_loss"]
    assert history.epochs[-1]["eval_f1"] >= 0.5, history.epochs[-1]


def test_mean_and_concatenated_layers_are_cached_apart(model_dirs, tmp_path):
    """The same layers averaged or concatenated are different features: neither may load the other's."""
    fe_fit(model_dirs["bert"], pool_layers=2, feature_cache_dir=str(tmp_path))
    clf, _ = fe_fit(model_dirs["bert"], pool_layers=2, combine_layers="concat", feature_cache_dir=str(tmp_path))
    assert len(list(tmp_path.rglob("*.safetensors"))) == 4  # train and eval windows, for each
    assert clf.model.head.config.in_features == 2 * clf.backbone.hf_config.hidden_size


# --------------------------------------------------------------------------- prediction API
@pytest.mark.parametrize("backbone", ["bert", "roberta"])
def test_predict_on_text_gives_character_offsets_of_the_words(trained, backbone):
    clf = trained[backbone]
    text = "the  good superb acting  was boring\ta  fine nice story "  # runs of spaces, a tab, a trailing space
    (entities,) = clf.predict(text)
    assert [(e["entity_group"], e["word"]) for e in entities] == [("POS", "good superb"), ("NEG", "boring"),
                                                                  ("POS", "fine nice")]
    for entity in entities:
        assert text[entity["start"]:entity["end"]] == entity["word"]
        assert entity["word"].split() == entity["words"]
        assert 0.0 < entity["score"] <= 1.0
    assert clf.predict([text, "the dull film"]) == [entities, clf.predict("the dull film")[0]]


@pytest.mark.parametrize("backbone", ["bert", "roberta"])
def test_predict_on_split_words_gives_offsets_into_the_words_joined_by_spaces(trained, backbone):
    clf = trained[backbone]
    sentences = [["a", "great", "love", "story"], ["the", "bad", "film"], ["the", "plot", "was", "awful", "a", "poor"]]
    entities = clf.predict(sentences)
    assert spans(entities) == [[("POS", 2, 12)], [("NEG", 4, 7)], [("NEG", 13, 18), ("NEG", 21, 25)]]
    for words, found in zip(sentences, entities):
        text = " ".join(words)
        assert all(text[e["start"]:e["end"]] == e["word"] for e in found)


def test_predict_proba_has_one_distribution_per_word(trained):
    clf = trained["bert"]
    sentences = [["a", "great", "love", "story"], ["hate"], " the  superb nice movie "]
    probabilities = clf.predict_proba(sentences)
    assert [p.shape for p in probabilities] == [(4, len(TAGS)), (1, len(TAGS)), (4, len(TAGS))]
    for rows in probabilities:
        np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-5)
    assert [[TAGS[i] for i in p.argmax(axis=1)] for p in probabilities] == clf.predict_tags(sentences)
    # a word the tokenizer drops entirely (a zero-width space) still gets its tag
    assert [len(tags) for tags in clf.predict_tags([["the", "\u200b", "good"], "the \u200b good"])] == [3, 3]
    entities, again = clf.predict_with_scores(sentences)
    assert entities == clf.predict(sentences)
    for a, b in zip(again, probabilities):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("backbone", ["bert", "roberta"])
def test_texts_are_split_into_words_as_the_tokenizer_splits_them(trained, backbone):
    """Punctuation is a word of its own (BERT's and RoBERTa's pre-tokenizers), with its own span."""
    text = "good, bad.  fine"
    assert trained[backbone].split_words(text) == [("good", (0, 4)), (",", (4, 5)), ("bad", (6, 9)), (".", (9, 10)),
                                                   ("fine", (12, 16))]
    assert len(trained[backbone].predict_tags(text)[0]) == 5


def test_bad_prediction_inputs_are_data_errors(trained):
    clf = trained["bert"]
    for bad in ([], ["the", ""], [["the", ""]], [[]], "   "):
        with pytest.raises(DataError):
            clf.predict(bad)
