"""The file browser's confinement: every path a request names must resolve (symlinks
followed) inside one of the configured roots. `..`, absolute paths outside the roots and
symlinks that point out are all refused the same way."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainer.audio import AUDIO_SUFFIXES  # noqa: F401  (core_api and the importer use it)

from .errors import FORBIDDEN, NOT_FOUND, StudioError


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    """Path as the API names it: "<root name>/<relative path>"."""
    is_dir: bool
    size: int


class FileRoots:
    """Named folders the browser may show. Paths in the API are "<root name>/<relative>"."""

    def __init__(self, roots: dict[str, Path]) -> None:
        self.roots = {name: Path(path).resolve() for name, path in roots.items()}

    def names(self) -> list[str]:
        return list(self.roots)

    def resolve(self, api_path: str, *, must_exist: bool = True) -> Path:
        """The real path behind an API path; StudioError (403) if it would leave its root."""
        name, _, relative = (api_path or "").strip("/").partition("/")
        if name not in self.roots:
            raise StudioError(f"unknown folder {name!r}; the browsable roots are: "
                              f"{', '.join(self.roots) or 'none'}", status=NOT_FOUND, code="no_such_root")
        if os.path.isabs(relative) or ".." in Path(relative).parts:
            raise StudioError(f"{api_path!r}: paths may not climb out of their root",
                              status=FORBIDDEN, code="outside_roots")
        root = self.roots[name]
        real = (root / relative).resolve()
        if real != root and root not in real.parents:
            raise StudioError(f"{api_path!r} leads outside {name!r} (a symlink?); refused",
                              status=FORBIDDEN, code="outside_roots")
        if must_exist and not real.exists():
            raise StudioError(f"{api_path!r} does not exist", status=NOT_FOUND, code="not_found")
        return real

    def api_path(self, real: Path) -> str:
        """The API path of a real path inside a root (the first root that holds it)."""
        real = Path(real).resolve()
        for name, root in self.roots.items():
            if real == root or root in real.parents:
                return "/".join((name, *real.relative_to(root).parts))
        raise StudioError(f"{real} is not inside a browsable root", status=FORBIDDEN, code="outside_roots")

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
