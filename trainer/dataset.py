"""The dataset folder: its layout, its manifest, and loading it.

A dataset is a folder users can fill by hand or with ``hark synth``::

    positive/        the wake phrase
    negative/        ordinary speech
    hard_negative/   confusable speech: sound-alike words, parts of the phrase
    background/      noise, music, babble (mixed under clips during training)
    rir/             room impulse responses (may be empty)
    manifest.json    for each synthesized file: class, split, voice, engine, text

Synthesized clips are split by voice (see ``trainer.synth.build``). Files dropped into the
folders by hand are picked up too: each is checked, and its split is a hash of its relative path
(80/10/10 train/val/test), so it never moves between runs. Unusable files are skipped and
reported in ``Dataset.problems``; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sentry.files import write_text_atomic
from trainer.audio import AUDIO_SUFFIXES, inspect_audio
from trainer.errors import TrainerError

LABELS = ("positive", "negative", "hard_negative", "background", "rir")
"""Class folders; ``rir`` holds impulse responses rather than clips."""
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
HASH_SPLIT_PERCENT = (80, 10, 10)
"""train/val/test shares, in percent, for files dropped in by hand."""
USER_ENGINE = "user"
"""Engine recorded for files that came from the user rather than a synthesizer."""
MISSING = "missing"
"""Problem kind: listed in the manifest but not on disk."""


@dataclass
class Clip:
    """One audio file of the dataset.

    ``path`` is absolute; ``voice``/``text`` are '' for files added by hand.
    """

    path: Path
    label: str
    split: str
    voice: str = ""
    engine: str = USER_ENGINE
    text: str = ""


@dataclass
class Problem:
    """Something wrong with one file. ``skipped`` files are unusable; others were fixed on load."""

    path: Path
    kind: str
    detail: str
    skipped: bool


@dataclass
class Dataset:
    """A loaded dataset folder. ``phrase`` is None when no manifest names it."""

    root: Path
    phrase: str | None
    clips: list[Clip] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def select(self, label: str, split: str | None = None) -> list[Clip]:
        """Clips of class ``label`` (one of LABELS), optionally only those of ``split``."""
        if label not in LABELS:
            raise TrainerError(f"unknown class {label!r}; choose from {', '.join(LABELS)}")
        if split is not None and split not in SPLITS:
            raise TrainerError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        return [c for c in self.clips if c.label == label and (split is None or c.split == split)]

    def summary(self) -> dict:
        """Counts: ``clips[label][split]``, ``problems[kind]``, ``skipped`` and the phrase."""
        clips = {label: {split: 0 for split in SPLITS} for label in LABELS}
        for clip in self.clips:
            clips[clip.label][clip.split] += 1
        return {
            "root": str(self.root),
            "phrase": self.phrase,
            "clips": clips,
            "problems": dict(Counter(p.kind for p in self.problems)),
            "skipped": sum(p.skipped for p in self.problems),
        }


def hash_split(relative: str) -> str:
    """Deterministic split for a hand-added file from its dataset-relative path."""
    bucket = int(hashlib.sha1(relative.encode("utf-8")).hexdigest(), 16) % 100
    train, val, _ = HASH_SPLIT_PERCENT
    return "train" if bucket < train else "val" if bucket < train + val else "test"


def read_manifest(root: Path) -> dict:
    """The parsed manifest, or an empty one when the folder has none."""
    path = root / MANIFEST
    if not path.exists():
        return {"format": MANIFEST_FORMAT, "phrase": None, "clips": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainerError(f"{path}: not valid JSON ({exc}). Fix: delete it and re-run "
                           "`hark synth --overwrite`, or repair the file") from exc
    if not isinstance(data, dict) or not isinstance(data.get("clips", []), list):
        raise TrainerError(f"{path}: expected an object with a 'clips' list. Fix: re-run "
                           "`hark synth --overwrite`")
    return data


def write_manifest(root: Path, data: dict) -> None:
    """Write the manifest atomically (sentry.files: temp file, fsync, rename)."""
    write_text_atomic(root / MANIFEST, json.dumps(data, indent=1))


def _clip_from_entry(root: Path, entry: dict) -> Clip:
    try:
        label, split = entry["label"], entry["split"]
        rel = entry["path"]
    except (KeyError, TypeError) as exc:
        raise TrainerError(f"{root / MANIFEST}: clip entry {entry!r} lacks {exc}. "
                           "Fix: re-run `hark synth --overwrite`") from exc
    if label not in LABELS or split not in SPLITS:
        raise TrainerError(f"{root / MANIFEST}: clip {rel} has label {label!r} / split {split!r}; "
                           f"expected one of {LABELS} / {SPLITS}")
    return Clip(path=root / rel, label=label, split=split, voice=entry.get("voice", ""),
                engine=entry.get("engine", ""), text=entry.get("text", ""))


def load_dataset(root: str | os.PathLike) -> Dataset:
    """Load a dataset folder: manifest clips plus any audio files added by hand.

    Raises TrainerError when the folder is missing or has none of the class folders.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise TrainerError(f"dataset folder {root} does not exist. Fix: run `hark synth "
                           f"\"PHRASE\" --out {root}` or create {', '.join(LABELS)} folders there")
    if not any((root / label).is_dir() for label in LABELS):
        raise TrainerError(f"{root} has none of the class folders {', '.join(LABELS)}. "
                           "Fix: point at a dataset made by `hark synth`, or create positive/ and "
                           "negative/ there and put 16 kHz WAV files in them")
    manifest = read_manifest(root)
    dataset = Dataset(root=root, phrase=manifest.get("phrase"))
    listed: set[Path] = set()
    for entry in manifest.get("clips", []):
        clip = _clip_from_entry(root, entry)
        listed.add(clip.path)
        if clip.path.is_file():
            dataset.clips.append(clip)
        else:
            dataset.problems.append(Problem(clip.path, MISSING, f"{clip.path}: listed in "
                                            f"{MANIFEST} but not on disk", skipped=True))
    for label in LABELS:
        folder = root / label
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if (path in listed or path.name.startswith(".") or not path.is_file()
                    or path.suffix.lower() not in AUDIO_SUFFIXES):
                continue
            check = inspect_audio(path)
            for fix in check.fixes:
                dataset.problems.append(Problem(path, fix, f"{path}: {fix} on load "
                                                f"({check.sample_rate} Hz, {check.channels} ch)",
                                                skipped=False))
            if not check.usable:
                dataset.problems.append(Problem(path, check.problem, check.detail, skipped=True))
                continue
            rel = path.relative_to(root).as_posix()
            dataset.clips.append(Clip(path=path, label=label, split=hash_split(rel)))
    return dataset
