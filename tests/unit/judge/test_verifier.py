"""judge.verifier's windowing and scoring, and judge.auth's key handling."""

from __future__ import annotations

import numpy as np
import pytest

from judge.auth import authorize, check_keys, read_keys
from judge.errors import JudgeError
from judge.verifier import STEP_SAMPLES, Verifier, sliding_windows
from sentry.constants import CLIP_SAMPLES, SAMPLE_RATE


def test_windows_end_at_the_clip_end_every_hop_and_one_starts_at_zero():
    n = 35_840  # 2.24 s: what a sentry sends
    pcm = np.arange(n, dtype=np.float32)
    windows = sliding_windows(pcm)
    starts = windows[:, 0].astype(int)
    assert windows.shape[1] == CLIP_SAMPLES
    assert starts[-1] == n - CLIP_SAMPLES and starts[0] == 0
    assert set(np.diff(starts[1:])) == {STEP_SAMPLES}
    assert (starts[1] - 0) < STEP_SAMPLES  # the extra window at the start
    # The window that ends 3 hops before the clip's end (the sentry's firing window) is there.
    assert n - 3 * STEP_SAMPLES - CLIP_SAMPLES in set(starts)


def test_a_short_clip_is_preceded_by_silence():
    pcm = np.ones(1000, np.float32)
    windows = sliding_windows(pcm)
    assert windows.shape == (1, CLIP_SAMPLES)
    assert windows[0, :-1000].sum() == 0 and windows[0, -1000:].sum() == 1000


def test_an_exact_window_is_scored_once():
    assert sliding_windows(np.zeros(CLIP_SAMPLES, np.float32)).shape == (1, CLIP_SAMPLES)


def test_score_is_the_best_window_and_batches_agree(judge_model, judge_spec):
    verifier = Verifier(judge_model)
    long = judge_spec.make_clip(9.0, (6.0, 7.6))  # > BATCH_WINDOWS windows, tone late
    windows = sliding_windows(long)
    assert windows.shape[0] > 32
    per_window = [verifier.score(w) for w in windows]
    assert verifier.score(long) == pytest.approx(max(per_window), abs=1e-6)
    assert int(np.argmax(per_window)) > windows.shape[0] // 2


def test_verifier_describes_itself(judge_model):
    verifier = Verifier(judge_model, threshold=0.7)
    info = verifier.describe()
    assert info["threshold"] == 0.7 and info["manifest_threshold"] == 0.5
    assert info["sample_rate"] == SAMPLE_RATE and info["name"] == "test_tone"
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
    assert "sentry" in seen and "onnxruntime" in seen  # the check does see imports
