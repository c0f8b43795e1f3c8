"""From a dataset folder to labelled 1.5 s training windows, built afresh each epoch.

Positives are placed so the wake word ends near the end of the window (the streaming
detector should fire as the phrase ends, not before). Negatives are random crops of
speech, phonetic neighbours, background-only windows, and positives cut off mid-word.
Everything is seeded per epoch, so a resumed run sees exactly the epochs it would have.
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
BACKGROUND_ONLY_FRACTION = 0.1
"""Share of negatives that hold only background noise."""


@dataclass
class Pools:
    """Audio held in memory for one split (float32, 16 kHz)."""

    positive: list[np.ndarray] = field(default_factory=list)
    negative: list[np.ndarray] = field(default_factory=list)
    background: list[np.ndarray] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def load_pools(dataset: Dataset, split: str, max_positive_s: float) -> Pools:
    pools = Pools()
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
            raise TrainerError("the dataset has no usable positive clips for this split; "
                               "run `hark synth` or add WAV files to positive/")
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
            windows = self._mix(windows, labels, rng)
            yield torch.from_numpy(windows), torch.from_numpy(labels.astype(np.float32))

    def _end_aligned(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        window = np.zeros(CLIP_SAMPLES, dtype=np.float32)
        lo, hi = self.aug.end_jitter_s if self.augment else (0.1, 0.1)
        gap = int(rng.uniform(lo, hi) * SAMPLE_RATE)
        end = CLIP_SAMPLES - gap
        clip = clip[-end:]
        window[end - len(clip):end] = clip
        return window

    def _negative(self, rng: np.random.Generator) -> np.ndarray:
        draw = rng.random()
        if draw < self.config.data.partial_fraction:
            clip = self.pools.positive[rng.integers(len(self.pools.positive))]
            cut = int(len(clip) * rng.uniform(0.3, 0.7))
            return self._end_aligned(clip[:cut], rng)
        if draw < self.config.data.partial_fraction + BACKGROUND_ONLY_FRACTION or not self.pools.negative:
            return np.zeros(CLIP_SAMPLES, dtype=np.float32)  # noise is added in _mix
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

    def _mix(self, windows: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noise at a target SNR, random gain, a faint noise floor; never clips."""
        for row in range(len(windows)):
            signal = windows[row]
            p_signal = float(np.mean(signal ** 2))
            use_noise = self.pools.background and (p_signal == 0.0 or (
                self.augment and rng.random() < self.aug.noise_probability))
            if use_noise:
                noise = self._background(rng).astype(np.float32)
                p_noise = float(np.mean(noise ** 2)) or 1e-12
                if p_signal > 0:
                    snr = rng.uniform(*self.aug.snr_db) if self.augment else 15.0
                    noise = noise * np.sqrt(p_signal / (p_noise * 10 ** (snr / 10)))
                else:
                    noise = noise * (10 ** (rng.uniform(-45, -15) / 20) / np.sqrt(p_noise))
                signal = signal + noise
            if self.augment and rng.random() < self.aug.lowpass_probability:
                signal = lowpass(signal, rng.uniform(*self.aug.lowpass_hz))
            floor_db = rng.uniform(*NOISE_FLOOR_DBFS)
            signal = signal + rng.standard_normal(CLIP_SAMPLES).astype(np.float32) * 10 ** (floor_db / 20)
            if self.augment:
                signal = signal * 10 ** (rng.uniform(*self.aug.gain_db) / 20)
            peak = float(np.max(np.abs(signal)))
            windows[row] = signal / peak * 0.99 if peak > 0.99 else signal
        return windows


def lowpass(signal: np.ndarray, cutoff_hz: float, rolloff_hz: float = 400.0) -> np.ndarray:
    """Brick-wall-ish low-pass in the frequency domain with a short cosine roll-off."""
    spectrum = np.fft.rfft(signal)
    freqs = np.fft.rfftfreq(len(signal), 1.0 / SAMPLE_RATE)
    ramp = np.clip((freqs - cutoff_hz) / rolloff_hz, 0.0, 1.0)
    return np.fft.irfft(spectrum * (0.5 + 0.5 * np.cos(np.pi * ramp)), n=len(signal)).astype(np.float32)


def mel_warp(features: torch.Tensor, aug: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Stretch the mel axis of some windows by a random factor (vocal-tract-length perturbation).

    Bin k of the output reads bin k / factor of the input (linear interpolation), so a factor
    above 1 moves formants up, as a shorter vocal tract does.
    """
    batch, frames, mels = features.shape
    factor = torch.empty(batch, 1).uniform_(*aug.mel_warp, generator=generator)
    apply = torch.rand(batch, 1, generator=generator) < aug.mel_warp_probability
    factor = torch.where(apply, factor, torch.ones_like(factor))
    src = (torch.arange(mels).unsqueeze(0) / factor).clamp(0, mels - 1)  # [B, mels]
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=mels - 1)
    frac = (src - lo).unsqueeze(1)
    gather = lambda idx: features.gather(2, idx.unsqueeze(1).expand(batch, frames, mels))
    return gather(lo) * (1 - frac) + gather(hi) * frac


def spec_augment(features: torch.Tensor, aug: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Time and frequency masking on log-mel [B, frames, mels] (masked to the batch minimum)."""
    features = features.clone()
    batch, frames, mels = features.shape
    fill = features.amin(dim=(1, 2), keepdim=True)
    for count, width, axis, size in ((aug.time_masks, aug.time_mask_frames, 1, frames),
                                     (aug.freq_masks, aug.freq_mask_bins, 2, mels)):
        for _ in range(count):
            w = torch.randint(0, width + 1, (batch, 1), generator=generator)
            start = (torch.rand(batch, 1, generator=generator) * (size - w)).long()
            idx = torch.arange(size).unsqueeze(0)
            mask = (idx >= start) & (idx < start + w)  # [B, size]
            mask = mask.unsqueeze(2) if axis == 1 else mask.unsqueeze(1)
            features = torch.where(mask, fill, features)
    return features


def open_dataset(config: Config) -> Dataset:
    return load_dataset(config.data.dataset)
