"""trainer.synth.dectalk: the second training engine, run for real where it is installed."""

import numpy as np
import pytest

from sentry.constants import SAMPLE_RATE
from trainer.errors import TrainerError
from trainer.synth import dectalk
from trainer.synth.build import SynthConfig, synthesize_dataset

needs_dectalk = pytest.mark.skipif(not dectalk.available(),
                                   reason="DECtalk not installed (scripts/install_dectalk.sh)")


@needs_dectalk
def test_voices_speak_differently(f0):
    voices = dectalk.list_voices()
    assert len(voices) == len(dectalk.SPEAKERS) * len(dectalk.HEAD_SIZES) == len(set(voices))
    male = dectalk.synthesize("hey jarvis", "dectalk:h:100", np.random.default_rng(0))
    female = dectalk.synthesize("hey jarvis", "dectalk:u:100", np.random.default_rng(0))
    for audio in (male, female):
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert 0.4 * SAMPLE_RATE < len(audio) < 4 * SAMPLE_RATE
        assert np.max(np.abs(audio)) > 0.05

    assert f0(female) > 1.4 * f0(male)
    # The clip's prosody comes from the generator: same seed, same audio; another seed differs.
    again = dectalk.synthesize("hey jarvis", "dectalk:u:100", np.random.default_rng(0))
    other = dectalk.synthesize("hey jarvis", "dectalk:u:100", np.random.default_rng(1))
    assert np.array_equal(again, female) and not np.array_equal(other, female)


@needs_dectalk
def test_bad_voice_and_text():
    rng = np.random.default_rng(0)
    for voice in ("dectalk:z:100", "dectalk:b", "dectalk:b:big"):
        with pytest.raises(TrainerError, match="bad DECtalk voice"):
            dectalk.synthesize("hello", voice, rng)
    with pytest.raises(TrainerError, match="empty text"):
        dectalk.synthesize(" [ ] ", "dectalk:b:100", rng)
    # Brackets would open DECtalk commands (e.g. [:nb] switches to another speaker); they
    # become spaces, so the text can never change the voice.
    bracketed = dectalk.synthesize("hello [:nb] there", "dectalk:p:100", np.random.default_rng(2))
    spaced = dectalk.synthesize("hello  :nb  there", "dectalk:p:100", np.random.default_rng(2))
    assert np.array_equal(bracketed, spaced)


def test_missing_install_falls_back_to_espeak(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(dectalk.ENV_DIR, str(tmp_path / "nowhere"))
    dectalk.available.cache_clear()
    try:
        assert dectalk.list_voices() == []
        small = SynthConfig(seed=1, n_positive=4, n_negative_speech=2, n_neighbour=2,
                            background_files=1, background_seconds=1.0, engines=("espeak", "dectalk"))
        data = synthesize_dataset("hey jarvis", tmp_path / "data", small, progress=False)
        assert {c.engine for c in data.clips} == {"espeak", "synthetic"}
        assert "DECtalk is not installed" in capsys.readouterr().err
    finally:
        dectalk.available.cache_clear()


def test_engines_setting_is_checked():
    with pytest.raises(TrainerError, match="engines"):
        SynthConfig(engines=("dectalk",)).check()
    with pytest.raises(TrainerError, match="engines"):
        SynthConfig(engines=("espeak", "sam")).check()
    with pytest.raises(TrainerError, match="dectalk_share"):
        SynthConfig(dectalk_share=1.5).check()
    SynthConfig(engines=("espeak",)).check()


@needs_dectalk
def test_dectalk_share_sets_the_mix(tmp_path):
    small = SynthConfig(seed=2, n_positive=40, n_negative_speech=0, n_neighbour=0,
                        background_files=0, dectalk_share=0.5, engines=("espeak", "dectalk"))
    data = synthesize_dataset("hey jarvis", tmp_path / "half", small, progress=False)
    engines = [c.engine for c in data.select("positive")]
    assert 10 <= engines.count("dectalk") <= 30 and engines.count("espeak") + engines.count("dectalk") == 40
    none = synthesize_dataset("hey jarvis", tmp_path / "none", SynthConfig(
        seed=2, n_positive=10, n_negative_speech=0, n_neighbour=0, background_files=0,
        dectalk_share=0.0, engines=("espeak", "dectalk")), progress=False)
    assert {c.engine for c in none.clips} == {"espeak"}
