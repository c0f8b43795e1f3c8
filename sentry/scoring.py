"""The scoring core: an exported model folder's two graphs, run on 16 kHz audio.

Every score Hark reports comes from here: the sentry's detector (streaming and batch),
the judge's clip verdicts, the miner's block scan and, through those, evaluation and the
benchmarks. Turning scores into detections (smoothing, threshold, refractory period,
trigger level) is sentry.postprocess.

Framing (the numbers are sentry.constants):
  * A stream is preceded by OVERLAP_SAMPLES (240) of silence. Hop i feeds samples
    [i * HOP_SAMPLES - OVERLAP_SAMPLES, (i + 1) * HOP_SAMPLES) of it, FEATURE_INPUT_SAMPLES
    (1520) in all, to features.onnx, which returns the hop's HOP_FRAMES (8) mel frames.
  * The classifier (model.onnx or model.int8.onnx) scores windows of WINDOW_FRAMES (148)
    consecutive frames; successive windows step by HOP_FRAMES, one per hop. The window
    of hop i is the last WINDOW_FRAMES frames up to the end of hop i.
  * Silence priming: before the stream, the frames are those of silence (features.onnx
    on FEATURE_INPUT_SAMPLES zeros, hop after hop), so the first hops' windows reach back
    into silence rather than into nothing, as on a device that starts listening.
  * Score i belongs to the end of hop i: (i + 1) * HOP_SECONDS after the stream start.

Paths over those graphs, all giving the same score for the same window:
  * `Graphs.score_pcm`: a whole recording at once, BATCH_HOPS hops per graph call;
  * `StreamScorer`: chunks of any size, O(1) state (a few hundred samples and a ring of
    frames);
  * `Graphs.frames` and `windows`: the pieces, for a caller (the miner) that scores a
    long file block by block;
  * `ClipScorer`: the judge's score of a clip, over the windows that end at its end.

Needs numpy and onnxruntime only; onnxruntime is imported when a graph is first opened,
so the manifest checks here cost nothing where no graph is run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .constants import (FRAME_SAMPLES, HOP_FRAMES, HOP_SAMPLES, N_MELS, OVERLAP_SAMPLES,
                        SAMPLE_RATE, WIN_SAMPLES, WINDOW_FRAMES)
from .errors import SentryError
from .manifest import Manifest, load_manifest
from .postprocess import smooth

FEATURE_INPUT_SAMPLES = OVERLAP_SAMPLES + HOP_SAMPLES
"""Samples features.onnx takes per hop (1520): the previous hop's tail plus a new hop."""

LOOKBACK_HOPS = -(-(WINDOW_FRAMES - HOP_FRAMES) // HOP_FRAMES)
"""Earlier hops whose frames a hop's window reaches into (18: 148 frames span 18.5 hops)."""

BATCH_HOPS = 512
"""Hops per features.onnx call and windows per classifier call: large enough to amortise
call overhead, small enough that a window batch stays ~12 MB."""

RING_SLACK_FRAMES = BATCH_HOPS * HOP_FRAMES
"""Spare rows after the live window in a stream's frame ring, so appending a hop is a
copy into place and the window is compacted to the front once per many hops."""

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)

GRAPH_HINT = "re-export the model with `hark export`"


# ---------------------------------------------------------------------- framing

def hop_inputs(samples: np.ndarray) -> np.ndarray:
    """[hops, FEATURE_INPUT_SAMPLES] view of every complete hop in `samples`, which
    starts with the OVERLAP_SAMPLES of audio before the first hop."""
    n_hops = max(0, (samples.size - OVERLAP_SAMPLES) // HOP_SAMPLES)
    if n_hops == 0:
        return np.zeros((0, FEATURE_INPUT_SAMPLES), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(samples, FEATURE_INPUT_SAMPLES)
    return view[::HOP_SAMPLES][:n_hops]


def windows(frames: np.ndarray, n_windows: int | None = None) -> np.ndarray:
    """Read-only [n_windows, WINDOW_FRAMES, N_MELS] view, without copying, of the windows
    of the last n_windows hops of `frames` ([rows, N_MELS], its last row ending a hop):
    window k ends HOP_FRAMES * (n_windows - 1 - k) rows before the end. Default: every
    window that fits."""
    fits = max(0, (frames.shape[0] - WINDOW_FRAMES) // HOP_FRAMES + 1)
    n = fits if n_windows is None else n_windows
    if n > fits:
        raise ValueError(f"{frames.shape[0]} frames hold {fits} windows, not {n}")
    if n == 0:
        return np.zeros((0, WINDOW_FRAMES, N_MELS), dtype=np.float32)
    part = frames[frames.shape[0] - WINDOW_FRAMES - HOP_FRAMES * (n - 1):]
    row, col = part.strides
    return np.lib.stride_tricks.as_strided(part, shape=(n, WINDOW_FRAMES, N_MELS),
                                           strides=(HOP_FRAMES * row, row, col),
                                           writeable=False)


# ---------------------------------------------------------------------- loading

def check_framing(manifest: Manifest, folder: Path) -> None:
    """The graphs are only meaningful with the framing this sentry streams with."""
    expected = {"sample_rate": SAMPLE_RATE, "hop_samples": HOP_SAMPLES,
                "overlap_samples": OVERLAP_SAMPLES, "window_frames": WINDOW_FRAMES,
                "hop_frames": HOP_FRAMES, "n_mels": N_MELS}
    wrong = [f"{k}={getattr(manifest, k)} (this sentry uses {v})"
             for k, v in expected.items() if getattr(manifest, k) != v]
    if wrong:
        raise SentryError(f"{folder}: the model was exported for a different framing: "
                          f"{', '.join(wrong)}; re-export it with this version of hark")


def require_graphs(manifest: Manifest, folder: Path, roles: Sequence[str]) -> None:
    """Every role in `roles` ("features", "model", "model_int8") is a file the manifest
    lists (load_manifest has checked that listed files exist)."""
    missing = [role for role in roles if role not in manifest.files]
    if missing == ["model_int8"]:
        raise SentryError(f"{folder}: the manifest lists no 'model_int8' file (the quantized "
                          "classifier); export with quantization, or drop --int8")
    if missing:
        raise SentryError(f"{folder}: the manifest lists no {' or '.join(map(repr, missing))} "
                          f"graph; {GRAPH_HINT}")


class Graph:
    """One onnxruntime session with a single input and a single output that matters.

    threads: intra-op threads; inter-op is 1, as these graphs are one chain of ops.
    spinning: whether idle worker threads spin for work (lower latency for a live
        stream; off for throughput jobs that share cores).
    """

    def __init__(self, path: Path, *, providers: Sequence[str] = DEFAULT_PROVIDERS,
                 threads: int = 1, spinning: bool = True) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # onnxruntime's warnings are not the user's problem
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options,
                                                providers=list(providers))
        except Exception as exc:  # onnxruntime raises bare RuntimeErrors/Fail subclasses
            fix = GRAPH_HINT if tuple(providers) == DEFAULT_PROVIDERS else \
                f"{GRAPH_HINT}, or check the --provider names"
            raise SentryError(f"{path}: cannot load the ONNX graph ({exc}); {fix}") from exc
        self.path = path
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        except Exception as exc:
            raise SentryError(f"{self.path}: inference failed on input {list(x.shape)} "
                              f"({exc})") from exc


class Graphs:
    """An exported model folder's features and classifier graphs, opened for scoring.

    folder: written by `hark export` (manifest.json, features.onnx, model.onnx...).
    int8: score with model.int8.onnx instead of model.onnx.
    providers, threads, spinning: how the sessions run (see Graph).
    manifest: the folder's manifest, when the caller has loaded it already.

    Holds no stream state, so one instance serves many threads (onnxruntime's run is
    thread-safe). Every problem is a SentryError.
    """

    def __init__(self, folder: str | Path, *, int8: bool = False,
                 providers: Sequence[str] = DEFAULT_PROVIDERS, threads: int = 1,
                 spinning: bool = True, manifest: Manifest | None = None) -> None:
        self.folder = Path(folder)
        self.manifest = load_manifest(self.folder) if manifest is None else manifest
        check_framing(self.manifest, self.folder)
        if threads < 1:
            raise SentryError(f"threads must be >= 1, got {threads}")
        self.role = "model_int8" if int8 else "model"
        require_graphs(self.manifest, self.folder, ("features", self.role))
        self.features = Graph(self.folder / self.manifest.files["features"],
                              providers=providers, threads=threads, spinning=spinning)
        self.model = Graph(self.folder / self.manifest.files[self.role],
                           providers=providers, threads=threads, spinning=spinning)
        silence = self.run_features(np.zeros((1, FEATURE_INPUT_SAMPLES), dtype=np.float32))
        if silence.shape != (1, HOP_FRAMES, N_MELS):
            raise SentryError(f"{self.features_path}: returns shape {list(silence.shape)} for "
                              f"one hop, expected [1, {HOP_FRAMES}, {N_MELS}]; {GRAPH_HINT}")
        self.silence = silence[0]
        """[HOP_FRAMES, N_MELS] frames of one hop of silence."""
        self.initial_frames = self.silent_frames(LOOKBACK_HOPS + 1)[-WINDOW_FRAMES:].copy()
        """[WINDOW_FRAMES, N_MELS]: the window before a stream starts, all silence."""

    @property
    def features_path(self) -> Path:
        return self.features.path

    @property
    def model_path(self) -> Path:
        return self.model.path

    @property
    def model_file(self) -> str:
        """The classifier's file name in the folder, as the manifest lists it."""
        return self.manifest.files[self.role]

    def silent_frames(self, n_hops: int) -> np.ndarray:
        """[n_hops * HOP_FRAMES, N_MELS] frames of n_hops hops of silence."""
        return np.tile(self.silence, (n_hops, 1))

    def run_features(self, inputs: np.ndarray, batch: int = BATCH_HOPS) -> np.ndarray:
        """[hops, FEATURE_INPUT_SAMPLES] -> [hops, HOP_FRAMES, N_MELS], `batch` per call."""
        parts = [self.features.run(np.ascontiguousarray(inputs[i:i + batch]))
                 for i in range(0, inputs.shape[0], batch)]
        if not parts:
            return np.zeros((0, HOP_FRAMES, N_MELS), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def run_model(self, windows: np.ndarray, rows: np.ndarray | None = None,
                  batch: int = BATCH_HOPS) -> np.ndarray:
        """[n, WINDOW_FRAMES, N_MELS] -> [n] probabilities (float32), `batch` per call.
        rows: score only these windows (indices into `windows`), in their order."""
        count = windows.shape[0] if rows is None else rows.size
        parts = []
        for i in range(0, count, batch):
            chunk = windows[i:i + batch] if rows is None else windows[rows[i:i + batch]]
            chunk = np.ascontiguousarray(chunk)
            prob = self.model.run(chunk).reshape(-1)
            if prob.size != chunk.shape[0]:
                raise SentryError(f"{self.model_path}: returned {prob.size} scores for "
                                  f"{chunk.shape[0]} windows; expected output 'prob' [B]; "
                                  f"{GRAPH_HINT}")
            parts.append(prob)
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def frames(self, samples: np.ndarray, silent_hops: int = 0,
               batch: int = BATCH_HOPS) -> np.ndarray:
        """[(silent_hops + hops) * HOP_FRAMES, N_MELS] mel frames: silent_hops hops of
        silence, then every complete hop of `samples` (float32, starting with the
        OVERLAP_SAMPLES before its first hop; see hop_inputs)."""
        frames = self.run_features(hop_inputs(samples), batch).reshape(-1, N_MELS)
        if silent_hops > 0:
            frames = np.concatenate([self.silent_frames(silent_hops), frames])
        return frames

    def score_pcm(self, pcm: np.ndarray) -> np.ndarray:
        """Raw scores [hops] (float32), one per complete hop of a whole 16 kHz float32
        recording, as if it were streamed from its start. Score i belongs to time
        (i + 1) * HOP_SECONDS."""
        audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if audio.size < HOP_SAMPLES:
            return np.zeros(0, dtype=np.float32)
        samples = np.concatenate([np.zeros(OVERLAP_SAMPLES, dtype=np.float32), audio])
        return self.run_model(windows(self.frames(samples, silent_hops=LOOKBACK_HOPS)))

    def score_tail(self, pcm: np.ndarray, n_windows: int) -> np.ndarray:
        """Raw scores [n_windows] (float32, oldest first) of the windows ending at the end
        of a float32 16 kHz clip and every HOP_SAMPLES before it, with the hop grid laid
        from the clip's end and silence before the clip. Features are computed only for
        the hops those windows read (at most n_windows + LOOKBACK_HOPS)."""
        audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
        n_hops = min(-(-audio.size // HOP_SAMPLES), n_windows + LOOKBACK_HOPS)
        span = OVERLAP_SAMPLES + n_hops * HOP_SAMPLES
        tail = audio[max(0, audio.size - span):]
        samples = np.concatenate([np.zeros(span - tail.size, np.float32), tail])
        frames = self.frames(samples, silent_hops=n_windows + LOOKBACK_HOPS - n_hops)
        return self.run_model(windows(frames, n_windows))


# ---------------------------------------------------------------------- streaming

class StreamScorer:
    """The streaming path over `graphs`: 16 kHz audio in chunks of any size, one raw score
    per completed hop out, equal to Graphs.score_pcm on the whole stream so far.

    State: the last OVERLAP_SAMPLES + (up to a hop) samples, and a ring of the last
    WINDOW_FRAMES frames in a preallocated array with RING_SLACK_FRAMES spare rows.
    Not thread-safe: one stream, one instance.
    """

    def __init__(self, graphs: Graphs) -> None:
        self.graphs = graphs
        self._ring = np.empty((WINDOW_FRAMES + RING_SLACK_FRAMES, N_MELS), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Start a new stream: silence before it."""
        # The OVERLAP_SAMPLES before the first hop are silence; new audio goes after them.
        self._tail = np.zeros(OVERLAP_SAMPLES, dtype=np.float32)
        self._ring[:WINDOW_FRAMES] = self.graphs.initial_frames
        self._end = WINDOW_FRAMES

    def push(self, audio: np.ndarray) -> np.ndarray:
        """Score the next float32 mono chunk; returns the raw scores [hops] (float32) of
        the hops it completed, oldest first."""
        samples = np.concatenate([self._tail, audio]) if audio.size else self._tail
        inputs = hop_inputs(samples)
        scores = []
        for start in range(0, inputs.shape[0], BATCH_HOPS):
            block = inputs[start:start + BATCH_HOPS]
            self._append(self.graphs.run_features(block).reshape(-1, N_MELS))
            scores.append(self.graphs.run_model(windows(self._ring[:self._end],
                                                        block.shape[0])))
        self._tail = samples[inputs.shape[0] * HOP_SAMPLES:].copy()
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    def _append(self, frames: np.ndarray) -> None:
        """Add [n, N_MELS] frames, n <= RING_SLACK_FRAMES."""
        n = frames.shape[0]
        if self._end + n > self._ring.shape[0]:
            self._ring[:WINDOW_FRAMES] = self._ring[self._end - WINDOW_FRAMES:self._end]
            self._end = WINDOW_FRAMES
        self._ring[self._end:self._end + n] = frames
        self._end += n


# ---------------------------------------------------------------------- clips

STEP_SAMPLES = HOP_SAMPLES
"""Samples between two scored windows' ends in a clip: 80 ms, the sentry's hop, counted
back from the clip's end, so the windows are the very ones the sentry scored."""

SCORED_TAIL_HOPS = 12
"""Hops back from a clip's end over which window ends are scored: windows end at the
clip's end and at each of the 12 hops before it, at most 13 windows over the last 0.96 s.
More than a sentry's clip holds (10 whole windows), so its every window is scored."""

SCORED_TAIL_SECONDS = SCORED_TAIL_HOPS * HOP_SAMPLES / SAMPLE_RATE

WINDOW_SPAN_SAMPLES = (WINDOW_FRAMES - 1) * FRAME_SAMPLES + WIN_SAMPLES
"""Samples a window's WINDOW_FRAMES mel frames cover (23920): a window ending at sample E
reads [E - WINDOW_SPAN_SAMPLES, E)."""


def window_ends(n_samples: int) -> np.ndarray:
    """Where the scored windows of an n_samples clip end (sample indices, exclusive,
    oldest first): at the clip's end and every STEP_SAMPLES before it, at most
    SCORED_TAIL_HOPS back, for the windows that lie wholly inside the clip; one window
    at the end if the clip is shorter than a window."""
    whole = (n_samples - WINDOW_SPAN_SAMPLES) // STEP_SAMPLES + 1
    count = min(SCORED_TAIL_HOPS + 1, max(1, whole))
    return n_samples - STEP_SAMPLES * np.arange(count - 1, -1, -1, dtype=np.int64)


def best_smoothed(prob: np.ndarray, hops: int) -> float:
    """Highest mean of `hops` consecutive window probabilities, oldest first (the mean of
    all of them when there are fewer): the sentry's trigger compares the same moving
    average of its hop scores with its threshold."""
    k = min(max(int(hops), 1), prob.size)
    return float(smooth(prob, k)[k - 1:].max())  # the averages over k whole windows


class ClipScorer:
    """The judge's score of a clip (pre-roll, the wake word, a little after, ending on
    the sentry's hop grid, as sentry.judge_client.clip_span cuts it).

    The windows scored are those that lie wholly inside the clip and end in its last
    SCORED_TAIL_SECONDS (window_ends); the score is the highest mean over the manifest's
    smoothing_hops consecutive windows (best_smoothed), as the sentry's trigger smooths
    its scores: an isolated spike on one window is how most false accepts look.

    graphs: the judge model's graphs. threshold: score (0..1) at or above which a clip
    is verified; default the manifest's. Thread-safe, as Graphs.
    """

    def __init__(self, graphs: Graphs, threshold: float | None = None) -> None:
        self.graphs = graphs
        self.threshold = graphs.manifest.threshold if threshold is None else float(threshold)

    def window_scores(self, pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ends, probabilities) of the scored windows of a float32 16 kHz mono clip:
        window_ends(len(pcm)) and one probability (0..1) per window."""
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        ends = window_ends(pcm.size)
        prob = self.graphs.score_tail(pcm, ends.size)
        if not np.all(np.isfinite(prob)):
            raise SentryError(f"{self.graphs.model_path}: returned non-finite scores for "
                              f"{ends.size} windows; {GRAPH_HINT}")
        return ends, prob

    def score(self, pcm: np.ndarray) -> float:
        """The clip's score (0..1): best_smoothed of its window probabilities over the
        manifest's smoothing_hops."""
        return best_smoothed(self.window_scores(pcm)[1], self.graphs.manifest.smoothing_hops)
