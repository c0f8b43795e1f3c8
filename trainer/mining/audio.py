"""Long recordings in blocks: any length of WAV/FLAC/OGG, never read whole into memory.

`AudioSource` hands out 16 kHz mono float32 samples by absolute index, decoding the file
sequentially in soundfile blocks, downmixing, and resampling other rates on the fly with
sentry's `StreamResampler` (exact: chunking never changes its output). Indices before the
start of the file are silence, as the sentry assumes before a stream starts.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Self

import numpy as np
import soundfile as sf

from sentry.audio import StreamResampler
from sentry.constants import SAMPLE_RATE
from sentry.errors import SentryError
from sentry.wav import UNKNOWN_DATA_SIZES, DecodeBudget, parse_riff
from trainer.audio import AUDIO_SUFFIXES

from . import MiningError

STREAM_BUDGET = DecodeBudget(max_seconds=7 * 24 * 3600.0, max_bytes=sys.maxsize)
"""What a file may claim in its header (sentry.wav's rate and channel limits, a week of
audio at most). Files are decoded in blocks, never whole, so their size is not limited."""

READ_FRAMES = 262_144
"""Input frames per soundfile read: ~16 s at 16 kHz, a few MB, amortises call overhead."""

HEADER_BYTES = 1 << 20
"""Bytes of a WAV header read to compare its declared data size with the file size."""


class BadAudio(MiningError):
    """This file cannot be mined (unreadable, truncated); the session skips it and counts it."""


log = logging.getLogger(__name__)


def find_audio(paths: list[Path]) -> list[Path]:
    """Files to mine: the given files plus audio files under given folders, recursively,
    resolved and sorted so every shard of a job array sees the same list.

    Symlinks: a path given by name is followed wherever it leads. Inside a given folder,
    only what really lies in that folder is mined: a symlink that leads out of it (to a file
    or a folder) is skipped with a warning, so a folder means its own contents and the
    studio, which passes folders inside its --root folders, never mines a file outside them.
    Pass such a target by name (or its real folder) to mine it."""
    found: set[Path] = set()
    for path in paths:
        path = Path(path).expanduser()
        if path.is_dir():
            found.update(_folder_audio(path))
        elif path.is_file():
            found.add(path.resolve())
        else:
            raise MiningError(f"{path}: no such file or folder; pass audio files or folders "
                              "holding .wav/.flac/.ogg files")
    return sorted(found)


def _folder_audio(folder: Path) -> list[Path]:
    """Real paths of the audio files under FOLDER that lie inside FOLDER's real path."""
    real_folder = folder.resolve()
    inside, outside = [], 0
    for candidate in folder.rglob("*"):
        if candidate.name.startswith(".") or candidate.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):  # a dangling link or a loop: nothing to mine
            continue
        if real != real_folder and real_folder not in real.parents:
            outside += 1
        elif real.is_file():
            inside.append(real)
    if outside:
        log.warning("%s: skipped %d audio file(s) behind symlinks that lead out of the folder; "
                    "pass them by name to mine them", folder, outside)
    return inside


def _check_wav_length(path: Path) -> None:
    """libsndfile quietly shortens a truncated WAV; the header says what should be there."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(HEADER_BYTES)
    try:
        fmt = parse_riff(path, head)
    except SentryError:
        return  # not a plain RIFF header we can judge (or a huge one); libsndfile decides
    if fmt.data_size not in UNKNOWN_DATA_SIZES and fmt.data_offset + fmt.data_size > size:
        got = size - fmt.data_offset
        raise BadAudio(f"{path}: truncated WAV, the header promises {fmt.data_size} bytes of "
                       f"audio but the file holds {max(got, 0)}; re-copy or re-record it")


def resampled_length(frames: int, rate: int) -> int:
    """16 kHz samples `StreamResampler` produces for `frames` input samples at `rate` Hz."""
    if rate == SAMPLE_RATE:
        return frames
    g = math.gcd(rate, SAMPLE_RATE)
    return -(-frames * (SAMPLE_RATE // g) // (rate // g))


def probe(path: Path) -> float:
    """Duration in seconds, or BadAudio when the file cannot be opened or is truncated."""
    try:
        if path.suffix.lower() == ".wav":
            _check_wav_length(path)
        info = sf.info(str(path))
    except BadAudio:
        raise
    except (RuntimeError, OSError, ValueError) as exc:  # LibsndfileError is a RuntimeError
        raise BadAudio(f"{path}: unreadable audio ({exc})") from exc
    if info.samplerate <= 0 or info.channels <= 0:
        raise BadAudio(f"{path}: header claims {info.channels} channels at {info.samplerate} Hz")
    try:  # before any decoding: a 1 Hz header would resample to 16000x its size
        STREAM_BUDGET.check_stream(str(path), info.samplerate, info.channels)
        STREAM_BUDGET.check_length(str(path), info.samplerate, info.channels, info.frames)
    except SentryError as exc:
        raise BadAudio(str(exc)) from exc
    return info.frames / info.samplerate


class AudioSource:
    """Sequential 16 kHz mono access to one file by absolute sample index.

    `length` is the number of 16 kHz samples the file holds. `read(lo, hi)` must be called
    with non-decreasing `lo`; samples before `lo` are dropped from memory. A 16 kHz file is
    opened at `lo` directly (resume skips the decoded past); other rates decode from the
    start, since the resampler's state depends on everything before.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        probe(self.path)
        try:
            self._file = sf.SoundFile(str(self.path))
        except (RuntimeError, OSError, ValueError) as exc:
            raise BadAudio(f"{self.path}: unreadable audio ({exc})") from exc
        self.rate = self._file.samplerate
        self.length = resampled_length(self._file.frames, self.rate)
        self._resampler = None if self.rate == SAMPLE_RATE else StreamResampler(self.rate)
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # 16 kHz index of _buf[0]
        self._eof = False
        self._started = False

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _decode_more(self, frames: int, keep_from: int) -> None:
        """Decode at least `frames` more 16 kHz samples (fewer at the end of the file),
        dropping whatever ends before `keep_from` as it goes (a resume deep into a
        resampled file decodes its whole past, but never holds it)."""
        parts, start = [self._buf], self._buf_start
        while frames > 0 and not self._eof:
            want = max(READ_FRAMES, frames) if self._resampler is None else READ_FRAMES
            try:
                block = self._file.read(want, dtype="float32", always_2d=True)
            except (RuntimeError, OSError, ValueError) as exc:
                at = (start + sum(p.size for p in parts)) / SAMPLE_RATE
                raise BadAudio(f"{self.path}: decoding failed near {at:.1f} s ({exc}); the file "
                               "is damaged") from exc
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            if block.shape[0] < want:
                self._eof = True
            if self._resampler is not None:
                mono = self._resampler.process(mono)
                if self._eof:
                    mono = np.concatenate([mono, self._resampler.flush()])
            parts.append(mono)
            frames -= mono.size
            while len(parts) > 1 and start + parts[0].size <= keep_from:
                start += parts.pop(0).size
        self._buf = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self._buf_start = start

    def _start(self, lo: int) -> None:
        self._started = True
        if self._resampler is None and lo > 0:
            try:
                self._file.seek(min(lo, self._file.frames))
            except (RuntimeError, OSError, ValueError) as exc:
                raise BadAudio(f"{self.path}: cannot seek to {lo / SAMPLE_RATE:.1f} s ({exc})") from exc
            self._buf_start = min(lo, self._file.frames)

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Samples [lo, hi) at 16 kHz (float32); indices < 0 are silence. Raises BadAudio
        when the file ends (or fails to decode) before `hi`."""
        if not self._started:
            self._start(max(lo, 0))
        if lo < self._buf_start and lo >= 0:
            raise MiningError(f"{self.path}: internal error, read at {lo} after dropping it")
        if self._buf_start + self._buf.size < hi:
            self._decode_more(hi - self._buf_start - self._buf.size, max(lo, 0))
        have = self._buf_start + self._buf.size
        if have < hi:
            raise BadAudio(f"{self.path}: the file ends at {have / SAMPLE_RATE:.1f} s but its "
                           f"header promises {self.length / SAMPLE_RATE:.1f} s; it is truncated")
        silence = np.zeros(max(0, -lo), dtype=np.float32)
        start = max(lo, 0) - self._buf_start
        out = np.concatenate([silence, self._buf[start:hi - self._buf_start]])
        drop = max(0, lo - self._buf_start)
        if drop:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return out

    def segment(self, lo: int, hi: int) -> np.ndarray:
        """Samples [lo, hi) read afresh (for clips), zero-padded past either end."""
        with sf.SoundFile(str(self.path)) as handle:
            rate = handle.samplerate
            if rate == SAMPLE_RATE:
                start = max(lo, 0)
                handle.seek(min(start, handle.frames))
                data = handle.read(max(0, hi - start), dtype="float32", always_2d=True)
                mono = data.mean(axis=1, dtype=np.float32)
                out = np.zeros(hi - lo, dtype=np.float32)
                out[start - lo:start - lo + mono.size] = mono
                return out
            # Other rates: decode from the start (exactly as the scan did) up to `hi`.
            source = AudioSource(self.path)
            try:
                return source.read(lo, min(hi, source.length)).copy() if hi <= source.length \
                    else np.concatenate([source.read(lo, source.length),
                                         np.zeros(hi - max(lo, source.length), np.float32)])
            finally:
                source.close()
