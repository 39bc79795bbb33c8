"""`nlp-transfer serve`: the real server (uvicorn on a free loopback port) spoken to over real HTTP.

Tiny trained models from the conftest fixtures, saved and served from their folders as a user would.
Answers must equal `api.predict` on the same inputs; concurrent requests must share batches; every
bad payload must be a 4xx that names the field or the limit; a bad folder must fail before listening.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from conftest import SAFETY_NET_SECONDS, multi_label_rows, pair_rows, sentiment_rows
from tagging_data import tagged_rows

from nlp_transfer import TextClassifier, TokenClassifier, api
from nlp_transfer.config.settings import DataConfig
from nlp_transfer.serving.server import build_server
from nlp_transfer.serving.settings import ServerSettings

QUICK = dict(epochs=1, batch_size=16, validation_split=0.0, feature_cache_dir="memory")
TEXTS = [row["text"] for row in sentiment_rows(32, seed=5)]


@pytest.fixture(scope="module")
def folders(model_dirs, tmp_path_factory) -> dict[str, Path]:
    """Saved tiny models: single-label, multi-label, pairs and tagging (one quick epoch each)."""
    root = tmp_path_factory.mktemp("served")
    bert = model_dirs["bert"]
    made = {}
    for name, rows, task in (("single", sentiment_rows(32), "single_label"),
                             ("multi", multi_label_rows(32), "multi_label"), ("pairs", pair_rows(32), "single_label")):
        clf = TextClassifier.from_pretrained(bert, strategy="full", task=task)
        clf.fit(rows, **QUICK)
        made[name] = clf.save(root / name)
    tagger = TokenClassifier.from_pretrained(bert, strategy="full")
    tagger.fit(tagged_rows(32), **QUICK)
    made["tagging"] = tagger.save(root / "tagging")
    return made


@contextmanager
def running(model, **settings):
    """A real uvicorn server on a free loopback port, in a background thread; yields (client, server)."""
    server = build_server(model, ServerSettings(port=0, access_log=False, log_level="warning", **settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client, server
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="module")
def single(folders):
    with running(folders["single"], max_texts_per_request=4, max_text_chars=50, max_body_bytes=2000,
                 max_wait_ms=50) as served:
        yield served


def _model(server):
    return server.config.app.state.model


def _same_rows(got: list[dict], expected: list[dict]) -> None:
    """Equal rows; probabilities to 1e-5 (a batch pads texts to other lengths than api.predict's)."""
    assert len(got) == len(expected)
    for row, want in zip(got, expected):
        assert {k: v for k, v in row.items() if k != "probabilities"} == \
               {k: v for k, v in want.items() if k != "probabilities"}
        if "probabilities" in want:
            assert row["probabilities"].keys() == want["probabilities"].keys()
            assert all(abs(row["probabilities"][k] - p) < 1e-5 for k, p in want["probabilities"].items())


# ----------------------------------------------------------------- predictions
def test_one_text_and_a_list_equal_api_predict(single):
    client, server = single
    one = client.post("/predict", json={"text": TEXTS[0]})
    assert one.status_code == 200, one.text
    several = client.post("/predict", json={"texts": TEXTS[:3]})
    assert several.status_code == 200, several.text
    _same_rows(one.json()["predictions"], api.predict(_model(server), TEXTS[:1]))
    _same_rows(several.json()["predictions"], api.predict(_model(server), TEXTS[:3]))
    row = one.json()["predictions"][0]
    assert row["text"] == TEXTS[0] and row["prediction"] in ("neg", "pos")
    assert set(row["probabilities"]) == {"neg", "pos"}


def test_pairs_multi_label_and_tagging(folders):
    pairs = [(row["text"], row["text_pair"]) for row in pair_rows(3, seed=9)]
    with running(folders["pairs"]) as (client, server):
        one = client.post("/predict", json={"text": pairs[0][0], "text_pair": pairs[0][1]})
        several = client.post("/predict", json={"texts": [list(p) for p in pairs]})
        single_text = client.post("/predict", json={"text": "good film"})
        _same_rows(one.json()["predictions"], api.predict(_model(server), pairs[:1]))
        _same_rows(several.json()["predictions"], api.predict(_model(server), pairs))
        assert single_text.status_code == 422 and "text_pair" in single_text.text and "pairs" in single_text.text
        assert client.get("/metadata").json()["uses_text_pair"] is True
    with running(folders["multi"]) as (client, server):
        got = client.post("/predict", json={"texts": ["goal song the", "film plot"]})
        assert got.status_code == 200, got.text
        rows = got.json()["predictions"]
        assert all(isinstance(row["prediction"], list) for row in rows)
        _same_rows(rows, api.predict(_model(server), ["goal song the", "film plot"]))
    with running(folders["tagging"]) as (client, server):
        texts = ["the good great film", "a bad movie"]
        got = client.post("/predict", json={"texts": texts})
        assert got.status_code == 200, got.text
        assert got.json()["predictions"] == api.predict(_model(server), texts)  # words, tags, entities
        assert client.post("/predict", json={"texts": [["a", "b"]]}).status_code == 422


def test_concurrent_requests_share_batches_and_get_their_own_answers(single):
    client, server = single
    batcher = server.config.app.state.batcher
    seen = len(batcher.batch_sizes)
    url = str(client.base_url)

    async def all_at_once():
        async with httpx.AsyncClient(base_url=url, timeout=60) as async_client:
            return await asyncio.gather(*(async_client.post("/predict", json={"text": t}) for t in TEXTS))

    answers = asyncio.run(all_at_once())
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    _same_rows([a.json()["predictions"][0] for a in answers], api.predict(_model(server), TEXTS))
    sizes = list(batcher.batch_sizes)[seen:]
    assert sum(sizes) == len(TEXTS) and max(sizes) > 1, sizes  # 32 requests, fewer model calls


@pytest.mark.slow  # the export (graph, parity check) is most of it
def test_an_onnx_export_is_served_alike(folders, tmp_path):
    pytest.importorskip("onnxruntime")
    clf = api.load_model(folders["single"])
    clf.export(tmp_path / "export", validation=sentiment_rows(20, seed=1))
    with running(tmp_path / "export") as (client, _):
        got = client.post("/predict", json={"texts": TEXTS[:4]})
        assert got.status_code == 200, got.text
        _same_rows(got.json()["predictions"], api.predict(clf, TEXTS[:4]))  # the graph matches the model
        assert client.get("/metadata").json()["kind"] == "OnnxClassifier"


# ----------------------------------------------------------------- health, metadata
def test_health_and_metadata(single):
    client, server = single
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model_loaded"] is True
    meta = client.get("/metadata").json()
    assert meta["labels"] == ["neg", "pos"] and meta["task"] == "single_label" and meta["strategy"] == "full"
    assert meta["uses_text_pair"] is False and meta["max_length"] and meta["nlp_transfer_version"]
    assert meta["limits"]["max_texts_per_request"] == 4 and meta["limits"]["max_text_chars"] == 50
    import torch

    if not torch.cuda.is_available():  # a batch runs in length-sorted passes of 8 (see use_forward_batch_size)
        assert _model(server).training.eval_batch_size == 8


# ----------------------------------------------------------------- bad requests
BAD = {
    "malformed JSON": (dict(content=b'{"text": "good', headers={"content-type": "application/json"}), 422, "JSON"),
    "no field": (dict(json={}), 422, "either 'text'"),
    "unknown field": (dict(json={"txt": "good"}), 422, '"txt"'),
    "text not a string": (dict(json={"text": 3}), 422, '"text"'),
    "texts not a list": (dict(json={"texts": "good film"}), 422, '"texts"'),
    "empty text": (dict(json={"text": "  "}), 422, "text is empty"),
    "empty list": (dict(json={"texts": []}), 422, "texts is an empty list"),
    "empty text in a list": (dict(json={"texts": ["good", ""]}), 422, "texts[1] is empty"),
    "both text and texts": (dict(json={"text": "a", "texts": ["b"]}), 422, "not both"),
    "too many texts": (dict(json={"texts": ["good"] * 5}), 413, "5 texts in one request; the limit is 4"),
    "too long text": (dict(json={"texts": ["good", "good " * 20]}), 422,
                      "texts[1] has 100 characters; the limit is 50"),
    "too big body": (dict(json={"text": "x" * 3000}), 413, "(Content-Length); the limit is 2000"),
    "too big streamed body": (dict(content=iter([b'{"text": "', b"x" * 1500, b"x" * 1500, b'"}']),
                               headers={"content-type": "application/json"}), 413, "passed 2000 bytes while streaming"),
    "pair to a single-text model": (dict(json={"text": "good", "text_pair": "bad"}), 422, "trained on single texts"),
    "pairs to a single-text model": (dict(json={"texts": [["good", "bad"]]}), 422, '"texts", 0'),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_requests_are_4xx_naming_the_field_or_limit(single, case):
    client, _ = single
    request, status, named = BAD[case]
    answer = client.post("/predict", **request)
    assert answer.status_code == status, answer.text
    assert named in json.dumps(answer.json()), answer.text
    assert client.get("/health").status_code == 200  # and the server is fine after it


# ----------------------------------------------------------------- failures and shutdown
class _FakeModel:
    """The prediction API every servable model has (a classifier, an ONNX export): slow, and
    failing on texts that contain "boom"."""

    labels = ["no", "yes"]
    task = SimpleNamespace(name="single_label")
    data_config = DataConfig()
    uses_text_pair = False

    def predict_with_scores(self, inputs):
        import numpy as np

        time.sleep(0.3)
        if any("boom" in row["text"] for row in inputs):
            raise RuntimeError("boom in the model")
        return ["yes"] * len(inputs), np.tile([0.25, 0.75], (len(inputs), 1))


def test_a_model_error_is_a_500_for_its_request_only_and_in_flight_requests_finish_at_shutdown():
    with running(_FakeModel(), max_wait_ms=200) as (client, server):
        url = str(client.base_url)

        async def together():
            async with httpx.AsyncClient(base_url=url, timeout=60) as async_client:
                return await asyncio.gather(async_client.post("/predict", json={"text": "fine"}),
                                            async_client.post("/predict", json={"text": "boom"}))

        fine, boom = asyncio.run(together())  # batched together, then retried one by one
        assert fine.status_code == 200 and fine.json()["predictions"][0]["prediction"] == "yes"
        assert boom.status_code == 500 and "RuntimeError: boom in the model" in boom.text

        in_flight = {}
        request = threading.Thread(target=lambda: in_flight.update(answer=client.post("/predict", json={"text": "ok"})))
        request.start()
        time.sleep(0.1)  # the request is in the model when the shutdown starts
        server.should_exit = True
        request.join(timeout=30)
        assert in_flight["answer"].status_code == 200
    assert not server.config.app.state.batcher.running  # the lifespan stopped the batcher


def _serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nlp_transfer.cli", "serve", *args]


def test_cli_with_a_bad_folder_exits_non_zero_before_listening(tmp_path):
    done = subprocess.run(_serve_command(str(tmp_path / "missing"), "--port", "0"), check=False,
                          capture_output=True, text=True, timeout=SAFETY_NET_SECONDS)
    assert done.returncode == 2, done.stderr
    assert "does not exist" in done.stderr and "Uvicorn running" not in done.stderr


def test_cli_serves_and_stops_cleanly_on_sigint(folders):
    process = subprocess.Popen(_serve_command(str(folders["single"]), "--port", "0", "--no-access-log"),
                               stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    try:
        port, deadline = None, time.monotonic() + 120
        while port is None:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            port = int(found.group(1)) if found else None
        got = httpx.post(f"http://127.0.0.1:{port}/predict", json={"text": "good film"}, timeout=30)
        assert got.status_code == 200 and got.json()["predictions"][0]["prediction"] in ("neg", "pos")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
