"""Fixtures for the mining unit tests: the sentry tests' closed-form tone model and audio.

The tone model (tests/unit/sentry/conftest.py) fires on 1600 Hz bursts and not on quiet
noise, so where hits must appear is known in advance. That conftest is loaded by path,
as test folders are not packages under --import-mode=importlib.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

_SENTRY_CONFTEST = Path(__file__).parents[1] / "sentry" / "conftest.py"
_spec = importlib.util.spec_from_file_location("hark_test_sentry_fixtures", _SENTRY_CONFTEST)
tone = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tone)

BURSTS_S = [3.0, 9.0, 9.9, 40.0, 163.7, 170.0, 250.5]
"""Burst starts in the long fixture file: two close together (one merged hit), one right
at the first block boundary (2048 hops = 163.84 s), one near the file start."""
LONG_S = 260.0


@pytest.fixture(scope="session")
def tone_kit():
    """The sentry fixtures' module: make_bursts, write_model_dir and the tone constants."""
    return tone


@pytest.fixture(scope="session")
def tone_model(tmp_path_factory) -> Path:
    return tone.write_model_dir(tmp_path_factory.mktemp("mining_model") / "model",
                                threshold=0.5, smoothing_hops=3, refractory_s=1.0)


@pytest.fixture(scope="session")
def long_wav(tmp_path_factory) -> Path:
    """260 s of quiet noise with tone bursts, 16 kHz int16: crosses one block boundary."""
    path = tmp_path_factory.mktemp("mining_audio") / "long.wav"
    sf.write(str(path), tone.make_bursts(LONG_S, BURSTS_S, seed=3), 16_000, subtype="PCM_16")
    return path


@pytest.fixture()
def audio_folder(tmp_path) -> Path:
    """Three short files (one a 44.1 kHz stereo FLAC) in nested folders."""
    root = tmp_path / "rec"
    (root / "b").mkdir(parents=True)
    sf.write(str(root / "a.wav"), tone.make_bursts(20.0, [5.0], seed=1), 16_000, subtype="PCM_16")
    stereo = tone.make_bursts(15.0, [2.0, 11.0], rate=44_100, seed=2)
    sf.write(str(root / "b" / "c.flac"), np.stack([stereo, stereo], axis=1), 44_100)
    sf.write(str(root / "b" / "d.wav"), tone.make_bursts(12.0, [], seed=4), 16_000, subtype="PCM_16")
    return root
