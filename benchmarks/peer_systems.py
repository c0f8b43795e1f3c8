"""Wake-word systems behind one interface, so that every one is scored the same way.

Each system turns 16 kHz float32 mono audio into one score per 80 ms hop (HOP_SAMPLES), fed
in 80 ms chunks as a microphone delivers them, and says its shipped threshold, the smoothing
its own runtime applies, its model size and its parameter count. The benchmark then runs
the same trigger logic and threshold sweep (trainer.evaluate.sweep) over every system's scores.

- Hark's sentry: sentry.detector.Detector's streaming path (`process`), the raw score of
  each hop; the sentry smooths over its manifest's smoothing_hops (3).
- openWakeWord (PyPI `pyopen-wakeword`): its mel and embedding TFLite models, then the word
  model; one probability per 80 ms embedding step. Its runtime does not smooth.
- microWakeWord (PyPI `pymicro-wakeword`): the TFLite Micro frontend (10 ms features), the
  streaming model every `stride` features (30 ms), and the package's own sliding mean over
  `sliding_window_size` probabilities; a hop's score is the highest mean inside it, since
  the package fires as soon as any mean passes its cutoff.

- Hark (TFLite Micro): the `hark export-esphome` files run as the chip runs them: the same
  frontend (pymicro-features) and ESPHome's int8 mapping, PyPI tflite-micro, and ESPHome's
  own rule (mean of the last `sliding_window_size` probabilities against
  `probability_cutoff`); a hop's score is the highest mean inside it, as for microWakeWord.

The peers are optional benchmark dependencies: a missing one raises PeerUnavailable with
the command that installs it.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentry.constants import HOP_SAMPLES

PCM16_SCALE = 32767.0
MODELS_SUBDIR = "models"
"""Where both peer packages keep their built-in models, next to their __init__.py."""
INSTALL_HINT = "install the benchmark extras: .venv/bin/pip install pyopen-wakeword pymicro-wakeword"


class PeerUnavailable(Exception):
    """A system cannot be scored here (package missing, word not shipped)."""


@dataclass
class System:
    """One wake-word system for one word.

    score_hop: called with each 80 ms chunk (float32 [HOP_SAMPLES]) in order; returns that
        hop's score (0..1). reset: start a new stream (silence before it).
    default_threshold: the threshold the system ships with, applied after `smoothing_hops`.
    model_bytes: bytes of every model file the system loads to run.
    parameters: learned weights (constant tensor elements of the learned models; fixed mel
        front ends excluded, listed in `notes`).
    """

    name: str
    word: str
    default_threshold: float
    smoothing_hops: int
    model_bytes: int
    parameters: int
    score_hop: Callable[[np.ndarray], float]
    reset: Callable[[], None]
    notes: str = ""
    score_stream: Callable[[np.ndarray], tuple[np.ndarray, float]] | None = None
    """Optional whole-stream scorer with the same result as `scores`, for a system that can
    share work between words (openWakeWord's word-independent features)."""

    def scores(self, pcm: np.ndarray) -> tuple[np.ndarray, float]:
        """(one score per complete hop of `pcm`, CPU seconds spent: time.process_time)."""
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if self.score_stream is not None:
            return self.score_stream(pcm)
        n_hops = pcm.size // HOP_SAMPLES
        out = np.empty(n_hops, dtype=np.float64)
        self.reset()
        started = time.process_time()
        for i in range(n_hops):
            out[i] = self.score_hop(pcm[i * HOP_SAMPLES:(i + 1) * HOP_SAMPLES])
        return out, time.process_time() - started


def _int16_bytes(chunk: np.ndarray) -> bytes:
    return (np.clip(chunk, -1.0, 1.0) * PCM16_SCALE).astype("<i2").tobytes()


# ---------------------------------------------------------------------------- sizes


def onnx_parameters(path: Path) -> int:
    """Elements of every initializer (weights, biases, norm statistics) of an ONNX graph."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer))


def _table(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(table position, vtable position, vtable length in bytes) of a flatbuffer table."""
    vtable = pos - struct.unpack_from("<i", buf, pos)[0]
    return pos, vtable, struct.unpack_from("<H", buf, vtable)[0]


def _field(buf: bytes, table: tuple[int, int, int], index: int) -> int | None:
    """Absolute position of field `index` of a table, None when absent."""
    pos, vtable, vlen = table
    slot = 4 + 2 * index
    if slot >= vlen:
        return None
    offset = struct.unpack_from("<H", buf, vtable + slot)[0]
    return pos + offset if offset else None


def _vector(buf: bytes, at: int) -> tuple[int, int]:
    """(first element position, length) of the vector a uoffset field at `at` points to."""
    start = at + struct.unpack_from("<I", buf, at)[0]
    return start + 4, struct.unpack_from("<I", buf, start)[0]


def _tables(buf: bytes, at: int | None) -> list[tuple[int, int, int]]:
    if at is None:
        return []
    first, n = _vector(buf, at)
    return [_table(buf, first + 4 * i + struct.unpack_from("<I", buf, first + 4 * i)[0])
            for i in range(n)]


def tflite_parameters(path: Path) -> int:
    """Elements of every constant tensor (one holding a non-empty buffer) of a TFLite model.

    Reads the flatbuffer by the TFLite schema (Model: subgraphs=2, buffers=4; SubGraph:
    tensors=0; Tensor: shape=0, buffer=2; Buffer: data=0, offset=1), so no TensorFlow is
    needed. Variable tensors (streaming state) hold no buffer data and are not counted.
    """
    buf = Path(path).read_bytes()
    model = _table(buf, struct.unpack_from("<I", buf, 0)[0])
    buffers = _tables(buf, _field(buf, model, 4))

    def has_data(index: int) -> bool:
        if not 0 < index < len(buffers):
            return False
        data = _field(buf, buffers[index], 0)
        if data is not None and _vector(buf, data)[1] > 0:
            return True
        offset = _field(buf, buffers[index], 1)  # models over 2 GB keep data outside
        return offset is not None and struct.unpack_from("<Q", buf, offset)[0] > 0

    total = 0
    for subgraph in _tables(buf, _field(buf, model, 2)):
        for tensor in _tables(buf, _field(buf, subgraph, 0)):
            at = _field(buf, tensor, 2)
            if at is None or not has_data(struct.unpack_from("<I", buf, at)[0]):
                continue
            shape_at = _field(buf, tensor, 0)
            if shape_at is None:
                total += 1  # a scalar
                continue
            first, n = _vector(buf, shape_at)
            total += int(np.prod([struct.unpack_from("<i", buf, first + 4 * i)[0] for i in range(n)]))
    return total


# ---------------------------------------------------------------------------- systems


def hark_sentry(model_dir: Path, word: str, name: str = "Hark sentry") -> System:
    """Hark's sentry from an exported folder, through Detector's streaming path."""
    from sentry.detector import Detector
    from sentry.errors import SentryError

    try:
        detector = Detector(model_dir)
    except SentryError as exc:
        raise PeerUnavailable(f"Hark model {model_dir}: {exc}") from exc
    manifest = detector.manifest
    if manifest.wake_word != word:
        raise PeerUnavailable(f"{model_dir} is a model for {manifest.wake_word!r}, not {word!r}")

    def score_hop(chunk: np.ndarray) -> float:
        detector.process(chunk)
        return detector.scores[-1]

    size = detector.features_path.stat().st_size + detector.model_path.stat().st_size
    return System(name, word, manifest.trigger.threshold, manifest.trigger.smoothing_hops,
                  size, onnx_parameters(detector.model_path), score_hop, detector.reset,
                  notes=f"{model_dir}: {detector.model_path.name} fp32 + {detector.features_path.name} "
                        f"(log-mel, {onnx_parameters(detector.features_path)} fixed constants)")


def _peer_model(enum_cls, word: str, package: str):
    try:
        return enum_cls(word.replace(" ", "_"))
    except ValueError as exc:
        raise PeerUnavailable(f"{package} ships no model for {word!r}") from exc


_OWW_EMBEDDINGS: dict[str, tuple[list[list[np.ndarray]], float]] = {}
"""openWakeWord embeddings per hop of each stream scored so far, keyed by the audio's SHA-1,
with the CPU seconds they cost (about 25 MB per hour of audio). Its mel and embedding models do not depend on the word, so a
second word reuses them and is charged the same CPU time, as if it had computed them."""


def _oww_embeddings(oww, pcm: np.ndarray) -> tuple[list[list[np.ndarray]], float]:
    key = hashlib.sha1(pcm.tobytes()).hexdigest()
    if key not in _OWW_EMBEDDINGS:
        features = oww.OpenWakeWordFeatures.from_builtin()
        started = time.process_time()
        per_hop = [list(features.process_streaming(_int16_bytes(pcm[i:i + HOP_SAMPLES])))
                   for i in range(0, pcm.size - HOP_SAMPLES + 1, HOP_SAMPLES)]
        _OWW_EMBEDDINGS[key] = (per_hop, time.process_time() - started)
    return _OWW_EMBEDDINGS[key]


def openwakeword(word: str) -> System:
    """openWakeWord's built-in model for `word` (pyopen-wakeword, TFLite)."""
    try:
        import pyopen_wakeword as oww
    except ImportError as exc:
        raise PeerUnavailable(f"openWakeWord is not installed ({exc}); {INSTALL_HINT}") from exc
    model = _peer_model(oww.Model, word, "pyopen-wakeword")
    state = {}

    def reset() -> None:
        state["features"] = oww.OpenWakeWordFeatures.from_builtin()
        state["word"] = oww.OpenWakeWord.from_builtin(model)

    def score_hop(chunk: np.ndarray) -> float:
        probs = [p for emb in state["features"].process_streaming(_int16_bytes(chunk))
                 for p in state["word"].process_streaming(emb)]
        return float(probs[-1]) if probs else 0.0

    def score_stream(pcm: np.ndarray) -> tuple[np.ndarray, float]:
        per_hop, features_cpu = _oww_embeddings(oww, pcm)
        ww = oww.OpenWakeWord.from_builtin(model)
        out = np.zeros(len(per_hop), dtype=np.float64)
        started = time.process_time()
        for i, embeddings in enumerate(per_hop):
            probs = [p for emb in embeddings for p in ww.process_streaming(emb)]
            if probs:
                out[i] = probs[-1]
        return out, features_cpu + time.process_time() - started

    reset()
    models_dir = Path(oww.__file__).parent / MODELS_SUBDIR
    files = {name: models_dir / f"{name}.tflite"
             for name in ("melspectrogram", "embedding_model", model.value)}
    learned = tflite_parameters(files["embedding_model"]) + tflite_parameters(files[model.value])
    return System("openWakeWord", word, 0.5, 1, sum(p.stat().st_size for p in files.values()),
                  learned, score_hop, reset,
                  notes=f"embedding_model + {model.value}.tflite; melspectrogram.tflite "
                        f"({tflite_parameters(files['melspectrogram'])} fixed constants) not counted; "
                        "threshold 0.5 is the package CLI's default",
                  score_stream=score_stream)


def microwakeword(word: str) -> System:
    """microWakeWord's built-in model for `word` (pymicro-wakeword, TFLite Micro)."""
    try:
        import pymicro_wakeword as mww
    except ImportError as exc:
        raise PeerUnavailable(f"microWakeWord is not installed ({exc}); {INSTALL_HINT}") from exc
    model = _peer_model(mww.Model, word, "pymicro-wakeword")
    state = {"word": mww.MicroWakeWord.from_builtin(model)}

    def reset() -> None:
        state["word"] = mww.MicroWakeWord.from_builtin(model)  # the model holds streaming state
        state["features"] = mww.MicroWakeWordFeatures()

    def score_hop(chunk: np.ndarray) -> float:
        probs = [state["word"].process_streaming_prob(f)
                 for f in state["features"].process_streaming(_int16_bytes(chunk))]
        return float(max(probs)) if probs else 0.0

    reset()
    path = Path(mww.__file__).parent / MODELS_SUBDIR / f"{model.value}.tflite"
    ww = state["word"]
    return System("microWakeWord", word, float(ww.probability_cutoff), 1, path.stat().st_size,
                  tflite_parameters(path), score_hop, reset,
                  notes=f"{path.name} int8; front end is C code (no model file); "
                        f"mean of {ww.sliding_window_size} probabilities inside the package")


def hark_tflm(manifest_path: Path, word: str, name: str = "Hark (TFLite Micro)") -> System:
    """Hark's ESPHome export (NAME.json + NAME.tflite) in TFLite Micro, decided as ESPHome does."""
    try:
        from trainer.micro.features import StreamingFrontend, quantize, to_int16
        from trainer.micro.tflm import MicroModel
    except ImportError as exc:
        raise PeerUnavailable(f"the ESPHome path needs the esphome extra ({exc}): "
                              "pip install 'hark-wakeword[esphome]'") from exc
    try:
        manifest = json.loads(Path(manifest_path).read_text())
        micro = manifest["micro"]
        tflite = Path(manifest_path).parent / manifest["model"]
        flatbuffer = tflite.read_bytes()
    except (OSError, ValueError, KeyError) as exc:
        raise PeerUnavailable(f"{manifest_path}: not an ESPHome micro manifest with its model "
                              f"({exc}); make one with `hark export-esphome RUN_DIR`") from exc
    if str(manifest.get("wake_word", "")).lower() != word:
        raise PeerUnavailable(f"{manifest_path} is a model for {manifest.get('wake_word')!r}, "
                              f"not {word!r}")
    window = int(micro["sliding_window_size"])
    state: dict = {}

    def reset() -> None:
        state["model"] = MicroModel(flatbuffer, int(micro["tensor_arena_size"]) + 4096)
        state["frontend"] = StreamingFrontend()
        state["window"] = deque([0] * window, maxlen=window)

    def score_hop(chunk: np.ndarray) -> float:
        probs = state["model"].feed(quantize(state["frontend"].process(to_int16(chunk))))
        best, recent = 0.0, state["window"]
        for p in probs:
            recent.append(int(p))
            best = max(best, sum(recent) / (255.0 * window))
        return best

    reset()
    return System(name, word, float(micro["probability_cutoff"]), 1, tflite.stat().st_size,
                  tflite_parameters(tflite), score_hop, reset,
                  notes=f"{tflite.name} int8 in TFLite Micro, tensor arena "
                        f"{micro['tensor_arena_size']} B; front end is C code (no model file); "
                        f"mean of {window} probabilities (ESPHome's rule)")


PEERS = {"openwakeword": openwakeword, "microwakeword": microwakeword}
