"""Long test recordings for the mining integration tests, built from the tiny dataset.

Speech clips (the dataset's positives and negatives, so the tiny model fires on some and
not others) separated by gaps, over a faint noise floor; seeded, so every build is equal.
Loaded by path from the tests (test folders are not packages).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from sentry.constants import SAMPLE_RATE

NOISE_RMS = 0.003
GAP_S = (0.3, 2.5)
POSITIVE_SHARE = 0.3


def build_recordings(dataset: Path, out: Path, *, files: int, minutes: float, seed: int = 0) -> list[Path]:
    """`files` recordings of `minutes` each under `out`; every second one is FLAC."""
    rng = np.random.default_rng(seed)
    positives = [sf.read(str(p), dtype="float32")[0] for p in sorted((dataset / "positive").glob("*.wav"))]
    negatives = [sf.read(str(p), dtype="float32")[0]
                 for label in ("negative", "hard_negative")
                 for p in sorted((dataset / label).glob("*.wav"))]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(files):
        n = int(minutes * 60 * SAMPLE_RATE)
        audio = (rng.standard_normal(n) * NOISE_RMS).astype(np.float32)
        pos = int(rng.uniform(0.2, 1.0) * SAMPLE_RATE)
        while True:
            pool = positives if rng.random() < POSITIVE_SHARE else negatives
            clip = pool[rng.integers(len(pool))]
            if pos + clip.size >= n:
                break
            audio[pos:pos + clip.size] += clip
            pos += clip.size + int(rng.uniform(*GAP_S) * SAMPLE_RATE)
        path = out / f"rec{index:02d}.{'flac' if index % 2 else 'wav'}"
        sf.write(str(path), np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths
