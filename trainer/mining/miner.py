"""The resumable scan loop: files of a shard, blocks of a file, commits, clips.

Progress is committed only at block boundaries, together with the hit tracker's trailing
state, and a resumed scan recomputes from the last committed block. Since blocks are pure
functions of the audio (see scan.py), an interrupted-and-resumed session ends with exactly
the hits of an uninterrupted one. A hit's clip is written (atomically, under a name derived
from the hit's file and peak hop) before the commit that records the hit, so a crash in
between replays to the same file name instead of a duplicate.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentry.constants import CLIP_SAMPLES, HOP_SAMPLES, SAMPLE_RATE
from sentry.wav import encode_wav

from . import DEFAULT_STRIDE_HOPS, DEFAULT_THRESHOLD_RATIO, PROBE_RATIO, MiningError
from .audio import AudioSource, BadAudio, find_audio, probe
from .graphs import Graphs
from .scan import BLOCK_HOPS, HitTracker, OpenHit, ScanSettings, Scorer
from .session import (
    FILE_DONE,
    FILE_SKIPPED,
    FILE_TODO,
    PENDING,
    Session,
    file_key,
    locked,
    new_session,
    write_bytes,
)

CONTEXT_BEFORE_S = 1.0
"""Seconds of audio kept before the 1.5 s window that fired: the reviewer hears the lead-in."""
CONTEXT_AFTER_S = 0.5
"""Seconds kept after the firing hop: the word that followed often tells a near-miss."""
SAVE_INTERVAL_S = 2.0
"""Most wall-clock seconds between two commits of the session file."""
HOP_S = HOP_SAMPLES / SAMPLE_RATE


@dataclass
class MineResult:
    """How a run ended: state is 'complete' or 'paused'; counts are the session's."""

    state: str
    hits_added: int
    audio_s: float
    wall_s: float

    @property
    def realtime_factor(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else float("inf")


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' (1-based I) -> (I, N); file k of the sorted list belongs to shard k % N + 1."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise MiningError(f"--shard {text!r}: expected I/N, e.g. 3/16 for the third of 16 "
                          "shards") from None
    if count < 1 or not 1 <= index <= count:
        raise MiningError(f"--shard {text}: need 1 <= I <= N; e.g. SLURM's --shard "
                          "$((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT")
    return index, count


def scan_settings(manifest, *, threshold: float | None = None, probe: float | None = None,
                  stride: int | None = None, merge_gap: float | None = None,
                  int8: bool | None = None) -> ScanSettings:
    """Scan settings for a model (its manifest), each None taking the default: the mining
    threshold DEFAULT_THRESHOLD_RATIO x the model's, the probe PROBE_RATIO x the mining
    threshold, the default stride, the model's smoothing and refractory period."""
    threshold = round(manifest.threshold * DEFAULT_THRESHOLD_RATIO, 4) if threshold is None else threshold
    return ScanSettings(threshold=threshold,
                        probe_threshold=round(threshold * PROBE_RATIO, 4) if probe is None else probe,
                        stride_hops=DEFAULT_STRIDE_HOPS if stride is None else stride,
                        smoothing_hops=manifest.smoothing_hops,
                        merge_gap_s=manifest.refractory_s if merge_gap is None else merge_gap,
                        int8=bool(int8))


def create(path: Path, *, model_dir: Path, model: dict, paths: list[Path], settings: ScanSettings,
           dataset: Path | None, shard: tuple[int, int]) -> Session:
    """Start a session: list and probe this shard's files, write the JSON."""
    if path.exists():
        raise MiningError(f"{path}: a session already exists there; continue it with "
                          f"`hark mine {path} --resume`, or choose another name")
    if path.suffix != ".json":
        raise MiningError(f"{path}: a session file must end in .json (its clips go next to it)")
    every = find_audio(paths)
    if not every:
        raise MiningError("no audio files (.wav, .flac, .ogg) under " + ", ".join(map(str, paths)))
    index, count = shard
    mine = [p for k, p in enumerate(every) if k % count == index - 1]
    files = []
    for k, p in enumerate(mine):
        entry = {"path": str(p), "key": file_key(k, str(p)), "status": FILE_TODO,
                 "duration_s": 0.0, "scanned_s": 0.0, "error": None}
        try:
            entry["duration_s"] = round(probe(p), 3)
        except BadAudio as exc:
            entry.update(status=FILE_SKIPPED, error=str(exc))
        files.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    session = new_session(path, files=files, settings=settings.to_dict(),
                          model={"dir": str(model_dir.resolve()), **model},
                          dataset=str(dataset.resolve()) if dataset else None, shard=shard)
    session.data["shard"]["total_files"] = len(every)
    session.save(keep_review=False)
    return session


class Miner:
    """Runs one session to completion or to a pause. `should_stop` is polled after every
    block (a signal handler sets it); `progress` shows a tqdm bar on stderr."""

    def __init__(self, session: Session, graphs: Graphs, settings: ScanSettings, *,
                 should_stop: Callable[[], bool] = lambda: False, progress: bool = True) -> None:
        self.session = session
        self.settings = settings
        self.scorer = Scorer(graphs, settings)
        self.should_stop = should_stop
        self.progress = progress
        self._last_save = time.monotonic()
        self._wall_mark = time.monotonic()

    # ------------------------------------------------------------------ clips
    def _clip_audio(self, source: AudioSource, hit: OpenHit) -> np.ndarray:
        end = (hit.peak_hop + 1) * HOP_SAMPLES
        lo = end - CLIP_SAMPLES - int(CONTEXT_BEFORE_S * SAMPLE_RATE)
        hi = end + int(CONTEXT_AFTER_S * SAMPLE_RATE)
        a0 = self.scorer.audio_start
        if lo >= a0 and hi <= a0 + self.scorer.audio.size:
            return self.scorer.audio[lo - a0:hi - a0]
        try:
            return source.segment(lo, hi)
        except (RuntimeError, OSError, MiningError):
            return np.zeros(hi - lo, np.float32)  # a damaged file: the hit stays, its clip is silent

    def _record(self, entry: dict, file_index: int, source: AudioSource, hit: OpenHit) -> dict:
        clips = self.session.clips
        clips.mkdir(exist_ok=True)
        name = f"{entry['key']}_{hit.peak_hop:09d}.wav"
        blob = encode_wav(self._clip_audio(source, hit))
        try:
            write_bytes(clips / name, blob)
        except OSError as exc:
            why = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
            raise MiningError(f"{clips / name}: cannot save the clip ({why}). The session is "
                              f"consistent at its last commit; free space and run `hark mine "
                              f"{self.session.path} --resume`") from exc
        return {
            "id": len(self.session.hits) + 1,
            "file": file_index, "source": entry["path"],
            "offset_s": round((hit.peak_hop + 1) * HOP_S, 3),
            "first_s": round((hit.first_hop + 1) * HOP_S, 3),
            "last_s": round((hit.last_hop + 1) * HOP_S, 3),
            "score": round(hit.peak_score, 6), "peak_hop": hit.peak_hop,
            "clip": f"{clips.name}/{name}",
            "clip_start_s": round((hit.peak_hop + 1) * HOP_S - CLIP_SAMPLES / SAMPLE_RATE
                                  - CONTEXT_BEFORE_S, 3),
            "status": PENDING, "label": None, "dataset_path": None, "reviewed": None,
        }

    # ------------------------------------------------------------------ commits
    def _commit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_save < SAVE_INTERVAL_S:
            return
        stats = self.session.data["stats"]
        stats["wall_s"] = round(stats.get("wall_s", 0.0) + now - self._wall_mark, 3)
        self._wall_mark = now
        try:
            self.session.save()
        except OSError as exc:
            why = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
            raise MiningError(f"{self.session.path}: cannot save the session ({why}). The file "
                              "on disk still holds the last commit; free space and run `hark "
                              f"mine {self.session.path} --resume`") from exc
        self._last_save = now

    # ------------------------------------------------------------------ the loop
    def _remove_orphans(self) -> None:
        """Temp files a killed run left behind (clips and session saves); under the session
        lock, so a queue edit's temp file is never taken for one."""
        path = self.session.path
        with locked(path):
            for orphan in [*self.session.clips.glob(".*.tmp"), *path.parent.glob(f".{path.name}.*.tmp")]:
                orphan.unlink(missing_ok=True)

    def run(self) -> MineResult:
        from tqdm import tqdm

        self._remove_orphans()
        session, position = self.session, self.session.position
        todo_s = sum(f["duration_s"] - f["scanned_s"] for f in session.files if f["status"] == FILE_TODO)
        hits_before, audio_s, start = len(session.hits), 0.0, time.monotonic()
        session.data["state"] = "running"
        bar = tqdm(total=round(todo_s / 3600, 4), unit="h", disable=not self.progress,
                   bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} h audio [{elapsed}<{remaining}{postfix}]")
        try:
            for index in range(position["file"], len(session.files)):
                entry = session.files[index]
                if entry["status"] != FILE_TODO:
                    continue
                if position["file"] != index:
                    position.update(file=index, hop=0, open_hit=None)
                paused, scanned = self._scan_file(index, entry, bar)
                audio_s += scanned
                if paused:
                    return self._pause(hits_before, audio_s, start)
                position.update(file=index + 1, hop=0, open_hit=None)
                self._commit(force=True)
            position.update(file=len(session.files), hop=0, open_hit=None)
            session.data["state"] = "complete"
            self._commit(force=True)
            return MineResult("complete", len(session.hits) - hits_before, audio_s,
                              time.monotonic() - start)
        finally:
            bar.close()

    def _pause(self, hits_before: int, audio_s: float, start: float) -> MineResult:
        self.session.data["state"] = "paused"
        self._commit(force=True)
        return MineResult("paused", len(self.session.hits) - hits_before, audio_s,
                          time.monotonic() - start)

    def _scan_file(self, index: int, entry: dict, bar) -> tuple[bool, float]:
        """Scan one file from the committed position; (paused, seconds of audio scanned)."""
        position = self.session.position
        tracker = HitTracker(self.settings, position["open_hit"])
        scanned, t0 = 0.0, time.monotonic()
        try:
            source = AudioSource(Path(entry["path"]))
        except BadAudio as exc:
            entry.update(status=FILE_SKIPPED, error=str(exc))
            return False, 0.0
        with source:
            n_hops = source.length // HOP_SAMPLES
            h0 = position["hop"]
            try:
                while h0 < n_hops:
                    h1 = min((h0 // BLOCK_HOPS + 1) * BLOCK_HOPS, n_hops)
                    smoothed = self.scorer.score_block(source, h0, h1, n_hops)
                    closed = tracker.update(h0, smoothed)
                    if h1 == n_hops:
                        closed += tracker.finish()
                    for hit in closed:
                        self.session.hits.append(self._record(entry, index, source, hit))
                    position.update(hop=h1, open_hit=tracker.state())
                    entry["scanned_s"] = round(h1 * HOP_S, 3)
                    block_s = (h1 - h0) * HOP_S
                    scanned += block_s
                    bar.update(block_s / 3600)
                    bar.set_postfix_str(f"{scanned / max(time.monotonic() - t0, 1e-9):.0f}x rt, "
                                        f"{len(self.session.hits)} hits", refresh=False)
                    h0 = h1
                    if self.should_stop() and h0 < n_hops:
                        return True, scanned
                    self._commit()
            except BadAudio as exc:
                # Audio before the damage is real: its hits stay; the rest is skipped.
                for hit in tracker.finish():
                    self.session.hits.append(self._record(entry, index, source, hit))
                entry.update(status=FILE_SKIPPED, error=str(exc))
                return False, scanned
        entry["status"] = FILE_DONE
        return self.should_stop() and index + 1 < len(self.session.files), scanned
