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

from .errors import NLPTransferError
from .saving import METADATA_FILE

__all__ = ["HubError", "push_folder", "download_if_ours", "warn_if_base_is_local"]

logger = logging.getLogger(__name__)


class HubError(NLPTransferError):
    """The Hub could not be reached or refused the request; local files are untouched."""


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str | None = None, retry_hint: str | None = None) -> str:
    """Create `repo_id` if needed and upload `folder` (a saved model with its card); returns the repo URL.

    `retry_hint` tells the user how to push again when it fails (default: push this folder later).
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / METADATA_FILE).is_file():
        raise NLPTransferError(f"{folder} is not a model saved by nlp_transfer (no {METADATA_FILE}); nothing to push.")
    _check_repo_id(repo_id)
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
    """The local snapshot of `repo_id` when it holds a model nlp_transfer pushed; None otherwise
    (a plain Hub model, or no Hub access: transformers then loads it, or explains, as usual)."""
    if Path(repo_id).exists() or repo_id.count("/") != 1:
        return None
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        hf_hub_download(repo_id, METADATA_FILE, token=token)
    except Exception:  # not ours, not found, or offline without a cached copy
        return None
    return Path(snapshot_download(repo_id, token=token))


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
