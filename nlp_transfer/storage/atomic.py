"""Writing so that a failure loses nothing: into a sibling staging path, swapped in when complete.

Model folders, run folders, checkpoints and cached features all go through these two helpers, so a
kill, a full disk or an exception mid-write leaves the previous file or folder as it was, and
readers never see a half-written one.

    with staged_folder(Path("runs/x/model")) as staging:
        (staging / "config.json").write_text("{}")      # runs/x/model appears only now, complete
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["staged_folder", "staged_file", "swap_in"]


@contextmanager
def staged_folder(target: Path, *, staging: Path | None = None) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; when the block ends without an exception, it
    replaces `target`; when it raises, the staging folder goes and `target` is untouched.

    `staging` fixes the staging folder's name (checkpoints use ``<name>.tmp``, which their reader
    skips); by default it is a fresh hidden sibling, readable as any folder the user makes.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if staging is None:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; a model folder is as readable as any other
    else:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    try:
        yield staging
        swap_in(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def swap_in(staging: Path, target: Path) -> None:
    """Put the complete folder `staging` at `target`; an existing `target` is removed only after."""
    if not target.exists():
        os.replace(staging, target)
        return
    backup = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(backup, ignore_errors=True)
    os.replace(target, backup)
    os.replace(staging, target)
    shutil.rmtree(backup, ignore_errors=True)


@contextmanager
def staged_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; when the block ends without an exception, the file
    written there replaces `target` in one step (``os.replace``); otherwise it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
