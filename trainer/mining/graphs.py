"""The exported model's two graphs, opened for throughput rather than latency.

The miner scores with the very graphs the sentry ships (features.onnx, then model.onnx or
model.int8.onnx), unchanged, through the sentry's scoring core (sentry.scoring.Graphs), in
single-threaded sessions that do not spin while idle.

Needs numpy, onnx and onnxruntime only: the scan path never imports torch.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sentry.errors import SentryError
from sentry.manifest import load_manifest
from sentry.scoring import Graphs, require_graphs

from . import DEFAULT_THREADS, MiningError

__all__ = ["Graphs", "has_stft_node", "open_graphs"]

log = logging.getLogger(__name__)


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
        require_graphs(manifest, model_dir, ("features", "model"))
        graphs = Graphs(model_dir, int8=int8 and "model_int8" in manifest.files,
                        threads=threads, spinning=False, manifest=manifest)
    except SentryError as exc:
        raise MiningError(str(exc)) from exc
    if has_stft_node(graphs.features_path):
        log.warning("%s was exported with an STFT node, which onnxruntime runs ~10x slower than "
                    "the current export; re-export the model for faster mining: hark export "
                    "RUN_DIR", graphs.features_path)
    return graphs
