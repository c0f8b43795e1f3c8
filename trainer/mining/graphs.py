"""The exported model's two graphs, opened for throughput rather than latency.

The miner scores with the very graphs the sentry ships (features.onnx, then model.onnx or
model.int8.onnx). One change is made, in memory only: onnxruntime's CPU ``STFT`` kernel is
a naive loop that takes ~97% of the feature graph's time, so the STFT node is replaced by
the same transform written as ``Gather`` (framing) + ``MatMul`` (a windowed DFT matrix built
from the graph's own window and frame step). Everything after it (magnitude, mel matmul,
log, scaling) is the exported graph unchanged. The rewrite is checked on load against the
untouched graph; if the graph does not have the expected shape or the check fails, the
original graph is used (slower, same scores). ``exact_features=True`` skips the rewrite.

Needs numpy, onnx and onnxruntime only: the scan path never imports torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sentry.constants import HOP_FRAMES, HOP_SAMPLES, N_MELS, OVERLAP_SAMPLES
from sentry.errors import SentryError
from sentry.manifest import Manifest, load_manifest

from . import DEFAULT_THREADS, MiningError

log = logging.getLogger(__name__)

FEATURE_INPUT_SAMPLES = OVERLAP_SAMPLES + HOP_SAMPLES
"""Samples features.onnx takes per hop (1520)."""

REWRITE_MAX_ABS_DIFF = 1e-3
"""Largest log-mel difference (natural-log units) allowed between the rewritten and the
original feature graph on the load-time check; measured ~1e-4 on the shipped models,
against an export parity tolerance of 1e-2."""

CHECK_HOPS = 64
"""Hops of seeded noise and tones used for the load-time check of the rewrite."""



@dataclass
class Graphs:
    """The two opened graphs of one exported model folder.

    features(pcm [B, 1520] float32) -> [B, HOP_FRAMES, N_MELS]; model(frames [B, 148, 40])
    -> prob [B]. ``rewritten`` says whether the fast STFT rewrite is in use.
    """

    manifest: Manifest
    features: ort.InferenceSession
    model: ort.InferenceSession
    rewritten: bool
    model_file: str

    def run_features(self, pcm: np.ndarray) -> np.ndarray:
        return self.features.run(None, {self.features.get_inputs()[0].name: pcm})[0]

    def run_model(self, windows: np.ndarray) -> np.ndarray:
        out = self.model.run(None, {self.model.get_inputs()[0].name: windows})[0].reshape(-1)
        if out.size != windows.shape[0]:
            raise MiningError(f"{self.model_file}: returned {out.size} scores for "
                              f"{windows.shape[0]} windows; re-export the model with `hark export`")
        return out


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # the rewrite leaves the STFT's constants unused
    # Idle worker threads spinning for work burn a shared core for nothing.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _session(source: str | bytes, threads: int) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(source, sess_options=_options(threads),
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises bare RuntimeError subclasses
        name = source if isinstance(source, str) else "rewritten features graph"
        raise MiningError(f"{name}: cannot load the ONNX graph ({exc}); re-export the model "
                          "with `hark export`") from exc


def rewrite_stft(path: Path) -> bytes | None:
    """features.onnx with its STFT node replaced by Gather + MatMul, or None when the
    graph is not the expected single onesided STFT with a constant window and step."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    stfts = [i for i, node in enumerate(graph.node) if node.op_type == "STFT"]
    if len(stfts) != 1:
        return None
    index = stfts[0]
    node = graph.node[index]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    inits = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    if (attrs.get("onesided", 1) != 1 or len(node.input) < 3 or node.input[1] not in inits
            or node.input[2] not in inits):
        return None
    window = inits[node.input[2]].astype(np.float64)
    length = node.input[3] if len(node.input) > 3 else ""  # optional; must match the window
    if length and (length not in inits or int(inits[length]) != window.size):
        return None
    step = int(inits[node.input[1]])
    size = window.size
    if size > FEATURE_INPUT_SAMPLES or step < 1:
        return None
    frames = 1 + (FEATURE_INPUT_SAMPLES - size) // step
    bins = size // 2 + 1
    n = np.arange(size)[:, None]
    k = np.arange(bins)[None, :]
    # Columns interleave (real, imag) per bin so a reshape gives the STFT's [..., bins, 2].
    dft = np.empty((size, 2 * bins))
    dft[:, 0::2] = window[:, None] * np.cos(2 * np.pi * k * n / size)
    dft[:, 1::2] = -window[:, None] * np.sin(2 * np.pi * k * n / size)
    gather = (np.arange(frames)[:, None] * step + np.arange(size)[None, :]).astype(np.int64)
    new_nodes = [
        helper.make_node("Reshape", [node.input[0], "mine_pcm_shape"], ["mine_pcm"]),
        helper.make_node("Gather", ["mine_pcm", "mine_frame_index"], ["mine_frames"], axis=1),
        helper.make_node("MatMul", ["mine_frames", "mine_dft"], ["mine_spectrum"]),
        helper.make_node("Reshape", ["mine_spectrum", "mine_stft_shape"], [node.output[0]]),
    ]
    graph.initializer.extend([
        numpy_helper.from_array(np.array([-1, FEATURE_INPUT_SAMPLES], np.int64), "mine_pcm_shape"),
        numpy_helper.from_array(gather, "mine_frame_index"),
        numpy_helper.from_array(dft.astype(np.float32), "mine_dft"),
        numpy_helper.from_array(np.array([-1, frames, bins, 2], np.int64), "mine_stft_shape"),
    ])
    del graph.node[index]
    for offset, new in enumerate(new_nodes):
        graph.node.insert(index + offset, new)
    return model.SerializeToString()


def _check_input(seed: int = 0) -> np.ndarray:
    """Seeded noise at several levels plus a tone: the check covers quiet and loud hops."""
    rng = np.random.default_rng(seed)
    levels = np.logspace(-4, -0.5, CHECK_HOPS)[:, None]
    noise = rng.standard_normal((CHECK_HOPS, FEATURE_INPUT_SAMPLES)) * levels
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * np.arange(FEATURE_INPUT_SAMPLES) / 16_000.0)
    noise[0] = tone
    return noise.astype(np.float32)


def open_graphs(model_dir: str | Path, *, int8: bool = False, exact_features: bool = False,
                threads: int = DEFAULT_THREADS) -> Graphs:
    """Open an exported model folder for mining.

    int8: score with model.int8.onnx when the manifest lists it (~30% faster on CPU, scores
        within ~0.02 of model.onnx), else model.onnx.
    exact_features: run features.onnx untouched (about 10x slower feature extraction).
    """
    model_dir = Path(model_dir)
    try:
        manifest = load_manifest(model_dir)
    except SentryError as exc:
        raise MiningError(str(exc)) from exc
    for role in ("features", "model"):
        if role not in manifest.files:
            raise MiningError(f"{model_dir}: the manifest lists no '{role}' graph; re-export "
                              "the model with `hark export`")
    role = "model_int8" if int8 and "model_int8" in manifest.files else "model"
    features_path = model_dir / manifest.files["features"]
    original = _session(str(features_path), threads)
    features, rewritten = original, False
    if not exact_features:
        blob = rewrite_stft(features_path)
        if blob is not None:
            fast = _session(blob, threads)
            probe = _check_input()
            name = original.get_inputs()[0].name
            want = original.run(None, {name: probe})[0]
            got = fast.run(None, {fast.get_inputs()[0].name: probe})[0]
            diff = float(np.max(np.abs(want - got))) if want.shape == got.shape else np.inf
            if diff <= REWRITE_MAX_ABS_DIFF:
                features, rewritten = fast, True
            else:
                log.warning("%s: the fast STFT rewrite differs by %.3g (> %.0e); using the "
                            "original graph", features_path, diff, REWRITE_MAX_ABS_DIFF)
    model_path = model_dir / manifest.files[role]
    graphs = Graphs(manifest, features, _session(str(model_path), threads), rewritten,
                    manifest.files[role])
    shape = graphs.run_features(np.zeros((1, FEATURE_INPUT_SAMPLES), np.float32)).shape
    if shape != (1, HOP_FRAMES, N_MELS):
        raise MiningError(f"{features_path}: returns {list(shape)} for one hop, expected "
                          f"[1, {HOP_FRAMES}, {N_MELS}]; re-export the model")
    return graphs
