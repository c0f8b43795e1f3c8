"""trainer.synth: espeak and held-out engines, warps, texts and backgrounds."""

import shutil

import numpy as np
import pytest
from scipy.signal import lfilter

from sentry.constants import SAMPLE_RATE
from trainer.errors import TrainerError
from trainer.synth.espeak import list_voices, synthesize
from trainer.synth import noise
from trainer.synth.noise import BACKGROUND_KINDS, make_background
from trainer.synth.text import (contains_phrase, normalise_phrase, ordinary_sentences,
                                phonetic_neighbours)
from trainer.synth.warps import (formant_shift, peak_normalize, pitch_shift, random_warp,
                                 spectral_tilt, time_stretch, trim_silence)


def tone(freq, seconds=1.0, amp=0.5):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(audio):
    n = 16 * len(audio)  # zero-padded: 1 Hz bins for a 1 s clip
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), n))
    return np.argmax(spectrum) * SAMPLE_RATE / n


def band_db(audio, lo, hi):
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    return 10 * np.log10(spectrum[(freqs >= lo) & (freqs < hi)].sum())


def test_voice_list_has_english_variants():
    voices = list_voices()
    assert 90 <= len(voices) <= 120 and len(set(voices)) == len(voices)
    assert {"en-us+m3", "en+f2", "en-gb-scotland+klatt"} <= set(voices)


def test_espeak_speaks_and_voices_differ():
    a = synthesize("hey jarvis turn on the light", "en-us+m3")
    b = synthesize("hey jarvis turn on the light", "en-gb-scotland+f2")
    for audio in (a, b):
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert 0.8 * SAMPLE_RATE < len(audio) < 4 * SAMPLE_RATE  # ~1.5 s of speech at 16 kHz
        assert np.max(np.abs(audio)) > 0.1
    # A female variant sits higher: more energy in 150-300 Hz relative to 60-150 Hz than a male.
    assert (band_db(b, 150, 300) - band_db(b, 60, 150)) > (band_db(a, 150, 300) - band_db(a, 60, 150))
    slow = synthesize("hey jarvis turn on the light", "en-us+m3", rate_wpm=100)
    assert len(slow) > 1.4 * len(a)


def test_espeak_rejects_bad_input():
    for voice in ("xx-nowhere", "en-us+nobody"):  # espeak itself ignores unknown variants
        with pytest.raises(TrainerError, match="voice"):
            synthesize("hello", voice)
    with pytest.raises(TrainerError, match="rate_wpm"):
        synthesize("hello", "en-us+m3", rate_wpm=1000)
    with pytest.raises(TrainerError, match="empty"):
        synthesize("   ", "en-us+m3")


@pytest.mark.skipif(shutil.which("flite") is None or shutil.which("text2wave") is None,
                    reason="flite/festival not installed (apt-get install flite festival)")
def test_heldout_engines_speak():
    from trainer.synth.heldout import list_heldout_voices, synthesize_heldout
    voices = list_heldout_voices()
    assert "flite:slt" in voices and "flite:awb_time" not in voices
    assert any(v.startswith("festival:") for v in voices)
    festival = next(v for v in voices if v.startswith("festival:"))
    for voice in ("flite:slt", festival):
        normal = synthesize_heldout("hey jarvis", voice)
        slow = synthesize_heldout("hey jarvis", voice, stretch=1.5)
        assert np.max(np.abs(normal)) > 0.05 and normal.dtype == np.float32
        assert len(slow) > 1.2 * len(normal)
    with pytest.raises(TrainerError, match="not installed"):
        synthesize_heldout("hello", "flite:nobody")


@pytest.mark.parametrize("semitones", [2.0, -3.0])
def test_pitch_shift_moves_a_tone_and_keeps_length(semitones):
    shifted = pitch_shift(tone(440.0), semitones)
    assert abs(len(shifted) - SAMPLE_RATE) <= 0.01 * SAMPLE_RATE
    assert dominant_hz(shifted) == pytest.approx(440.0 * 2 ** (semitones / 12), rel=0.005)


def test_tempo_change_keeps_pitch():
    for rate in (0.8, 1.25):
        out = time_stretch(tone(440.0), rate)
        assert len(out) == pytest.approx(SAMPLE_RATE / rate, rel=0.01)
        assert dominant_hz(out) == pytest.approx(440.0, rel=0.005)
        # WSOLA keeps the waveform continuous: no dips where segments overlap.
        middle = out[2000:-2000]
        assert np.max(np.abs(middle)) == pytest.approx(0.5, rel=0.05)


def test_formant_shift_moves_envelope_not_pitch():
    # A 125 Hz pulse train through one resonance at 1 kHz: a single "formant" over harmonics.
    pulses = np.zeros(SAMPLE_RATE)
    pulses[:: SAMPLE_RATE // 125] = 1.0
    r, centre = 0.97, 1000.0
    vowel = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * centre / SAMPLE_RATE), r * r], pulses)
    vowel = (vowel / np.abs(vowel).max()).astype(np.float32)
    for ratio, (lo, hi) in ((1.2, (1100, 1300)), (0.85, (740, 900))):
        out = formant_shift(vowel, ratio)
        assert len(out) == len(vowel)
        body = out[2000:-2000] * np.hanning(len(out) - 4000)
        spectrum = np.abs(np.fft.rfft(body))
        freqs = np.fft.rfftfreq(len(body), 1 / SAMPLE_RATE)
        assert lo <= freqs[np.argmax(spectrum)] <= hi  # the resonance moved with the ratio
        at = lambda hz: spectrum[np.argmin(np.abs(freqs - hz))]  # noqa: E731
        # Pitch kept: energy still sits on the 125 Hz harmonics, not between them.
        on = np.median([at(125 * k) for k in range(2, 30)])
        off = np.median([at(125 * k + 62.5) for k in range(2, 30)])
        assert on > 30 * off


def test_spectral_tilt_slope_in_db_per_octave():
    both = tone(1000.0) + tone(2000.0)
    out = spectral_tilt(both, -6.0)
    assert band_db(out, 1990, 2010) - band_db(out, 990, 1010) == pytest.approx(-6.0, abs=0.2)


def test_random_warp_is_seeded_and_peak_safe():
    speech = synthesize("good morning", "en+f2")
    a = random_warp(speech, np.random.default_rng(7), 1.0)
    b = random_warp(speech, np.random.default_rng(7), 1.0)
    c = random_warp(speech, np.random.default_rng(8), 1.0)
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.allclose(a, c)
    assert np.max(np.abs(a)) == pytest.approx(0.9, abs=1e-4)
    assert np.max(np.abs(peak_normalize(tone(440.0, amp=5.0)))) == pytest.approx(0.9, abs=1e-4)


def test_trim_silence_keeps_margin():
    pad = np.zeros(SAMPLE_RATE, np.float32)
    trimmed = trim_silence(np.concatenate([pad, tone(300.0, 0.5), pad]), margin_s=0.15)
    assert len(trimmed) == pytest.approx(0.8 * SAMPLE_RATE, abs=0.02 * SAMPLE_RATE)


def test_normalise_phrase():
    assert normalise_phrase("  Hey, JARVIS! ") == "hey jarvis"
    for bad in ("", "   ", "123 !!"):
        with pytest.raises(TrainerError, match="no words"):
            normalise_phrase(bad)


@pytest.mark.parametrize("phrase", ["hey jarvis", "computer", "okay nabu"])
def test_neighbours_are_close_but_never_the_phrase(phrase):
    out = phonetic_neighbours(phrase.upper() + "!", np.random.default_rng(0), 300)
    assert len(out) == 300
    assert not any(contains_phrase(text, phrase) for text in out)
    words = phrase.split()
    # Every phrase word is represented: kept in a partial, or swapped for a sound-alike.
    assert all(any(w in text.split() for text in out) for w in words) or len(words) == 1
    if phrase == "hey jarvis":
        assert {"hey", "jarvis", "hey jar"} <= set(out)
        more = set(phonetic_neighbours(phrase, np.random.default_rng(1), 2000))
        assert {"hey marvin", "marvin", "jarvik"} <= more
    if phrase == "computer":
        assert "commuter" in out


def test_ordinary_sentences_avoid_the_phrase():
    out = ordinary_sentences(np.random.default_rng(0), 300, "the dog")
    assert len(out) == 300 and len(set(out)) > 200
    assert not any(contains_phrase(s, "the dog") for s in out)
    assert any("dog" in s for s in out) or any("the" in s.split() for s in out)


@pytest.mark.parametrize("kind", [k for k in BACKGROUND_KINDS if k != "babble"])
def test_backgrounds_are_seeded_and_levelled(kind):
    a = make_background(kind, 2.0, np.random.default_rng(3))
    b = make_background(kind, 2.0, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert len(a) == 2 * SAMPLE_RATE and a.dtype == np.float32
    assert 20 * np.log10(np.sqrt(np.mean(a ** 2))) == pytest.approx(-20.0, abs=0.1)


def test_babble_is_speech_like_and_noise_colours_differ():
    babble = make_background("babble", 3.0, np.random.default_rng(0), voices=["en-us+m3", "en+f2"])
    assert np.max(np.abs(babble)) < 1.0
    # Babble is bursty (syllables): its 50 ms energy varies far more than white noise's.
    frames = lambda x: np.sqrt(np.mean(x[: len(x) // 800 * 800].reshape(-1, 800) ** 2, axis=1))  # noqa: E731
    white = make_background("white", 3.0, np.random.default_rng(0))
    assert np.std(frames(babble)) > 5 * np.std(frames(white))
    pink = make_background("pink", 3.0, np.random.default_rng(0))
    brown = make_background("brown", 3.0, np.random.default_rng(0))
    assert band_db(white, 4000, 8000) > band_db(pink, 4000, 8000) > band_db(brown, 4000, 8000)
    with pytest.raises(TrainerError, match="unknown background"):
        make_background("jazz", 1.0, np.random.default_rng(0))


def test_noise_longer_than_one_fft_chunk_keeps_its_length_level_and_colour(monkeypatch):
    # Long eval-stream floors are coloured chunk by chunk; a small chunk makes that cheap here.
    whole = make_background("pink", 3.0, np.random.default_rng(0))
    monkeypatch.setattr(noise, "COLOURED_CHUNK", 4096)
    pink = make_background("pink", 3.0, np.random.default_rng(0))
    assert len(pink) == 3 * SAMPLE_RATE
    assert 20 * np.log10(np.sqrt(np.mean(pink ** 2))) == pytest.approx(-20.0, abs=0.1)
    assert band_db(pink, 4000, 8000) == pytest.approx(band_db(whole, 4000, 8000), abs=1.5)
