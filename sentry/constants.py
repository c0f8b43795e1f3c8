"""Audio and framing constants shared by the trainer and the edge runtime.

The trainer imports these so that a model is trained on exactly the framing the
sentry streams with. Everything is in samples at SAMPLE_RATE unless named otherwise.
"""

SAMPLE_RATE = 16_000
"""Hz. Every model consumes 16 kHz mono PCM; other rates are resampled on load."""

WIN_SAMPLES = 400
"""STFT window and FFT size: 25 ms, the usual speech analysis window."""

FRAME_SAMPLES = 160
"""Mel frame step: 10 ms."""

N_MELS = 40
"""Log-mel bins. 40 is the common choice for small keyword spotters."""

F_MIN = 60.0
F_MAX = 7_600.0
"""Hz. Mel filterbank edges: below 60 Hz is hum, above 7.6 kHz is near Nyquist."""

HOP_SAMPLES = 1_280
"""Samples between two scores: 80 ms, i.e. HOP_FRAMES new mel frames per hop."""

HOP_FRAMES = HOP_SAMPLES // FRAME_SAMPLES
"""New mel frames produced per hop (8)."""

OVERLAP_SAMPLES = WIN_SAMPLES - FRAME_SAMPLES
"""Samples of the previous hop the feature graph needs to frame the new one (240)."""

CLIP_SAMPLES = 24_000
"""Classifier window: 1.5 s, long enough for a two- or three-word phrase."""

WINDOW_FRAMES = 1 + (CLIP_SAMPLES - WIN_SAMPLES) // FRAME_SAMPLES
"""Mel frames in one classifier window (148), framed without centre padding."""

LOG_FLOOR = 1e-6
"""Added to mel power before the log, so digital silence stays finite."""
