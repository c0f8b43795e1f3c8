"""The sentry as a Wyoming wake-word service, the protocol Home Assistant speaks.

A client (Home Assistant, a wyoming-satellite) connects over TCP and sends
`describe` (answered with `info`: the loaded models), optionally `detect` (which
models to run), then `audio-start`, `audio-chunk`s and `audio-stop`. Every model it
selected scores the same stream; each firing is answered with a `detection` (model
name, timestamp in ms from audio-start), and a stream in which nothing fired ends
with `not-detected`. Home Assistant often just hangs up instead of sending
`audio-stop`; that is a normal end, not an error.

Audio of any width and up to two channels is made 16-bit mono by wyoming's
AudioChunkConverter; other rates are then resampled by the sentry's own
band-limited StreamResampler, the one `listen` uses, because the converter's
resampler (audioop.ratecv) interpolates linearly with no low-pass and folds
everything above 8 kHz into the band the model listens to.

Scoring runs in the event loop's thread pool, one chunk at a time per connection,
so a busy model never stalls other connections (onnxruntime releases the GIL).
Each connection gets its own Detector per model; idle ones are kept in a small
pool per model, so their onnxruntime sessions are reused by the next connection.

With a verifier (a judge), a detection is sent only once the judge agrees (or its
client's policy decides), a quarter second of post-roll plus the judge's latency
later; its timestamp still says when the model fired. A client that sends a
malformed or unusable event gets an `error` event and is disconnected; the
service and its other connections carry on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import __version__
from .audio import StreamResampler, to_float32
from .constants import SAMPLE_RATE
from .detector import Detection, Detector
from .errors import SentryError
from .judge_client import JudgeClient, clip_span
from .manifest import Manifest
from .wakestream import ClipSpan, Hit, WakeStream

MIN_WYOMING = (1, 10, 1)
"""Oldest wyoming package that works here: before 1.10.1 its AudioChunkConverter read
8-bit audio as signed, and before 1.7 events carried no context."""


class WyomingMissing(SentryError, ImportError):
    """The optional `wyoming` package is missing or too old."""


try:
    with warnings.catch_warnings():
        # wyoming imports the stdlib audioop, deprecated since Python 3.11; it ships a
        # pure-Python copy it falls back to where audioop is gone, so nothing to act on.
        warnings.simplefilter("ignore", DeprecationWarning)
        from wyoming import __version__ as _wyoming_version
        from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
        from wyoming.error import Error
        from wyoming.event import Event
        from wyoming.info import Attribution, Describe, Info, WakeModel, WakeProgram
        from wyoming.server import AsyncEventHandler, AsyncServer, AsyncTcpServer, AsyncUnixServer
        from wyoming.wake import Detect, NotDetected
        from wyoming.wake import Detection as WakeDetection
except ImportError as exc:
    raise WyomingMissing(
        f"the Wyoming service needs the optional package wyoming ({exc}); install it with "
        '`pip install "hark-wakeword[wyoming]"`') from exc
if tuple(int(p) for p in re.findall(r"\d+", _wyoming_version)[:3]) < MIN_WYOMING:
    raise WyomingMissing(
        f"wyoming {_wyoming_version} is too old for the Wyoming service; upgrade it with "
        f"`pip install \"wyoming>={'.'.join(map(str, MIN_WYOMING))}\"` "
        '(or `pip install "hark-wakeword[wyoming]"`)')

log = logging.getLogger(__name__)

MODEL_LANGUAGES = ["en"]
"""Manifests carry no language yet, and the trainer synthesises English voices."""

ATTRIBUTION = Attribution(name="Hark", url="")
"""Who made the models; Hark has no public home page to point at yet."""

MIN_RATE_HZ, MAX_RATE_HZ = 4_000, 384_000
"""Client sample rates accepted: telephone-band to the highest common studio rate."""
WIDTHS = (1, 2, 3, 4)
"""Sample widths in bytes that AudioChunkConverter understands (8- to 32-bit PCM)."""
CHANNELS = (1, 2)
"""Channel counts AudioChunkConverter can downmix (audioop.tomono takes stereo only)."""

MAX_HEADER_BYTES = 64 * 1024
"""Longest event header line; asyncio's StreamReader buffers at most this by default."""
MAX_DATA_BYTES = 1024 * 1024
"""Largest JSON data block after a header; wake-word events carry a few hundred bytes."""
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
"""Largest audio payload: over 10 s of 48 kHz stereo 32-bit audio in one chunk. The
limit keeps one client from making the server buffer an arbitrary amount."""

IDLE_DETECTORS_PER_MODEL = 8
"""Detectors kept for reuse per model once their connections end (a few MB each)."""

Verifier = Callable[[np.ndarray, Detection], bool]
"""Second opinion before a detection is sent: (clip, detection) -> send it. The clip
is float32 16 kHz mono cut by the service's clip_span around the detection. Called in
a worker thread, so it may block (an HTTP call to a judge)."""


class WyomingProtocolError(SentryError):
    """A client sent something this service cannot use; its connection is closed."""

    def __init__(self, message: str, code: str = "bad-event") -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- models

@dataclass
class ServedModel:
    """One exported model folder as the service offers it, with its idle Detectors."""

    name: str
    folder: Path
    manifest: Manifest
    detector_options: dict[str, Any]
    idle: list[Detector] = field(default_factory=list)

    def wake_model(self) -> WakeModel:
        return WakeModel(
            name=self.name, phrase=self.name, languages=list(MODEL_LANGUAGES),
            description=f"{self.name} (Hark {self.manifest.architecture}, "
                        f"{self.manifest.parameters} parameters)",
            attribution=ATTRIBUTION, installed=True, version=self.manifest.config_hash)

    def new_detector(self) -> Detector:
        """Load the folder's graphs again: blocking, a few milliseconds."""
        return Detector(self.folder, **self.detector_options)

    async def take(self) -> Detector:
        """An idle Detector, or a new one loaded in a worker thread. Pool operations
        happen on the event loop's thread only, so the pool needs no lock."""
        if self.idle:
            return self.idle.pop()
        return await asyncio.get_running_loop().run_in_executor(None, self.new_detector)

    def give_back(self, detector: Detector) -> None:
        if len(self.idle) < IDLE_DETECTORS_PER_MODEL:
            detector.reset()
            self.idle.append(detector)


class AudioIn:
    """Client audio of one stream -> 16 kHz float32 mono."""

    def __init__(self, rate: int, width: int, channels: int) -> None:
        self.format = (rate, width, channels)
        self._converter = AudioChunkConverter(rate=None, width=2, channels=1)
        self._resampler = StreamResampler(rate, SAMPLE_RATE) if rate != SAMPLE_RATE else None

    def convert(self, chunk: AudioChunk) -> np.ndarray:
        try:
            pcm = to_float32(self._converter.convert(chunk).audio)
        except Exception as exc:  # audioop.error has no public base worth naming
            raise WyomingProtocolError(f"cannot convert audio chunk ({exc})") from exc
        return self._resampler.process(pcm) if self._resampler is not None else pcm

    def flush(self) -> np.ndarray:
        """The resampler's last outputs, at the end of the stream."""
        return self._resampler.flush() if self._resampler is not None else np.zeros(0, np.float32)


# --------------------------------------------------------------------------- wire

def _length(header: dict, key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise WyomingProtocolError(f"event header {key}={value!r} is not a byte count "
                                   f"between 0 and {limit}", "malformed-event")
    return value


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """The next event, or None at a clean end of stream between events.

    wyoming.event.async_read_event returns None for a malformed header as for a
    hang-up, raises KeyError for a header without a type, and trusts any payload
    length; this reader reports each problem as a WyomingProtocolError and bounds
    what one client can make the server buffer. A hang-up inside an event raises
    asyncio.IncompleteReadError.
    """
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    except asyncio.LimitOverrunError as exc:
        raise WyomingProtocolError(f"event header longer than {MAX_HEADER_BYTES} bytes",
                                   "malformed-event") from exc
    try:
        header = json.loads(line)
    except ValueError as exc:
        raise WyomingProtocolError(f"event header is not JSON: {line[:80]!r}",
                                   "malformed-event") from exc
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise WyomingProtocolError(f"event header has no string 'type': {line[:80]!r}",
                                   "malformed-event")
    data = header.get("data") or {}
    data_length = _length(header, "data_length", MAX_DATA_BYTES)
    payload_length = _length(header, "payload_length", MAX_PAYLOAD_BYTES)
    if data_length:
        try:
            extra = json.loads(await reader.readexactly(data_length))
        except ValueError as exc:
            raise WyomingProtocolError("event data block is not JSON", "malformed-event") from exc
        if not isinstance(extra, dict) or not isinstance(data, dict):
            raise WyomingProtocolError("event data must be a JSON object", "malformed-event")
        data = {**data, **extra}
    if not isinstance(data, dict):
        raise WyomingProtocolError("event data must be a JSON object", "malformed-event")
    payload = await reader.readexactly(payload_length) if payload_length else None
    return Event(type=header["type"], data=data, payload=payload)


def _audio_format(event: Event) -> tuple[int, int, int]:
    """(rate Hz, width bytes, channels) of an audio-start or audio-chunk, checked."""
    values = tuple(event.data.get(key) for key in ("rate", "width", "channels"))
    rate, width, channels = values
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values) or not (
            MIN_RATE_HZ <= rate <= MAX_RATE_HZ and width in WIDTHS and channels in CHANNELS):
        raise WyomingProtocolError(
            f"{event.type} has rate={rate!r}, width={width!r}, channels={channels!r}; this "
            f"service takes rate {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz, width {WIDTHS} bytes, "
            f"channels {CHANNELS}", "unsupported-audio")
    return rate, width, channels


# --------------------------------------------------------------------------- connections

class WakeHandler(AsyncEventHandler):
    """One client connection: a state machine over detect / audio-start / chunks / stop."""

    def __init__(self, service: WakeService, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.service = service
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "client")
        self._selected: list[ServedModel] = list(service.models)
        self._context: dict | None = None
        self._stream: WakeStream | None = None
        self._models: list[ServedModel] = []  # the current stream's, in its order
        self._detections = 0  # sent in the current stream
        self._audio: AudioIn | None = None
        self._busy = False  # a worker thread is using this connection's Detectors

    async def run(self) -> None:
        """Serve events until the client hangs up or misbehaves; never raises."""
        self._is_running = True
        try:
            while self._is_running:
                event = await read_event(self.reader)
                if event is None or not await self.handle_event(event):
                    break
        except WyomingProtocolError as exc:
            log.warning("%s: %s; closing the connection", self.peer, exc)
            await self._send_error(str(exc), exc.code)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("%s: connection lost (%s)", self.peer, exc.__class__.__name__)
        except Exception:  # a model failing must cost one connection, not the service
            log.exception("%s: unexpected error; closing the connection", self.peer)
            await self._send_error("internal error in the wake-word service", "internal")
        finally:
            await self.disconnect()
            self.writer.close()

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(self.service.info().event())
        elif Detect.is_type(event.type):
            await self._detect(Detect.from_event(event))
        elif AudioStart.is_type(event.type):
            await self._start(_audio_format(event))
        elif AudioChunk.is_type(event.type):
            fmt = _audio_format(event)
            if self._audio is None:  # satellites may stream without audio-start
                await self._start(fmt)
            elif self._audio.format != fmt:  # new converter; stream time goes on
                self._audio = AudioIn(*fmt)
            chunk = AudioChunk(*fmt, audio=event.payload or b"")
            if len(chunk.audio) % (fmt[1] * fmt[2]):
                raise WyomingProtocolError(f"audio-chunk of {len(chunk.audio)} bytes is not a "
                                           f"whole number of {fmt[1]}-byte x {fmt[2]} frames")
            audio, stream = self._audio, self._stream
            await self._score(lambda: stream.feed(audio.convert(chunk)))
        elif AudioStop.is_type(event.type):
            if self._stream is not None:
                audio, stream = self._audio, self._stream
                await self._score(lambda: stream.feed(audio.flush()) + stream.finish())
                if self._detections == 0:
                    await self.write_event(NotDetected(context=self._context).event())
            self._end_stream()
        else:
            log.debug("%s: ignoring event %r", self.peer, event.type)
        return True

    async def disconnect(self) -> None:
        self._end_stream()

    async def _detect(self, detect: Detect) -> None:
        if detect.names is not None and not (
                isinstance(detect.names, list) and all(isinstance(n, str) for n in detect.names)):
            raise WyomingProtocolError(f"detect names must be a list of strings, got {detect.names!r}")
        self._context = detect.context if isinstance(detect.context, dict) else None
        if not detect.names:
            self._selected = list(self.service.models)
            return
        self._selected = [m for m in self.service.models if m.name in detect.names]
        unknown = sorted(set(detect.names) - {m.name for m in self._selected})
        if unknown:
            known = ", ".join(repr(m.name) for m in self.service.models)
            log.warning("%s: asked for unknown wake word(s) %s; this service has %s",
                        self.peer, unknown, known)
        if not self._selected:  # nothing can fire: tell the client now, not at audio-stop
            await self._send_error(f"unknown wake word(s) {unknown}; this service has {known}",
                                   "unknown-wake-word")

    async def _start(self, fmt: tuple[int, int, int]) -> None:
        self._end_stream()
        self._models = list(self._selected)
        detectors = [await model.take() for model in self._models]
        self._stream = WakeStream(
            [(model.name, detector) for model, detector in zip(self._models, detectors)],
            self.service.trigger_level,
            self.service.clip_span if self.service.verify is not None else None)
        self._audio = AudioIn(*fmt)
        self._detections = 0
        log.debug("%s: stream at %d Hz, %d-byte, %d channel(s) for %s", self.peer, *fmt,
                  [m.name for m in self._selected])

    async def _score(self, work: Callable[[], list[Hit]]) -> None:
        """Convert and score in a worker thread, then send what fired (and was verified)."""
        loop = asyncio.get_running_loop()
        self._busy = True
        try:
            for hit in await loop.run_in_executor(None, work):
                if await self._verified(hit):
                    self._detections += 1
                    await self.write_event(WakeDetection(
                        name=hit.detection.wake_word, context=self._context,
                        timestamp=int(round(hit.detection.time_s * 1000))).event())
                    log.info("%s: %s at %.2f s (score %.3f)", self.peer, hit.detection.wake_word,
                             hit.detection.time_s, hit.detection.score)
        finally:
            self._busy = False

    async def _verified(self, hit: Hit) -> bool:
        verify = self.service.verify
        if verify is None or hit.clip is None:
            return True
        loop = asyncio.get_running_loop()
        try:
            accepted = await loop.run_in_executor(None, verify, hit.clip, hit.detection)
        except Exception:  # the verifier owns its failure policy; one that raises rejects
            log.exception("%s: verification of %s failed; detection dropped", self.peer,
                          hit.detection.wake_word)
            return False
        if not accepted:
            log.info("%s: the judge rejected %s at %.2f s", self.peer, hit.detection.wake_word,
                     hit.detection.time_s)
        return bool(accepted)

    def _end_stream(self) -> None:
        stream, self._stream, self._audio = self._stream, None, None
        if stream is None:
            return
        log.debug("%s: stream ended after %.2f s, %d detection(s) sent", self.peer,
                  stream.samples / SAMPLE_RATE, self._detections)
        if self._busy:
            return  # a worker thread may still hold its Detectors; let them go
        for model, (_, detector, _) in zip(self._models, stream.runs):
            model.give_back(detector)

    async def _send_error(self, text: str, code: str) -> None:
        try:
            await self.write_event(Error(text=text, code=code).event())
        except OSError:
            pass  # the client is gone; the error is logged already


# --------------------------------------------------------------------------- service

class WakeService:
    """The loaded models and settings every connection shares.

    model_dirs: exported model folders; their wake words name the models and must differ.
    threshold, refractory_s: override every manifest's trigger setting (None: keep).
    trigger_level: consecutive 80 ms hops at or above the threshold before a detection.
    int8: use the quantized classifiers.
    verify: optional second opinion before each detection is sent (see Verifier and
        judge_verifier); a detection then waits until the audio up to the end of its
        clip_span has arrived (the judge client's POST_ROLL_S, a quarter second).
    """

    def __init__(self, model_dirs: Sequence[str | Path], *, threshold: float | None = None,
                 trigger_level: int = 1, refractory_s: float | None = None, int8: bool = False,
                 verify: Verifier | None = None, clip_span: ClipSpan = clip_span) -> None:
        if not model_dirs:
            raise SentryError("no model folders given; pass at least one --model")
        if trigger_level < 1:
            raise SentryError(f"trigger level must be >= 1 hop, got {trigger_level}")
        self.trigger_level = trigger_level
        self.verify = verify
        self.clip_span = clip_span
        options = {"int8": int8, "threshold": threshold, "refractory_s": refractory_s}
        self.models: list[ServedModel] = []
        for folder in map(Path, model_dirs):
            detector = Detector(folder, **options)  # loads and checks the folder now
            clash = next((m for m in self.models if m.name == detector.wake_word), None)
            if clash is not None:
                raise SentryError(f"{clash.folder} and {folder} both detect "
                                  f"'{detector.wake_word}'; serve one model per wake word")
            self.models.append(ServedModel(detector.wake_word, folder, detector.manifest,
                                           options, idle=[detector]))

    def info(self) -> Info:
        return Info(wake=[WakeProgram(
            name="hark", description="Hark custom wake words (sentry runtime)",
            attribution=ATTRIBUTION, installed=True, version=__version__,
            models=[model.wake_model() for model in self.models])])

    def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> WakeHandler:
        """Handler factory for wyoming's AsyncServer."""
        return WakeHandler(self, reader, writer)


def judge_verifier(judge: JudgeClient) -> Verifier:
    """A Verifier asking a judge server; its policy decides when the judge gives no verdict."""
    def verify(clip: np.ndarray, detection: Detection) -> bool:
        verdict = judge.verify_pcm(clip, detection.score)
        log.info("judge on %s at %.2f s: %s (%s, score %s)", detection.wake_word,
                 detection.time_s, "verified" if verdict.verified else "rejected",
                 verdict.source, verdict.score)
        return verdict.verified
    return verify


async def serve(service: WakeService, uri: str, *,
                stop: asyncio.Event | None = None, handle_signals: bool = True,
                on_ready: Callable[[], None] | None = None) -> None:
    """Serve until `stop` is set (or SIGINT/SIGTERM when handle_signals), then close
    every connection. uri: tcp://HOST:PORT or unix://PATH."""
    try:
        server = AsyncServer.from_uri(uri)
    except ValueError as exc:
        raise SentryError(f"--uri {uri}: {exc}") from exc
    if not isinstance(server, (AsyncTcpServer, AsyncUnixServer)):
        raise SentryError(f"--uri {uri}: serve on tcp://HOST:PORT (or unix://PATH); a wake-word "
                          "service takes several clients, which stdio cannot")
    try:
        await server.start(service.handler)
    except OSError as exc:
        raise SentryError(f"cannot listen on {uri} ({exc}); is another service using it? "
                          "choose another --uri") from exc
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = [signal.SIGINT, signal.SIGTERM] if handle_signals else []
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        if on_ready is not None:
            on_ready()
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await server.stop()
