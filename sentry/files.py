"""Hark's one atomic file write: a crash, a full disk or a kill leaves the old file or the
new one, never half of either.

The standard library only, so the sentry (which writes model manifests) and the trainer,
miner and studio share it. The steps are the usual ones: a temporary file in the same
folder (a rename is atomic only within one file system), write, flush, fsync (the bytes
are on disk before the name points at them), rename over the target, then fsync the
folder where the platform allows it (the rename itself survives a power cut).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

TEMP_SUFFIX = ".tmp"
"""Temporary files are '.<name>.<random>.tmp' beside the target: hidden (the dataset
loader and the studio's file lists skip dot-files) and easy to sweep after a crash."""


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename or a new file in `folder` durable; a no-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (and platforms) refuse fsync on a folder
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write `path` through: a temporary file beside it which, when the
    block ends without an error, is flushed, fsynced and renamed over `path`, after which
    the folder is fsynced. On any error (disk full included) the temporary file is removed
    and `path` is left as it was. The folder must exist."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (see atomic_write); returns the path."""
    with atomic_write(path) as handle:
        handle.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (see atomic_write); returns the path."""
    return write_bytes_atomic(path, text.encode(encoding))


def copy_atomic(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy the file `source` to `path` atomically (see atomic_write); returns the path."""
    with open(source, "rb") as src, atomic_write(path) as handle:
        shutil.copyfileobj(src, handle)
    return Path(path)
