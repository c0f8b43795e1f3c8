"""`hark-sentry` (sentry.cli) and the listen loop (sentry.daemon)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import sentry
from sentry.cli import cli
from sentry.constants import SAMPLE_RATE
from sentry.daemon import Listener, StdinSource
from sentry.errors import SentryError

REPO_ROOT = Path(sentry.__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT_S = 30


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def _pcm_bytes(audio: np.ndarray) -> bytes:
    return np.round(np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


# ------------------------------------------------------------------ help

@pytest.mark.parametrize("args", [[], ["scan"], ["listen"]])
def test_help_works_on_every_command(runner, args):
    result = runner.invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    assert "--model" in result.output or not args


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and sentry.__version__ in result.output


# ------------------------------------------------------------------ scan

def test_scan_prints_each_detection_and_a_summary(runner, model_dir, burst_wav):
    result = runner.invoke(cli, ["scan", str(burst_wav), "--model", str(model_dir)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and "test tone" in lines[0]
    assert abs(float(lines[0].split()[0]) - 1.0) <= 0.1
    assert "1 detection(s) of 'test tone' in 4.0 s" in result.stderr


def test_scan_json_lines(runner, model_dir, tmp_path, bursts):
    import soundfile as sf
    wav = tmp_path / "two.wav"
    sf.write(wav, bursts(8.0, [1.0, 5.0]), SAMPLE_RATE, subtype="PCM_16")
    result = runner.invoke(cli, ["scan", str(wav), "--model", str(model_dir), "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [set(r) for r in records] == [{"time_s", "score", "wake_word"}] * 2
    assert [round(r["time_s"]) for r in records] == [1, 5]
    assert all(0.5 <= r["score"] <= 1 for r in records)


def test_scan_quiet_file_reports_nothing(runner, model_dir, quiet_wav):
    result = runner.invoke(cli, ["scan", str(quiet_wav), "--model", str(model_dir), "--json"])
    assert result.exit_code == 0 and result.stdout == ""
    assert "0 detection(s)" in result.stderr


def test_scan_threshold_and_int8_options_reach_the_detector(runner, model_dir, burst_wav):
    strict = runner.invoke(cli, ["scan", str(burst_wav), "--model", str(model_dir),
                                 "--threshold", "1.0"])
    assert strict.exit_code == 0 and strict.stdout == "" and "threshold 1" in strict.stderr
    int8 = runner.invoke(cli, ["scan", str(burst_wav), "--model", str(model_dir), "--int8", "--json"])
    plain = runner.invoke(cli, ["scan", str(burst_wav), "--model", str(model_dir), "--json"])
    assert int8.exit_code == 0
    # The fixture's int8 stand-in scores lower, so it fires later or not at all.
    assert int8.stdout != plain.stdout


@pytest.mark.parametrize("make_args,message", [
    (lambda m, tmp: ["scan", str(tmp / "missing.wav"), "--model", str(m)], "missing.wav: no such audio file"),
    (lambda m, tmp: ["scan", str(tmp / "x.wav"), "--model", str(tmp)], "no manifest"),
])
def test_scan_user_errors_exit_1_with_a_message(runner, model_dir, tmp_path, make_args, message):
    (tmp_path / "x.wav").write_bytes(b"")
    result = runner.invoke(cli, make_args(model_dir, tmp_path))
    assert result.exit_code == 1
    assert message in result.stderr and "Error:" in result.stderr
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, SentryError)  # converted, not leaked


def test_scan_rejects_out_of_range_threshold(runner, model_dir, burst_wav):
    result = runner.invoke(cli, ["scan", str(burst_wav), "--model", str(model_dir),
                                 "--threshold", "1.5"])
    assert result.exit_code == 2 and "--threshold" in result.stderr


# ------------------------------------------------------------------ listen

def test_listen_stdin_raw_prints_detections_and_exits_at_eof(runner, model_dir, bursts):
    pcm = _pcm_bytes(bursts(6.0, [1.0, 4.0]))
    result = runner.invoke(cli, ["listen", "--model", str(model_dir), "--stdin-raw", "--json"],
                           input=pcm)
    assert result.exit_code == 0, result.output
    times = [json.loads(line)["time_s"] for line in result.stdout.splitlines()]
    assert [round(t) for t in times] == [1, 4]
    assert "stopped after 6.0 s of audio: 2 detection(s), 0 dropped" in result.stderr


def test_listen_resamples_other_input_rates(runner, model_dir, bursts):
    pcm = _pcm_bytes(bursts(4.0, [2.0], rate=44_100))
    result = runner.invoke(cli, ["listen", "--model", str(model_dir), "--stdin-raw",
                                 "--rate", "44100", "--json"], input=pcm)
    assert result.exit_code == 0, result.output
    times = [json.loads(line)["time_s"] for line in result.stdout.splitlines()]
    assert len(times) == 1 and abs(times[0] - 2.0) <= 0.1


def test_listen_without_sounddevice_says_what_to_install(runner, model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # makes `import sounddevice` fail
    result = runner.invoke(cli, ["listen", "--model", str(model_dir)])
    assert result.exit_code == 1
    assert "pip install sounddevice" in result.stderr and "--stdin-raw" in result.stderr


def test_listen_device_with_stdin_is_a_usage_error(runner, model_dir):
    result = runner.invoke(cli, ["listen", "--model", str(model_dir), "--stdin-raw", "--device", "1"])
    assert result.exit_code == 2 and "--device" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_listen_stops_cleanly_on_signals(model_dir, bursts, signum):
    """A real process reading a pipe that stays open: the signal alone must end it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sentry.cli", "listen", "--model", str(model_dir), "--stdin-raw",
         "--json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        assert b"listening for 'test tone'" in proc.stderr.readline()
        proc.stdin.write(_pcm_bytes(bursts(3.0, [1.0])))
        proc.stdin.flush()
        first = proc.stdout.readline()  # the detection arrives while the pipe is still open
        assert json.loads(first)["wake_word"] == "test tone"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert b"stopped after" in err and b"1 detection(s)" in err


class _GatedDetector:
    """Stands in for a detector that is slower than capture: blocks until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.chunks = 0

    def process(self, chunk):
        self.release.wait(timeout=SUBPROCESS_TIMEOUT_S)
        self.chunks += 1
        return []


class _BurstSource:
    """A live source that delivers all its chunks at once, then lets the detector go."""

    rate = SAMPLE_RATE
    live = True

    def __init__(self, n_chunks: int, gate: threading.Event) -> None:
        self.n_chunks, self.gate = n_chunks, gate

    def chunks(self):
        for _ in range(self.n_chunks):
            yield np.zeros(1280, np.int16)
        self.gate.set()


def test_listener_drops_and_counts_chunks_when_scoring_falls_behind(caplog):
    detector = _GatedDetector()
    listener = Listener(detector, _BurstSource(20, detector.release), lambda d: None,
                        queue_chunks=2)
    with caplog.at_level("WARNING", logger="sentry.daemon"):
        stats = listener.run()
    # The queue holds 2 and the scorer at most 1 more; everything else was dropped.
    assert stats.dropped_chunks >= 17
    assert stats.dropped_chunks + detector.chunks == 20 == stats.dropped_chunks + stats.chunks
    assert "chunk(s) dropped" in caplog.text


def test_listener_waits_for_a_source_that_is_not_live():
    detector = _GatedDetector()
    source = _BurstSource(20, detector.release)
    source.live = False  # like a pipe: nothing is lost by waiting
    threading.Timer(0.3, detector.release.set).start()  # capture must block until then
    stats = Listener(detector, source, lambda d: None, queue_chunks=2).run()
    assert stats.dropped_chunks == 0 and detector.chunks == stats.chunks == 20


def test_listener_reports_capture_failures_as_sentry_errors(model_dir):
    class Broken:
        rate = SAMPLE_RATE
        live = True

        def chunks(self):
            yield np.zeros(1280, np.int16)
            raise SentryError("cannot open microphone 7")

    detector = _GatedDetector()
    detector.release.set()
    with pytest.raises(SentryError, match="microphone 7"):
        Listener(detector, Broken(), lambda d: None).run()
    assert detector.chunks == 1


class _TrickleStream(io.BytesIO):
    """A pipe that hands over at most 3 bytes per read, splitting int16 samples."""

    def read(self, size=-1):
        return super().read(min(size, 3))


def test_stdin_source_keeps_odd_bytes_for_the_next_read():
    pcm = np.arange(-5, 6, dtype="<i2").tobytes() + b"\x7f"  # 11 samples and a stray byte
    chunks = list(StdinSource(_TrickleStream(pcm)).chunks())
    assert all(len(c) % 2 == 0 for c in chunks) and len(chunks) > 1
    assert b"".join(chunks) == pcm[:-1]
