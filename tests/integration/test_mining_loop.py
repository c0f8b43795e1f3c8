"""The closed loop: mine a recording, confirm hits in the queue, and the next training run
loads them (hard negatives into the negative pool, a positive into the positive pool)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sentry.audio import read_wav
from sentry.detector import Detector
from sentry.postprocess import smooth
from trainer.audio import load_audio
from trainer.cli import main
from trainer.dataset import load_dataset

pytestmark = pytest.mark.integration


def _builder():
    path = Path(__file__).with_name("mining_audio.py")
    spec = importlib.util.spec_from_file_location("hark_mining_loop_audio", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hark(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_confirmed_hits_reach_the_next_training_run(tiny_dataset, exported, make_config,
                                                    tmp_path, monkeypatch):
    dataset = tmp_path / "data"
    shutil.copytree(tiny_dataset, dataset, ignore=shutil.ignore_patterns("eval"))
    recording = _builder().build_recordings(tiny_dataset, tmp_path / "rec", files=1, minutes=2, seed=5)[0]
    detector = Detector(exported)
    threshold = float(np.quantile(smooth(detector.score_pcm(read_wav(recording)), 3), 0.9))
    session = tmp_path / "night.json"
    hark("mine", session, "--model", exported, recording, "--dataset", dataset,
         "--threshold", f"{threshold:.4f}", "--merge-gap", "0.5", "--no-progress")
    hits = json.loads(hark("queue", "list", session, "--json"))
    assert len(hits) >= 8
    ids = sorted(h["id"] for h in hits)
    hark("queue", "confirm", session, f"{ids[0]}-{ids[-2]}")
    hark("queue", "confirm", session, str(ids[-1]), "--positive")

    loaded = load_dataset(dataset)
    mined_neg = [c for c in loaded.select("hard_negative") if "mined" in c.path.parts]
    mined_pos = [c for c in loaded.select("positive") if "mined" in c.path.parts]
    assert len(mined_neg) == len(ids) - 1 and len(mined_pos) == 1
    assert {c.split for c in mined_neg} >= {"train"}

    seen = {}
    from trainer import loop
    real = loop.load_pools

    def recording_pools(ds, split, max_positive_s):
        seen[split] = pools = real(ds, split, max_positive_s)
        return pools
    monkeypatch.setattr(loop, "load_pools", recording_pools)
    loop.train(make_config(dataset, **{"train.epochs": 1}), tmp_path / "run", progress=False)

    for clip in mined_neg:
        if clip.split in seen:
            audio = load_audio(clip.path)
            assert any(a.shape == audio.shape and np.array_equal(a, audio)
                       for a in seen[clip.split].negative), clip.path
    for clip in mined_pos:
        if clip.split in seen:
            audio = load_audio(clip.path)
            assert any(a.shape == audio.shape and np.array_equal(a, audio)
                       for a in seen[clip.split].positive), clip.path
    assert (tmp_path / "run").is_dir()
