"""judge.verifier's windowing and scoring, and judge.auth's key handling."""

from __future__ import annotations

import numpy as np
import pytest

from judge.auth import authorize, check_keys, read_keys
from judge.errors import JudgeError
from judge.verifier import (SCORED_TAIL_HOPS, STEP_SAMPLES, WINDOW_SPAN_SAMPLES, Verifier,
                            best_smoothed, window_ends)
from sentry.constants import CLIP_SAMPLES, HOP_SAMPLES, SAMPLE_RATE
from sentry.detector import Detector
from sentry.judge_client import clip_span

SENTRY_CLIP = 35_840  # samples in 2.24 s: what a sentry sends (2.0 s of lead, 3 hops after)
FRAME_HALF = 80  # samples: half a mel frame step, a misalignment the tests must see


def test_windows_end_on_the_hop_grid_counted_back_from_the_clip_end():
    ends = window_ends(SENTRY_CLIP)
    assert ends[-1] == SENTRY_CLIP and set(np.diff(ends)) == {STEP_SAMPLES}
    # Every window lies wholly inside the clip, and no whole window is left out.
    assert ends[0] >= WINDOW_SPAN_SAMPLES > ends[0] - STEP_SAMPLES
    # The window the sentry fired on (3 hops before the clip's end) is among them.
    assert SENTRY_CLIP - 3 * STEP_SAMPLES in set(ends)


def test_a_long_clip_is_scored_over_its_last_hops_only():
    ends = window_ends(10 * SAMPLE_RATE)
    assert ends.size == SCORED_TAIL_HOPS + 1
    assert ends[-1] - ends[0] == SCORED_TAIL_HOPS * STEP_SAMPLES


def test_a_clip_shorter_than_a_window_gets_one_window_at_its_end():
    assert window_ends(1000).tolist() == [1000]
    assert window_ends(WINDOW_SPAN_SAMPLES).tolist() == [WINDOW_SPAN_SAMPLES]
    assert window_ends(WINDOW_SPAN_SAMPLES + STEP_SAMPLES - 1).size == 1
    assert window_ends(WINDOW_SPAN_SAMPLES + STEP_SAMPLES).size == 2


def test_the_judge_scores_exactly_the_windows_the_sentry_scored(judge_model, judge_spec):
    """A clip cut as the sentry cuts it: each window's score is the sentry's score at the
    hop where that window ends (same graphs, same framing)."""
    verifier, sentry = Verifier(judge_model), Detector(judge_model)
    stream = judge_spec.make_clip(8.0, (4.6, 5.5))  # 0.9 s: windows part tone, scores differ
    fired_at = 5.6  # seconds: on the hop grid, as every detection time is
    start, end = clip_span(fired_at)
    ends, scores = verifier.window_scores(stream[start:end])
    hops = (start + ends) // HOP_SAMPLES - 1  # sentry score i belongs to the end of hop i
    streamed = sentry.score_pcm(stream)
    np.testing.assert_allclose(scores, streamed[hops], atol=1e-5)
    assert scores.max() > 0.5 and scores.min() < scores.max() - 0.01


def test_window_scores_match_the_clip_graph_on_the_same_windows(judge_model, judge_spec):
    """clip.onnx on [end - WINDOW_SPAN_SAMPLES, end + 80): its last 80 samples are never
    framed, so the judge's features-once path must equal it; one sample off the grid
    would not."""
    import onnxruntime as ort

    clip_graph = ort.InferenceSession(str(judge_model / "clip.onnx"),
                                      providers=["CPUExecutionProvider"])
    verifier = Verifier(judge_model)
    # (2.24, (1.0, 1.8)) leaves about half of each window tone: scores near 0.5, where
    # they move most with the alignment.
    for seconds, tone in [(2.24, (1.0, 1.8)), (2.0, (0.1, 1.2)), (1.2, (0.3, 1.0)), (9.0, (7.4, 8.6))]:
        pcm = judge_spec.make_clip(seconds, tone)
        ends, scores = verifier.window_scores(pcm)
        padded = np.concatenate([np.zeros(WINDOW_SPAN_SAMPLES, np.float32), pcm,
                                 np.zeros(CLIP_SAMPLES - WINDOW_SPAN_SAMPLES, np.float32)])

        def clip_scores(shift: int) -> np.ndarray:
            windows = np.stack([padded[e + shift:e + shift + CLIP_SAMPLES] for e in ends])
            return clip_graph.run(None, {"pcm": windows})[0]

        np.testing.assert_allclose(scores, clip_scores(0), atol=1e-4)
        if seconds == 2.24:
            assert np.abs(scores - clip_scores(-FRAME_HALF)).max() > 1e-3
        k = min(verifier.manifest.smoothing_hops, scores.size)
        smoothed = [scores[i:i + k].mean() for i in range(scores.size - k + 1)]
        assert verifier.score(pcm) == pytest.approx(float(max(smoothed)), abs=1e-6)


def test_the_score_is_the_best_run_of_smoothing_hops_windows_not_a_lone_spike():
    spike = np.array([0.1, 0.1, 0.95, 0.1, 0.1, 0.1])
    held = np.array([0.1, 0.7, 0.75, 0.8, 0.1, 0.1])
    assert best_smoothed(spike, 3) == pytest.approx(0.3833333)
    assert best_smoothed(held, 3) == pytest.approx(0.75)
    assert best_smoothed(spike, 1) == pytest.approx(0.95)
    assert best_smoothed(np.array([0.9, 0.5]), 3) == pytest.approx(0.7)  # fewer windows: all


def test_a_short_clip_is_preceded_by_silence_as_a_stream_start_is(judge_model, judge_spec):
    pcm = judge_spec.make_clip(0.8, (0.1, 0.8))  # 10 hops: shorter than a window
    ends, scores = Verifier(judge_model).window_scores(pcm)
    assert ends.tolist() == [pcm.size]
    assert scores[0] == pytest.approx(float(Detector(judge_model).score_pcm(pcm)[-1]), abs=1e-6)


def test_an_early_wake_word_in_a_long_clip_is_not_scored(judge_model, judge_spec):
    verifier = Verifier(judge_model)
    assert verifier.score(judge_spec.make_clip(9.0, (7.2, 8.9))) > 0.99
    assert verifier.score(judge_spec.make_clip(9.0, (0.2, 1.9))) < 0.01


def test_verifier_describes_itself(judge_model):
    verifier = Verifier(judge_model, threshold=0.7)
    info = verifier.describe()
    assert info["threshold"] == 0.7 and info["manifest_threshold"] == 0.5
    assert info["sample_rate"] == SAMPLE_RATE and info["name"] == "test_tone"
    assert info["scored_tail_seconds"] == pytest.approx(SCORED_TAIL_HOPS * 0.08)
    with pytest.raises(JudgeError, match="threshold must be in"):
        Verifier(judge_model, threshold=1.5)


def test_keys_files_allow_comments_and_dedupe(tmp_path):
    path = tmp_path / "keys"
    path.write_text("alpha-0123456789abcdef # phone\n\n# old: beta\nalpha-0123456789abcdef\n")
    keys = read_keys(path, environ={"HARK_JUDGE_KEYS": "gamma-0123456789abcdef  delta-0123456789abcdef"})
    assert check_keys(keys) == ("alpha-0123456789abcdef", "gamma-0123456789abcdef",
                                "delta-0123456789abcdef")


def test_authorize_accepts_any_configured_key_and_nothing_else():
    keys = ("alpha-0123456789abcdef", "gamma-0123456789abcdef")
    authorize("Bearer gamma-0123456789abcdef", keys)
    authorize("bearer  alpha-0123456789abcdef ", keys)  # the scheme is case-insensitive
    for header in ["Bearer alpha-0123456789abcde", "Bearer alpha-0123456789abcdefX",
                   "Token alpha-0123456789abcdef", "", None]:
        with pytest.raises(JudgeError) as info:
            authorize(header, keys)
        assert info.value.status == 401


def test_the_judge_imports_nothing_of_the_trainer_or_torch():
    """judge/ runs on a server without torch; it may use sentry's small pieces only."""
    import ast
    from pathlib import Path

    import judge

    forbidden = {"torch", "torchaudio", "scipy", "trainer", "soundfile", "plugins"}
    seen = {}
    for path in Path(judge.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                seen.setdefault(name.split(".")[0], set()).add(path.name)
    assert not forbidden & set(seen), {k: seen[k] for k in forbidden & set(seen)}
    assert "sentry" in seen and "flask" in seen  # the check does see imports


def test_the_judge_model_scores_where_flask_is_not_installed(judge_model, judge_spec, tmp_path):
    """judge.verifier (and `from judge import create_app`) import without Flask; only
    serving needs it."""
    import json
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    import judge

    clip = judge_spec.make_clip(2.24, (1.0, 1.8))
    np.save(tmp_path / "clip.npy", clip)
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys
        import numpy as np

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("flask", "werkzeug"):
                    raise ImportError(name + " is not installed here")
                return None

        sys.meta_path.insert(0, Block())
        from judge import create_app
        from judge.verifier import Verifier
        score = Verifier({str(judge_model)!r}).score(np.load({str(tmp_path / "clip.npy")!r}))
        print(json.dumps({{"score": score, "callable": callable(create_app)}}))
    """)
    root = Path(judge.__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"score": Verifier(judge_model).score(clip), "callable": True}
