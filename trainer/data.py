"""From a dataset folder to labelled 1.5 s training windows, built afresh each epoch.

Positives are placed so the wake word ends near the end of the window (the streaming
detector should fire as the phrase ends, not before). Negatives are random crops of
speech, phonetic neighbours, background-only windows, and positives cut off mid-word.
Everything is seeded per epoch, so a resumed run sees exactly the epochs it would have.
Augmentation is not done here: the training loop applies the plugin chain to these windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from sentry.constants import CLIP_SAMPLES, SAMPLE_RATE

from .audio import load_audio
from .config import AugmentConfig, Config
from .dataset import Dataset, load_dataset
from .errors import TrainerError

NOISE_FLOOR_DBFS = (-80.0, -55.0)
"""A faint noise floor on every window: real microphones never deliver digital zeros."""
BACKGROUND_DBFS = (-45.0, -15.0)
"""RMS level of background-only negatives: from a quiet room to a loud one."""
BACKGROUND_ONLY_FRACTION = 0.1
"""Share of negatives that hold only background noise."""
CONTEXT_GAP_S = (0.05, 0.4)
"""Pause between the preceding speech and the wake word (data.context_probability)."""
MIN_CONTEXT_SAMPLES = SAMPLE_RATE // 5
"""Less room than 0.2 s before the wake word: no context is added."""
AFTER_END_S = (0.15, 0.5)
"""With speech after the wake word (data.after_probability), the window ends this long after
the word: the detector may fire up to 0.5 s after a wake word, while the next words begin."""
AFTER_GAP_S = (0.05, 0.3)
"""Pause between the wake word and the speech after it."""


@dataclass
class Pools:
    """Audio held in memory for one split (float32, 16 kHz)."""

    positive: list[np.ndarray] = field(default_factory=list)
    negative: list[np.ndarray] = field(default_factory=list)
    background: list[np.ndarray] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    split: str = ""
    root: str = ""


def load_pools(dataset: Dataset, split: str, max_positive_s: float) -> Pools:
    pools = Pools(split=split, root=str(dataset.root))
    max_len = int(max_positive_s * SAMPLE_RATE)
    for clip in dataset.select("positive", split):
        audio = load_audio(clip.path)
        if len(audio) > max_len:
            pools.skipped["positive longer than max_positive_s"] = \
                pools.skipped.get("positive longer than max_positive_s", 0) + 1
            continue
        pools.positive.append(audio)
    for label in ("negative", "hard_negative"):
        pools.negative.extend(load_audio(c.path) for c in dataset.select(label, split))
    # Background noise is not speech, so it is shared by all splits rather than split by voice.
    pools.background = [load_audio(c.path) for c in dataset.select("background")]
    return pools


class WindowSampler:
    """Builds batches of (pcm [B, CLIP_SAMPLES], label [B]) for one epoch."""

    def __init__(self, pools: Pools, config: Config, *, augment: bool) -> None:
        if not pools.positive:
            skipped = "".join(f"; skipped {n}: {why}" for why, n in pools.skipped.items())
            raise TrainerError(f"{pools.root}: no usable positive clips in the '{pools.split}' "
                               f"split{skipped}. Fix: synthesize more positives (`hark synth "
                               "--positives N`, each split needs some voices) or add WAV files "
                               "to positive/")
        if not pools.negative and not pools.background:
            raise TrainerError("the dataset has no negative or background audio; "
                               "add files to negative/ or background/")
        self.pools = pools
        self.config = config
        self.aug: AugmentConfig = config.augment
        self.augment = augment

    def n_batches(self) -> int:
        n_pos = len(self.pools.positive)
        total = n_pos + int(round(n_pos * self.config.data.negatives_per_positive))
        return -(-total // self.config.train.batch_size)

    def epoch(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one epoch, in order, for a given seed (built lazily)."""
        rng = np.random.default_rng(seed)
        n_pos = len(self.pools.positive)
        n_neg = int(round(n_pos * self.config.data.negatives_per_positive))
        kinds = np.concatenate([np.ones(n_pos, dtype=np.int8), np.zeros(n_neg, dtype=np.int8)])
        rng.shuffle(kinds)
        order_pos = rng.permutation(n_pos)
        size = self.config.train.batch_size
        pos_i = 0
        for start in range(0, len(kinds), size):
            labels = kinds[start:start + size]
            windows = np.zeros((len(labels), CLIP_SAMPLES), dtype=np.float32)
            for row, label in enumerate(labels):
                if label:
                    windows[row] = self._end_aligned(self.pools.positive[order_pos[pos_i]], rng)
                    pos_i += 1
                else:
                    windows[row] = self._negative(rng)
            windows = self._fill(windows, rng)
            yield torch.from_numpy(windows), torch.from_numpy(labels.astype(np.float32))

    def _end_aligned(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        window = np.zeros(CLIP_SAMPLES, dtype=np.float32)
        speech = self.augment and bool(self.pools.negative)
        after_share = self.config.data.after_probability if speech else 0.0
        # No draw at 0 (here and below): runs without context sample exactly as before.
        after = after_share > 0 and rng.random() < after_share
        lo, hi = AFTER_END_S if after else self.aug.end_jitter_s if self.augment else (0.1, 0.1)
        gap = int(rng.uniform(lo, hi) * SAMPLE_RATE)
        end = CLIP_SAMPLES - gap
        clip = clip[-end:]
        window[end - len(clip):end] = clip
        if after:
            self._speech_after(window, end, rng)
        share = self.config.data.context_probability if speech else 0.0
        if share > 0 and rng.random() < share:
            self._speech_before(window, end - len(clip), rng)
        return window

    def _speech_after(self, window: np.ndarray, end: int, rng: np.random.Generator) -> None:
        """Put the start of a random speech clip AFTER_GAP_S after ``end`` (in place)."""
        room = len(window) - end
        start = end + int(rng.uniform(AFTER_GAP_S[0], min(AFTER_GAP_S[1], room / SAMPLE_RATE - 0.05))
                          * SAMPLE_RATE)
        head = self.pools.negative[rng.integers(len(self.pools.negative))][: len(window) - start]
        window[start:start + len(head)] += head

    def _speech_before(self, window: np.ndarray, start: int, rng: np.random.Generator) -> None:
        """Put the end of a random speech clip CONTEXT_GAP_S before ``start`` (in place)."""
        stop = start - int(rng.uniform(*CONTEXT_GAP_S) * SAMPLE_RATE)
        if stop < MIN_CONTEXT_SAMPLES:
            return
        tail = self.pools.negative[rng.integers(len(self.pools.negative))][-stop:]
        window[stop - len(tail):stop] += tail

    def _negative(self, rng: np.random.Generator) -> np.ndarray:
        draw = rng.random()
        if draw < self.config.data.partial_fraction:
            clip = self.pools.positive[rng.integers(len(self.pools.positive))]
            cut = int(len(clip) * rng.uniform(0.3, 0.7))
            return self._end_aligned(clip[:cut], rng)
        if draw < self.config.data.partial_fraction + BACKGROUND_ONLY_FRACTION or not self.pools.negative:
            return np.zeros(CLIP_SAMPLES, dtype=np.float32)  # noise is added in _fill
        clip = self.pools.negative[rng.integers(len(self.pools.negative))]
        window = np.zeros(CLIP_SAMPLES, dtype=np.float32)
        if len(clip) >= CLIP_SAMPLES:
            start = rng.integers(len(clip) - CLIP_SAMPLES + 1)
            return clip[start:start + CLIP_SAMPLES].copy()
        offset = rng.integers(CLIP_SAMPLES - len(clip) + 1)
        window[offset:offset + len(clip)] = clip
        return window

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        noise = self.pools.background[rng.integers(len(self.pools.background))]
        if len(noise) < CLIP_SAMPLES:
            noise = np.resize(noise, CLIP_SAMPLES)
        start = rng.integers(len(noise) - CLIP_SAMPLES + 1)
        return noise[start:start + CLIP_SAMPLES]

    def _fill(self, windows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Background-only windows get background noise; every window gets a faint noise floor.

        This builds the data, it is not augmentation: it also runs for validation and with every
        plugin blocked. Augmentation (noise at an SNR, gain, filters) runs in the training loop
        through the plugin hooks.
        """
        for row in range(len(windows)):
            signal = windows[row]
            if self.pools.background and not np.any(signal):
                noise = self._background(rng).astype(np.float32)
                p_noise = float(np.mean(noise ** 2)) or 1e-12
                signal = signal + noise * (10 ** (rng.uniform(*BACKGROUND_DBFS) / 20) / np.sqrt(p_noise))
            floor_db = rng.uniform(*NOISE_FLOOR_DBFS)
            signal = signal + rng.standard_normal(CLIP_SAMPLES).astype(np.float32) * 10 ** (floor_db / 20)
            peak = float(np.max(np.abs(signal)))
            windows[row] = signal / peak * 0.99 if peak > 0.99 else signal
        return windows


def open_dataset(config: Config) -> Dataset:
    return load_dataset(config.data.dataset)
