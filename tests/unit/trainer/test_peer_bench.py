"""The side-by-side benchmark's scoring (benchmarks/peers.py, benchmarks/peer_systems.py).

Runs without the peer packages: scoring is checked on a synthetic system whose scores are
known, parameter counting on hand-built ONNX and TFLite files, and a missing peer package
must give a clear PeerUnavailable naming the install command, not an ImportError.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import peer_systems
import peers

from sentry.constants import HOP_SAMPLES, SAMPLE_RATE

BURST = 0.5
"""Amplitude of the synthetic 'wake word': the fake system scores a hop 1.0 when any sample
is this loud, else 0.0."""


def burst_system(threshold: float = 0.5) -> peer_systems.System:
    def score_hop(chunk: np.ndarray) -> float:
        return 1.0 if float(np.max(np.abs(chunk))) >= BURST else 0.0

    return peer_systems.System("burst", "test word", threshold, 1, 1234, 56, score_hop, lambda: None)


def stream_with_bursts(seconds: float, starts_s: list[float], length_s: float = 0.6) -> np.ndarray:
    pcm = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
    for start in starts_s:
        a = int(start * SAMPLE_RATE)
        pcm[a:a + int(length_s * SAMPLE_RATE)] = BURST
    return pcm


def test_evaluate_system_counts_hits_misses_and_false_accepts():
    # three wake words; the fake system hears two of them (the third region is silent)
    positive = stream_with_bursts(20.0, [2.0, 8.0])
    regions = [{"start_s": s, "end_s": s + 0.6, "condition": c, "reverb": r}
               for s, c, r in ((2.0, "clean", False), (8.0, "5", True), (14.0, "5", False))]
    negative = stream_with_bursts(120.0, [30.0, 90.0])  # two false accepts in 2 minutes
    result, pos_scores, neg_scores = peers.evaluate_system(burst_system(), positive, regions, negative)

    assert pos_scores.size == positive.size // HOP_SAMPLES
    assert neg_scores.size == negative.size // HOP_SAMPLES
    assert result["at_default"]["frr"] == pytest.approx(1 / 3)
    assert result["at_default"]["false_accepts"] == 2
    assert result["at_default"]["fa_per_hour"] == pytest.approx(2 / (120.0 / 3600.0), rel=0.01)
    by_condition = result["at_default"]["frr_by_condition"]
    assert by_condition["clean"] == 0.0 and by_condition["5"] == 0.5
    assert by_condition["reverberated"] == 0.0
    # no threshold below 1 removes the two false accepts, so <= 0.5 and <= 1 FA/h are never met
    assert result["at_fa_per_hour"] == {"0.5": None, "1.0": None}
    assert result["model_bytes"] == 1234 and result["parameters"] == 56
    assert result["cpu_s"] >= 0.0 and len(result["load_average_after"]) == 3


def test_clean_negatives_meet_the_rate_and_table_prints(capsys):
    positive = stream_with_bursts(10.0, [2.0, 6.0])
    regions = [{"start_s": s, "end_s": s + 0.6, "condition": "clean", "reverb": False}
               for s in (2.0, 6.0)]
    result, _, _ = peers.evaluate_system(burst_system(), positive, regions, np.zeros(60 * SAMPLE_RATE,
                                                                                   np.float32),
                                         confusables=[(10.0, 12.0)])
    assert result["at_fa_per_hour"]["0.5"]["frr"] == 0.0
    assert result["at_fa_per_hour"]["1.0"]["frr_by_condition"] == {"clean": 0.0}
    assert result["without_confusables"]["negative_hours"] == pytest.approx((60 - 3.5) / 3600, abs=1e-4)
    peers.print_table([result])
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.startswith("| test word | burst | 0.0% | 0.0% | 0.0% | 0.5 | 0.0% / 0.00 |")


def test_missing_peer_package_is_a_clear_skip(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyopen_wakeword", None)  # import now raises ImportError
    monkeypatch.setitem(sys.modules, "pymicro_wakeword", None)
    for make in peer_systems.PEERS.values():
        with pytest.raises(peer_systems.PeerUnavailable, match="pip install pyopen-wakeword"):
            make("hey jarvis")


def test_peer_without_the_word_is_a_clear_skip():
    pytest.importorskip("pymicro_wakeword", reason="pymicro-wakeword is an optional bench extra")
    with pytest.raises(peer_systems.PeerUnavailable, match="ships no model for 'hey banana'"):
        peer_systems.microwakeword("hey banana")


def test_onnx_parameters_counts_initializer_elements(tmp_path):
    weight = numpy_helper.from_array(np.ones((3, 4), np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight, bias])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert peer_systems.onnx_parameters(path) == 16


def _tflite(tensors: list[tuple[list[int], int]], buffer_bytes: list[int]) -> bytes:
    """A minimal TFLite flatbuffer: one subgraph of (shape, buffer index) tensors and buffers
    holding that many bytes of data (0: empty). Operators are irrelevant to counting."""
    flatbuffers = pytest.importorskip("flatbuffers", reason="flatbuffers comes with onnxruntime")
    b = flatbuffers.Builder(256)
    buffers = []
    for n in buffer_bytes:
        data = b.CreateByteVector(bytes(n)) if n else None
        b.StartObject(3)
        if data is not None:
            b.PrependUOffsetTRelativeSlot(0, data, 0)
        buffers.append(b.EndObject())
    tensor_offsets = []
    for shape, buffer in tensors:
        b.StartVector(4, len(shape), 4)
        for dim in reversed(shape):
            b.PrependInt32(dim)
        shape_vec = b.EndVector()
        b.StartObject(6)
        b.PrependUOffsetTRelativeSlot(0, shape_vec, 0)
        b.PrependUint32Slot(2, buffer, 0)
        tensor_offsets.append(b.EndObject())

    def vector(offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    tensors_vec = vector(tensor_offsets)
    b.StartObject(5)
    b.PrependUOffsetTRelativeSlot(0, tensors_vec, 0)
    subgraph = b.EndObject()
    subgraphs_vec, buffers_vec = vector([subgraph]), vector(buffers)
    b.StartObject(5)
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(2, subgraphs_vec, 0)
    b.PrependUOffsetTRelativeSlot(4, buffers_vec, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def test_tflite_parameters_counts_only_tensors_with_data(tmp_path):
    # a [2, 3] weight and a [5] bias hold data; an activation ([1, 8], buffer 0) and a
    # tensor pointing at an empty buffer (streaming state) do not count
    path = tmp_path / "m.tflite"
    path.write_bytes(_tflite([([2, 3], 1), ([1, 8], 0), ([5], 2), ([7], 3)], [0, 6, 20, 0]))
    assert peer_systems.tflite_parameters(path) == 11


def test_benchset_places_every_wake_word_where_its_regions_say(tmp_path):
    import shutil

    from trainer.audio import load_audio
    from trainer.synth import benchset

    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (apt-get install flite)")
    manifest = benchset.build_benchset(["hey jarvis"], tmp_path, negative_minutes=0.25,
                                       per_voice=4, voices=["flite:kal", "flite:slt"], seed=3,
                                       progress=False)
    folder = tmp_path / "hey_jarvis"
    regions = benchset.regions_of(folder)
    stream = load_audio(folder / benchset.POSITIVE_STREAM)
    assert manifest["positive"]["hey jarvis"]["conditions"] == {c: 2 for c in benchset.CONDITIONS}
    assert sorted({r["voice"] for r in regions}) == ["flite:kal", "flite:slt"]
    rms = lambda x: float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    checked = 0
    for region in regions:
        a, b = (int(region[k] * SAMPLE_RATE) for k in ("start_s", "end_s"))
        assert 0 < a < b <= stream.size
        if region["before"]:
            continue  # the speaker was talking just before: no quiet stretch to compare with
        # the scene's gap (>= 2.5 s) holds only its noise: the wake word stands out of it,
        # by far when clean, by something like the SNR when noisy
        gap = stream[a - int(2.0 * SAMPLE_RATE):a - int(1.6 * SAMPLE_RATE)]
        ratio = rms(stream[a:b]) / rms(gap)
        assert ratio > (10.0 if region["condition"] == "clean" else 1.2), region
        checked += 1
    assert checked >= 2
    negative = load_audio(tmp_path / benchset.NEGATIVE_STREAM)
    assert negative.size >= 0.25 * 60 * SAMPLE_RATE
    assert manifest["negative"]["segments"]
    spans = benchset.confusable_spans(tmp_path)
    assert len(spans) == manifest["negative"]["segments"].get("confusable", 0)
    assert all(0 <= a < b <= negative.size / SAMPLE_RATE for a, b in spans)


def test_several_hark_models_per_word(tmp_path):
    runs = [tmp_path / name for name in ("a", "b", "c")]
    for run in runs:
        run.mkdir()
    pairs = peers._pairs([f"Hey Jarvis={runs[0]}", f"hey jarvis={runs[1]}@seed 7",
                          f"hey jarvis={runs[2]}", f"alexa={runs[2]}"], "--hark")
    assert pairs == {"hey jarvis": [("Hark sentry", runs[0]), ("Hark sentry (seed 7)", runs[1]),
                                    ("Hark sentry (3)", runs[2])],
                     "alexa": [("Hark sentry", runs[2])]}
    with pytest.raises(SystemExit, match="WORD=EXPORTED_MODEL_DIR"):
        peers._pairs([str(runs[0])], "--hark")
    # a folder that is gone is allowed here: its result may be in the cache
    assert peers._pairs([f"alexa={tmp_path / 'gone'}"], "--hark") == \
        {"alexa": [("Hark sentry", tmp_path / "gone")]}


def test_result_cache_reuses_only_what_matches_the_audio_and_model(tmp_path):
    model = tmp_path / "export"
    model.mkdir()
    (model / "model.onnx").write_bytes(b"weights")
    (model / "manifest.json").write_text("{}")
    key = {"audio": "a1", "model": peers.model_digest(model)}
    cache = peers.ResultCache(tmp_path / "cache")
    assert cache.get("hey jarvis", "Hark sentry", str(model), key) is None
    cache.put("hey jarvis", "Hark sentry", str(model), key, {"system": "Hark sentry"}, {"j": {"x": 1}})
    entry = cache.get("hey jarvis", "Hark sentry", str(model), key)
    assert entry["result"] == {"system": "Hark sentry"} and entry["cascades"] == {"j": {"x": 1}}
    assert cache.get("hey jarvis", "Hark sentry", str(model), {**key, "audio": "a2"}) is None
    assert cache.get("alexa", "Hark sentry", str(model), key) is None
    (model / "manifest.json").write_text('{"threshold": 0.7}')  # a new threshold: scored again
    assert cache.get("hey jarvis", "Hark sentry", str(model),
                     {**key, "model": peers.model_digest(model)}) is None
    # the folder is gone: its result is taken on the audio's key alone
    assert cache.get("hey jarvis", "Hark sentry", str(model), {**key, "model": None}) is not None
    assert peers.ResultCache(None).get("hey jarvis", "Hark sentry", str(model), key) is None


def test_false_accepts_on_confusables_can_be_left_out():
    n = 1000  # 80 s of negative scores: one burst inside a confusable phrase, one in speech
    neg = np.zeros(n)
    neg[100:104] = 0.9  # 8.0-8.3 s: the confusable phrase at 7-8 s (its tail lasts to 9.5 s)
    neg[600:604] = 0.9
    keep = peers.ordinary_mask(n, [(7.0, 8.0)])
    assert not keep[87:119].any() and keep[:87].all() and keep[119:].all()
    rows = [{"threshold": 0.5, "frr": 0.1, "false_accepts": 2, "fa_per_hour": 0.0}]
    (row,) = peers.without_confusables(rows, neg, keep, smoothing_hops=1)
    assert row["false_accepts"] == 1 and row["frr"] == 0.1
    assert row["fa_per_hour"] == pytest.approx(1 / (keep.sum() * 0.08 / 3600))


def test_the_esphome_path_scores_microwakewords_own_model_as_its_package_does():
    """Hark's TFLite Micro system (frontend, ESPHome's int8 mapping, tflite-micro, ESPHome's
    sliding mean) run on microWakeWord's own hey_jarvis files gives nearly the scores of
    pymicro-wakeword's own runtime. Not exactly: that package quantizes the features from
    floats and reads a probability as q / 256, where ESPHome maps the frontend's integers and
    compares q / 255 (what this path does)."""
    pytest.importorskip("tflite_micro")
    pytest.importorskip("pymicro_features")
    mww = pytest.importorskip("pymicro_wakeword")
    from pathlib import Path

    from trainer.synth.heldout import list_heldout_voices, synthesize_heldout

    voice = list_heldout_voices()[0]
    speech = synthesize_heldout("hey jarvis, turn on the lights", voice)
    pcm = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), speech / np.abs(speech).max() * 0.5,
                          np.zeros(SAMPLE_RATE, np.float32)])
    ours = peer_systems.hark_tflm(Path(mww.__file__).parent / "models" / "hey_jarvis.json",
                                  "hey jarvis")
    theirs = peer_systems.microwakeword("hey jarvis")
    assert ours.default_threshold == theirs.default_threshold == 0.97
    a, _ = ours.scores(pcm)
    b, _ = theirs.scores(pcm)
    assert a.shape == b.shape and a.max() > 0.9  # it heard the wake word
    np.testing.assert_allclose(a, b * 256 / 255, atol=0.05)
    assert np.corrcoef(a, b)[0, 1] > 0.99
