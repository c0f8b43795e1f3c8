"""In-sentence positives (the word's place known to the sample) and the calibration set:
how evaluation scores them, and adding both to an existing dataset."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from sentry.constants import SAMPLE_RATE
from sentry.postprocess import TriggerSettings
from trainer.audio import load_audio, write_wav
from trainer.errors import TrainerError
from trainer.evaluate import (DEFAULT_TOLERANCE_S, EvalSet, build_positive_stream, evaluate_set,
                              find_eval_sets, match_detections)
from trainer.synth import evalsets
from trainer.synth.build import SynthConfig, synthesize_dataset
from trainer.synth.text import commands, contains_phrase
from trainer.synth.warps import trim_silence

PHRASE = "hey jarvis"
HELDOUT = shutil.which("flite") is not None and shutil.which("text2wave") is not None
needs_heldout = pytest.mark.skipif(not HELDOUT, reason="flite/festival not installed "
                                                       "(apt-get install flite festival)")


def tone(seconds: float, freq_hz: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def energy_scores(pcm: np.ndarray) -> np.ndarray:
    """A stand-in detector: per-hop RMS, saturating at 1 for anything louder than 0.1."""
    n = pcm.size // 1280
    hops = pcm[: n * 1280].reshape(n, 1280).astype(np.float64)
    return np.minimum(1.0, np.sqrt(np.mean(hops ** 2, axis=1)) / 0.1)


# --- texts ---------------------------------------------------------------------------


def test_commands_never_say_the_phrase():
    rng = np.random.default_rng(0)
    said = commands(rng, 200, "turn on")  # a phrase that some commands contain
    assert len(said) == 200 and len(set(said)) > 15
    assert not any(contains_phrase(c, "turn on") for c in said)
    assert any("turn on" in c for c in commands(rng, 200, PHRASE))


# --- one in-sentence clip ----------------------------------------------------------------


@pytest.mark.parametrize("voice", ["en-us+m3", pytest.param("flite:slt", marks=needs_heldout)])
def test_the_region_is_exactly_the_separately_spoken_word(voice):
    speak = evalsets._heldout_speaker if voice.startswith("flite") else evalsets._calibration_speaker
    calls = []

    def recording(text, name, rng):
        state = rng.bit_generator.state
        audio = speak(text, name, rng)
        calls.append((text, name, state, audio))
        return audio

    rng = np.random.default_rng(4)
    kinds = set()
    for _ in range(6):
        calls.clear()
        audio, (start, end) = evalsets.in_sentence_clip(PHRASE, voice, recording, rng)
        texts = [c[0] for c in calls]
        word = next(i for i, t in enumerate(texts) if t.rstrip(",.") == PHRASE)
        before, after = texts[:word], texts[word + 1:]
        kinds.add((bool(before), bool(after)))
        assert not any(contains_phrase(t, PHRASE) for t in before + after)
        # one voice, one stretch/pitch draw: every piece from the same generator state
        assert {c[1] for c in calls} == {voice} and all(c[2] == calls[0][2] for c in calls)
        assert 0 < start < end < len(audio) / SAMPLE_RATE
        a, b = round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)
        # the region holds exactly the word's piece, trimmed, at the clip's one gain
        alone = trim_silence(calls[word][3], evalsets.PIECE_MARGIN_S)
        assert b - a == len(alone)
        region = audio[a:b]
        gain = np.max(np.abs(region)) / np.max(np.abs(alone))
        np.testing.assert_allclose(region, alone * gain, atol=1e-4)
        # and the word synthesized again on its own from the same draw is as long (espeak
        # jitters a few samples from call to call; flite does not)
        again = np.random.default_rng()
        again.bit_generator.state = calls[word][2]
        resaid = trim_silence(speak(texts[word], voice, again), evalsets.PIECE_MARGIN_S)
        assert abs(len(resaid) - (b - a)) <= 0.01 * len(resaid)
        if before:  # speech before the word, a pause just before it
            longest_pause = round(evalsets.PAUSE_BEFORE_WORD_S[1] * SAMPLE_RATE)
            assert np.max(np.abs(audio[:a - longest_pause])) > 0.05
            assert np.max(np.abs(audio[a - round(0.04 * SAMPLE_RATE):a])) < np.max(np.abs(region))
        if after:
            longest_pause = round(evalsets.PAUSE_AFTER_WORD_S[1] * SAMPLE_RATE)
            assert np.max(np.abs(audio[b + longest_pause:])) > 0.05
    assert len(kinds) >= 2  # sentences before and commands after come and go


# --- scoring with word regions -------------------------------------------------------------


def _sentence_then_silent_word(rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """3 s: a loud 'sentence' 0.2-0.7 s, the 'word' region 1.5-2.2 s (quiet)."""
    clip = (0.001 * rng.standard_normal(3 * SAMPLE_RATE)).astype(np.float32)
    clip[int(0.2 * SAMPLE_RATE):int(0.7 * SAMPLE_RATE)] += tone(0.5)
    return clip, (1.5, 2.2)


def test_word_regions_place_the_hit_window_on_the_word():
    rng = np.random.default_rng(0)
    clips = [tone(1.0), tone(3.0), tone(1.2)]
    words = [None, (1.5, 2.2), None]
    stream, regions = build_positive_stream(clips, np.random.default_rng(1), word_regions=words)
    plain, whole = build_positive_stream(clips, np.random.default_rng(1))
    np.testing.assert_array_equal(stream, plain)  # the audio is the same, only the regions move
    assert regions[0] == whole[0] and regions[2] == whole[2]
    assert regions[1] == pytest.approx((whole[1][0] + 1.5, whole[1][0] + 2.2))
    clip_start = whole[1][0]
    on_sentence = np.array([clip_start + 0.5])
    assert match_detections(on_sentence, regions) == (0, 1)  # a false accept of the positive stream
    assert match_detections(on_sentence, whole) == (1, 0)  # whole-clip regions called it a hit
    for t in (clip_start + 1.5, clip_start + 2.2 + DEFAULT_TOLERANCE_S):
        assert match_detections(np.array([t]), regions) == (1, 0)
    late = np.array([clip_start + 2.2 + DEFAULT_TOLERANCE_S + 0.1])
    assert match_detections(late, regions) == (0, 1)
    with pytest.raises(TrainerError, match="not inside the clip"):
        build_positive_stream(clips, rng, word_regions=[None, (1.5, 3.5), None])
    with pytest.raises(TrainerError, match="2 word regions for 3 clips"):
        build_positive_stream(clips, rng, word_regions=[None, None])


def _write_set(folder, rng):
    sentence, word = _sentence_then_silent_word(rng)
    burst = (0.001 * rng.standard_normal(24_000)).astype(np.float32)
    burst[8_000:16_000] += tone(0.5)
    write_wav(folder / "positive" / "a_plain.wav", burst)
    write_wav(folder / "positive" / "b_sentence.wav", sentence)
    (folder / "positive" / "regions.json").write_text(json.dumps({"b_sentence.wav": list(word)}))
    write_wav(folder / "negative_stream.wav", (0.001 * rng.standard_normal(60 * SAMPLE_RATE)))


def test_eval_set_reads_regions_and_a_detection_on_the_sentence_is_a_false_accept(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "eval" / "sentences"
    _write_set(folder, rng)
    eval_set = find_eval_sets(tmp_path / "eval")[0]
    assert eval_set.word_regions() == [None, (1.5, 2.2)]
    settings = TriggerSettings(0.5, 3, 2.0)
    report = evaluate_set(energy_scores, eval_set.positives(), eval_set.negative_stream(), settings,
                          word_regions=eval_set.word_regions(), name="sentences")
    # the plain burst is a hit; the sentence fires outside its word: a miss and a stray detection
    assert (report.missed, report.positive_stream_false_accepts) == (1, 1)
    whole = evaluate_set(energy_scores, eval_set.positives(), eval_set.negative_stream(), settings)
    assert (whole.missed, whole.positive_stream_false_accepts) == (0, 0)


@pytest.mark.parametrize("table, message", [
    ({"nowhere.wav": [0.1, 0.2]}, "nowhere.wav"),
    ({"b_sentence.wav": [0.5, 0.2]}, "b_sentence.wav"),
    ([1, 2], "not an object"),
])
def test_a_broken_regions_file_fails_before_any_scoring(tmp_path, table, message):
    folder = tmp_path / "eval" / "sentences"
    _write_set(folder, np.random.default_rng(0))
    (folder / "positive" / "regions.json").write_text(json.dumps(table))
    with pytest.raises(TrainerError, match=message):
        find_eval_sets(tmp_path / "eval")
    (folder / "positive" / "regions.json").write_text("{not json")
    with pytest.raises(TrainerError, match="cannot read the word regions"):
        find_eval_sets(tmp_path / "eval")


# --- sets added to a dataset ---------------------------------------------------------------


TINY = SynthConfig(seed=3, n_positive=12, n_negative_speech=12, n_neighbour=12,
                   background_files=3, background_seconds=2.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "hey_jarvis"
    synthesize_dataset(PHRASE, root, TINY, progress=False)
    return root


@needs_heldout
def test_sentence_set_shares_heldouts_stream_and_replaces_itself(dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    with pytest.raises(TrainerError, match="heldout/negative_stream.wav is missing"):
        evalsets.synthesize_sentence_set(root, n_positive=2, progress=False)
    # the plain sets alone, as an existing dataset has them
    with pytest.MonkeyPatch.context() as patch:
        for name in ("synthesize_sentence_set", "synthesize_calibration_set"):
            patch.setattr(evalsets, name, lambda *a, **k: None)
        evalsets.synthesize_eval_sets(PHRASE, root, negative_minutes_espeak=0.1,
                                      negative_minutes_heldout=0.1, n_positive_espeak=2,
                                      n_positive_heldout=2, seed=5, progress=False)
    assert sorted(p.name for p in (root / "eval").iterdir()) == ["espeak", "heldout", "manifest.json"]
    before = json.loads((root / "eval" / "manifest.json").read_text())
    summary = evalsets.synthesize_sentence_set(root, n_positive=4, progress=False)
    folder = root / "eval" / "heldout_sentence"
    heldout = root / "eval" / "heldout"
    assert os.path.samefile(folder / "negative_stream.wav", heldout / "negative_stream.wav")
    assert os.stat(heldout / "negative_stream.wav").st_nlink == 2  # one file, no copy
    regions = json.loads((folder / "positive" / "regions.json").read_text())
    clips = sorted(p.name for p in (folder / "positive").glob("*.wav"))
    assert sorted(regions) == clips and len(clips) == 4
    for name, (start, end) in regions.items():
        assert 0 < start < end < len(load_audio(folder / "positive" / name)) / SAMPLE_RATE
    entry = summary["sets"]["heldout_sentence"]
    assert entry["voices"] == before["sets"]["heldout"]["voices"]
    assert entry["negative_stream"] == "eval/heldout/negative_stream.wav (hard link)"
    assert entry["recipe"]["n_positive"] == 4 and entry["in_sentence"] == 4
    assert summary["sets"]["heldout"] == before["sets"]["heldout"]  # the others are untouched
    assert json.loads((root / "eval" / "manifest.json").read_text()) == summary
    assert [s.name for s in find_eval_sets(root / "eval")] == ["espeak", "heldout", "heldout_sentence"]
    assert not (root / evalsets.STAGING_DIR).exists()
    # again, smaller: replaced whole, same clips from the same seed
    first = load_audio(folder / "positive" / "positive_0000.wav")
    evalsets.synthesize_sentence_set(root, n_positive=3, progress=False)
    assert len(list((folder / "positive").glob("*.wav"))) == 3
    np.testing.assert_array_equal(load_audio(folder / "positive" / "positive_0000.wav"), first)
    assert os.stat(heldout / "negative_stream.wav").st_nlink == 2


def test_a_stream_that_cannot_be_linked_is_copied(tmp_path, monkeypatch):
    source = tmp_path / "a.wav"
    write_wav(source, tone(0.5))

    def no_links(*_):
        raise OSError("Operation not permitted")

    monkeypatch.setattr(evalsets.os, "link", no_links)
    assert evalsets._share_file(source, tmp_path / "b.wav") == "copy"
    assert (tmp_path / "b.wav").read_bytes() == source.read_bytes()


def test_calibration_set_is_the_validation_speakers(dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    val = json.loads((root / "manifest.json").read_text())["speaker_splits"]["val"]
    summary = evalsets.synthesize_calibration_set(root, minutes=0.1, n_positive=4, progress=False)
    entry = summary["sets"]["calib"]
    assert entry["voices"] == val
    splits = json.loads((root / "manifest.json").read_text())["voice_splits"]
    assert set(entry["babble_voices"]) <= set(splits["val"])  # never a training voice
    assert not set(val) & set(splits["train"] + splits["test"])
    folder = root / "eval" / "calib"
    regions = json.loads((folder / "positive" / "regions.json").read_text())
    assert sorted(regions) == ["positive_0001.wav", "positive_0003.wav"]  # every other clip
    stream = load_audio(folder / "negative_stream.wav")
    assert len(stream) >= 0.1 * 60 * SAMPLE_RATE and np.std(stream) > 0.01
    assert entry["negative_stream_seconds"] == pytest.approx(len(stream) / SAMPLE_RATE, abs=0.01)
    assert [s.name for s in find_eval_sets(root / "eval")] == ["calib"]
    assert json.loads((root / "eval" / "manifest.json").read_text()) == summary
    assert EvalSet(folder).word_regions()[1] == tuple(regions["positive_0001.wav"])
    # rebuilt: replaced, and recorded once
    summary = evalsets.synthesize_calibration_set(root, minutes=0.1, n_positive=2, progress=False)
    assert len(list((folder / "positive").glob("*.wav"))) == 2
    assert list(summary["sets"]) == ["calib"] and summary["sets"]["calib"]["n_positive"] == 2


def test_calibration_voices_skip_a_missing_engine_and_never_come_out_empty(dataset, tmp_path,
                                                                           monkeypatch, capsys):
    root = tmp_path / "ds"
    root.mkdir()
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest["speaker_splits"]["val"] = ["en+m7", "dectalk:d:100"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(evalsets, "engine_missing",
                        lambda e: ("DECtalk is not installed", "install it") if e == "dectalk" else None)
    assert evalsets.calibration_voices(root) == ["en+m7"]
    assert "without the 1 dectalk validation voices: DECtalk is not installed" in capsys.readouterr().err
    manifest["speaker_splits"]["val"] = ["dectalk:d:100"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TrainerError, match="would be empty"):
        evalsets.calibration_voices(root)
    manifest["speaker_splits"]["val"] = []
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TrainerError, match="no validation-split speakers"):
        evalsets.synthesize_calibration_set(root, minutes=0.1, n_positive=2, progress=False)


def test_an_engine_that_speaks_nothing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(evalsets, "synthesize", lambda *a: np.zeros(0, np.float32))
    with pytest.raises(TrainerError, match="en\\+m7: the speech engine returned no audio"):
        evalsets._calibration_speaker("hello", "en+m7", np.random.default_rng(0))
