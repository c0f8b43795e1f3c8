"""The exported model in TensorFlow Lite Micro (PyPI `tflite-micro`, the kernels ESPHome
builds), fed as `micro_wake_word` feeds it: one Invoke per `stride` int8 feature slices.

The tensor arena is measured, not guessed: `measure_arena` finds the smallest arena in which
the interpreter allocates and invokes, by bisection, each try in a child process (a failed
allocation can leave the interpreter's allocator in a state that is unsafe to reuse). The
host is 64-bit, so its pointers (and the arena) are at least as large as the ESP32's.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ESPHOME_EXTRA_HINT, MicroError
from .features import N_FEATURES

ARENA_GRANULE = 16
"""Bytes: the arena search's resolution (TFLM aligns its buffers to 16 bytes)."""
ARENA_MAX = 1 << 20
"""Bytes: the largest arena tried; an ESP32-S3 model needing more is a bug."""

_PROBE = """
import sys
import numpy as np
from tflite_micro import runtime
model = open(sys.argv[1], "rb").read()
interpreter = runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[2]))
details = interpreter.get_input_details(0)
for _ in range(3):
    interpreter.set_input(np.zeros(details["shape"], dtype=np.int8), 0)
    interpreter.invoke()
interpreter.get_output(0)
"""


def _runtime():
    try:
        from tflite_micro import runtime
    except ImportError as exc:
        raise MicroError(f"running the model as the chip does needs tflite-micro ({exc}); "
                         f"{ESPHOME_EXTRA_HINT}") from exc
    return runtime


def _fits(model_path: Path, arena: int) -> bool:
    result = subprocess.run([sys.executable, "-c", _PROBE, str(model_path), str(arena)],
                            capture_output=True, timeout=120)
    return result.returncode == 0


def measure_arena(model_path: Path) -> int:
    """Bytes: the smallest tensor arena (a multiple of ARENA_GRANULE) the model runs in."""
    _runtime()
    lo, hi = 0, 4096
    while not _fits(model_path, hi):
        lo, hi = hi, hi * 2
        if hi > ARENA_MAX:
            raise MicroError(f"{model_path}: TFLite Micro cannot allocate this model even with a "
                             f"{ARENA_MAX} byte arena")
    while hi - lo > ARENA_GRANULE:  # invariant: lo fails (or is 0), hi fits
        mid = (lo + hi) // 2 // ARENA_GRANULE * ARENA_GRANULE
        if _fits(model_path, mid):
            hi = mid
        else:
            lo = mid
    return hi


class MicroModel:
    """One streaming model in the TFLM interpreter; `feed` returns the uint8 probabilities."""

    def __init__(self, flatbuffer: bytes, arena_size: int = 64 * 1024) -> None:
        runtime = _runtime()
        self.interpreter = runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena_size)
        shape = [int(n) for n in self.interpreter.get_input_details(0)["shape"]]
        if len(shape) != 3 or shape[0] != 1 or shape[2] != N_FEATURES:
            raise MicroError(f"model input is {shape}, want [1, stride, {N_FEATURES}]")
        self.stride = shape[1]
        self._pending = np.zeros((0, N_FEATURES), dtype=np.int8)

    def feed(self, features: np.ndarray) -> np.ndarray:
        """int8 slices [n, 40] -> uint8 probabilities, one per complete group of `stride`."""
        data = np.concatenate([self._pending, np.asarray(features, dtype=np.int8)])
        steps = len(data) // self.stride
        out = np.empty(steps, dtype=np.uint8)
        set_input, invoke, get_output = (self.interpreter.set_input, self.interpreter.invoke,
                                         self.interpreter.get_output)
        for j in range(steps):
            set_input(data[None, j * self.stride:(j + 1) * self.stride], 0)
            invoke()
            out[j] = get_output(0)[0, 0]
        self._pending = data[steps * self.stride:]
        return out


@dataclass
class StreamScores:
    probs: np.ndarray
    """uint8, one per Invoke."""
    stride: int
    """Feature slices per Invoke."""
    frontend_cpu_s: float
    """Process CPU seconds in the frontend and ESPHome's int8 mapping."""
    model_cpu_s: float
    """Process CPU seconds in the interpreter (set input, Invoke, read output)."""

    @property
    def cpu_s(self) -> float:
        return self.frontend_cpu_s + self.model_cpu_s


def stream_probabilities(flatbuffer: bytes, pcm: np.ndarray, arena_size: int = 64 * 1024
                         ) -> StreamScores:
    """float32 16 kHz pcm through a fresh frontend and a fresh interpreter, 10 ms of audio
    at a time as on the chip."""
    from .features import StreamingFrontend, quantize, to_int16
    model = MicroModel(flatbuffer, arena_size)
    frontend = StreamingFrontend()
    samples = to_int16(pcm)
    started = time.process_time()
    features = quantize(frontend.process(samples))
    between = time.process_time()
    probs = model.feed(features)
    return StreamScores(probs, model.stride, between - started, time.process_time() - between)
