"""The file browser's confinement: every path a request names must resolve (symlinks
followed) inside one of the configured roots. `..`, absolute paths outside the roots and
symlinks that point out are all refused the same way."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainer.audio import AUDIO_SUFFIXES  # noqa: F401  (core_api and the importer use it)

from .errors import BAD_REQUEST, FORBIDDEN, NOT_FOUND, StudioError

MAX_NAME_BYTES = 255
"""Longest file name (one path component, UTF-8 bytes): NAME_MAX of Linux and macOS file systems."""
MAX_PATH_BYTES = 4096
"""Longest API path (UTF-8 bytes): PATH_MAX on Linux."""
SHOWN_CHARS = 120
"""At most this much of a bad path is quoted back in an error message."""


def _shown(api_path: str) -> str:
    return repr(api_path if len(api_path) <= SHOWN_CHARS else api_path[:SHOWN_CHARS] + "...")


def check_api_path(api_path: str) -> None:
    """StudioError (400) for what no file system accepts, before the OS is asked: a NUL
    byte, a name over MAX_NAME_BYTES, a path over MAX_PATH_BYTES."""
    if "\x00" in api_path:
        raise StudioError(f"{_shown(api_path)}: a path may not contain a NUL byte", code="bad_path")
    encoded = api_path.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PATH_BYTES or any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        raise StudioError(f"{_shown(api_path)}: too long (names up to {MAX_NAME_BYTES} bytes, paths up "
                          f"to {MAX_PATH_BYTES})", code="bad_path")


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    """Path as the API names it: "<root name>/<relative path>"."""
    is_dir: bool
    size: int


def within(real: Path, folder: Path) -> bool:
    """REAL (a resolved path) is FOLDER (resolved) or lies under it."""
    return real == folder or folder in real.parents


class FileRoots:
    """Named folders the browser may show. Paths in the API are "<root name>/<relative>"."""

    def __init__(self, roots: dict[str, Path]) -> None:
        self.roots = {name: Path(path).resolve() for name, path in roots.items()}

    def names(self) -> list[str]:
        return list(self.roots)

    def resolve(self, api_path: str, *, must_exist: bool = True) -> Path:
        """The real path behind an API path; StudioError (403) if it would leave its root,
        (400) if no file system could hold it. Messages quote the API path, never the real one."""
        api_path = api_path or ""
        check_api_path(api_path)
        name, _, relative = api_path.strip("/").partition("/")
        if name not in self.roots:
            raise StudioError(f"unknown folder {_shown(name)}; the browsable roots are: "
                              f"{', '.join(self.roots) or 'none'}", status=NOT_FOUND, code="no_such_root")
        if os.path.isabs(relative) or ".." in Path(relative).parts:
            raise StudioError(f"{_shown(api_path)}: paths may not climb out of their root",
                              status=FORBIDDEN, code="outside_roots")
        root = self.roots[name]
        try:
            real = (root / relative).resolve()
            exists = real.exists()
        except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: a symlink loop (3.11)
            why = getattr(exc, "strerror", None) or "not a valid path"
            raise StudioError(f"{_shown(api_path)}: cannot be opened ({why})", status=BAD_REQUEST,
                              code="bad_path") from None
        if not within(real, root):
            raise StudioError(f"{_shown(api_path)} leads outside {name!r} (a symlink?); refused",
                              status=FORBIDDEN, code="outside_roots")
        if must_exist and not exists:
            raise StudioError(f"{_shown(api_path)} does not exist", status=NOT_FOUND, code="not_found")
        return real

    def api_path(self, real: Path) -> str:
        """The API path of a real path inside a root (the first root that holds it)."""
        real = Path(real).resolve()
        for name, root in self.roots.items():
            if within(real, root):
                return "/".join((name, *real.relative_to(root).parts))
        # The message names no real path: callers may pass it on to the browser.
        raise StudioError(f"{real.name!r} is not inside a browsable root ({', '.join(self.roots)})",
                          status=FORBIDDEN, code="outside_roots")

    def list(self, api_path: str) -> list[Entry]:
        """A folder's entries, folders first; entries that resolve outside the roots are hidden."""
        folder = self.resolve(api_path)
        if not folder.is_dir():
            raise StudioError(f"{api_path!r} is not a folder", code="not_a_folder")
        entries = []
        for child in sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower())):
            if child.name.startswith("."):
                continue
            try:
                path = f"{api_path.rstrip('/')}/{child.name}"
                real = self.resolve(path)
            except StudioError:
                continue  # a symlink out of the roots: not shown at all
            entries.append(Entry(child.name, path, real.is_dir(), real.stat().st_size if real.is_file() else 0))
        return entries
