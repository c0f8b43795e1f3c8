"""trainer.synth.pico: the third training engine (SVOX Pico), run for real where installed."""

import numpy as np
import pytest
from click.testing import CliRunner

from sentry.constants import SAMPLE_RATE
from trainer.cli import main
from trainer.errors import TrainerError
from trainer.synth import build, pico
from trainer.synth.build import SynthConfig, synthesize_dataset

needs_pico = pytest.mark.skipif(not pico.available(), reason="SVOX Pico not installed (hark-wakeword[pico])")
SMALL = {"n_negative_speech": 0, "n_neighbour": 0, "background_files": 0}


@needs_pico
def test_voices_speak_with_pitch_and_rate_from_the_generator(monkeypatch, f0):
    assert pico.list_voices() == ["pico:en-US", "pico:en-GB"]
    for voice in pico.list_voices():
        audio = pico.synthesize("hey jarvis", voice, np.random.default_rng(0))
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert 0.4 * SAMPLE_RATE < len(audio) < 3 * SAMPLE_RATE
        assert 0.05 < np.max(np.abs(audio)) < 0.99  # speech, not clipped at the engine's volume
    monkeypatch.setattr(pico, "PITCH_PERCENT", (70, 70))
    low = pico.synthesize("hello there", "pico:en-US", np.random.default_rng(1))
    monkeypatch.setattr(pico, "PITCH_PERCENT", (140, 140))
    high = pico.synthesize("hello there", "pico:en-US", np.random.default_rng(1))
    assert f0(high) > 1.5 * f0(low)
    monkeypatch.setattr(pico, "RATE_PERCENT", (75, 75))
    slow = pico.synthesize("hello there", "pico:en-US", np.random.default_rng(1))
    monkeypatch.setattr(pico, "RATE_PERCENT", (130, 130))
    fast = pico.synthesize("hello there", "pico:en-US", np.random.default_rng(1))
    assert len(fast) < 0.8 * len(slow)


@needs_pico
def test_bad_voice_and_text():
    rng = np.random.default_rng(0)
    for voice in ("pico:de-DE", "pico:", "espeak:en"):
        with pytest.raises(TrainerError, match="bad Pico voice"):
            pico.synthesize("hello", voice, rng)
    with pytest.raises(TrainerError, match="empty text"):
        pico.synthesize(" <> ", "pico:en-US", rng)
    # Pico reads markup such as <pitch level="200">; angle brackets become spaces, so text
    # can never change how it speaks.
    marked = pico.synthesize('hello <pitch level="200"> there', "pico:en-GB", np.random.default_rng(2))
    spaced = pico.synthesize('hello  pitch level="200"  there', "pico:en-GB", np.random.default_rng(2))
    assert np.array_equal(marked, spaced)


@needs_pico
def test_pico_voices_train_only_and_share_sets_the_mix(tmp_path):
    data = synthesize_dataset("hey jarvis", tmp_path / "d", SynthConfig(
        seed=3, n_positive=60, pico_share=0.5, engines=("espeak", "pico"), **SMALL), progress=False)
    clips = data.select("positive")
    engines = [c.engine for c in clips]
    assert 18 <= engines.count("pico") <= 42 and set(engines) == {"espeak", "pico"}
    assert {c.split for c in clips if c.engine == "pico"} == {"train"}
    assert {c.voice for c in clips if c.engine == "pico"} == set(pico.list_voices())
    none = synthesize_dataset("hey jarvis", tmp_path / "none", SynthConfig(
        seed=3, n_positive=10, pico_share=0.0, **SMALL), progress=False)
    assert "pico" not in {c.engine for c in none.clips}


def test_missing_pico_is_said_and_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pico, "available", lambda: False)
    assert pico.list_voices() == [] and "pico" not in build.available_engines()
    data = synthesize_dataset("hey jarvis", tmp_path / "d", SynthConfig(
        seed=1, n_positive=6, engines=("espeak", "pico"), **SMALL), progress=False)
    assert {c.engine for c in data.clips} == {"espeak"}
    assert "SVOX Pico is not installed" in capsys.readouterr().err
    # Naming it on the command line where it is missing is an error, not a silent dataset.
    result = CliRunner().invoke(main, ["synth", "hey jarvis", "--positives", "3", "--negatives", "2",
                                       "--neighbours", "2", "--no-eval", "--engine", "pico",
                                       "--out", str(tmp_path / "cli")])
    assert result.exit_code == 1 and "SVOX Pico is not installed" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "cli").exists()


def test_shares_are_checked():
    for dectalk_share, pico_share in ((0.5, 0.6), (0.1, -0.1), (0.0, 1.5)):
        with pytest.raises(TrainerError, match="pico_share"):
            SynthConfig(dectalk_share=dectalk_share, pico_share=pico_share).check()
    SynthConfig(dectalk_share=0.5, pico_share=0.5).check()


def test_cli_engine_choices_are_the_synthesizers():
    option = next(p for p in main.commands["synth"].params if p.name == "engines")
    assert tuple(option.type.choices) == build.ENGINES
