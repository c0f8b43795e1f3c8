"""sentry.audio: WAV decoding, chunk conversion and resampling, checked against
soundfile (an independent decoder) and against analytic signals."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf

from sentry.audio import StreamResampler, read_wav, resample, to_float32
from sentry.constants import SAMPLE_RATE
from sentry.errors import SentryError


def _tone(freq_hz: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _peak_hz(audio: np.ndarray, rate: int) -> float:
    """Frequency of the strongest component, refined by parabolic interpolation."""
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1:k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / audio.size


# ------------------------------------------------------------------ decoding

@pytest.mark.parametrize("fmt,subtype,tolerance", [
    ("WAV", "PCM_U8", 1 / 100), ("WAV", "PCM_16", 1e-4), ("WAV", "PCM_24", 1e-6),
    ("WAV", "PCM_32", 1e-6), ("WAV", "FLOAT", 1e-7), ("WAV", "DOUBLE", 1e-7),
    ("WAVEX", "PCM_16", 1e-4), ("WAVEX", "PCM_24", 1e-6), ("WAVEX", "FLOAT", 1e-7),
])
def test_read_wav_decodes_every_supported_encoding(tmp_path, fmt, subtype, tolerance):
    rng = np.random.default_rng(3)
    signal = np.clip(rng.normal(0, 0.3, SAMPLE_RATE // 4), -0.99, 0.99).astype(np.float32)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, signal, SAMPLE_RATE, format=fmt, subtype=subtype)
    expected, _ = sf.read(path, dtype="float32")

    audio = read_wav(path)

    assert audio.dtype == np.float32 and audio.shape == signal.shape
    np.testing.assert_allclose(audio, expected, atol=tolerance)
    np.testing.assert_allclose(audio, signal, atol=2 / 256 if subtype == "PCM_U8" else 1e-4)


def test_read_wav_downmixes_channels_by_mean(tmp_path):
    left, right = _tone(440, SAMPLE_RATE, 0.2), _tone(1000, SAMPLE_RATE, 0.2, 0.25)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(read_wav(path), (left + right) / 2, atol=1e-7)


def test_read_wav_skips_unknown_chunks_with_odd_sizes(tmp_path):
    """A float WAV written by hand with a 3-byte LIST chunk (padded to 4) before 'data'."""
    signal = _tone(300, SAMPLE_RATE, 0.1)
    data = signal.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, SAMPLE_RATE, SAMPLE_RATE * 4, 4, 32)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"LIST" + struct.pack("<I", 3) + b"abc\x00"
            + b"data" + struct.pack("<I", len(data)) + data)
    path = tmp_path / "hand.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    np.testing.assert_array_equal(read_wav(path), signal)


def test_read_wav_resamples_44k1_tone_to_the_same_frequency(tmp_path):
    path = tmp_path / "cd.wav"
    sf.write(path, _tone(1000, 44_100, 1.0), 44_100, subtype="PCM_16")
    audio = read_wav(path)
    assert abs(audio.size - SAMPLE_RATE) <= 1
    assert abs(_peak_hz(audio, SAMPLE_RATE) - 1000) / 1000 < 0.01
    # Amplitude is kept (away from the edges, where the filter sees the silence around).
    assert np.sqrt(np.mean(audio[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


# ------------------------------------------------------------------ errors

def test_read_wav_missing_file_names_it(tmp_path):
    with pytest.raises(SentryError, match="nothere.wav: no such audio file"):
        read_wav(tmp_path / "nothere.wav")


def test_read_wav_rejects_non_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is text, not audio")
    with pytest.raises(SentryError, match=r"notes\.wav: not a WAV file"):
        read_wav(path)


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_read_wav_rejects_truncated_file(tmp_path, subtype):
    path = tmp_path / "cut.wav"
    sf.write(path, _tone(440, SAMPLE_RATE, 0.5), SAMPLE_RATE, subtype=subtype)
    blob = path.read_bytes()
    path.write_bytes(blob[:len(blob) // 2])
    with pytest.raises(SentryError, match=r"cut\.wav: truncated"):
        read_wav(path)


def test_read_wav_rejects_header_only_file(tmp_path):
    path = tmp_path / "stub.wav"
    path.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(SentryError, match=r"stub\.wav: truncated WAV, no 'fmt ' chunk"):
        read_wav(path)


def test_read_wav_rejects_unsupported_encoding(tmp_path):
    path = tmp_path / "law.wav"
    sf.write(path, _tone(440, SAMPLE_RATE, 0.1), SAMPLE_RATE, subtype="ULAW")
    with pytest.raises(SentryError, match=r"law\.wav: unsupported WAV encoding \(format tag 0x0007"):
        read_wav(path)


# ------------------------------------------------------------------ chunks

def test_to_float32_accepts_int16_float_and_bytes():
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    expected = np.array([0.0, 0.5, -1.0, 32767 / 32768], dtype=np.float32)
    np.testing.assert_array_equal(to_float32(pcm), expected)
    np.testing.assert_array_equal(to_float32(pcm.astype("<i2").tobytes()), expected)
    np.testing.assert_array_equal(to_float32(pcm[:, None]), expected)
    floats = to_float32(expected.astype(np.float64))
    assert floats.dtype == np.float32
    np.testing.assert_array_equal(floats, expected)


@pytest.mark.parametrize("bad,message", [
    (b"\x00\x01\x02", "not a whole number of int16 samples"),
    (np.zeros((4, 2), np.int16), "must be mono"),
    (np.zeros(4, np.int32), "dtype int32"),
])
def test_to_float32_rejects_what_it_cannot_interpret(bad, message):
    with pytest.raises(SentryError, match=message):
        to_float32(bad)


# ------------------------------------------------------------------ resampling

@pytest.mark.parametrize("rate_in", [8_000, 22_050, 44_100, 48_000])
def test_resample_keeps_tone_frequency_and_length(rate_in):
    out = resample(_tone(1000, rate_in, 1.0), rate_in)
    assert out.size == SAMPLE_RATE
    assert abs(_peak_hz(out[2000:-2000], SAMPLE_RATE) - 1000) < 10


def test_resample_removes_content_above_the_new_nyquist():
    """A 12 kHz tone at 48 kHz has no place at 16 kHz; it must not alias to 4 kHz."""
    out = resample(_tone(12_000, 48_000, 0.5), 48_000)
    assert np.sqrt(np.mean(out[500:-500] ** 2)) < 1e-3  # -51 dB below the 0.35 RMS input


def test_resample_upsampling_reconstructs_the_waveform():
    out = resample(_tone(1000, 8_000, 0.5), 8_000)
    reference = _tone(1000, SAMPLE_RATE, 0.5)
    np.testing.assert_allclose(out[400:-400], reference[400:-400], atol=1e-3)


def test_stream_resampler_matches_whole_signal_for_any_chunking():
    rng = np.random.default_rng(7)
    signal = rng.normal(0, 0.2, 44_100).astype(np.float32)
    whole = resample(signal, 44_100)
    resampler = StreamResampler(44_100)
    parts, i = [], 0
    while i < signal.size:
        n = int(rng.choice([1, 7, 441, 3000]))
        parts.append(resampler.process(signal[i:i + n]))
        i += n
    parts.append(resampler.flush())
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_resample_same_rate_is_identity():
    signal = _tone(440, SAMPLE_RATE, 0.1)
    np.testing.assert_array_equal(resample(signal, SAMPLE_RATE), signal)
