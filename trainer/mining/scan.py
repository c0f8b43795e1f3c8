"""Block scoring of long recordings and merging of what fires into hits.

A file is scored in fixed blocks of BLOCK_HOPS hops (block k covers hops [k*BLOCK_HOPS,
(k+1)*BLOCK_HOPS)). Each block is a pure function of the audio: it decodes its own context
(the 18 hops a window looks back over, the smoothing hops, the refinement margin) instead
of carrying state from the previous block. So a scan interrupted anywhere and resumed from
the last committed block computes exactly the scores, and therefore the hits, of an
uninterrupted one.

Scores are the sentry's (sentry.scoring: its framing, frames, windows and graphs): hop i
ends at (i + 1) * 80 ms, its window is the last WINDOW_FRAMES mel frames, frames before
the stream are those of silence, and the score that fires is the trailing mean over
`smoothing_hops` raw scores (sentry.postprocess.smooth, which depends only on the scores
it averages, so a block smooths as the whole file would).

Coarse-to-fine: with stride S > 1 the model first scores every S-th hop; around each
coarse hop whose raw score reaches the probe threshold, every hop within S - 1 (plus the
smoothing context) is scored too. Hits are decided on those full-resolution scores only,
so a hit's peak score and offset are those of the 80 ms path; what a coarse stride can
miss is a peak so narrow that no coarse hop near it reaches the probe threshold
(benchmarks/miner_throughput.py measures it on real audio).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from sentry.constants import HOP_SAMPLES, OVERLAP_SAMPLES, SAMPLE_RATE
from sentry.errors import SentryError
from sentry.postprocess import smooth
from sentry.scoring import LOOKBACK_HOPS, Graphs, windows

from . import MiningError
from .audio import AudioSource

BLOCK_HOPS = 2048
"""Hops per block (164 s of audio, ~0.3 s of work): the unit of progress commits."""

FEATURE_BATCH = 512
"""Hops per features.onnx call: measured fastest on a 2-core CPU (256-1024 are within 10%)."""

MODEL_BATCH = 256
"""Windows per classifier call (~6 MB of float32 input)."""

CLIP_TAIL_S = 4.0
"""Seconds of the previous block's audio kept beyond the merge gap: a clip spans 3 s."""


@dataclass(frozen=True)
class ScanSettings:
    """What decides the hits; recorded in the session and checked on resume.

    threshold: smoothed score (0..1) at or above which a hop counts as an activation.
    probe_threshold: raw coarse score that triggers full-resolution scoring around it.
    stride_hops: coarse stride in hops (1 = every 80 ms hop, the sentry's own path).
    smoothing_hops: trailing mean length, as the sentry's trigger (from the manifest).
    merge_gap_s: activations closer than this (seconds) merge into one hit.
    int8: score with model.int8.onnx instead of model.onnx.
    """

    threshold: float
    probe_threshold: float
    stride_hops: int
    smoothing_hops: int
    merge_gap_s: float
    int8: bool

    @classmethod
    def from_dict(cls, data: dict, source: str) -> ScanSettings:
        """Settings recorded in a session (`source` names it in errors)."""
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(data) - names), sorted(names - set(data))
        if unknown or missing:
            raise MiningError(f"{source}: its settings were written by another version of hark "
                              f"(unknown: {unknown or 'none'}; missing: {missing or 'none'}); "
                              "start a new session with `hark mine`")
        return cls(**data)

    @property
    def merge_gap_hops(self) -> int:
        return max(1, round(self.merge_gap_s * SAMPLE_RATE / HOP_SAMPLES))

    def to_dict(self) -> dict:
        return asdict(self)


class Scorer:
    """Smoothed full-resolution scores of one block, computed from the audio alone."""

    def __init__(self, graphs: Graphs, settings: ScanSettings) -> None:
        self.graphs = graphs
        self.settings = settings
        self.audio: np.ndarray = np.zeros(0, np.float32)
        self.audio_start = 0
        """The last block's decoded 16 kHz audio and its first sample index (for clips)."""
        self._source: AudioSource | None = None
        self.windows_scored = 0
        """Classifier windows run so far (the cost a coarse stride saves)."""

    def _keep_audio(self, source: AudioSource, pcm: np.ndarray, start: int) -> None:
        """Keep this block's audio, plus the previous block's last seconds, for clips of
        hits that close a merge gap after their peak (often in the next block)."""
        keep = int((self.settings.merge_gap_s + CLIP_TAIL_S) * SAMPLE_RATE)
        old_end = self.audio_start + self.audio.size
        if source is self._source and self.audio_start <= start <= old_end:
            prefix = self.audio[max(0, start - keep - self.audio_start):start - self.audio_start]
            pcm = np.concatenate([prefix, pcm])
            start -= prefix.size
        self._source, self.audio, self.audio_start = source, pcm, start

    def _score(self, hop_windows: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Raw scores of the windows at `rows` of hop_windows, counted in windows_scored."""
        self.windows_scored += rows.size
        return self.graphs.run_model(hop_windows, rows, batch=MODEL_BATCH)

    def score_block(self, source: AudioSource, h0: int, h1: int, n_hops: int) -> np.ndarray:
        """Smoothed scores of hops [h0, h1) of a file with n_hops hops; NaN where the
        coarse pass found nothing near (such hops cannot be activations)."""
        s, m = self.settings.stride_hops, self.settings.smoothing_hops
        first = max(h0 - (m - 1), 0)  # hops whose raw scores the smoothing needs
        # Coarse hops (global index = S-1 mod S) whose refinement range can reach [first, h1).
        c_lo = first - (s - 1) - (m - 1)
        c_lo += (s - 1 - c_lo) % s
        c_hi = min(h1 + (s - 1), n_hops)
        coarse = np.arange(max(c_lo, s - 1 if c_lo < 0 else c_lo), c_hi, s, dtype=np.int64)
        lo = min(first, int(coarse[0]) if coarse.size else first)
        hi = max(h1, int(coarse[-1]) + 1 if coarse.size else h1)
        base = lo - LOOKBACK_HOPS  # first hop whose frames are needed (may be < 0: silence)
        real = max(base, 0)
        pcm = source.read(real * HOP_SAMPLES - OVERLAP_SAMPLES, hi * HOP_SAMPLES)
        self._keep_audio(source, pcm, real * HOP_SAMPLES - OVERLAP_SAMPLES)
        try:
            frames = self.graphs.frames(pcm, silent_hops=real - base, batch=FEATURE_BATCH)
            hop_windows = windows(frames)  # row r is the window of hop lo + r

            raw = np.full(hi - lo, np.nan)
            if s == 1:
                raw[:] = self._score(hop_windows, np.arange(hi - lo, dtype=np.int64))
            else:
                raw[coarse - lo] = self._score(hop_windows, coarse - lo)
                hits = coarse[raw[coarse - lo] >= self.settings.probe_threshold]
                need = np.zeros(hi - lo, dtype=bool)
                for c in hits:
                    a, b = max(c - (s - 1) - (m - 1), first), min(c + s, h1)
                    if b > a:
                        need[a - lo:b - lo] = True
                need &= np.isnan(raw)
                todo = np.flatnonzero(need)
                if todo.size:
                    raw[todo] = self._score(hop_windows, todo)
        except SentryError as exc:  # a graph that fails to run: the model, not the audio
            raise MiningError(str(exc)) from exc
        # raw starts at hop lo; past its first m - 1 hops (or from the file start, lo = 0)
        # each mean is the file's, since smooth's means depend only on their own scores.
        return smooth(raw, m)[h0 - lo:h1 - lo]


@dataclass
class OpenHit:
    """An activation still growing: the peak so far and the last hop at or above threshold."""

    first_hop: int
    last_hop: int
    peak_hop: int
    peak_score: float

    def to_dict(self) -> dict:
        return asdict(self)


class HitTracker:
    """Merges activations of one file into hits; its state is saved at every commit."""

    def __init__(self, settings: ScanSettings, state: dict | None = None) -> None:
        self.threshold = settings.threshold
        self.gap = settings.merge_gap_hops
        self.open: OpenHit | None = OpenHit(**state) if state else None

    def update(self, h0: int, smoothed: np.ndarray) -> list[OpenHit]:
        """Feed the smoothed scores of hops [h0, h0 + len); returns the hits that closed."""
        closed: list[OpenHit] = []
        for i in np.flatnonzero(smoothed >= self.threshold):
            hop, score = h0 + int(i), float(smoothed[i])
            if self.open is not None and hop - self.open.last_hop <= self.gap:
                self.open.last_hop = hop
                if score > self.open.peak_score:
                    self.open.peak_hop, self.open.peak_score = hop, score
                continue
            if self.open is not None:
                closed.append(self.open)
            self.open = OpenHit(hop, hop, hop, score)
        end = h0 + smoothed.size - 1
        if self.open is not None and end - self.open.last_hop >= self.gap:
            closed.append(self.open)
            self.open = None
        return closed

    def finish(self) -> list[OpenHit]:
        """End of the file: whatever is open is a hit."""
        closed = [self.open] if self.open is not None else []
        self.open = None
        return closed

    def state(self) -> dict | None:
        return self.open.to_dict() if self.open is not None else None
