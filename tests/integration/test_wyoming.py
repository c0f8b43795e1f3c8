"""The sentry as a Wyoming wake-word service, driven by the wyoming package's own
AsyncTcpClient on loopback.

Most tests serve tone models (tests/integration/wyoming_models.py): their
classifiers fire on a pure tone a hop or two after it starts, so where a detection
must land is known. One test serves the tiny trained model for the protocol round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("wyoming", reason='the Wyoming service is optional: pip install "hark-wakeword[wyoming]"')

# First: it imports wyoming with the stdlib audioop's DeprecationWarning silenced.
from sentry.wyoming import WakeService, judge_verifier, serve  # noqa: E402, I001

from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.info import Describe, Info  # noqa: E402
from wyoming.wake import Detect, Detection  # noqa: E402

from sentry.audio import read_wav  # noqa: E402
from sentry.cli import cli  # noqa: E402
from sentry.constants import SAMPLE_RATE  # noqa: E402
from sentry.detector import Detector  # noqa: E402
from sentry.judge_client import JudgeClient, clip_span  # noqa: E402

pytestmark = pytest.mark.integration


def _load_models_helper():
    # --import-mode=importlib puts no test folder on sys.path; load the helper by path.
    path = Path(__file__).with_name("wyoming_models.py")
    spec = importlib.util.spec_from_file_location("hark_wyoming_test_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tones = _load_models_helper()

ONE, TWO = "tone one", "tone two"
ONE_HZ, TWO_HZ = tones.band_hz(9), tones.band_hz(19)  # 1600 Hz, 3200 Hz
OFF_BAND_HZ = 1234.0
"""A tone between bands: loud, but neither model's word."""
TOLERANCE_MS = 100
TIMEOUT_S = 20.0
"""Bound on any one scenario, so that a hung service fails the test instead of the run."""
CHUNK_S = 0.064
"""Audio per audio-chunk event: 1024 samples at 16 kHz, as Home Assistant sends."""


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("wyoming_models")
    return SimpleNamespace(one=tones.write_tone_model(root / "one", ONE, band=9),
                           two=tones.write_tone_model(root / "two", TWO, band=19))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT_S))


@contextlib.asynccontextmanager
async def _served(service: WakeService):
    """The service on a free loopback port for the duration; yields the port."""
    port = _free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(service, f"tcp://127.0.0.1:{port}", stop=stop,
                                     handle_signals=False, on_ready=ready.set))
    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait({task, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what kept the server from starting
    try:
        yield port
    finally:
        stop.set()
        await task


async def _until_info(client: AsyncTcpClient) -> list:
    """Every event the service sends before answering a describe. The service handles
    a connection's events in order, so this collects all it had to say before."""
    await client.write_event(Describe().event())
    events = []
    while True:
        event = await client.read_event()
        assert event is not None, "the service closed the connection"
        if Info.is_type(event.type):
            return events
        events.append(event)


async def _detect(port: int, audio: np.ndarray, *, rate: int = SAMPLE_RATE, width: int = 2,
                  channels: int = 1, names: list[str] | None = None, pause_s: float = 0.0) -> list:
    """One detect stream of `audio` (float32 mono at `rate`) on a new connection; the
    events it got back."""
    pcm = tones.encode_pcm(audio, width, channels)
    step = round(rate * CHUNK_S) * width * channels
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Detect(names=names).event())
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        for i in range(0, len(pcm), step):
            await client.write_event(AudioChunk(rate=rate, width=width, channels=channels,
                                                audio=pcm[i:i + step]).event())
            await asyncio.sleep(pause_s)  # lets another client's events interleave
        await client.write_event(AudioStop().event())
        return await _until_info(client)


def _detections(events: list) -> list[Detection]:
    return [Detection.from_event(e) for e in events if Detection.is_type(e.type)]


def _types(events: list) -> list[str]:
    return [e.type for e in events]


def _expected_ms(folder: Path, audio_16k: np.ndarray) -> list[int]:
    """Where the batch path (hark-sentry scan) puts the detections, in ms."""
    return [round(d.time_s * 1000) for d in Detector(folder).detect_pcm(audio_16k)]


# --------------------------------------------------------------------------- describe

def test_describe_lists_the_models(models):
    async def scenario():
        async with _served(WakeService([models.one, models.two])) as port:
            async with AsyncTcpClient("127.0.0.1", port) as client:
                await client.write_event(Describe().event())
                return Info.from_event(await client.read_event())

    info = _run(scenario())
    assert len(info.wake) == 1 and info.wake[0].installed
    wake_models = info.wake[0].models
    assert [m.name for m in wake_models] == [ONE, TWO]
    assert [m.phrase for m in wake_models] == [ONE, TWO]
    assert all(m.languages == ["en"] and m.installed for m in wake_models)


# --------------------------------------------------------------------------- detection

def test_wake_word_yields_exactly_one_detection_at_its_time(models):
    audio = tones.tone_bursts(4.0, [(1.5, ONE_HZ)])
    events = _run(_run_one(WakeService([models.one, models.two]), audio))
    detections = _detections(events)
    assert _types(events) == ["detection"]
    assert detections[0].name == ONE
    [expected] = _expected_ms(models.one, audio)
    assert abs(detections[0].timestamp - expected) <= TOLERANCE_MS
    assert 1500 <= detections[0].timestamp <= 1500 + 300  # just after the tone starts


async def _run_one(service: WakeService, audio: np.ndarray, **kwargs) -> list:
    async with _served(service) as port:
        return await _detect(port, audio, **kwargs)


def test_negative_recording_yields_not_detected(models):
    audio = tones.tone_bursts(4.0, [(1.0, OFF_BAND_HZ)], seed=3)
    events = _run(_run_one(WakeService([models.one, models.two]), audio))
    assert _types(events) == ["not-detected"]


def test_several_models_share_a_stream_and_detect_restricts_them(models):
    audio = tones.tone_bursts(5.0, [(1.0, ONE_HZ), (3.0, TWO_HZ)])

    async def scenario():
        async with _served(WakeService([models.one, models.two])) as port:
            both = await _detect(port, audio)
            only_two = await _detect(port, audio, names=[TWO])
            return both, only_two

    both, only_two = _run(scenario())
    assert [(d.name, d.timestamp // 1000) for d in _detections(both)] == [(ONE, 1), (TWO, 3)]
    assert _types(only_two) == ["detection"] and _detections(only_two)[0].name == TWO


def test_unknown_wake_word_is_an_error_event(models):
    async def scenario():
        async with _served(WakeService([models.one])) as port:
            async with AsyncTcpClient("127.0.0.1", port) as client:
                await client.write_event(Detect(names=["hey nobody"]).event())
                return await _until_info(client)

    events = _run(scenario())
    assert _types(events) == ["error"]
    assert events[0].data["code"] == "unknown-wake-word" and ONE in events[0].data["text"]


def test_two_concurrent_clients_get_independent_answers(models):
    positive = tones.tone_bursts(3.0, [(2.0, ONE_HZ)], seed=1)
    negative = tones.tone_bursts(3.0, [], seed=2)

    async def scenario():
        async with _served(WakeService([models.one])) as port:
            # Interleaved chunk by chunk: the streams overlap for their whole length.
            return await asyncio.gather(_detect(port, positive, pause_s=0.002),
                                        _detect(port, negative, pause_s=0.002))

    hit, miss = _run(scenario())
    assert _types(hit) == ["detection"]
    [expected] = _expected_ms(models.one, positive)
    assert abs(_detections(hit)[0].timestamp - expected) <= TOLERANCE_MS
    assert _types(miss) == ["not-detected"]


@pytest.mark.parametrize("rate, width, channels", [(44_100, 2, 2), (48_000, 3, 1), (8_000, 1, 2)])
def test_other_rates_widths_and_channels_are_converted(models, rate, width, channels):
    audio_16k = tones.tone_bursts(3.0, [(1.2, ONE_HZ)], seed=4)
    audio = tones.tone_bursts(3.0, [(1.2, ONE_HZ)], rate=rate, seed=4)
    events = _run(_run_one(WakeService([models.one]), audio, rate=rate, width=width,
                           channels=channels))
    assert _types(events) == ["detection"]
    [expected] = _expected_ms(models.one, audio_16k)
    assert abs(_detections(events)[0].timestamp - expected) <= TOLERANCE_MS


def test_trigger_level_delays_and_refractory_merges(models):
    # Two 0.5 s bursts 1.5 s apart, each above the threshold for about six hops.
    audio = tones.tone_bursts(4.5, [(1.0, ONE_HZ), (2.5, ONE_HZ)])

    def times(**settings) -> list[int]:
        events = _run(_run_one(WakeService([models.one], **settings), audio))
        return [d.timestamp for d in _detections(events)]

    level1 = times(refractory_s=0.8)  # longer than a burst, shorter than the gap
    assert len(level1) == 2
    assert times(refractory_s=0.8, trigger_level=3) == [t + 160 for t in level1]  # 2 hops later
    assert times(refractory_s=3.0) == level1[:1]
    assert times(trigger_level=20) == []  # longer than any burst


# --------------------------------------------------------------------------- robustness

MALFORMED = {
    "garbage": b"\x00\xffnot json at all\n",
    "no type": b'{"data": {"rate": 16000}}\n',
    "negative payload": b'{"type": "audio-chunk", "payload_length": -5}\n',
    "huge payload": b'{"type": "audio-chunk", "payload_length": 1000000000}\n',
    "bad format": b'{"type": "audio-start", "data": {"rate": "fast", "width": 2, "channels": 1}}\n',
    "six channels": b'{"type": "audio-start", "data": {"rate": 16000, "width": 2, "channels": 6}}\n',
    "half a frame": (b'{"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 2},'
                     b' "payload_length": 3}\n\x01\x02\x03'),
}


@pytest.mark.parametrize("bad", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_event_closes_only_its_connection(models, bad, caplog):
    audio = tones.tone_bursts(3.0, [(1.0, ONE_HZ)])

    async def scenario():
        async with _served(WakeService([models.one])) as port:
            # A well-behaved client mid-stream, before and after the bad one.
            async with AsyncTcpClient("127.0.0.1", port) as bystander:
                await bystander.write_event(AudioStart(rate=SAMPLE_RATE, width=2, channels=1).event())
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(bad)
                await writer.drain()
                answer = await reader.read()  # until the service closes the connection
                writer.close()
                pcm = tones.encode_pcm(audio, 2, 1)
                await bystander.write_event(AudioChunk(rate=SAMPLE_RATE, width=2, channels=1,
                                                       audio=pcm).event())
                await bystander.write_event(AudioStop().event())
                bystander_events = await _until_info(bystander)
            newcomer = await _detect(port, audio)
            return answer, bystander_events, newcomer

    with caplog.at_level(logging.WARNING, logger="sentry.wyoming"):
        answer, bystander_events, newcomer = _run(scenario())
    header = json.loads(answer.split(b"\n", 1)[0])
    assert header["type"] == "error"  # the client is told why before the service hangs up
    assert any("closing the connection" in r.getMessage() for r in caplog.records)
    assert _types(bystander_events) == ["detection"]
    assert _types(newcomer) == ["detection"]


def test_a_client_vanishing_mid_event_leaves_the_service_running(models):
    async def scenario():
        async with _served(WakeService([models.one])) as port:
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b'{"type": "audio-chunk", "data": {"rate": 16000, "width": 2, '
                             b'"channels": 1}, "payload_length": 2048}\n' + bytes(100))
                await writer.drain()
                writer.close()  # 1948 payload bytes short
            return await _detect(port, tones.tone_bursts(2.0, []))

    assert _types(_run(scenario())) == ["not-detected"]


# --------------------------------------------------------------------------- judge

def test_verifier_sees_the_clip_and_decides(models):
    audio = tones.tone_bursts(4.0, [(2.5, ONE_HZ)])  # late enough for a whole clip
    clips = []

    def verify(clip, detection):
        clips.append((clip, detection))
        return len(clips) == 2  # reject the first stream's detection, accept the second's

    async def scenario():
        async with _served(WakeService([models.one], verify=verify)) as port:
            return await _detect(port, audio), await _detect(port, audio)

    rejected, accepted = _run(scenario())
    assert _types(rejected) == ["not-detected"]
    assert _types(accepted) == ["detection"]
    clip, detection = clips[1]
    start, end = clip_span(detection.time_s)
    assert clip.shape == (end - start,)
    np.testing.assert_allclose(clip, audio[start:end], atol=1e-4)  # the stream's own audio


class _StubJudge(BaseHTTPRequestHandler):
    """A judge answering every clip with the server's `verified`, keeping what it got."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with wave.open(io.BytesIO(body)) as wav:
            self.server.clip_seconds.append(wav.getnframes() / wav.getframerate())
        answer = json.dumps({"verified": self.server.verified, "score": 0.9}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _stub_judge(verified: bool):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubJudge)
    server.verified, server.clip_seconds = verified, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("verified", [True, False])
def test_judge_client_verdict_decides(models, verified):
    audio = tones.tone_bursts(4.0, [(2.5, ONE_HZ)])
    with _stub_judge(verified) as judge:
        client = JudgeClient(f"http://127.0.0.1:{judge.server_address[1]}", retries=0)
        events = _run(_run_one(WakeService([models.one], verify=judge_verifier(client)), audio))
    assert _types(events) == ["detection" if verified else "not-detected"]
    start, end = clip_span(2.5)  # every clip is as long, wherever it starts
    assert judge.clip_seconds == [pytest.approx((end - start) / SAMPLE_RATE, abs=1e-3)]


@pytest.mark.parametrize("policy, expected", [("fail-open", "detection"),
                                              ("fail-closed", "not-detected")])
def test_judge_policy_applies_when_the_judge_is_down(models, policy, expected):
    client = JudgeClient(f"http://127.0.0.1:{_free_port()}", retries=0, timeout_s=1.0,
                         policy=policy)
    audio = tones.tone_bursts(3.0, [(1.0, ONE_HZ)])
    events = _run(_run_one(WakeService([models.one], verify=judge_verifier(client)), audio))
    assert _types(events) == [expected]


# --------------------------------------------------------------------------- real model

def test_protocol_round_trip_with_the_trained_model(exported, tiny_dataset):
    wake_word = json.loads((exported / "manifest.json").read_text())["wake_word"]
    positive = sorted((tiny_dataset / "eval" / "espeak" / "positive").glob("*.wav"))[0]
    audio = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), read_wav(positive),
                            np.zeros(SAMPLE_RATE, np.float32)])

    async def scenario():
        async with _served(WakeService([exported])) as port:
            async with AsyncTcpClient("127.0.0.1", port) as client:
                await client.write_event(Describe().event())
                info = Info.from_event(await client.read_event())
            return info, await _detect(port, audio)

    info, events = _run(scenario())
    assert [m.name for m in info.wake[0].models] == [wake_word]
    assert events and set(_types(events)) <= {"detection", "not-detected"}
    if _types(events) != ["not-detected"]:  # the tiny model may miss; the protocol may not
        for detection in _detections(events):
            assert detection.name == wake_word
            assert 0 < detection.timestamp <= 1000 * audio.size / SAMPLE_RATE


# --------------------------------------------------------------------------- CLI

def test_cli_serves_until_sigterm(models):
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sentry.cli", "wyoming", "--uri", f"tcp://127.0.0.1:{port}",
         "--model-dir", str(models.one), "--model-dir", str(models.two)],
        stderr=subprocess.PIPE, text=True, env=env)
    try:
        banner = _line_with(proc, "serving")  # printed once the port is bound
        assert "serving 'tone one', 'tone two'" in banner, banner
        events = _run(_detect(port, tones.tone_bursts(3.0, [(1.0, TWO_HZ)])))
        assert [d.name for d in _detections(events)] == [TWO]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err


def _line_with(proc: subprocess.Popen, text: str) -> str:
    """The first stderr line containing `text`, waiting at most TIMEOUT_S in all."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], deadline - time.monotonic())
        line = proc.stderr.readline() if ready else ""
        if not line or text in line:
            return line
    return ""


def test_cli_help():
    result = CliRunner().invoke(cli, ["wyoming", "--help"])
    assert result.exit_code == 0
    for option in ("--uri", "--model-dir", "--threshold", "--trigger-level", "--refractory-s",
                   "--judge-url"):
        assert option in result.output


def test_cli_port_in_use_is_a_user_error(models):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["wyoming", "--uri", f"tcp://127.0.0.1:{port}",
                                          "--model-dir", str(models.one)])
    assert result.exit_code == 1
    assert "cannot listen on" in result.output and "Traceback" not in result.output


def test_cli_rejects_two_folders_with_one_wake_word(models):
    result = CliRunner().invoke(cli, ["wyoming", "--model-dir", str(models.one),
                                      "--model-dir", str(models.one)])
    assert result.exit_code == 1 and "serve one model per wake word" in result.output


def test_cli_rejects_a_judge_for_several_models(models):
    result = CliRunner().invoke(cli, ["wyoming", "--model-dir", str(models.one), "--model-dir",
                                      str(models.two), "--judge-url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "takes one --model;" in result.output


def test_cli_without_the_wyoming_package_says_what_to_install(models, monkeypatch):
    for name in [n for n in sys.modules if n == "wyoming" or n.startswith("wyoming.")]:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import wyoming...` fail
    monkeypatch.delitem(sys.modules, "sentry.wyoming")
    result = CliRunner().invoke(cli, ["wyoming", "--model-dir", str(models.one)])
    assert result.exit_code == 1
    assert 'pip install "hark-wakeword[wyoming]"' in result.output and "Traceback" not in result.output


def test_cli_with_a_too_old_wyoming_says_what_to_upgrade(models, monkeypatch):
    import wyoming

    monkeypatch.setattr(wyoming, "__version__", "1.9.0")  # its converter misreads 8-bit audio
    monkeypatch.delitem(sys.modules, "sentry.wyoming")
    result = CliRunner().invoke(cli, ["wyoming", "--model-dir", str(models.one)])
    assert result.exit_code == 1
    assert "wyoming 1.9.0 is too old" in result.output and "wyoming>=1.10.1" in result.output
