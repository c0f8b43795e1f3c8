"""trainer.audio: loading with resampling/downmixing, problem reports, clip-free atomic writes."""

import numpy as np
import pytest
import soundfile as sf

from sentry.constants import SAMPLE_RATE
from trainer.audio import (DOWNMIXED, EMPTY, RESAMPLED, SILENT, UNREADABLE, inspect_audio,
                           load_audio, write_wav)
from trainer.errors import TrainerError


def tone(freq=440.0, seconds=1.0, rate=SAMPLE_RATE, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(audio, rate=SAMPLE_RATE):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.argmax(spectrum) * rate / len(audio)


def test_stereo_44k_is_resampled_and_downmixed(tmp_path):
    path = tmp_path / "stereo.wav"
    left = tone(1000.0, 1.0, 44_100)
    sf.write(path, np.stack([left, left * 0.5], axis=1), 44_100)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SAMPLE_RATE) <= 2
    assert abs(dominant_hz(audio) - 1000.0) < 2.0
    assert np.max(np.abs(audio)) == pytest.approx(0.375, abs=0.02)  # mean of 0.5 and 0.25
    check = inspect_audio(path)
    assert check.usable and set(check.fixes) == {RESAMPLED, DOWNMIXED}
    assert (check.sample_rate, check.channels) == (44_100, 2)


def test_bad_files_are_reported_with_their_name(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x00" * 7)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.full(SAMPLE_RATE, 1e-4, np.float32), SAMPLE_RATE)  # -80 dBFS
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SAMPLE_RATE)
    for path, kind in ((garbage, UNREADABLE), (silent, SILENT), (empty, EMPTY)):
        check = inspect_audio(path)
        assert check.problem == kind and str(path) in check.detail
    with pytest.raises(TrainerError, match="garbage.wav"):
        load_audio(garbage)
    with pytest.raises(TrainerError, match="empty.wav"):
        load_audio(empty)


def test_write_wav_scales_instead_of_clipping(tmp_path):
    loud = tone(amp=3.0)
    path = write_wav(tmp_path / "sub" / "loud.wav", loud)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    back = load_audio(path)
    # Scaled, not clipped: the waveform keeps its sine shape (no flat tops).
    assert np.max(np.abs(back)) <= 1.0
    np.testing.assert_allclose(back / np.abs(back).max(), loud / np.abs(loud).max(), atol=1e-3)
    assert [p.name for p in path.parent.iterdir()] == ["loud.wav"]  # no temp file left behind
    with pytest.raises(TrainerError, match="NaN"):
        write_wav(tmp_path / "nan.wav", np.array([0.0, np.nan], np.float32))


def test_other_rates_go_through_the_devices_resampler(tmp_path):
    """Evaluation, synthesis and the studio resample exactly as the sentry does (the
    scipy resampler the trainer had differed from it by up to 0.04 on speech)."""
    from sentry.audio import read_wav
    path = tmp_path / "espeak_rate.wav"
    sf.write(path, tone(700.0, 0.7, 22_050) + tone(3900.0, 0.7, 22_050, 0.2), 22_050, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(path), read_wav(path))


def test_a_header_outside_the_decode_budget_is_unreadable_not_a_crash(tmp_path):
    import struct
    fmt = struct.pack("<HHIIHH", 1, 1, 1, 2, 2, 16)  # 10 KB claiming 1 Hz: 80 M samples at 16 kHz
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 10_000)
    path = tmp_path / "one_hz.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body) + 10_000) + body + bytes(10_000))
    with pytest.raises(TrainerError, match=r"one_hz\.wav: the header claims a sample rate of 1 Hz"):
        load_audio(path)
    assert inspect_audio(path).problem == UNREADABLE
    flac = tmp_path / "one_hz.flac"
    sf.write(flac, tone(seconds=0.5), SAMPLE_RATE, format="FLAC")
    assert load_audio(flac).size == SAMPLE_RATE // 2


def test_wav_encodings_the_sentry_does_not_read_still_load(tmp_path):
    path = tmp_path / "phone.wav"
    sf.write(path, tone(seconds=0.5, rate=8_000), 8_000, subtype="ULAW")
    audio = load_audio(path)
    assert audio.size == SAMPLE_RATE // 2 and abs(dominant_hz(audio) - 440.0) < 4.0


def test_write_wav_is_the_one_16_bit_writer(tmp_path):
    from sentry.wav import encode_wav
    audio = tone(amp=0.8)
    assert write_wav(tmp_path / "one.wav", audio).read_bytes() == encode_wav(audio)
