import numpy as np
import pytest

from sentry.postprocess import HOP_SECONDS, Trigger, TriggerSettings, detect, smooth


def test_smoothing_is_a_trailing_mean():
    np.testing.assert_allclose(smooth(np.array([0.0, 1.0, 1.0, 1.0]), 2), [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(smooth(np.array([0.3, 0.9]), 1), [0.3, 0.9])


def test_refractory_period_suppresses_repeats():
    scores = np.zeros(100)
    scores[[10, 20, 40]] = 1.0  # 0.8 s apart, then 1.6 s later
    settings = TriggerSettings(threshold=0.5, smoothing_hops=1, refractory_s=2.0)
    times = detect(scores, settings)
    # hop 10 fires; hop 20 is 0.8 s later (suppressed); hop 40 is 2.4 s after hop 10 (fires)
    np.testing.assert_allclose(times, [11 * HOP_SECONDS, 41 * HOP_SECONDS])


def test_streaming_trigger_matches_batch_detect():
    rng = np.random.default_rng(3)
    scores = rng.random(2000) ** 4
    settings = TriggerSettings(threshold=0.6, smoothing_hops=3, refractory_s=1.0)
    trigger = Trigger(settings)
    fired = [i for i, s in enumerate(scores) if trigger.update(s)[0]]
    np.testing.assert_allclose((np.array(fired) + 1) * HOP_SECONDS, detect(scores, settings))
    assert len(fired) > 3


@pytest.mark.parametrize("kwargs", [{"threshold": 1.5}, {"smoothing_hops": 0}, {"refractory_s": -1}])
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        TriggerSettings(**kwargs)
