"""trainer.data.WindowSampler: wake words preceded by other speech (data.context_probability)."""

import numpy as np
import pytest

from sentry.constants import CLIP_SAMPLES, SAMPLE_RATE
from trainer.config import load_config, validate
from trainer.data import CONTEXT_GAP_S, Pools, WindowSampler

WORD = 0.5 * np.sin(2 * np.pi * 300 * np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE).astype(np.float32)
SPEECH = np.full(2 * SAMPLE_RATE, 0.2, dtype=np.float32)


def windows(context: float, augment: bool = True, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    config = load_config(None, {"data.context_probability": context, "train.batch_size": n,
                                "data.negatives_per_positive": 1.0})
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


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_context_probability_is_checked(value):
    config = load_config(None, {"data.context_probability": value}, check=False)
    assert any(p.startswith("data.context_probability") for p in validate(config))
