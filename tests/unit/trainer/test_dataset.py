"""trainer.dataset: layout, manifest, hand-added files, split-by-voice synthesis, eval sets."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from sentry.constants import SAMPLE_RATE
from trainer.audio import DOWNMIXED, RESAMPLED, SILENT, UNREADABLE, load_audio
from trainer.dataset import SPLITS, hash_split, load_dataset
from trainer.errors import TrainerError
from trainer.synth import dectalk, pico
from trainer.synth.build import ENGINES, SENTENCE_KEEP_S, SynthConfig, split_voices, synthesize_dataset
from trainer.synth.espeak import list_voices
from trainer.synth.text import contains_phrase
from trainer.synth.warps import TRIM_THRESHOLD_DB

PHRASE = "hey jarvis"
TINY = SynthConfig(seed=3, n_positive=20, n_negative_speech=20, n_neighbour=20,
                   background_files=3, background_seconds=2.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "hey_jarvis"
    return synthesize_dataset(PHRASE, root, TINY, progress=False)


def test_tiny_synthesis_end_to_end(tiny):
    summary = tiny.summary()
    assert tiny.phrase == PHRASE
    for label in ("positive", "negative", "hard_negative"):
        assert sum(summary["clips"][label].values()) == 20
    assert sum(summary["clips"]["background"].values()) == 3
    assert summary["problems"] == {} and summary["skipped"] == 0
    for clip in tiny.clips:
        info = sf.info(clip.path)
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    # about 30% are said at the end of a sentence (SynthConfig.sentence_share), the rest alone
    said_after = [c for c in tiny.select("positive") if ". " in c.text]
    positives = [c for c in tiny.select("positive") if c not in said_after]
    assert said_after and positives
    assert all(c.text.rstrip(".!?,").replace(",", "") == PHRASE and c.engine in ENGINES
               for c in positives)
    assert all(c.text.rpartition(". ")[2].rstrip(".!?,").replace(",", "") == PHRASE
               for c in said_after)
    assert all(len(load_audio(c.path)) <= SENTENCE_KEEP_S * SAMPLE_RATE for c in said_after)
    lengths = [len(load_audio(c.path)) / SAMPLE_RATE for c in positives]
    assert 0.4 < min(lengths) and max(lengths) < 2.5  # trimmed: phrase plus 0.1-0.2 s margins
    for clip in positives + said_after:  # silence (40 dB under the loudest) trimmed to the margin
        audio = load_audio(clip.path)
        frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
        rms = np.sqrt(np.mean(frames ** 2, axis=1))
        quiet = rms < rms.max() * 10 ** (-TRIM_THRESHOLD_DB / 20)
        assert np.argmin(quiet[::-1]) <= 21, clip.path
        assert clip in said_after or np.argmin(quiet) <= 21, clip.path  # those start mid-speech
    assert not any(contains_phrase(c.text, PHRASE)
                   for c in tiny.select("negative") + tiny.select("hard_negative"))
    assert {c.text for c in tiny.select("background")} <= {"white", "pink", "brown"}


def test_splits_are_by_voice(tiny):
    manifest = json.loads((tiny.root / "manifest.json").read_text())
    splits = manifest["voice_splits"]
    all_voices = [v for s in SPLITS for v in splits[s]]
    assert sorted(all_voices) == sorted(list_voices())  # every voice in exactly one split
    assert len(splits["test"]) == len(splits["val"]) == round(0.1 * len(list_voices()))
    # Each engine's voices are split on their own; "voice_splits" (the espeak eval's test
    # voices come from it) stays espeak only.
    speakers = manifest["speaker_splits"]
    assert sorted(v for s in SPLITS for v in speakers[s]) == sorted(
        list_voices() + dectalk.list_voices() + pico.list_voices())
    assert not set(pico.list_voices()) & set(speakers["val"] + speakers["test"])  # train only
    for split in SPLITS:
        assert set(splits[split]) <= set(speakers[split])
    split_of_voice = {}
    for clip in tiny.clips:
        if clip.voice:
            assert clip.split == split_of_voice.setdefault(clip.voice, clip.split)
            assert clip.voice in speakers[clip.split]
    # The assignment is reproducible and depends on the seed.
    assert split_voices(list_voices(), 3, 0.1, 0.1) == splits
    assert split_voices(list_voices(), 4, 0.1, 0.1) != splits


def test_refuses_non_empty_folder_unless_overwrite(tiny, tmp_path):
    with pytest.raises(TrainerError, match="--overwrite"):
        synthesize_dataset(PHRASE, tiny.root, TINY, progress=False)
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("user file")
    small = SynthConfig(seed=1, n_positive=2, n_negative_speech=2, n_neighbour=2,
                        background_files=1, background_seconds=1.0)
    again = synthesize_dataset(PHRASE, keep, small, progress=False, overwrite=True)
    assert len(again.select("positive")) == 2
    assert (keep / "notes.txt").read_text() == "user file"  # only generated folders are replaced


def test_hand_added_files_are_picked_up_and_bad_ones_reported(tiny, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny.root, root)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    voice = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(root / "positive" / "me_saying_it.wav", voice, SAMPLE_RATE)
    sf.write(root / "negative" / "stereo44k.wav", np.stack([voice, voice], 1), 44_100)
    sf.write(root / "negative" / "silent.wav", np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    sf.write(root / "rir" / "room.flac", voice[:4000], SAMPLE_RATE)
    good = root / "background" / "truncated.wav"
    sf.write(good, voice, SAMPLE_RATE)
    good.write_bytes(good.read_bytes()[:30])  # header cut off mid-way: corrupt
    (root / "negative" / "readme.txt").write_text("not audio")  # ignored: not an audio suffix
    dataset = load_dataset(root)
    added = {c.path.name: c for c in dataset.clips if c.engine == "user"}
    assert set(added) == {"me_saying_it.wav", "stereo44k.wav", "room.flac"}
    assert added["me_saying_it.wav"].label == "positive"
    assert added["room.flac"].label == "rir"
    assert added["stereo44k.wav"].split == hash_split("negative/stereo44k.wav")
    summary = dataset.summary()
    assert summary["problems"] == {RESAMPLED: 1, DOWNMIXED: 1, SILENT: 1, UNREADABLE: 1}
    assert summary["skipped"] == 2
    skipped = {p.path.name: p for p in dataset.problems if p.skipped}
    assert set(skipped) == {"silent.wav", "truncated.wav"}
    assert all(str(p.path) in p.detail for p in skipped.values())
    assert len(dataset.clips) == len(tiny.clips) + 3


def test_hash_split_is_stable_and_roughly_80_10_10():
    splits = [hash_split(f"negative/clip_{i}.wav") for i in range(3000)]
    assert splits == [hash_split(f"negative/clip_{i}.wav") for i in range(3000)]
    share = {s: splits.count(s) / len(splits) for s in SPLITS}
    assert share["train"] == pytest.approx(0.8, abs=0.03)
    assert share["val"] == pytest.approx(0.1, abs=0.02)


def test_missing_or_wrong_folder_is_a_clear_error(tmp_path):
    with pytest.raises(TrainerError, match="does not exist.*hark synth"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "photos").mkdir()
    with pytest.raises(TrainerError, match="none of the class folders"):
        load_dataset(tmp_path)
    with pytest.raises(TrainerError, match="no words"):
        synthesize_dataset("  !! ", tmp_path / "x", TINY, progress=False)


def test_user_only_dataset_without_manifest(tmp_path):
    (tmp_path / "positive").mkdir()
    sf.write(tmp_path / "positive" / "a.wav", np.full(800, 0.2, np.float32), SAMPLE_RATE)
    dataset = load_dataset(tmp_path)
    assert dataset.phrase is None and [c.label for c in dataset.clips] == ["positive"]
    with pytest.raises(TrainerError, match="unknown class"):
        dataset.select("positives")


@pytest.mark.skipif(shutil.which("flite") is None or shutil.which("text2wave") is None,
                    reason="flite/festival not installed (apt-get install flite festival)")
def test_eval_sets_use_only_test_voices_and_never_say_the_phrase(tiny, tmp_path):
    from trainer.synth.evalsets import synthesize_eval_sets
    from trainer.synth.heldout import STANDARD_VOICES
    root = tmp_path / "with_eval"
    shutil.copytree(tiny.root, root)
    summary = synthesize_eval_sets(PHRASE, root, negative_minutes_espeak=0.3,
                                   negative_minutes_heldout=0.3, n_positive_espeak=4,
                                   n_positive_heldout=7, seed=5, progress=False)
    test_voices = json.loads((root / "manifest.json").read_text())["voice_splits"]["test"]
    assert summary["sets"]["espeak"]["voices"] == test_voices
    heldout = summary["sets"]["heldout"]["voices"]
    assert heldout and all(v.split(":")[0] in ("flite", "festival") for v in heldout)
    for name, n in (("espeak", 4), ("heldout", 7)):
        folder = root / "eval" / name
        assert len(list((folder / "positive").glob("*.wav"))) == n
        stream = load_audio(folder / "negative_stream.wav")
        assert len(stream) >= 0.3 * 60 * SAMPLE_RATE
        assert np.max(np.abs(stream)) <= 1.0 and np.std(stream) > 0.01
    assert json.loads((root / "eval" / "manifest.json").read_text()) == summary
    pin = json.loads((root / "manifest.json").read_text())["heldout_eval"]
    assert pin == summary["heldout_eval"] and pin["voices"] == heldout
    assert set(heldout) <= set(STANDARD_VOICES)  # other installed voices never join
    assert pin["recipe"]["n_positive"] == {"espeak": 4, "heldout": 7} and pin["recipe"]["seed"] == 5
    # The same dataset on a machine that lacks one of its pinned voices: said, not swapped.
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["heldout_eval"]["voices"] = [heldout[0], "festival:nobody_diphone"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TrainerError, match="festival:nobody_diphone are pinned"):
        synthesize_eval_sets(PHRASE, root, negative_minutes_espeak=0.3, negative_minutes_heldout=0.3,
                             progress=False)
    with pytest.raises(TrainerError, match="no test-split"):
        synthesize_eval_sets(PHRASE, tmp_path, progress=False)
