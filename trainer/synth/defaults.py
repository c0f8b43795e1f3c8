"""Defaults of `hark synth` that the studio's data form shows too, in one place both import
(the studio must not import the command-line module). Clip counts live in SynthConfig."""

WITH_EVAL = True
"""Also write the held-out evaluation sets under OUT/eval."""
EVAL_MINUTES = 60.0
"""Minutes of continuous negative audio in each eval set: 60 resolves 1 false accept per hour."""
SEED = 0
