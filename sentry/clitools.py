"""What the three command lines share (hark, hark-sentry, hark-judge): one path from a user
error to a message, one logging setup, one `--version`, one spelling of `--model`.

It lives in sentry, the bottom layer, so that judge and trainer can import it and the
edge device still needs only click. Each tool passes its own exception base:

    @click.group(cls=CommandGroup, user_errors=(SentryError,))
    @version_option("hark-sentry")
    def cli(verbose): setup_logging("hark-sentry", verbose)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import click

from .version import package_version

EXIT_INTERRUPTED = 130
"""128 + SIGINT, what a shell reports for a command stopped with Ctrl-C."""
OWN_LOGGERS = ("sentry", "judge", "trainer", "plugins", "studio")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

ExceptionTypes = tuple[type[BaseException], ...]


class UserError(click.ClickException):
    """A problem the user can fix: click prints `Error: <message>` and exits with status 1."""


@contextlib.contextmanager
def user_errors(kinds: ExceptionTypes) -> Iterator[None]:
    """Turn the given exception types (a package's error base) into UserError, and Ctrl-C
    into exit status 130; anything else is a bug and keeps its traceback."""
    try:
        yield
    except click.ClickException:
        raise
    except kinds as exc:
        raise UserError(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


def fail_cleanly(*kinds: type[BaseException]) -> Callable[[Callable], Callable]:
    """Decorate one command with `user_errors(kinds)` (commands run outside a CommandGroup,
    such as a sub-group invoked on its own in a test)."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with user_errors(kinds):
                return fn(*args, **kwargs)
        return wrapper
    return decorate


class CommandGroup(click.Group):
    """A click group that runs itself and every command under it through user_errors."""

    def __init__(self, *args: Any, user_errors: ExceptionTypes = (), **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        super().__init__(*args, **kwargs)
        self.user_errors = tuple(user_errors)

    def invoke(self, ctx: click.Context) -> Any:
        with user_errors(self.user_errors):
            return super().invoke(ctx)


def setup_logging(prog: str, verbose: bool, *, level: int = logging.WARNING, pid: bool = False) -> None:
    """Log to stderr as `PROG: LEVEL logger: message` (`PROG[pid]` for forking servers).

    Hark's own loggers log at `level` (WARNING, or INFO where progress is the point), other
    libraries at WARNING; -v (`verbose`) shows DEBUG from everything."""
    prefix = f"{prog}[%(process)d]" if pid else prog
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format=f"{prefix}: {LOG_FORMAT}")
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else level)


def version_option(prog: str) -> Callable[[Callable], Callable]:
    """`--version`: prints `PROG, version X` with X from the installed package's metadata."""

    def show(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            click.echo(f"{prog}, version {package_version()}")
            ctx.exit()

    return click.option("--version", is_flag=True, expose_value=False, is_eager=True,
                        callback=show, help="Show the version and exit.")


MODEL_HELP = "Model folder written by `hark export` (holds manifest.json)."


def model_option(*, help: str = MODEL_HELP, required: bool = True, multiple: bool = False,
                 old: Sequence[str] = (), dest: str = "model_dir") -> Callable[[Callable], Callable]:
    """`--model DIR`, the one name for an exported model folder in every command; `old`
    spellings (e.g. "--model-dir") stay accepted and are named in the help as such."""
    if old:
        help = f"{help} ({', '.join(old)}: the old spelling, still accepted.)"
    return click.option("--model", *old, dest, required=required, multiple=multiple,
                        type=click.Path(exists=True, file_okay=False, path_type=Path), help=help)


def pick_model(option: Path | None, positional: Path | None, *, what: str = "MODEL_DIR") -> Path:
    """The model of a command that takes `--model DIR` and, as its old spelling, the folder
    as a positional argument: either one, not two different ones."""
    if option is not None and positional is not None and Path(option).resolve() != Path(positional).resolve():
        raise click.UsageError(f"two models given: --model {option} and {what} {positional}; "
                               f"pass one (--model DIR; {what} as an argument is the old spelling)")
    chosen = option if option is not None else positional
    if chosen is None:
        raise click.UsageError("Missing option '--model'.")
    return chosen
