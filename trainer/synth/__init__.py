"""Speech and noise synthesis for wake-word datasets.

- ``espeak``: English espeak-ng voices through ctypes (training voices).
- ``heldout``: flite and festival voices, used only for evaluation.
- ``warps``: pitch, formant, tempo and spectral-tilt warps of 16 kHz audio.
- ``text``: the normalised phrase, confusable neighbours, everyday sentences, assistant commands.
- ``noise``: seeded backgrounds: white/pink/brown noise, babble, music, hum.
- ``build``: ``synthesize_dataset`` (split by voice); ``evalsets``: ``synthesize_eval_sets``
  (and ``synthesize_sentence_set``, ``synthesize_calibration_set`` for an existing dataset).
"""
