"""Fuzzing the one WAV reader (sentry.wav, then sentry.audio's resampler, as read_wav does):
arbitrary header fields and chunk layouts give float32 audio or a WavError, never another
exception, and never work or memory out of proportion to the file's size.

Seeded (derandomize=True): every run tries the same examples, so a failure reproduces.
"""

from __future__ import annotations

import math
import struct
import tracemalloc

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sentry.audio import resample
from sentry.constants import SAMPLE_RATE
from sentry.wav import MIN_RATE, WavError, decode_wav_bytes

REASONS = {"not_wav", "bad_wav", "unsupported_encoding", "unsupported_rate",
           "too_many_channels", "too_long", "too_big"}
MAX_DATA_BYTES = 4096
FIXED_ALLOWANCE_BYTES = 32 * 2**20
"""Memory any decode may use beyond a multiple of the file's size: a filter table
(common rates are under 2 MB) and numpy's temporaries."""
BYTES_PER_FILE_BYTE = 64
"""Decoded float32 at most doubles when resampled up from 8 kHz; x 4 bytes x 8 for the
float64 work buffers and copies."""

# Plausible values more often than not, so that most examples reach the decoder.
rates = st.one_of(
    st.sampled_from([8_000, 11_025, 16_000, 22_050, 44_100, 48_000, 96_000, 192_000]),
    st.sampled_from([8_000, 16_000, 44_100, 191_999, 8_001]),
    st.sampled_from([0, 1, 7, 7_999, 192_001, 2**31, 2**32 - 1]),
    st.integers(0, 2**32 - 1))
tags = st.sampled_from([1, 1, 1, 3, 3, 0xFFFE, 0, 2, 6, 7, 0xFFFF])
bits = st.sampled_from([8, 16, 16, 24, 32, 32, 64, 0, 1, 7, 12, 40, 65_535])
channels = st.sampled_from([1, 1, 1, 2, 2, 3, 6, 8, 0, 9, 32, 33, 65_535])
sizes = st.one_of(st.none(), st.none(), st.none(),
                  st.sampled_from([0, 1, 15, 16, 39, 40, 0x7FFFFFFF, 0xFFFFFFF0, 0xFFFFFFFF]),
                  st.integers(0, 2**32 - 1))
"""A chunk's declared size: None for its true size, else whatever the header claims."""


ENCODINGS = [(1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64)]
"""(format tag, bits) of the encodings the reader decodes."""


@st.composite
def fmt_body(draw, plausible: bool = False) -> bytes:
    """A 'fmt ' body: anything, or (plausible) a decodable encoding at a common rate."""
    if plausible:
        (tag, width), n = draw(st.sampled_from(ENCODINGS)), draw(st.sampled_from([1, 2, 6]))
        rate = draw(st.sampled_from([8_000, 11_025, 16_000, 22_050, 44_100, 48_000, 192_000]))
    else:
        tag, n, rate, width = draw(tags), draw(channels), draw(rates), draw(bits)
    block = (n * ((width + 7) // 8)) % 2**16
    body = struct.pack("<HHIIHH", tag, n, rate, (rate * block) % 2**32, block, width)
    if tag == 0xFFFE or draw(st.integers(0, 3)) == 0:  # an extension, maybe a SubFormat GUID
        sub = struct.pack("<HHIH", 22, width, 0, draw(tags)) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        body += sub[:draw(st.integers(0, len(sub)))]
    return body


@st.composite
def chunk(draw, kind: str | None = None) -> bytes:
    """One chunk of `kind` ('fmt ', 'good fmt', 'data', 'LIST', 'JUNK', 'other'; drawn when
    None); its declared size and pad byte may lie."""
    kind = kind or draw(st.sampled_from(["fmt ", "data", "LIST", "JUNK", "other"]))
    if kind in ("fmt ", "good fmt"):
        cid, body = b"fmt ", draw(fmt_body(plausible=kind == "good fmt"))
    elif kind == "data":
        cid, body = b"data", draw(st.binary(max_size=MAX_DATA_BYTES))
    else:
        cid = kind.encode() if kind != "other" else draw(st.binary(min_size=4, max_size=4))
        body = draw(st.binary(max_size=64))
    size = draw(sizes)
    declared = len(body) if size is None else size
    pad = b"\x00" if len(body) % 2 and draw(st.booleans()) else b""
    return cid + struct.pack("<I", declared) + body + pad


@st.composite
def wav_files(draw) -> bytes:
    magic = draw(st.sampled_from([b"RIFF"] * 6 + [b"RIFX", b"RIFf"]))
    form = draw(st.sampled_from([b"WAVE"] * 6 + [b"AVI "]))
    layout = draw(st.sampled_from(["good data"] * 3 + ["fmt data", "junk good data", "data fmt",
                                                        "random"]))
    if layout == "random":
        chunks = draw(st.lists(chunk(), max_size=5))
    else:
        names = {"junk": "LIST", "fmt": "fmt ", "good": "good fmt", "data": "data"}
        chunks = [draw(chunk(names[part])) for part in layout.split()]
    body = form + b"".join(chunks)
    blob = magic + struct.pack("<I", draw(st.sampled_from([len(body), 0, 2**32 - 1]))) + body
    cut = draw(st.one_of(st.none(), st.none(), st.none(), st.integers(0, len(blob))))
    return blob if cut is None else blob[:cut]


@settings(max_examples=400, derandomize=True, deadline=5000, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(blob=wav_files())
def test_any_header_gives_audio_or_a_wav_error_within_a_bounded_cost(blob):
    tracemalloc.start()
    try:
        try:
            mono, fmt = decode_wav_bytes(blob, "fuzz.wav")
            out = resample(mono, fmt.rate)
        except WavError as exc:
            assert exc.reason in REASONS and str(exc).startswith("fuzz.wav: ")
            event(f"refused: {exc.reason}")
            return
        finally:
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    event("decoded")
    assert peak <= FIXED_ALLOWANCE_BYTES + BYTES_PER_FILE_BYTE * len(blob), peak
    assert mono.dtype == np.float32 and mono.ndim == 1
    assert MIN_RATE <= fmt.rate and fmt.channels >= 1
    assert mono.size * fmt.channels * fmt.width <= len(blob)  # no sample beyond the file
    assert out.dtype == np.float32 and out.ndim == 1
    assert out.size == math.ceil(mono.size * SAMPLE_RATE / fmt.rate) <= 2 * mono.size + 1
