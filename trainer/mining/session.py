"""The mining session: one JSON file plus a clips folder next to it.

`night1.json` holds the files of this shard and how far each got, the committed position
inside the current file (block start and the trailing merge state), the hits with their
review status, the scan settings and the model's hash. `night1.clips/` holds one WAV per
hit. The JSON is written atomically (temp file, fsync, rename, fsync of the folder) under
an advisory lock shared with the review queue, so a reviewer confirming hits while the
miner runs loses nothing: each save merges the review fields already on disk.

A file that does not parse as a session is never overwritten: every command that would
write it loads it first, and loading fails with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sentry.files import write_bytes_atomic as write_bytes  # the miner and queue use it

from . import MiningError

KIND = "hark-mining-session"
FORMAT = 1
REVIEW_FIELDS = ("status", "label", "dataset_path", "reviewed")
"""Hit fields owned by the queue; a miner's save keeps what the queue wrote on disk."""
PENDING, CONFIRMED, DISCARDED = "pending", "confirmed", "discarded"
HIT_STATUSES = (PENDING, CONFIRMED, DISCARDED)
FILE_TODO, FILE_DONE, FILE_SKIPPED = "todo", "done", "skipped"
HASH_CHUNK_BYTES = 1 << 20


def clips_dir(path: Path) -> Path:
    """SESSION.json -> SESSION.clips/ (next to it)."""
    return path.with_suffix(".clips")


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def model_hash(model_dir: Path, files: list[str]) -> str:
    """sha256 over the manifest and the graphs mining uses: a re-export changes it."""
    digest = hashlib.sha256()
    for name in ["manifest.json", *files]:
        digest.update(name.encode())
        with open(model_dir / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
                digest.update(chunk)
    return digest.hexdigest()


def file_key(index: int, path: str) -> str:
    """Stable short name of a session file, used in clip names."""
    return f"f{index:05d}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


@dataclass
class Session:
    """The in-memory session; `data` is exactly what the JSON file holds."""

    path: Path
    data: dict = field(default_factory=dict)

    # -------------------------------------------------------------- accessors
    @property
    def files(self) -> list[dict]:
        return self.data["files"]

    @property
    def hits(self) -> list[dict]:
        return self.data["hits"]

    @property
    def position(self) -> dict:
        return self.data["position"]

    @property
    def clips(self) -> Path:
        return clips_dir(self.path)

    def hit(self, hit_id: int) -> dict:
        for hit in self.hits:
            if hit["id"] == hit_id:
                return hit
        raise MiningError(f"{self.path}: no hit with id {hit_id}; `hark queue list {self.path}` "
                          "shows the ids")

    def counts(self) -> dict:
        files = self.files
        return {
            "files": len(files),
            "files_done": sum(f["status"] == FILE_DONE for f in files),
            "files_skipped": sum(f["status"] == FILE_SKIPPED for f in files),
            "hits": len(self.hits),
            **{f"hits_{s}": sum(h["status"] == s for h in self.hits) for s in HIT_STATUSES},
            "audio_s": round(sum(f.get("scanned_s", 0.0) for f in files), 3),
        }

    @property
    def complete(self) -> bool:
        return all(f["status"] != FILE_TODO for f in self.files)

    # -------------------------------------------------------------- persistence
    def save(self, *, keep_review: bool = True) -> None:
        """Write atomically. keep_review: take the queue's review fields from the file on
        disk (the miner's save); the queue itself passes False after editing them."""
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with locked(self.path):
            if keep_review and self.path.exists():
                on_disk = {h["id"]: h for h in _read(self.path).get("hits", [])}
                for hit in self.hits:
                    if hit["id"] in on_disk:
                        for key in REVIEW_FIELDS:
                            if key in on_disk[hit["id"]]:
                                hit[key] = on_disk[hit["id"]][key]
            write_json_atomic(self.path, self.data)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Advisory exclusive lock shared by the miner's saves and the queue's edits."""
    with open(lock_path(path), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def running(path: Path) -> Iterator[None]:
    """Held while a miner works on the session: a second miner on it is refused."""
    with open(path.with_name(path.name + ".run"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MiningError(f"{path}: another `hark mine` is working on this session; wait "
                              "for it or pause it (Ctrl-C / SIGTERM)") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_json_atomic(path: Path, data: dict) -> None:
    """The JSON written atomically (sentry.files: temp file, fsync, rename, folder fsync)."""
    write_bytes(path, json.dumps(data, indent=1).encode("utf-8"))


def _read(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MiningError(f"{path}: cannot read the session ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MiningError(f"{path}: the session file is corrupted (not valid JSON: {exc}). It was "
                          "left untouched. Fix: restore it from a backup, or start a new session "
                          "under another name (its clips are in "
                          f"{clips_dir(path)})") from exc
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise MiningError(f"{path}: not a hark mining session (no \"kind\": \"{KIND}\"); it was "
                          "left untouched. Pass the .json file `hark mine` created")
    if data.get("format", 0) > FORMAT:
        raise MiningError(f"{path}: session format {data['format']} is newer than this hark "
                          f"understands ({FORMAT}); upgrade hark")
    missing = [k for k in ("files", "hits", "position", "settings", "model") if k not in data]
    if missing:
        raise MiningError(f"{path}: the session lacks {', '.join(missing)}; it was left untouched. "
                          "Start a new session under another name")
    return data


def load_session(path: str | os.PathLike) -> Session:
    """Read a session file; every problem is a MiningError and nothing is written."""
    path = Path(path)
    if not path.is_file():
        raise MiningError(f"{path}: no such session; start one with `hark mine {path} --model "
                          "DIR PATHS...`")
    return Session(path, _read(path))


def new_session(path: Path, *, files: list[dict], settings: dict, model: dict,
                dataset: str | None, shard: tuple[int, int]) -> Session:
    """A fresh session (not yet written)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return Session(path, {
        "kind": KIND, "format": FORMAT, "created": now, "updated": now,
        "model": model, "settings": settings, "dataset": dataset,
        "shard": {"index": shard[0], "count": shard[1]},
        "files": files,
        "position": {"file": 0, "hop": 0, "open_hit": None},
        "hits": [],
        "stats": {"wall_s": 0.0},
        "state": "new",
    })


def list_sessions(folder: Path) -> list[tuple[Path, Session | None, str]]:
    """(path, session, "") for every mining session directly in `folder`, and
    (path, None, why) for JSON files that claim to be one but do not load."""
    found: list[tuple[Path, Session | None, str]] = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            found.append((path, load_session(path), ""))
        except MiningError as exc:
            try:  # a file that parses but is no session is someone else's JSON: not listed
                claims = json.loads(path.read_text(encoding="utf-8")).get("kind") == KIND
            except (OSError, ValueError, AttributeError):
                claims = True  # unparseable: may be a damaged session, so show it
            if claims:
                found.append((path, None, str(exc)))
    return found
