"""API keys: `Authorization: Bearer <key>`, keys from a file or the environment.

Keys are compared with hmac.compare_digest against every configured key, so neither
the position of the first wrong character nor which key matched shows in the timing.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Iterable, Mapping

from .errors import UNAUTHORIZED, JudgeError

KEYS_ENV = "HARK_JUDGE_KEYS"
"""Environment variable holding keys separated by commas or whitespace."""

MIN_KEY_CHARS = 16
"""Shortest key accepted: shorter keys are guessable. `python -c "import secrets;
print(secrets.token_urlsafe(32))"` makes a good one."""

SCHEME = "Bearer"


def _parse(text: str) -> list[str]:
    keys = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]  # comments, so a key file can say whose key is whose
        keys.extend(k for k in line.replace(",", " ").split() if k)
    return keys


def read_keys(keys_file: str | Path | None = None,
              environ: Mapping[str, str] | None = None) -> list[str]:
    """Keys from `keys_file` (one per line, '#' starts a comment) and from $HARK_JUDGE_KEYS.

    Only reads; `check_keys` decides whether what was found is usable.
    """
    environ = os.environ if environ is None else environ
    keys: list[str] = []
    if keys_file is not None:
        path = Path(keys_file)
        try:
            keys.extend(_parse(path.read_text()))
        except (OSError, UnicodeDecodeError) as exc:
            raise JudgeError(f"{path}: cannot read the keys file ({exc}); give a text file "
                             "with one API key per line") from exc
    keys.extend(_parse(environ.get(KEYS_ENV, "")))
    return keys


def check_keys(keys: Iterable[str]) -> tuple[str, ...]:
    """Validate configured keys; returns them deduplicated, in order.

    Raises JudgeError when there is no key at all (a judge without keys would verify
    for anyone who can reach it) or a key is too short.
    """
    unique = tuple(dict.fromkeys(keys))
    if not unique:
        raise JudgeError(f"no API keys configured; put one per line in a file given with "
                         f"--keys-file, or set {KEYS_ENV}. Make one with `python -c \"import "
                         "secrets; print(secrets.token_urlsafe(32))\"`")
    short = [k for k in unique if len(k) < MIN_KEY_CHARS or not k.isascii()]
    if short:
        raise JudgeError(f"{len(short)} API key(s) are shorter than {MIN_KEY_CHARS} characters "
                         "or not ASCII; use long random keys (secrets.token_urlsafe(32))")
    return unique


def authorize(header: str | None, keys: Iterable[str]) -> None:
    """Raise a 401 JudgeError unless `header` is 'Bearer <one of keys>'."""
    challenge = {"WWW-Authenticate": f'{SCHEME} realm="hark-judge"'}
    if not header:
        raise JudgeError("missing API key; send the header 'Authorization: Bearer <key>'",
                         status=UNAUTHORIZED, code="unauthorized", headers=challenge)
    scheme, _, given = header.partition(" ")
    if scheme.lower() != SCHEME.lower() or not given.strip():
        raise JudgeError("malformed Authorization header; send 'Authorization: Bearer <key>'",
                         status=UNAUTHORIZED, code="unauthorized", headers=challenge)
    presented = given.strip().encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:  # no early exit: every key is compared on every request
        matched |= hmac.compare_digest(presented, key.encode("ascii"))
    if not matched:
        raise JudgeError("wrong API key; check the key file the device uses against the "
                         "server's --keys-file or $HARK_JUDGE_KEYS",
                         status=UNAUTHORIZED, code="unauthorized", headers=challenge)
