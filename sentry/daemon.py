"""The `listen` loop: live audio in, detections out, until the stream ends or a signal.

Capture and scoring run in different threads joined by a bounded queue, so a slow
hop (a busy CPU, a first-call allocation in onnxruntime) never makes the sound card
overrun: capture keeps reading, and if scoring falls a whole queue behind, whole
chunks are dropped, counted and logged rather than blocking the device. A source that
is not live (a pipe, which may be a file played faster than real time) is read with
back-pressure instead, since nothing is lost by waiting for it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import signal
import threading
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, Protocol

import numpy as np

from .audio import StreamResampler, to_float32
from .constants import HOP_SAMPLES, SAMPLE_RATE
from .detector import Detection
from .errors import SentryError

log = logging.getLogger(__name__)

QUEUE_CHUNKS = 64
"""Chunks buffered between capture and scoring: about 5 s of audio at one hop each."""

POLL_S = 0.1
"""Seconds the scoring loop waits for audio before checking whether to stop."""

CAPTURE_JOIN_S = 1.0
"""Seconds to wait for the capture thread at shutdown; it is a daemon thread, so one
stuck in a blocking read (stdin with no writer) cannot keep the process alive."""


def chunk_samples_for(rate: int) -> int:
    """Samples per capture chunk at `rate` Hz: one detector hop (80 ms) of audio."""
    return max(1, round(HOP_SAMPLES * rate / SAMPLE_RATE))


class AudioSource(Protocol):
    """Where audio comes from: `rate` in Hz and a blocking iterator of mono chunks
    (int16 arrays or raw int16 bytes). Closing the iterator must release the device.
    `live`: audio arrives in real time and is lost if not read in time (a sound card)."""

    rate: int
    live: bool

    def chunks(self) -> Iterator[np.ndarray | bytes]: ...


class StdinSource:
    """Raw little-endian int16 mono PCM from a byte stream (a pipe, usually stdin).

    Not live: a pipe holds what is not read yet, so the listener waits for the
    scorer rather than drop audio (a file piped in is scored completely).
    A stream with a file descriptor is read with os.read: the capture thread may be
    blocked in a read when the listener stops, and a blocked read on Python's
    buffered stdin holds a lock that interpreter shutdown then waits for forever.
    """

    live = False

    def __init__(self, stream: BinaryIO, rate: int = SAMPLE_RATE) -> None:
        self.stream = stream
        self.rate = rate
        self._chunk_bytes = 2 * chunk_samples_for(rate)
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._fd = None  # an in-memory stream (tests, embedding)

    def _read(self) -> bytes:
        if self._fd is not None:
            return os.read(self._fd, self._chunk_bytes)
        return self.stream.read(self._chunk_bytes)

    def chunks(self) -> Iterator[bytes]:
        carry = b""  # an odd trailing byte waits for its partner
        while True:
            data = self._read()
            if not data:
                return
            data = carry + data
            cut = len(data) - len(data) % 2
            carry = data[cut:]
            if cut:
                yield data[:cut]


class MicrophoneSource:
    """A sound card input through the optional `sounddevice` package (PortAudio)."""

    live = True

    def __init__(self, rate: int = SAMPLE_RATE, device: int | str | None = None) -> None:
        try:
            import sounddevice
        except (ImportError, OSError) as exc:  # OSError: the package is there, PortAudio is not
            raise SentryError(
                f"microphone input needs the optional package sounddevice ({exc}); install it "
                "with `pip install sounddevice` (it needs PortAudio), or pipe raw 16-bit mono "
                "PCM in with --stdin-raw, e.g. `arecord -f S16_LE -r 16000 -c 1 -t raw | "
                "hark-sentry listen --stdin-raw ...`") from exc
        self._sd = sounddevice
        self.rate = rate
        self.device = device
        self._chunk = chunk_samples_for(rate)

    def chunks(self) -> Iterator[np.ndarray]:
        try:
            stream = self._sd.InputStream(samplerate=self.rate, channels=1, dtype="int16",
                                          blocksize=self._chunk, device=self.device)
        except Exception as exc:  # PortAudio errors have no common public base
            raise SentryError(
                f"cannot open microphone {self.device if self.device is not None else '(default)'} "
                f"at {self.rate} Hz ({exc}); list devices with `python -m sounddevice`, pick one "
                "with --device, or try the card's native rate with --rate 48000") from exc
        with stream:
            while True:
                data, overflowed = stream.read(self._chunk)
                if overflowed:
                    log.warning("the sound card overflowed; some audio was lost before capture")
                yield data[:, 0].copy()


@dataclass
class ListenStats:
    """What a listen session did. audio_s: seconds of audio scored (at 16 kHz)."""

    chunks: int = 0
    dropped_chunks: int = 0
    detections: int = 0
    audio_s: float = 0.0


class _End:
    """Queue marker: the source is exhausted."""


class Listener:
    """Run a detector on a live source until it ends or `stop()` is called.

    detector: anything with `process(float32 chunk) -> list[Detection]` (a Detector).
    on_detection: called in the scoring thread for every detection, as it happens.
    on_audio: called in the scoring thread with every 16 kHz float32 chunk, before the
        detector sees it (a JudgeGate keeps its pre-roll buffer with it).
    queue_chunks: capture chunks buffered before new ones are dropped (live sources) or
        capture waits (other sources).
    """

    def __init__(self, detector, source: AudioSource,
                 on_detection: Callable[[Detection], None], *,
                 on_audio: Callable[[np.ndarray], None] | None = None,
                 queue_chunks: int = QUEUE_CHUNKS) -> None:
        if queue_chunks < 1:
            raise SentryError(f"queue_chunks must be >= 1, got {queue_chunks}")
        self.detector = detector
        self.source = source
        self.on_detection = on_detection
        self.on_audio = on_audio
        self.stats = ListenStats()
        self._queue: queue.Queue = queue.Queue(maxsize=queue_chunks)
        self._stop = threading.Event()
        self._drop_when_behind = getattr(source, "live", True)
        self._resampler = (StreamResampler(source.rate, SAMPLE_RATE)
                           if source.rate != SAMPLE_RATE else None)

    def stop(self) -> None:
        """Ask the loop to finish; safe from a signal handler or another thread."""
        self._stop.set()

    def run(self) -> ListenStats:
        """Block until the source ends or stop() is called; returns the session's stats.

        A failure inside the capture thread (a device that cannot be opened) is
        re-raised here as a SentryError.
        """
        capture = threading.Thread(target=self._capture, name="hark-capture", daemon=True)
        capture.start()
        try:
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if isinstance(item, _End):
                    if self._resampler is not None:
                        self._score(self._resampler.flush())
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, SentryError):
                        raise item
                    raise SentryError(f"audio capture failed: {item!r}") from item
                audio = to_float32(item)
                if self._resampler is not None:
                    audio = self._resampler.process(audio)
                self._score(audio)
        finally:
            self._stop.set()
            capture.join(timeout=CAPTURE_JOIN_S)
        return self.stats

    def _score(self, audio: np.ndarray) -> None:
        self.stats.chunks += 1
        self.stats.audio_s += audio.size / SAMPLE_RATE
        if self.on_audio is not None:
            self.on_audio(audio)
        for detection in self.detector.process(audio):
            self.stats.detections += 1
            self.on_detection(detection)

    def _capture(self) -> None:
        """Capture thread: a live source never waits on the scorer."""
        final: object = _End()
        chunks = self.source.chunks()
        try:
            for chunk in chunks:
                if self._stop.is_set():
                    break
                if self._drop_when_behind:
                    self._offer(chunk)
                elif not self._put(chunk):
                    break
        except BaseException as exc:  # handed to the scoring thread, which reports it
            final = exc
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # ends a generator source, releasing its device
        self._put(final)

    def _offer(self, chunk: object) -> None:
        try:
            self._queue.put_nowait(chunk)
        except queue.Full:
            self.stats.dropped_chunks += 1
            n = self.stats.dropped_chunks
            if n & (n - 1) == 0:  # 1, 2, 4, 8...: visible but not a flood
                log.warning("scoring is falling behind capture: %d chunk(s) dropped so far", n)

    def _put(self, item: object) -> bool:
        """Wait for room in the queue unless the listener stops; True if delivered."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT and SIGTERM to `stop` for the duration, then restore the handlers.

    Only the main thread may install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.getsignal(sig) for sig in wanted}
    for sig in wanted:
        signal.signal(sig, lambda signum, frame: stop())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
