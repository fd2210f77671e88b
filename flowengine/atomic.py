"""Atomic file writes: after a crash or a power loss a file holds its old text or its new one.

The text goes to a temporary file in the same directory (one fixed name, so a crash
leaves no litter), is fsynced and renamed onto the target; the directory is fsynced so
the rename lasts. Standard library only: the guardian uses it too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, text: str, *, mode: int | None = None) -> None:
    """Write `text` to `path` so that a crash leaves the old file or the new one.

    `mode` (e.g. 0o600 for a token): the file has these permissions from its first byte
    on; without it, the process's umask decides."""
    directory = path.parent
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        _fsync_directory(directory.parent)
    temporary = directory / f".{path.name}.tmp"  # one fixed name: no litter after a crash
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        fd = os.open(temporary, flags, 0o666 if mode is None else mode)
        with open(fd, "w", encoding="utf-8") as file:
            if mode is not None:
                os.fchmod(fd, mode)  # a temporary file left by a crash keeps its old mode
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):  # the write error is what gets reported
            temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable; best effort (not every system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse it; renames stay atomic
            os.fsync(fd)
    finally:
        os.close(fd)
