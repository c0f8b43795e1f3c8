"""Combining the shard sessions of one job array into one session for review.

Shards must have mined with the same model and settings (else their hits are not
comparable). The merged session lists every shard's files and hits; hits are renumbered by
(source file, offset) and point at the shards' clips by relative path, so no audio is copied.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from . import MiningError
from .session import Session, new_session


def merge_sessions(out: Path, shards: list[Session]) -> Session:
    """Write OUT, a session holding every shard's files and hits; refuses mismatched shards."""
    if out.exists():
        raise MiningError(f"{out}: already exists; choose a new name for the merged session")
    for shard in shards:
        if not shard.complete:
            raise MiningError(f"{shard.path}: not finished; run `hark mine {shard.path} --resume` "
                              "first")
    first = shards[0]
    for other in shards[1:]:
        for key in ("settings",):
            if other.data[key] != first.data[key]:
                raise MiningError(f"{other.path}: mined with other {key} than {first.path}; "
                                  "only shards of one job can be merged")
        if other.data["model"]["hash"] != first.data["model"]["hash"]:
            raise MiningError(f"{other.path}: mined with another model than {first.path}; "
                              "only shards of one job can be merged")
    files, hits = [], []
    for shard in shards:
        offset = len(files)
        files.extend(copy.deepcopy(shard.files))
        for hit in shard.hits:
            moved = copy.deepcopy(hit)
            moved["file"] += offset
            clip = (shard.path.parent / hit["clip"]).resolve()
            moved["clip"] = os.path.relpath(clip, out.resolve().parent)
            moved["shard_session"] = str(shard.path.resolve())
            hits.append(moved)
    seen = {f["path"] for f in files}
    if len(seen) != len(files):
        raise MiningError("the shards share files; merge the shards of one `--shard I/N` job only")
    hits.sort(key=lambda h: (h["source"], h["offset_s"]))
    for number, hit in enumerate(hits, start=1):
        hit["id"] = number
    merged = new_session(out, files=files, settings=first.data["settings"],
                         model=first.data["model"], dataset=first.data.get("dataset"),
                         shard=(1, 1))
    merged.data.update(hits=hits, state="merged",
                       position={"file": len(files), "hop": 0, "open_hit": None},
                       merged_from=[str(s.path.resolve()) for s in shards])
    out.parent.mkdir(parents=True, exist_ok=True)
    merged.save(keep_review=False)
    return merged
