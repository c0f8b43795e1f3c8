"""The in-process cascade judge is the judge's own clip score, and needs neither Flask nor
the judge package (trainer.cascade scores with sentry.scoring)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf

from judge.verifier import Verifier
from sentry.constants import SAMPLE_RATE
from sentry.detector import Detector
from trainer.audio import load_audio
from trainer.cascade import evaluate_cascade_set

_SENTRY_CONFTEST = Path(__file__).parents[1] / "sentry" / "conftest.py"
_spec = importlib.util.spec_from_file_location("hark_test_sentry_fixtures_cascade",
                                               _SENTRY_CONFTEST)
tone = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tone)

REPO_ROOT = Path(__file__).resolve().parents[3]
SENTRY_THRESHOLD = 0.3
"""Low enough that the tone model fires on the short and quiet bursts of the negative
stream too, so the judge rules on false accepts as well as on wake words."""
TIMING_KEYS = ("elapsed_s", "judge_ms_mean")

SCRIPT = textwrap.dedent("""
    import importlib.abc, json, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("flask", "werkzeug", "judge"):
                raise ImportError(name + " is not installed here")
            return None

    sys.meta_path.insert(0, Block())
    from trainer.cascade import evaluate_cascade

    reports = evaluate_cascade({model!r}, {eval_root!r}, sentry_threshold={threshold!r},
                               progress=False)
    print(json.dumps([r.to_dict() for r in reports]))
""")


def _eval_set(folder: Path) -> Path:
    """One evaluation set: four wake words (full tone bursts) and a negative stream of
    shorter, quieter bursts that the sentry fires on at a low threshold."""
    (folder / "positive").mkdir(parents=True)
    for k in range(4):
        sf.write(str(folder / "positive" / f"{k}.wav"), tone.make_bursts(1.5, [0.4], seed=k),
                 SAMPLE_RATE, subtype="PCM_16")
    negative = tone.make_bursts(40.0, [3.0, 11.0, 19.5, 30.0], burst_s=0.12, amplitude=0.2,
                                seed=9)
    sf.write(str(folder / "negative_stream.wav"), negative, SAMPLE_RATE, subtype="PCM_16")
    return folder


def _without_timing(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in TIMING_KEYS}


def test_the_in_process_judge_needs_no_flask_and_scores_as_the_judge(tmp_path):
    model = tone.write_model_dir(tmp_path / "model", smoothing_hops=3)
    folder = _eval_set(tmp_path / "eval" / "tones")
    script = SCRIPT.format(model=str(model), eval_root=str(tmp_path / "eval"),
                           threshold=SENTRY_THRESHOLD)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout.strip().splitlines()[-1])

    # The same evaluation with the judge's own Verifier gives the same report.
    positives = [load_audio(p) for p in sorted((folder / "positive").glob("*.wav"))]
    expected = evaluate_cascade_set(
        Detector(model, threshold=SENTRY_THRESHOLD), Verifier(model), positives,
        load_audio(folder / "negative_stream.wav"), rng=np.random.default_rng(0), name="tones")
    assert _without_timing(report) == _without_timing(json.loads(json.dumps(expected.to_dict())))
    assert report["judge_calls"] > 0 and report["sentry"]["false_accepts"] > 0
