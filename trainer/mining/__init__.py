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


class MiningError(TrainerError):
    """A mining problem the user can fix: unreadable session, changed model, bad shard."""


__all__ = ["DEFAULT_THREADS", "MiningError"]
