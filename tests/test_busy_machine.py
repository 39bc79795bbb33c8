"""A machine whose cores other jobs hold: the CLI lets PyTorch's idle OpenMP threads sleep.

Spinning threads wait on each other when another process holds a core (README, "Busy machines").
OpenMP reads its wait policy once, when torch loads, so what counts is what the runtime read: with
OMP_DISPLAY_ENV=VERBOSE it prints its settings, and GNU OpenMP (torch's Linux wheels) shows the
spin count the policy chose (0 for PASSIVE, 300000 by default).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import SAFETY_NET_SECONDS

from nlp_transfer import TextClassifier


def _openmp_settings(stderr: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*(\w+) = '([^']*)'", stderr, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def saved(model_dirs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("busy") / "model"
    TextClassifier.from_pretrained(model_dirs["bert"], strategy="feature_extraction", labels=["neg", "pos"]).save(folder)
    return folder


def _predict(saved, **env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # conftest sets it for the suite
    done = subprocess.run([sys.executable, "-m", "nlp_transfer.cli", "predict", str(saved), "--text", "good film"],
                          capture_output=True, text=True, timeout=SAFETY_NET_SECONDS,
                          env={**clean, "OMP_DISPLAY_ENV": "VERBOSE", **env})
    assert done.returncode == 0, done.stderr[-3000:]
    settings = _openmp_settings(done.stderr)
    assert "OMP_WAIT_POLICY" in settings, f"the OpenMP runtime printed no settings: {done.stderr[-2000:]}"
    return settings


def test_the_cli_makes_idle_openmp_threads_sleep(saved):
    settings = _predict(saved)
    if "GOMP_SPINCOUNT" in settings:  # GNU OpenMP prints PASSIVE for an unset policy too; the spin count tells
        assert settings["GOMP_SPINCOUNT"] == "0", settings
    assert settings["OMP_WAIT_POLICY"] == "PASSIVE", settings


def test_a_wait_policy_the_user_chose_is_kept(saved):
    assert _predict(saved, OMP_WAIT_POLICY="ACTIVE")["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_environment_is_left_alone_once_torch_is_loaded(monkeypatch):
    """In a process that already imported torch the variable would change nothing: it is not set."""
    import torch  # noqa: F401  (loaded first, as in a script that imported it)

    from nlp_transfer.cli import main

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "OMP_WAIT_POLICY" not in os.environ
