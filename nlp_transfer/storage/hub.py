"""Pushing a saved model to the Hugging Face Hub, and finding one that nlp_transfer pushed.

Everything goes through the real `huggingface_hub` client (`HfApi.create_repo`, `upload_folder`,
`snapshot_download`). The token comes from the argument, `HF_TOKEN` or the saved login, and is
never logged, written, or shown in an error (the client's own messages are scrubbed of it).

    push_folder("runs/demo/feature_extraction/model", "me/support-intents", private=True)
    TextClassifier.from_pretrained("me/support-intents")       # finds nlp_transfer.json, downloads, loads
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from nlp_transfer.backbones.embedded import install_hint
from nlp_transfer.errors import NLPTransferError
from nlp_transfer.storage.card import model_card
from nlp_transfer.storage.model_folder import METADATA_FILE, read_metadata

__all__ = ["HubError", "push_folder", "download_if_ours", "warn_if_base_is_local"]

logger = logging.getLogger(__name__)


class HubError(NLPTransferError):
    """The Hub could not be reached or refused the request; local files are untouched."""


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str | None = None, retry_hint: str | None = None,
                card: dict[str, Any] | None = None) -> str:
    """Create `repo_id` if needed and upload `folder` (a saved model with its card); returns the repo URL.

    The one push path (`Classifier.push_to_hub` and `nlp-transfer push` both end here). With
    `card` (the run's title, results, dataset, environment; may be empty), the folder's README.md
    is first rewritten as the model card naming `repo_id`: pass a staged copy, not a folder to keep
    as it is. `retry_hint` tells the user how to push again when it fails.
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / METADATA_FILE).is_file():
        raise NLPTransferError(f"{folder} is not a model saved by nlp_transfer (no {METADATA_FILE}); nothing to push.")
    _check_repo_id(repo_id)
    meta = read_metadata(folder)
    warn_if_base_is_local(meta)
    if card is not None:
        (folder / "README.md").write_text(model_card(meta, repo_id=repo_id, **card), encoding="utf-8")
    api = HfApi(token=token)
    message = commit_message or "Upload model trained with nlp_transfer"
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=message)
    except Exception as error:  # network, auth, offline mode, quota: all say the same to the user
        hint = retry_hint or f"The model is saved in {folder}; push it later with: nlp-transfer push {folder} --repo-id {repo_id}"
        raise HubError(
            f"Could not push to the Hub repository {repo_id!r}: {_scrub(str(error), token).rstrip('.')}. {hint} "
            "(log in with `hf auth login` or set HF_TOKEN)."
        ) from None
    logger.info("Pushed %s to %s", folder, url)
    return str(url)


def download_if_ours(repo_id: str, *, token: str | None = None) -> Path | None:
    """The local snapshot of `repo_id` when it holds a model nlp_transfer pushed; None for a plain
    Hub model (no nlp_transfer.json in the repo), which transformers or timm then load as usual.

    Only "the repo has no such file" means a plain model. Without the Hub (HF_HUB_OFFLINE=1, or no
    connection) the local cache decides: a cached plain model gives None (it loads from the cache);
    a repo that is not cached at all is a `HubError` saying so. A missing, gated or private repo,
    a refused token and a failed connection are `HubError`s naming the cause and the fix.
    """
    if Path(repo_id).exists() or repo_id.count("/") != 1:
        return None
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError, HTTPError, LocalEntryNotFoundError

    try:
        hf_hub_download(repo_id, METADATA_FILE, token=token)
    except LocalEntryNotFoundError as error:  # offline or unreachable, and not in the cache (a subclass: first)
        if _cached_plain_model(repo_id):
            logger.debug("%s: no Hub access (%s); loading the cached copy as a plain model.", repo_id, error)
            return None
        raise _hub_error(repo_id, error, token) from None
    except EntryNotFoundError:  # the repo exists and is not ours
        return None
    except HFValidationError:  # not a repo id after all: the plain loader explains
        return None
    except (OSError, HTTPError) as error:  # repo missing, gated, token refused, connection, server
        raise _hub_error(repo_id, error, token) from None
    try:
        return Path(snapshot_download(repo_id, token=token))
    except (OSError, HTTPError) as error:
        raise _hub_error(repo_id, error, token) from None


def _cached_plain_model(repo_id: str) -> bool:
    """Whether the local Hub cache holds `repo_id` (its config.json, or a record that nlp_transfer.json is absent)."""
    from huggingface_hub import try_to_load_from_cache

    marker = try_to_load_from_cache(repo_id, METADATA_FILE)  # not None and not a path: known to be absent
    known_absent = marker is not None and not isinstance(marker, str)
    return known_absent or isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _hub_error(repo_id: str, error: Exception, token: str | None) -> HubError:
    """A `HubError` that names why the Hub refused `repo_id` and what to do (the token scrubbed)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    cause = error.__cause__ if isinstance(error, LocalEntryNotFoundError) and error.__cause__ else error
    status = getattr(getattr(cause, "response", None), "status_code", None)
    detail = _scrub(str(cause), token).strip().rstrip(".")
    local = f" (If you meant a local folder: {repo_id!r} does not exist here.)" + install_hint(repo_id)
    if isinstance(cause, GatedRepoError):
        fix = (f"{repo_id!r} is a gated repository: accept its terms on https://huggingface.co/{repo_id} and log in "
               "with a token that has access (`hf auth login` or HF_TOKEN).")
    elif isinstance(cause, RepositoryNotFoundError):
        fix = (f"The Hub has no repository {repo_id!r}, or it is private and the token cannot see it: check the id, "
               f"or log in with a token that has access (`hf auth login` or HF_TOKEN).{local}")
    elif isinstance(cause, HfHubHTTPError) and status in (401, 403):
        fix = (f"The Hub refused the token for {repo_id!r} (HTTP {status}): log in again with `hf auth login`, or set "
               "HF_TOKEN to a token with read access.")
    elif isinstance(error, LocalEntryNotFoundError) and constants.is_offline_mode():
        fix = (f"HF_HUB_OFFLINE=1 is set and {repo_id!r} is not in the local Hub cache: unset HF_HUB_OFFLINE to "
               f"download it once, or give a local model folder.{local}")
    elif isinstance(error, LocalEntryNotFoundError):
        fix = (f"Could not reach the Hub for {repo_id!r}, and it is not in the local cache: check the connection "
               f"(or HF_ENDPOINT / proxy settings) and try again, or give a local model folder.{local}")
    else:
        fix = f"The Hub request for {repo_id!r} failed: check the connection and the id, and try again."
    return HubError(f"{fix} Cause: {type(cause).__name__}: {detail}.")


def warn_if_base_is_local(meta) -> None:
    """A pushed LoRA adapter is only usable where its base model can be downloaded."""
    if meta.layout == "adapter" and Path(meta.base_model).exists():
        logger.warning("The LoRA adapter's base model is the local folder %s, which others cannot download; load the "
                       "base by its Hub id before training, or push with merge_lora=True.", meta.base_model)


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise NLPTransferError(f"{repo_id!r} is not a valid Hub repository id ({error}); write it as 'user/name'.") from None


def _scrub(text: str, token: str | None) -> str:
    for secret in (token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")):
        if secret:
            text = text.replace(secret, "***")
    return text
