"""trainer.data.WindowSampler: wake words with other speech around them.

data.context_probability puts speech before the wake word, data.after_probability after it."""

import numpy as np
import pytest

from sentry.constants import CLIP_SAMPLES, SAMPLE_RATE
from trainer.config import load_config, validate
from trainer.data import AFTER_END_S, CONTEXT_GAP_S, Pools, WindowSampler

WORD = 0.5 * np.sin(2 * np.pi * 300 * np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE).astype(np.float32)
SPEECH = np.full(2 * SAMPLE_RATE, 0.2, dtype=np.float32)


def windows(context: float, augment: bool = True, n: int = 64,
            after: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    config = load_config(None, {"data.context_probability": context, "train.batch_size": n,
                                "data.after_probability": after, "data.negatives_per_positive": 1.0})
    sampler = WindowSampler(Pools(positive=[WORD] * n, negative=[SPEECH]), config, augment=augment)
    batches = list(sampler.epoch(seed=3))
    pcm = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    return pcm, labels


def speech_before_word(pcm: np.ndarray) -> np.ndarray:
    """Per positive window: is there speech-level audio more than the gap before the word?"""
    start = CLIP_SAMPLES - int(0.25 * SAMPLE_RATE) - len(WORD)  # earliest the word can begin
    before = pcm[:, : start - int(CONTEXT_GAP_S[0] * SAMPLE_RATE)]
    return np.max(np.abs(before), axis=1) > 0.1


def test_context_puts_speech_before_the_wake_word_only_in_training():
    pcm, labels = windows(1.0)
    positives = pcm[labels == 1]
    assert speech_before_word(positives).all()
    # The wake word itself is untouched at the end of the window.
    assert np.all(np.max(np.abs(positives[:, -int(0.25 * SAMPLE_RATE) - len(WORD) // 2:]), axis=1) > 0.4)
    val, val_labels = windows(1.0, augment=False)
    assert not speech_before_word(val[val_labels == 1]).any()


def test_context_share_and_off_by_default():
    pcm, labels = windows(0.5, n=256)
    share = speech_before_word(pcm[labels == 1]).mean()
    assert 0.35 < share < 0.65
    pcm, labels = windows(0.0)
    assert not speech_before_word(pcm[labels == 1]).any()


def speech_after_word(pcm: np.ndarray) -> np.ndarray:
    """Per window: do its last 50 ms hold the speech clip (a steady 0.2), not the word or silence?"""
    tail = pcm[:, -SAMPLE_RATE // 20:]
    return np.all(np.abs(tail - 0.2) < 0.01, axis=1)


def test_after_puts_speech_after_the_whole_wake_word_only_in_training():
    pcm, labels = windows(0.0, after=1.0)
    positives = pcm[labels == 1]
    assert speech_after_word(positives).all()
    # The whole word is there, ending at least AFTER_END_S[0] before the window's end.
    word_zone = positives[:, -int((AFTER_END_S[1] + 0.5) * SAMPLE_RATE) - 1:-int(AFTER_END_S[0] * SAMPLE_RATE)]
    assert np.all(np.max(np.abs(word_zone), axis=1) > 0.45)
    assert np.all(np.min(word_zone, axis=1) < -0.45)  # a sine, not the steady speech clip
    val, val_labels = windows(0.0, after=1.0, augment=False)
    assert not speech_after_word(val[val_labels == 1]).any()


def test_after_share_and_off_by_default():
    pcm, labels = windows(0.0, after=0.5, n=256)
    assert 0.35 < speech_after_word(pcm[labels == 1]).mean() < 0.65
    pcm, labels = windows(0.0)
    assert not speech_after_word(pcm[labels == 1]).any()


@pytest.mark.parametrize("name", ["context_probability", "after_probability"])
@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_context_probabilities_are_checked(name, value):
    config = load_config(None, {f"data.{name}": value}, check=False)
    assert any(p.startswith(f"data.{name}") for p in validate(config))
