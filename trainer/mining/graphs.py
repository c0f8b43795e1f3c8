"""The exported model's two graphs, opened for throughput rather than latency.

The miner scores with the very graphs the sentry ships (features.onnx, then model.onnx or
model.int8.onnx), unchanged, in single-threaded sessions that do not spin while idle.

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


@dataclass
class Graphs:
    """The two opened graphs of one exported model folder.

    features(pcm [B, 1520] float32) -> [B, HOP_FRAMES, N_MELS]; model(frames [B, 148, 40])
    -> prob [B]. ``model_file`` is the classifier's file name inside the folder.
    """

    manifest: Manifest
    features: ort.InferenceSession
    model: ort.InferenceSession
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
    # Idle worker threads spinning for work burn a shared core for nothing.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _session(path: Path, threads: int) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), sess_options=_options(threads),
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises bare RuntimeError subclasses
        raise MiningError(f"{path}: cannot load the ONNX graph ({exc}); re-export the model "
                          "with `hark export`") from exc


def has_stft_node(path: Path) -> bool:
    """Whether a features graph computes its spectrum with ONNX's STFT operator.

    Exports made before LogMel became a strided convolution do; onnxruntime's CPU STFT kernel
    is a naive loop that makes such a graph ~10x slower. Reads the graph's structure only.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type == "STFT" for node in graph.node)


def open_graphs(model_dir: str | Path, *, int8: bool = False,
                threads: int = DEFAULT_THREADS) -> Graphs:
    """Open an exported model folder for mining.

    int8: score with model.int8.onnx when the manifest lists it (~25% faster on CPU, scores
        within ~0.02 of model.onnx), else model.onnx.
    threads: onnxruntime intra-op threads per graph.
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
    features = _session(features_path, threads)
    if has_stft_node(features_path):
        log.warning("%s was exported with an STFT node, which onnxruntime runs ~10x slower than "
                    "the current export; re-export the model for faster mining: hark export "
                    "RUN_DIR", features_path)
    graphs = Graphs(manifest, features, _session(model_dir / manifest.files[role], threads),
                    manifest.files[role])
    shape = graphs.run_features(np.zeros((1, FEATURE_INPUT_SAMPLES), np.float32)).shape
    if shape != (1, HOP_FRAMES, N_MELS):
        raise MiningError(f"{features_path}: returns {list(shape)} for one hop, expected "
                          f"[1, {HOP_FRAMES}, {N_MELS}]; re-export the model")
    return graphs
