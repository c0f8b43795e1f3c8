"""What every `hark` command shares: user errors become a message and exit 1, Ctrl-C
becomes exit 130, never a traceback."""

from __future__ import annotations

import functools
import sys

import click

from .errors import TrainerError

EXIT_INTERRUPTED = 130
"""128 + SIGINT, what a shell reports for a command stopped with Ctrl-C."""


def fail_cleanly(fn):
    """Decorate a click command: TrainerError (every subsystem's base) -> ClickException."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TrainerError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
    return wrapper
