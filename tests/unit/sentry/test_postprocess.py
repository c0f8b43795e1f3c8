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


def test_a_slice_smooths_as_the_whole_and_a_nan_spoils_only_its_own_means():
    """The miner smooths each block's scores on their own and must get the whole file's
    means bitwise, whatever the block's start; hops it never scored are NaN."""
    scores = np.random.default_rng(4).random(5000)
    whole = smooth(scores, 4)
    for start in (1, 3, 999, 4321):
        np.testing.assert_array_equal(smooth(scores[start:], 4)[3:], whole[start + 3:])
    holed = scores.copy()
    holed[100] = np.nan
    got = smooth(holed, 4)
    assert np.isnan(got[100:104]).all()
    np.testing.assert_array_equal(np.delete(got, range(100, 104)), np.delete(whole, range(100, 104)))


def test_a_trigger_level_needs_consecutive_hops_and_level_one_is_detect():
    scores = np.random.default_rng(6).random(3000) ** 3
    settings = TriggerSettings(threshold=0.5, smoothing_hops=2, refractory_s=0.4)
    plain, level_one = Trigger(settings), Trigger(settings, level=1)
    assert [plain.update(s) for s in scores] == [level_one.update(s) for s in scores]
    level_two = Trigger(settings, level=2)
    fired = [i for i, s in enumerate(scores) if level_two.update(s)[0]]
    smoothed = smooth(scores, 2)
    assert fired and all(smoothed[i - 1] >= 0.5 and smoothed[i] >= 0.5 for i in fired)
