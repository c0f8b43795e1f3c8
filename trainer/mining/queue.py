"""The mining queue: review the hits of a session and feed them back into the dataset.

A confirmed false activation is copied (with its context) into DATASET/hard_negative/mined/;
a clip that really was the wake word goes to DATASET/positive/mined/, cut to the window that
fired so the loader's length limit keeps it; `hark train` picks up files added
to class folders (trainer.dataset), so the next training run uses them. Discarded hits
stay in the session (so a re-mine does not bring them back as new) but reach no dataset.
Every change is one locked read-modify-write of the session JSON, safe while a miner runs.
This is the same data the studio UI shows.
"""

from __future__ import annotations

import time
from pathlib import Path

from sentry.files import copy_atomic
from sentry.wav import WavError, encode_wav, read_wav_file

from . import MiningError
from .session import (
    CONFIRMED,
    DISCARDED,
    HIT_STATUSES,
    PENDING,
    Session,
    load_session,
    locked,
    write_bytes,
    write_json_atomic,
)

POSITIVE_MARGIN_S = 0.05
"""A confirmed positive is cut to the window that fired, ending at the peak hop, this much
shorter than the training loader's longest positive (DataConfig.max_positive_s), which
skips anything longer: the 3 s review clip with its context would never be used."""
MINED_SUBFOLDER = "mined"
"""Subfolder of a class folder that holds mined clips, so they are easy to find and undo."""
LABEL_FOLDERS = {"hard_negative": "hard_negative", "positive": "positive"}


def parse_ids(spec: tuple[str, ...] | list[str], session: Session) -> list[int]:
    """'3', '5-9', '1,4,7', 'all' or 'pending' -> sorted hit ids that exist in the session."""
    known = {hit["id"] for hit in session.hits}
    wanted: set[int] = set()
    for part in ",".join(spec).split(","):
        part = part.strip()
        if not part:
            continue
        if part in ("all", PENDING):
            wanted.update(h["id"] for h in session.hits if part == "all" or h["status"] == PENDING)
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                wanted.update(range(lo, hi + 1))
            else:
                wanted.add(int(part))
        except ValueError:
            raise MiningError(f"hit ids {part!r}: expected numbers, ranges like 5-9, lists like "
                              "1,4,7, 'pending' or 'all'") from None
    missing = sorted(wanted - known)
    if missing:
        raise MiningError(f"{session.path}: no hit with id {', '.join(map(str, missing[:10]))}; "
                          f"ids run 1..{max(known) if known else 0}")
    if not wanted:
        raise MiningError("no hit ids given; pass ids like 3, 5-9, 1,4,7, 'pending' or 'all'")
    return sorted(wanted)


def hit_rows(session: Session, status: str | None = None) -> list[dict]:
    """Hits as the queue shows them (optionally only one status), with the clip's absolute path."""
    if status is not None and status not in HIT_STATUSES:
        raise MiningError(f"status {status!r}: choose from {', '.join(HIT_STATUSES)}")
    rows = []
    for hit in session.hits:
        if status is None or hit["status"] == status:
            rows.append({**hit, "clip_path": str(session.path.parent / hit["clip"])})
    return rows


def _dataset(session: Session, dataset: Path | None) -> Path:
    root = dataset or (Path(session.data["dataset"]) if session.data.get("dataset") else None)
    if root is None:
        raise MiningError(f"{session.path}: no dataset recorded; pass --dataset DIR (the folder "
                          "`hark train --dataset` uses)")
    if not root.is_dir():
        raise MiningError(f"{root}: no such dataset folder; pass --dataset DIR")
    return root.resolve()


def _target(session: Session, hit: dict, root: Path, label: str) -> Path:
    stem = session.path.stem
    return root / LABEL_FOLDERS[label] / MINED_SUBFOLDER / f"{stem}_{hit['id']:05d}.wav"


def _copy_atomic(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        copy_atomic(src, dst)
    except OSError as exc:
        raise MiningError(f"cannot copy {src} to {dst} ({exc.strerror}); nothing was changed "
                          "for this hit") from exc


def _write_positive(session: Session, hit: dict, clip: Path, dst: Path) -> None:
    """The end of the window that fired: the wake word ends near the peak hop."""
    from trainer.config import DataConfig

    try:
        audio, fmt = read_wav_file(clip)
    except WavError as exc:
        raise MiningError(f"{exc}; discard the hit or resume the session to write it again") from exc
    rate = fmt.rate
    end = round((hit["offset_s"] - hit["clip_start_s"]) * rate)
    keep = int((DataConfig().max_positive_s - POSITIVE_MARGIN_S) * rate)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_bytes(dst, encode_wav(audio[max(0, end - keep):end]))
    except OSError as exc:
        raise MiningError(f"cannot write {dst} ({exc.strerror}); nothing was changed for hit "
                          f"{hit['id']}") from exc


def review(path: Path, ids: tuple[str, ...], *, status: str, label: str | None = None,
           dataset: Path | None = None) -> list[dict]:
    """Set the status of hits (confirmed with a label, or discarded); returns the changed hits.

    Confirming copies the clip into the dataset first; re-labelling moves it; discarding a
    confirmed hit removes its dataset copy. The session is saved once, atomically, at the end.
    """
    if status not in (CONFIRMED, DISCARDED, PENDING):
        raise MiningError(f"status {status!r}: choose confirmed, discarded or pending")
    if status == CONFIRMED and label not in LABEL_FOLDERS:
        raise MiningError(f"label {label!r}: choose from {', '.join(LABEL_FOLDERS)}")
    with locked(path):
        session = load_session(path)
        chosen = parse_ids(ids, session)
        root = _dataset(session, dataset) if status == CONFIRMED else None
        changed = []
        for hit_id in chosen:
            hit = session.hit(hit_id)
            old = Path(hit["dataset_path"]) if hit.get("dataset_path") else None
            if status == CONFIRMED:
                clip = session.path.parent / hit["clip"]
                if not clip.is_file():
                    raise MiningError(f"{clip}: the clip of hit {hit_id} is missing; discard the "
                                      "hit or resume the session to write it again")
                new = _target(session, hit, root, label)
                if label == "positive":
                    _write_positive(session, hit, clip, new)
                else:
                    _copy_atomic(clip, new)
                if old is not None and old != new:
                    old.unlink(missing_ok=True)
                hit.update(status=CONFIRMED, label=label, dataset_path=str(new))
            else:
                if old is not None:
                    old.unlink(missing_ok=True)
                hit.update(status=status, label=None, dataset_path=None)
            hit["reviewed"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            changed.append(hit)
        if root is not None and not session.data.get("dataset"):
            session.data["dataset"] = str(root)
        write_json_atomic(path, session.data)
    return changed


def play(clip: Path) -> bool:
    """Play a clip through `sounddevice` when it is installed; False when it is not."""
    try:
        import sounddevice  # optional: the queue works without audio output
        import soundfile
    except (ImportError, OSError):
        return False
    audio, rate = soundfile.read(str(clip), dtype="float32")
    sounddevice.play(audio, rate)
    sounddevice.wait()
    return True
