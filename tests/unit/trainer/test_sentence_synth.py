"""In-sentence training clips (SynthConfig.sentence_share) and reusing another dataset's clips."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from trainer.errors import TrainerError
from trainer.synth.build import (SENTENCE_KEEP_S, SynthConfig, in_sentence, plan_dataset,
                                 synthesize_dataset)
from trainer.synth.text import contains_phrase

PHRASE = "hey jarvis"
SMALL = dict(n_positive=40, n_negative_speech=10, n_neighbour=40, background_files=1,
             background_seconds=1.0, workers=1, engines=("espeak",), sentence_share=0.0)


def test_in_sentence_puts_a_sentence_before_about_the_share_and_never_an_earlier_phrase():
    rng = np.random.default_rng(3)
    texts = [PHRASE + "."] * 300 + ["hey jar."] * 300
    out, flags = in_sentence(texts, PHRASE, 0.3, rng)
    assert 0.22 < np.mean(flags) < 0.38
    for text, new, flag in zip(texts, out, flags):
        if not flag:
            assert new == text
            continue
        before, _, tail = new.rpartition(". ")
        assert tail == text and before and before[0].isupper()
        words = new.lower().replace(".", "").replace(",", "").split()
        # the phrase only at the very end of a positive, nowhere in a neighbour
        hits = [i for i in range(len(words) - 1) if words[i:i + 2] == PHRASE.split()]
        assert hits == ([len(words) - 2] if contains_phrase(text, PHRASE) else [])
    assert in_sentence(texts, PHRASE, 0.0, rng) == (texts, [False] * len(texts))


def test_a_sentence_share_changes_only_the_chosen_texts_of_the_same_clips():
    plain = plan_dataset(PHRASE, SynthConfig(**SMALL)).jobs
    mixed = plan_dataset(PHRASE, SynthConfig(**{**SMALL, "sentence_share": 0.5})).jobs
    assert [j.rel for j in plain] == [j.rel for j in mixed]
    changed = {j.label for a, j in zip(plain, mixed) if a.text != j.text}
    assert changed == {"positive", "hard_negative"}  # ordinary sentences stay as they were
    for a, b in zip(plain, mixed):
        assert (a.voice, a.seed, a.rate, a.pitch, a.warp) == (b.voice, b.seed, b.rate, b.pitch, b.warp)
        assert b.keep_last_s == (SENTENCE_KEEP_S if a.text != b.text else 0.0)
        if a.text != b.text:
            assert b.text.endswith(". " + a.text)


def test_in_sentence_clips_end_with_the_phrase_and_are_short_and_reuse_links_the_rest(tmp_path):
    base = synthesize_dataset(PHRASE, tmp_path / "base", SynthConfig(**SMALL), progress=False)
    mixed = synthesize_dataset(PHRASE, tmp_path / "mixed", SynthConfig(**{**SMALL, "sentence_share": 0.5}),
                               progress=False, reuse=base.root)
    plain_texts = {c.path.name: c.text for c in base.clips}
    relinked = rendered = 0
    for clip in mixed.clips:
        same = plain_texts[clip.path.name] == clip.text
        twin = base.root / clip.path.relative_to(mixed.root)
        if same:
            assert os.path.samefile(clip.path, twin)  # hard-linked, not rendered again
            relinked += 1
        else:
            info = sf.info(clip.path)
            assert info.duration <= SENTENCE_KEEP_S + 1e-3
            rendered += 1
    assert relinked and rendered
    # a clip rendered from scratch with the same plan is the same bytes as a reused one
    fresh = synthesize_dataset(PHRASE, tmp_path / "fresh", SynthConfig(**{**SMALL, "sentence_share": 0.5}),
                               progress=False)
    for clip in fresh.clips:
        other = mixed.root / clip.path.relative_to(fresh.root)
        assert clip.path.read_bytes() == other.read_bytes(), clip.path.name


def test_reuse_refuses_another_phrase(tmp_path):
    base = synthesize_dataset("ok computer", tmp_path / "base", SynthConfig(**SMALL), progress=False)
    with pytest.raises(TrainerError, match="not a dataset synthesized for 'hey jarvis'"):
        synthesize_dataset(PHRASE, tmp_path / "x", SynthConfig(**SMALL), progress=False,
                           reuse=base.root)


def test_an_old_manifest_without_the_field_means_no_sentences(tmp_path):
    import json

    from trainer.synth.build import synth_config_of

    base = synthesize_dataset(PHRASE, tmp_path / "base", SynthConfig(**SMALL), progress=False)
    manifest = json.loads((base.root / "manifest.json").read_text())
    del manifest["config"]["sentence_share"], manifest["config"]["kokoro_share"]
    (base.root / "manifest.json").write_text(json.dumps(manifest))
    config = synth_config_of(base.root)
    assert config.sentence_share == 0.0 and config.kokoro_share == 0.0
    assert SynthConfig().sentence_share == 0.3  # the default now


def test_sentence_share_is_checked():
    with pytest.raises(TrainerError, match="sentence_share"):
        SynthConfig(sentence_share=1.5).check()
