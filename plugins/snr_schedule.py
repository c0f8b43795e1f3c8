"""SNR curriculum: the noise SNR range moves from easy (high SNR) to hard over the epochs.

Driven by ``on_epoch_start``: it sets ``state.snr_db``, which the noise augmentation reads on
every training batch, so the schedule changes what the data path actually mixes. The range is
a function of the epoch alone, which keeps a resumed run identical to an uninterrupted one.
"""

from __future__ import annotations

import math

from trainer import hookimpl


def progress(kind: str, epoch: int, total_epochs: int) -> float:
    """0 at the first epoch, 1 at the last (0-based epoch); "step" jumps at the halfway point."""
    t = epoch / max(total_epochs - 1, 1)
    if kind == "linear":
        return t
    if kind == "cosine":
        return 0.5 - 0.5 * math.cos(math.pi * t)
    if kind == "step":
        return 0.0 if t < 0.5 else 1.0
    raise ValueError(f"unknown SNR schedule {kind!r}")  # config validation rejects it first


def snr_range(config, epoch: int, total_epochs: int) -> tuple[float, float]:
    """(low, high) SNR in dB for this epoch under config.snr_schedule."""
    if config.snr_schedule == "none":
        return tuple(config.snr_db)
    t = progress(config.snr_schedule, epoch, total_epochs)
    (s_lo, s_hi), (e_lo, e_hi) = config.snr_start_db, config.snr_end_db
    return (s_lo + (e_lo - s_lo) * t, s_hi + (e_hi - s_hi) * t)


@hookimpl
def on_epoch_start(epoch: int, total_epochs: int, state) -> None:
    state.snr_db = snr_range(state.config, epoch, total_epochs)
