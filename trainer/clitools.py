"""What every `hark` command shares, on top of sentry.clitools (the one convention of all
three command lines): user errors become a message and exit 1, Ctrl-C exit 130, never a
traceback."""

from __future__ import annotations

from sentry.clitools import EXIT_INTERRUPTED, fail_cleanly as _fail_cleanly
from sentry.errors import SentryError

from .errors import TrainerError

USER_ERRORS = (TrainerError, SentryError)
"""What `hark` reports as a message: every trainer subsystem's base, and the sentry's
(the trainer scores with the sentry's code and reads its manifests)."""

fail_cleanly = _fail_cleanly(*USER_ERRORS)
"""Decorate a click command: USER_ERRORS -> message and exit 1; Ctrl-C -> exit 130."""

__all__ = ["EXIT_INTERRUPTED", "USER_ERRORS", "fail_cleanly"]
