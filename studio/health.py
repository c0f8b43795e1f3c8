"""Dataset health: what a dataset folder holds and what is wrong with it.

    report = dataset_health(Path("data/hey_jarvis"))

Counts per class and split, durations, and the problems worth fixing before training:
files not at 16 kHz mono (the loader converts them on every load), unreadable or empty
files, files listed in the manifest but gone, non-audio files the loader ignores, and exact
duplicates (same bytes). Only file headers are read (soundfile.info), and only files that
share their size with another are hashed, so a dataset of ten thousand clips takes about a
second; at most MAX_FILES files are looked at.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf

from sentry.constants import SAMPLE_RATE
from trainer.dataset import AUDIO_SUFFIXES, LABELS, SPLITS, hash_split, read_manifest
from trainer.errors import TrainerError

MAX_FILES = 200_000
"""Files scanned per report; beyond this the report says it is truncated."""
MAX_LISTED = 100
"""Entries listed per problem kind (the counts stay exact)."""
HASH_CHUNK_BYTES = 1 << 20
"""Read size while hashing a file for duplicates (bytes)."""
EVAL_FOLDER = "eval"
EVAL_POSITIVE = "positive"
PROBLEM_KINDS = ("sample_rate", "unreadable", "empty", "missing", "not_audio", "duplicates", "manifest")
"""Problem lists in a report, in the order the page shows them."""


@dataclass
class AudioFile:
    """One audio file of the dataset, described from its header."""

    rel: str
    """Path relative to the dataset folder, with '/' separators."""
    label: str
    split: str
    size: int
    """Bytes on disk."""
    sample_rate: int = 0
    """Hz; 0 when unreadable."""
    channels: int = 0
    seconds: float = 0.0
    error: str = ""
    """Why soundfile could not read the header; '' when it could."""


@dataclass
class Scan:
    """Everything found under the class folders."""

    files: list[AudioFile] = field(default_factory=list)
    not_audio: list[str] = field(default_factory=list)
    """Files the loader ignores (suffix not .wav/.flac/.ogg), relative paths."""
    missing: list[str] = field(default_factory=list)
    """Listed in manifest.json but not on disk, relative paths."""
    phrase: str | None = None
    """The phrase manifest.json names (None for a hand-made dataset)."""
    manifest_error: str = ""
    truncated: bool = False


def read_header(path: Path, rel: str, label: str, split: str) -> AudioFile:
    """Describe PATH from its header; an unreadable file gets `error` set instead of raising."""
    size = path.stat().st_size
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, ValueError) as exc:  # sf.LibsndfileError is a RuntimeError
        return AudioFile(rel, label, split, size, error=str(exc).replace(str(path), rel) or "unreadable")
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    return AudioFile(rel, label, split, size, info.samplerate, info.channels, seconds)


def scan(root: Path, *, max_files: int = MAX_FILES) -> Scan:
    """Walk ROOT's class folders. Splits come from manifest.json for synthesized files and
    from the loader's path hash (trainer.dataset.hash_split) for files added by hand."""
    result = Scan()
    try:
        manifest = read_manifest(root)
    except TrainerError as exc:
        manifest, result.manifest_error = {"clips": []}, str(exc)
    result.phrase = manifest.get("phrase")
    split_of: dict[str, str] = {}
    for entry in manifest.get("clips", []):
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            split_of[entry["path"]] = entry.get("split", "")
            if not (root / entry["path"]).is_file():
                result.missing.append(entry["path"])
    for label in LABELS:
        folder = root / label
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.name.startswith(".") or not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            if path.suffix.lower() not in AUDIO_SUFFIXES:
                result.not_audio.append(rel)
                continue
            if len(result.files) >= max_files:
                result.truncated = True
                return result
            split = split_of.get(rel) if split_of.get(rel) in SPLITS else hash_split(rel)
            result.files.append(read_header(path, rel, label, split))
    return result


def _digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def find_duplicates(root: Path, files: list[AudioFile]) -> list[list[AudioFile]]:
    """Groups of files with identical bytes, biggest groups first. Only files that share
    their size with another file are read (different sizes cannot be equal)."""
    by_size: dict[int, list[AudioFile]] = defaultdict(list)
    for item in files:
        if item.size > 0:
            by_size[item.size].append(item)
    by_hash: dict[str, list[AudioFile]] = defaultdict(list)
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        for item in same_size:
            try:
                by_hash[_digest(root / item.rel)].append(item)
            except OSError:
                continue  # vanished or unreadable since the scan: reported as unreadable elsewhere
    groups = [sorted(group, key=lambda f: f.rel) for group in by_hash.values() if len(group) > 1]
    return sorted(groups, key=lambda g: (-len(g), g[0].rel))


def class_table(files: list[AudioFile]) -> dict[str, dict[str, Any]]:
    """Per class: file counts per split and in total, and the readable files' total, shortest
    and longest duration (seconds; None when the class has no readable file)."""
    table: dict[str, dict[str, Any]] = {}
    for label in LABELS:
        mine = [f for f in files if f.label == label]
        seconds = [f.seconds for f in mine if not f.error]
        table[label] = {
            **{split: sum(f.split == split for f in mine) for split in SPLITS},
            "total": len(mine),
            "seconds": round(sum(seconds), 2),
            "min_s": round(min(seconds), 3) if seconds else None,
            "max_s": round(max(seconds), 3) if seconds else None,
        }
    return table


def eval_sets(root: Path) -> dict[str, dict[str, Any]]:
    """Each held-out set under ROOT/eval: positive clips and seconds of negative audio."""
    out: dict[str, dict[str, Any]] = {}
    folder = root / EVAL_FOLDER
    if not folder.is_dir():
        return out
    for set_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        positives = sorted((set_dir / EVAL_POSITIVE).glob("*")) if (set_dir / EVAL_POSITIVE).is_dir() else []
        negatives = [p for p in set_dir.glob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
        negative_s = sum(read_header(p, p.name, "", "").seconds for p in negatives)
        out[set_dir.name] = {"positives": sum(p.suffix.lower() in AUDIO_SUFFIXES for p in positives),
                             "negative_seconds": round(negative_s, 1)}
    return out


def _listed(items: list[Any]) -> list[Any]:
    return items[:MAX_LISTED]


def dataset_health(root: Path, *, max_files: int = MAX_FILES) -> dict[str, Any]:
    """The health report of dataset folder ROOT (JSON-ready).

    {"classes": {label: {train, val, test, total, seconds, min_s, max_s}},
     "totals": {"files", "seconds"}, "phrase", "eval": {set: {positives, negative_seconds}},
     "problems": {kind: [entries, at most MAX_LISTED]}, "problem_counts": {kind: n},
     "truncated": bool}. Paths in entries are relative to ROOT."""
    root = Path(root)
    found = scan(root, max_files=max_files)
    readable = [f for f in found.files if not f.error]
    wrong_format = [{"path": f.rel, "sample_rate": f.sample_rate, "channels": f.channels}
                    for f in readable if f.sample_rate != SAMPLE_RATE or f.channels != 1]
    empty = [{"path": f.rel} for f in readable if f.seconds == 0]
    unreadable = [{"path": f.rel, "detail": f.error} for f in found.files if f.error]
    duplicates = [{"paths": [f.rel for f in group], "bytes": group[0].size,
                   "classes": sorted({f.label for f in group})}
                  for group in find_duplicates(root, found.files)]
    problems: dict[str, list[Any]] = {
        "sample_rate": wrong_format, "unreadable": unreadable, "empty": empty,
        "missing": [{"path": rel} for rel in found.missing],
        "not_audio": [{"path": rel} for rel in found.not_audio],
        "duplicates": duplicates,
        "manifest": [{"detail": found.manifest_error}] if found.manifest_error else [],
    }
    return {
        "phrase": found.phrase,
        "classes": class_table(found.files),
        "totals": {"files": len(found.files), "seconds": round(sum(f.seconds for f in readable), 1)},
        "eval": eval_sets(root),
        "problems": {kind: _listed(problems[kind]) for kind in PROBLEM_KINDS},
        "problem_counts": {kind: len(problems[kind]) for kind in PROBLEM_KINDS},
        "sample_rate_hz": SAMPLE_RATE,
        "truncated": found.truncated,
        "max_files": max_files,
    }
