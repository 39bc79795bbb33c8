"""Pushing to the Hub and loading back, with only the network replaced.

`HfApi.create_repo` and `HfApi.upload_folder` (the two client calls that reach the network) are
replaced by a fake Hub that keeps a copy of each uploaded folder; `hf_hub_download` and
`snapshot_download` read from it. Everything else is the real client and the real save path.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import sentiment_rows

from nlp_transfer import TextClassifier
from nlp_transfer.cli import main
from nlp_transfer.storage.hub import HubError

TOKEN = "hf_SECRETtokenSHOULDneverLEAK123"
TEXTS = ["a great film", "awful plot", "boring story", "superb acting"]
ROOT = Path(__file__).parent.parent


class FakeHub:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, dict]] = []

    def folder(self, repo_id: str) -> Path:
        return self.root / repo_id.replace("/", "--")


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FakeHub:
    import huggingface_hub

    fake = FakeHub(tmp_path / "hub")

    def create_repo(self, repo_id, *, private=False, exist_ok=False, repo_type=None, **kwargs):
        fake.calls.append(("create_repo", {"repo_id": repo_id, "private": private, "token": self.token}))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, folder_path, repo_id, repo_type=None, commit_message=None, **kwargs):
        fake.calls.append(("upload_folder", {"repo_id": repo_id, "commit_message": commit_message}))
        target = fake.folder(repo_id)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(folder_path, target)

    def hf_hub_download(repo_id, filename, **kwargs):
        path = fake.folder(repo_id) / filename
        if not path.is_file():
            raise huggingface_hub.errors.EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(path)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kwargs: str(fake.folder(repo_id)))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return fake


def _trained(model_dir, strategy="full", **options):
    clf = TextClassifier.from_pretrained(model_dir, strategy=strategy, pooling="mean", **options)
    clf.fit(sentiment_rows(48), sentiment_rows(16, seed=1), epochs=2, batch_size=16, learning_rate=3e-3)
    return clf


def _card_header(folder: Path) -> dict:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _everything_written(*folders: Path) -> str:
    return "".join(p.read_bytes().decode("utf-8", "replace") for f in folders for p in f.rglob("*") if p.is_file())


def test_push_uploads_the_saved_model_with_a_card(model_dirs, hub, caplog):
    clf = _trained(model_dirs["bert"])
    with caplog.at_level(logging.DEBUG):
        url = clf.push_to_hub("me/tiny-sentiment", private=True, token=TOKEN, commit_message="first")
    assert url.endswith("me/tiny-sentiment")
    assert [name for name, _ in hub.calls] == ["create_repo", "upload_folder"]
    assert hub.calls[0][1]["private"] is True and hub.calls[1][1]["commit_message"] == "first"
    uploaded = hub.folder("me/tiny-sentiment")
    assert {p.name for p in uploaded.iterdir()} == {"encoder", "head.safetensors", "nlp_transfer.json", "README.md",
                                                   "tokenizer.json", "tokenizer_config.json"}
    header = _card_header(uploaded)
    assert header["library_name"] == "nlp-transfer" and "strategy-full" in header["tags"]
    results = header["model-index"][0]["results"]
    assert any(m["type"] == "accuracy" for r in results for m in r["metrics"])
    assert 'TextClassifier.from_pretrained("me/tiny-sentiment")' in (uploaded / "README.md").read_text()
    assert TOKEN not in _everything_written(uploaded) and TOKEN not in caplog.text


def test_pushed_model_loads_back_by_repo_id_with_identical_predictions(model_dirs, hub):
    clf = _trained(model_dirs["bert"])
    clf.push_to_hub("me/tiny")
    again = TextClassifier.from_pretrained("me/tiny")
    assert again.labels == clf.labels and again.strategy.name == "full"
    np.testing.assert_allclose(again.predict_proba(TEXTS), clf.predict_proba(TEXTS), atol=1e-6)


def test_lora_push_is_adapter_plus_head_and_reloads(model_dirs, hub):
    import peft  # noqa: F401  (installed by the README's command: a missing one must fail, not skip)
    clf = _trained(model_dirs["bert"], strategy="lora")
    clf.push_to_hub("me/tiny-lora")
    uploaded = hub.folder("me/tiny-lora")
    assert (uploaded / "adapter" / "adapter_config.json").is_file() and (uploaded / "head.safetensors").is_file()
    assert not (uploaded / "encoder").exists()
    assert "peft" in _card_header(uploaded)["tags"]
    again = TextClassifier.from_pretrained("me/tiny-lora")
    np.testing.assert_allclose(again.predict_proba(TEXTS), clf.predict_proba(TEXTS), atol=1e-5)


def test_lora_push_merged_needs_no_peft_layout(model_dirs, hub):
    import peft  # noqa: F401  (installed by the README's command: a missing one must fail, not skip)
    clf = _trained(model_dirs["bert"], strategy="lora")
    clf.push_to_hub("me/tiny-merged", merge_lora=True)
    uploaded = hub.folder("me/tiny-merged")
    assert not (uploaded / "adapter").exists()
    meta = json.loads((uploaded / "nlp_transfer.json").read_text())
    assert meta["strategy"]["merged"] is True
    again = TextClassifier.from_pretrained("me/tiny-merged")
    np.testing.assert_allclose(again.predict_proba(TEXTS), clf.predict_proba(TEXTS), atol=1e-5)


def test_push_without_network_fails_clearly_and_keeps_the_local_model(model_dirs, tmp_path, monkeypatch):
    # The real client, offline: no fake here.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    clf = _trained(model_dirs["bert"])
    clf.save(tmp_path / "model")
    with pytest.raises(HubError) as error:
        clf.push_to_hub("me/offline")
    message = str(error.value)
    assert "Could not push" in message and "nlp-transfer push" in message and TOKEN not in message
    assert "offline" in message and "tmp" not in message.split("Nothing local changed")[1]  # no vanished temp path
    assert TextClassifier.load(tmp_path / "model").labels == clf.labels


def test_train_with_push_keeps_the_run_when_the_push_fails(model_dirs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sentiment_rows(48)))
    out = tmp_path / "run"
    code = main(["train", str(ROOT / "configs/tests/tiny.yaml"), f"model.name_or_path={model_dirs['bert']}",
                 f"data.train={data}", "data.validation=null", "data.test=null", f"output.dir={out}",
                 "output.push_to_hub=true", "output.hub_model_id=me/offline-run"])
    err = capsys.readouterr().err
    assert code == 2 and "Could not push" in err and f"nlp-transfer push {out}" in err and TOKEN not in err
    assert TextClassifier.load(out / "model").labels == ["neg", "pos"]


def test_invalid_repo_id(model_dirs, hub):
    clf = _trained(model_dirs["bert"])
    with pytest.raises(Exception, match="not a valid Hub repository id"):
        clf.push_to_hub("not a repo id")
    assert hub.calls == []


def test_train_with_push_to_hub_pushes_the_run_card(model_dirs, hub, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    files = {}
    for split, rows in {"train": sentiment_rows(64), "validation": sentiment_rows(21, seed=1)}.items():
        files[split] = data / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    code = main(["train", str(ROOT / "configs/tests/tiny.yaml"), f"model.name_or_path={model_dirs['bert']}",
                 f"data.train={files['train']}", f"data.validation={files['validation']}", "data.test=null",
                 f"output.dir={out}", "output.push_to_hub=true", "output.hub_model_id=me/tiny-run"])
    assert code == 0
    uploaded = hub.folder("me/tiny-run")
    card = (uploaded / "README.md").read_text()
    assert "# tiny" in card and "| validation |" in card and "torch / transformers" in card
    assert 'from_pretrained("me/tiny-run")' in card
    assert TOKEN not in _everything_written(uploaded, out) and TOKEN not in capsys.readouterr().out


def test_push_command_of_a_run_folder(model_dirs, hub, tmp_path, capsys):
    clf = _trained(model_dirs["bert"])
    clf.save(tmp_path / "model")
    assert main(["push", str(tmp_path / "model"), "--repo-id", "me/from-cli"]) == 0
    assert "pushed to" in capsys.readouterr().out and (hub.folder("me/from-cli") / "nlp_transfer.json").is_file()


def test_push_to_hub_without_a_repo_id_is_a_config_error():
    from nlp_transfer.config.run import load_config
    from nlp_transfer.errors import ConfigError

    with pytest.raises(ConfigError, match="hub_model_id"):
        load_config(None, ["output.push_to_hub=true"])


def test_every_saved_model_has_a_card(model_dirs, tmp_path):
    clf = _trained(model_dirs["roberta"], strategy="partial")
    clf.save(tmp_path / "m")
    header = _card_header(tmp_path / "m")
    assert header["pipeline_tag"] == "text-classification" and "base_model" not in header  # a local base
    assert "Trainable parameters" in (tmp_path / "m" / "README.md").read_text()


def test_card_names_a_hub_base_model_dataset_and_results():
    from nlp_transfer.storage.card import model_card
    from nlp_transfer.storage.model_folder import ModelMetadata

    meta = ModelMetadata(modality="text", layout="adapter", base_model="google-bert/bert-base-uncased", model_type="bert",
                         task="single_label", labels=["negative", "positive"], num_outputs=2, threshold=0.5,
                         pooling="cls", pool_layers=1, head={"kind": "mlp"},
                         strategy={"name": "lora", "options": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1,
                                                               "target_modules": None}},
                         parameters={"trainable": 1000, "total": 100000}, library_version="0.1.0")
    card = model_card(meta, title="sst2-bert", repo_id="me/sst2", results={"validation": {"accuracy": 0.91, "f1_macro": 0.9}},
                      dataset="nyu-mll/glue", dataset_config="sst2", license="apache-2.0")
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["base_model"] == "google-bert/bert-base-uncased" and header["datasets"] == ["nyu-mll/glue"]
    assert header["license"] == "apache-2.0" and {"peft", "strategy-lora"} <= set(header["tags"])
    result = header["model-index"][0]["results"][0]
    assert result["dataset"]["config"] == "sst2" and result["dataset"]["split"] == "validation"
    assert {"type": "accuracy", "value": 0.91} in result["metrics"]
    assert "1.00%" in card and 'from_pretrained("me/sst2")' in card


def test_image_classifier_pushes_a_timm_checkpoint_and_loads_back(resnet_dir, hub):
    from conftest import IMAGE_SIZE, square_images

    from nlp_transfer import ImageClassifier

    images, labels = square_images(32)
    clf = ImageClassifier.from_pretrained(resnet_dir, strategy="partial", unfreeze_last=1, image_size=IMAGE_SIZE)
    clf.fit((images, labels), epochs=2, batch_size=16, validation_split=0.25)
    clf.push_to_hub("me/squares", token=TOKEN)
    uploaded = hub.folder("me/squares")
    assert {p.name for p in uploaded.iterdir()} == {"config.json", "model.safetensors", "nlp_transfer.json", "README.md"}
    header = _card_header(uploaded)
    assert header["library_name"] == "timm" and header["pipeline_tag"] == "image-classification"
    assert 'timm.create_model("hf-hub:me/squares", pretrained=True)' in (uploaded / "README.md").read_text()
    config = json.loads((uploaded / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["num_classes"] == 2 and config["label_names"] == clf.labels
    for name in ("me/squares", "hf-hub:me/squares"):
        again = ImageClassifier.from_pretrained(name)
        assert again.labels == clf.labels and again.strategy.name == "partial"
        np.testing.assert_allclose(again.predict_proba(images[:6]), clf.predict_proba(images[:6]), atol=1e-6)
    assert TOKEN not in _everything_written(uploaded)


# --------------------------------------------------------------------------- finding a pushed model: only the network replaced
def _http(status: int, repo_id: str = "me/model"):
    """A response of the HTTP client huggingface_hub uses, for building its errors as the client does."""
    import importlib

    import huggingface_hub.errors

    http = importlib.import_module(huggingface_hub.errors.HTTPError.__module__.split(".")[0])
    url = f"https://huggingface.co/{repo_id}/resolve/main/nlp_transfer.json"
    return http.Response(status, request=http.Request("HEAD", url))


def _failing_download(monkeypatch, make_error):
    """Online (the test session is offline by default), with every download failing as `make_error` says."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def hf_hub_download(repo_id, filename, **kwargs):
        raise make_error()

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda *a, **k: pytest.fail("a repo that could not be checked was downloaded"))


def _unreachable(cause):
    """What the real client raises when the HEAD call failed and nothing is cached: the cause chained."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    error = LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub ...")
    error.__cause__ = cause
    return error


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    import huggingface_hub.constants

    folder = tmp_path / "hf-cache"
    folder.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(folder))
    return folder


def _cache_plain_model(cache: Path, repo_id: str) -> None:
    """The cache layout `hf_hub_download` writes for a plain model: refs/main -> a snapshot with config.json."""
    commit = "a" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")


def test_a_repo_without_our_metadata_is_a_plain_model(monkeypatch, empty_cache):
    from huggingface_hub.errors import RemoteEntryNotFoundError

    from nlp_transfer.storage.hub import download_if_ours

    _failing_download(monkeypatch, lambda: RemoteEntryNotFoundError("404 nlp_transfer.json", response=_http(404)))
    assert download_if_ours("me/plain") is None


@pytest.mark.parametrize("make_error, expected", [
    (lambda: __import__("huggingface_hub").errors.RepositoryNotFoundError(f"404 me/model token={TOKEN}", response=_http(404)),
     "has no repository 'me/model'"),
    (lambda: __import__("huggingface_hub").errors.GatedRepoError(f"403 gated token={TOKEN}", response=_http(403)),
     "gated repository"),
    (lambda: _unreachable(__import__("huggingface_hub").errors.HfHubHTTPError(f"403 token={TOKEN}", response=_http(403))),
     "refused the token for 'me/model' (HTTP 403)"),
    (lambda: __import__("huggingface_hub").errors.HfHubHTTPError(f"401 token={TOKEN}", response=_http(401)),
     "refused the token for 'me/model' (HTTP 401)"),
    (lambda: _unreachable(ConnectionError(f"connection refused token={TOKEN}")), "Could not reach the Hub"),
], ids=["missing", "gated", "forbidden", "unauthorized", "connection"])
def test_hub_failures_are_hub_errors_naming_the_cause(monkeypatch, empty_cache, make_error, expected):
    from nlp_transfer.storage.hub import download_if_ours

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    _failing_download(monkeypatch, make_error)
    with pytest.raises(HubError) as error:
        download_if_ours("me/model")
    message = str(error.value)
    assert expected in message and "Cause:" in message and TOKEN not in message and "***" in message
    with pytest.raises(HubError):  # what the user calls: before any model loading
        TextClassifier.from_pretrained("me/model")


def test_unreachable_hub_with_a_cached_plain_model_loads_from_the_cache(monkeypatch, empty_cache):
    from nlp_transfer.storage.hub import download_if_ours

    _cache_plain_model(empty_cache, "me/cached")
    _failing_download(monkeypatch, lambda: _unreachable(ConnectionError("connection refused")))
    assert download_if_ours("me/cached") is None


def test_offline_uses_the_cache_and_says_when_a_repo_is_not_there(monkeypatch, empty_cache):
    # The real client in offline mode: no fake download here.
    import huggingface_hub.constants

    from nlp_transfer.storage.hub import download_if_ours

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    _cache_plain_model(empty_cache, "me/cached")
    assert download_if_ours("me/cached") is None  # a plain model in the cache: the plain loader takes it
    with pytest.raises(HubError) as error:
        download_if_ours("me/never-downloaded")
    message = str(error.value)
    assert "HF_HUB_OFFLINE=1" in message and "'me/never-downloaded' is not in the local Hub cache" in message
