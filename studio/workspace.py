"""The workspace's things by name: datasets (data/NAME), configs (configs/NAME.toml), runs
(runs/NAME, with runs/NAME/export once exported) and mining sessions (sessions/NAME.json).
Names come from the browser, so each is checked to be one plain path component."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .errors import NOT_FOUND, StudioError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str | None, what: str) -> str:
    """NAME if it is a plain name (letters, digits, . _ -; at most 64), else StudioError."""
    name = name.strip() if isinstance(name, str) else ""  # JSON may send a number or a list
    if not _NAME.match(name) or ".." in name:
        raise StudioError(f"{what} name {name!r}: use letters, digits, '.', '_' or '-' (up to 64), "
                          "starting with a letter or digit", code="bad_name")
    return name


def slug(text: str) -> str:
    """A name made from free text: "Hey Jarvis!" -> "hey_jarvis"."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:64] or "untitled"


def named(folder: Path, name: str, what: str, *, suffix: str = "", must_exist: bool = True) -> Path:
    path = folder / (check_name(name, what) + suffix)
    if must_exist and not path.exists():
        raise StudioError(f"no {what} named {name!r} in {folder}", status=NOT_FOUND, code=f"no_such_{what}")
    return path


def list_datasets(data: Path) -> list[dict[str, Any]]:
    out = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        manifest = _read_json(folder / "manifest.json") or {}
        out.append({"name": folder.name, "phrase": manifest.get("phrase"),
                    "has_eval": (folder / "eval").is_dir()})
    return out


def list_runs(runs: Path) -> list[dict[str, Any]]:
    out = []
    for folder in sorted(p for p in runs.iterdir() if p.is_dir()):
        manifest = _read_json(folder / "export" / "manifest.json")
        out.append({"name": folder.name,
                    "has_checkpoint": (folder / "checkpoints" / "best.pt").is_file(),
                    "exported": manifest is not None,
                    "wake_word": (manifest or {}).get("wake_word"),
                    "evaluated": (folder / "export" / "eval_report.json").is_file()})
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
