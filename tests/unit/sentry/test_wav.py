"""sentry.wav: the decode budget checked from the header, odd chunk layouts, the one
16-bit writer; sentry.files: the one atomic write; `hark-sentry scan` on hostile headers."""

from __future__ import annotations

import io
import os
import struct
import wave

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from sentry import files
from sentry.audio import StreamResampler, read_wav, resample
from sentry.cli import cli
from sentry.constants import SAMPLE_RATE
from sentry.errors import SentryError
from sentry.files import atomic_write, write_bytes_atomic
from sentry.wav import (MAX_RATE, MIN_RATE, DecodeBudget, WavError, decode_wav_bytes,
                        encode_wav, read_wav_file)


def wav_header(rate: int, data_size: int, *, channels: int = 1, bits: int = 16, tag: int = 1) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * block) % 2**32, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_size)
    return b"RIFF" + struct.pack("<I", (len(body) + data_size) % 2**32) + body


def noise(samples: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.2, samples).astype(np.float32)


# ------------------------------------------------------------------ the budget

@pytest.mark.parametrize("rate", [1, 7, 7_999, 192_001, 4_000_000_000])
def test_rates_outside_the_range_are_refused_from_the_header(tmp_path, rate):
    """10 KB claiming 1 Hz used to resample to 80 million samples (58.9 s, 1 GB); 4 GHz to none."""
    path = tmp_path / "odd.wav"
    path.write_bytes(wav_header(rate, 10_000) + bytes(10_000))
    with pytest.raises(WavError, match=rf"odd\.wav: the header claims a sample rate of {rate} Hz, "
                                       rf"outside {MIN_RATE}-{MAX_RATE} Hz") as refused:
        read_wav(path)
    assert refused.value.reason == "unsupported_rate"


@pytest.mark.parametrize("rate", [MIN_RATE, 11_025, 44_100, MAX_RATE])
def test_rates_at_and_inside_the_range_are_read(tmp_path, rate):
    path = tmp_path / "ok.wav"
    sf.write(path, noise(rate // 10), rate, subtype="PCM_16")
    assert read_wav(path).size == SAMPLE_RATE // 10


@pytest.mark.parametrize("rate", [1, 4_000_000_000])
def test_scan_refuses_a_hostile_rate_with_a_message_and_exit_1(tmp_path, model_dir, rate):
    path = tmp_path / "hostile.wav"
    path.write_bytes(wav_header(rate, 10_000) + bytes(10_000))
    result = CliRunner().invoke(cli, ["scan", str(path), "--model", str(model_dir)])
    assert result.exit_code == 1, result.output
    assert f"sample rate of {rate} Hz, outside 8000-192000 Hz" in result.output
    assert "Traceback" not in result.output and "detection(s)" not in result.output


def test_listen_refuses_a_raw_rate_outside_the_range(model_dir):
    result = CliRunner().invoke(cli, ["listen", "--stdin-raw", "--rate", "1", "--model", str(model_dir)],
                                input=bytes(3200))
    assert result.exit_code == 2 and "1 is not in the range 8000<=x<=192000" in result.output


def test_duration_channels_bytes_and_samples_are_checked_before_decoding(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, noise(2 * SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")
    limits = {"too_long": DecodeBudget(max_seconds=1.5),
              "too_many_channels": DecodeBudget(max_channels=0),
              "too_big": DecodeBudget(max_bytes=1000)}
    for reason, budget in limits.items():
        with pytest.raises(WavError) as refused:
            read_wav(path, budget)
        assert refused.value.reason == reason and "long.wav" in str(refused.value)
    with pytest.raises(WavError, match=r"2\.0 s at 16000 Hz x 1 channel\(s\) is 32,000 samples"):
        read_wav(path, DecodeBudget(max_samples=31_999))
    assert read_wav(path, DecodeBudget(max_seconds=2.0, max_samples=32_000)).size == 2 * SAMPLE_RATE


def test_a_file_over_max_bytes_is_refused_without_being_read(tmp_path, monkeypatch):
    path = tmp_path / "big.wav"
    sf.write(path, noise(SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")
    monkeypatch.setattr(type(path), "read_bytes", lambda self: pytest.fail("the file was read"))
    with pytest.raises(WavError, match=r"big\.wav: 32,044 bytes is more than the 32,000 accepted"):
        read_wav_file(path, DecodeBudget(max_bytes=32_000))


def test_a_wav_error_is_a_sentry_error():
    assert issubclass(WavError, SentryError)


# ------------------------------------------------------------------ chunk layouts

def _with_chunk_before_fmt(blob: bytes, chunk: bytes) -> bytes:
    body = blob[12:]
    return b"RIFF" + struct.pack("<I", 4 + len(chunk) + len(body)) + b"WAVE" + chunk + body


@pytest.mark.parametrize("padded", [True, False])
def test_an_odd_sized_chunk_is_skipped_with_or_without_its_pad_byte(tmp_path, padded):
    """Some writers omit the pad byte after an odd-sized chunk; that used to read as
    'no fmt chunk'."""
    signal = noise(4000)
    buffer = io.BytesIO()
    sf.write(buffer, signal, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    chunk = b"LIST" + struct.pack("<I", 3) + b"abc" + (b"\x00" if padded else b"")
    path = tmp_path / "odd_chunk.wav"
    path.write_bytes(_with_chunk_before_fmt(buffer.getvalue()[:44], chunk) + buffer.getvalue()[44:])
    expected, _ = sf.read(io.BytesIO(buffer.getvalue()), dtype="float32")
    np.testing.assert_array_equal(read_wav(path), expected)


def test_a_placeholder_data_size_reads_to_the_end_of_the_file(tmp_path):
    """Streaming writers leave 0xFFFFFFFF (or 0) as the data size; the audio runs to EOF."""
    pcm = np.round(noise(1601) * 32767).astype("<i2")
    for size in (0, 0xFFFFFFFF):
        path = tmp_path / f"stream_{size}.wav"
        path.write_bytes(wav_header(SAMPLE_RATE, size) + pcm.tobytes() + b"\x01")  # + half a frame
        np.testing.assert_array_equal(read_wav(path), pcm.astype(np.float32) / 32768)


def test_decode_gives_the_native_rate_and_the_format(tmp_path):
    stereo = np.stack([noise(4410, 1), noise(4410, 2)], axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, stereo, 44_100, subtype="FLOAT", format="WAV")
    mono, fmt = decode_wav_bytes(buffer.getvalue(), "clip.wav")
    assert (fmt.rate, fmt.channels, fmt.is_float) == (44_100, 2, True)
    np.testing.assert_array_equal(mono, stereo.mean(axis=1, dtype=np.float32))


# ------------------------------------------------------------------ writer

def _stdlib_wav(pcm: np.ndarray, rate: int) -> bytes:
    """What the judge client and the miner wrote before sentry.wav.encode_wav."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.round(np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("rate", [SAMPLE_RATE, 8_000])
def test_encode_wav_writes_the_bytes_of_the_stdlib_writer_and_reads_back(rate):
    audio = np.clip(noise(5000) * 4, -1.5, 1.5)  # some samples beyond full scale: clipped
    blob = encode_wav(audio, rate)
    assert blob == _stdlib_wav(audio, rate)
    back, fmt = decode_wav_bytes(blob, "out.wav")
    assert fmt.rate == rate
    # Written x 32767, read / 32768: within half a step plus the 1/32768 gain difference.
    np.testing.assert_allclose(back, np.clip(audio, -1, 1), atol=1.5 / 32767)


# ------------------------------------------------------------------ resampler

def test_odd_rates_build_only_the_filter_phases_they_use():
    """191999 Hz has 16000 phases of 614 taps (78 MB); a short clip needs a few."""
    resampler = StreamResampler(191_999)
    out = resampler.process(noise(2000))
    assert resampler._table.shape[0] <= out.size + 1
    rng = np.random.default_rng(5)
    signal = noise(40_000, 3)
    parts, i = [], 0
    chunked = StreamResampler(191_999)
    while i < signal.size:
        n = int(rng.choice([13, 999, 5000]))
        parts.append(chunked.process(signal[i:i + n]))
        i += n
    parts.append(chunked.flush())
    np.testing.assert_array_equal(np.concatenate(parts), resample(signal, 191_999))


# ------------------------------------------------------------------ atomic write

def test_atomic_write_replaces_the_file_and_fsyncs_file_and_folder(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_text("old")
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(files.os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_mode), real_fsync(fd)))
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert len(synced) == 2 and os.path.stat.S_ISDIR(synced[1]) and not os.path.stat.S_ISDIR(synced[0])
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_write(target) as handle:
            handle.write(b"half a checkpoint")
            raise OSError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
