"""The one resampler's cost (sentry.audio.resample, the windowed sinc the device runs) and the
judge's decode cost at the edges of its budget.

Usage:
  python benchmarks/resample_speed.py [--seconds 10 --repeats 5]

For each common rate: CPU milliseconds to resample a --seconds clip of noise to 16 kHz (best
of --repeats, process time, so other work on the machine moves it little), with the polyphase
table already cached and with a cold cache; with scipy installed, scipy.signal.resample_poly
on the same clip as a reference (the trainer's resampler before it used the device's). Then
judge.verifier.decode_wav on a sentry's 2.24 s 16 kHz clip and on the longest 192 kHz float
clip the judge's decoded-samples budget accepts. Prints a table and writes JSON to out/.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentry import audio  # noqa: E402
from sentry.constants import SAMPLE_RATE  # noqa: E402

RATES = (8_000, 11_025, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000, 192_000)


def cpu_ms(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return 1e3 * best


def scipy_resampler():
    try:
        from scipy.signal import resample_poly
    except ImportError:
        return None

    def resample(x: np.ndarray, rate: int) -> np.ndarray:
        ratio = Fraction(SAMPLE_RATE, rate).limit_denominator(1000)
        return resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)
    return resample


def judge_rows(repeats: int) -> list[dict]:
    import soundfile as sf

    from judge.verifier import MAX_DECODED_SAMPLES_PER_SECOND, decode_wav

    max_clip_s = 10.0
    rows = []
    for label, rate, subtype, seconds in [
            ("sentry clip, 16 kHz int16", SAMPLE_RATE, "PCM_16", 2.24),
            ("longest 192 kHz float accepted", 192_000, "FLOAT",
             max_clip_s * MAX_DECODED_SAMPLES_PER_SECOND / 192_000)]:
        buffer = io.BytesIO()
        clip = np.random.default_rng(1).normal(0, 0.1, int(seconds * rate)).astype(np.float32)
        sf.write(buffer, clip, rate, subtype=subtype, format="WAV")
        body = buffer.getvalue()
        rows.append({"clip": label, "seconds": round(seconds, 2),
                     "decode_cpu_ms": round(cpu_ms(lambda: decode_wav(body, max_clip_s), repeats), 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "resample_speed.json")
    args = parser.parse_args()
    reference = scipy_resampler()
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'rate Hz':>8} {'sinc ms':>9} {'cold ms':>9} {'scipy ms':>9}   (CPU per {args.seconds:g} s clip)")
    for rate in RATES:
        x = rng.normal(0, 0.1, int(args.seconds * rate)).astype(np.float32)
        audio._polyphase_table.cache_clear()
        cold = cpu_ms(lambda: audio.resample(x, rate), 1)
        warm = cpu_ms(lambda: audio.resample(x, rate), args.repeats)
        ref = cpu_ms(lambda: reference(x, rate), args.repeats) if reference else None
        rows.append({"rate": rate, "sinc_cpu_ms": round(warm, 2), "sinc_cold_cpu_ms": round(cold, 2),
                     "scipy_cpu_ms": None if ref is None else round(ref, 2)})
        print(f"{rate:8d} {warm:9.1f} {cold:9.1f} {'-' if ref is None else f'{ref:.1f}':>9}")
    judge = judge_rows(args.repeats)
    for row in judge:
        print(f"judge decode_wav, {row['clip']} ({row['seconds']} s): {row['decode_cpu_ms']:.1f} ms CPU")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"clip_seconds": args.seconds, "resample": rows, "judge": judge},
                                   indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
