"""Mining hard negatives: scan hours of the user's own audio with an exported model, queue
what fires for review, and feed confirmed clips back into the dataset.

Modules: graphs (the exported graphs opened for throughput), audio (chunked decoding of long
files), scan (block scoring and hit merging), session (the atomic JSON session), miner (the
resumable scan loop), queue (review and move to the dataset), cli (`hark mine`, `hark queue`,
`hark sessions`). The scan path imports numpy, onnx, onnxruntime, soundfile and sentry only.
"""

from trainer.errors import TrainerError

DEFAULT_THREADS = 1
"""Intra-op threads per graph. One core already scans ~700x real time; more cores are used
better by shards (`--shard I/N`, one process each) than by threads, which cost ~20% more
CPU per hour of audio (benchmarks/miner_throughput.py)."""

DEFAULT_THRESHOLD_RATIO = 0.6
"""Mining threshold as a share of the model's detection threshold: catch near-misses too.
`hark mine` and the studio's mining panel both start from it."""
PROBE_RATIO = 0.5
"""Coarse-pass probe threshold as a share of the mining threshold (see scan.py)."""
DEFAULT_STRIDE_HOPS = 3
"""Coarse stride: 240 ms. On 2 h of real audio it missed none of 81 hits of the 80 ms path
(stride 4 missed one) at ~2.5x the sentry's batch throughput per CPU-second; see
benchmarks/miner_throughput.py."""


class MiningError(TrainerError):
    """A mining problem the user can fix: unreadable session, changed model, bad shard."""


__all__ = ["DEFAULT_STRIDE_HOPS", "DEFAULT_THREADS", "DEFAULT_THRESHOLD_RATIO", "MiningError",
           "PROBE_RATIO"]
