"""Who may drive the studio: the checks every request passes before any panel sees it.

The studio reads files and runs jobs, and it runs next to a browser that visits any web
page, so loopback alone is no defence (a page can POST to 127.0.0.1, and a DNS-rebinding
page can make its own name point there). As Jupyter does, every launch therefore has:

- a Host check: the Host header must name the studio itself (127.0.0.1, localhost or [::1]
  with its port, the --host it listens on, any IP address when it listens on all interfaces,
  or a name given with --allow-host); otherwise 403. A rebinding page sends its own name.
- an Origin check on state-changing requests (POST, PUT, PATCH, DELETE): a browser's Origin
  must be the studio's own; clients that send no Origin (curl, scripts) pass this check.
- a per-launch CSRF token on the same requests, in the X-Hark-Csrf header. The studio's own
  page receives it in index.html (a <meta> tag, which other origins cannot read) and
  studio/static/js/api.js sends it back. A request authenticated with the --token access
  token in an Authorization header needs no CSRF token (no browser adds that header by itself).
- with --token: the access token on every request (header, cookie or ?token= once).

Tokens are compared as bytes in constant time, so a non-ASCII token is a clean 403, not a 500.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import urllib.parse
from collections.abc import Iterable

from flask import Flask, redirect, request

from .errors import FORBIDDEN, UNAUTHORIZED, error_response

CSRF_HEADER = "X-Hark-Csrf"
CSRF_META = "hark-csrf"
"""<meta name=...> in index.html that carries the per-launch CSRF token to the page."""
CSRF_BYTES = 32
TOKEN_COOKIE = "hark_studio_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def new_csrf_token() -> str:
    return secrets.token_urlsafe(CSRF_BYTES)


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison that never raises (hmac refuses non-ASCII str)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8", "surrogateescape"))


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which Host headers name this studio. PORT is learned once the server has bound it
    (None: any port, as in the Flask test client)."""

    def __init__(self, listen_host: str = "127.0.0.1", allowed: Iterable[str] = ()) -> None:
        self.listen_host = listen_host.strip("[]").lower()
        self.names = set(LOOPBACK_NAMES) | {n.strip("[]").lower() for n in allowed if n}
        if self.listen_host not in WILDCARD_HOSTS:
            self.names.add(self.listen_host)
        self.port: int | None = None

    def allows(self, host_header: str) -> bool:
        parsed = urllib.parse.urlsplit("//" + host_header)
        try:
            name, port = (parsed.hostname or "").lower(), parsed.port
        except ValueError:  # a port that is not a number
            return False
        if not name or parsed.username is not None or parsed.path:
            return False
        if name not in self.names and not (self.listen_host in WILDCARD_HOSTS and _is_ip(name)):
            return False
        return self.port is None or port in (self.port, None if self.port == 80 else self.port)


def install(app: Flask, *, hosts: HostPolicy, csrf_token: str, token: str | None) -> None:
    """Register the checks as the app's first before_request handlers after the body limit."""

    @app.before_request
    def _check_host():
        if not hosts.allows(request.host):
            return error_response("bad_host", f"this studio does not answer to Host "
                                  f"{request.host[:100]!r}; open it at the address `hark studio` "
                                  "printed (or start it with --allow-host NAME)", FORBIDDEN)
        return None

    if token:
        _require_token(app, token)

    @app.before_request
    def _check_csrf():
        if request.method not in UNSAFE_METHODS:
            return None
        origin = request.headers.get("Origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc != request.host:
            return error_response("cross_origin", f"a request from {origin[:100]!r} may not change "
                                  "this studio; use the studio's own page", FORBIDDEN)
        if token and _bearer() is not None and same_secret(_bearer(), token):
            return None  # no browser attaches this header on its own
        given = request.headers.get(CSRF_HEADER, "")
        if not given or not same_secret(given, csrf_token):
            return error_response("csrf_token", f"missing or wrong {CSRF_HEADER} header: this request "
                                  "did not come from the studio's page (reload the page after a "
                                  "restart of `hark studio`)", FORBIDDEN)
        return None

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Frame-Options", "DENY")  # no clicks through a hidden frame
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")  # ?token= never leaks
        return response


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else None


def _require_token(app: Flask, token: str) -> None:
    """Every request carries the token: `Authorization: Bearer T`, the cookie set when the
    page was opened with ?token=T, or that query parameter itself."""

    @app.before_request
    def _check_token():
        given = request.args.get("token")
        if given is not None and same_secret(given, token):
            response = redirect(request.path)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
            return response
        bearer = _bearer()
        given = bearer if bearer is not None else request.cookies.get(TOKEN_COOKIE, "")
        if given and same_secret(given, token):
            return None
        if given:
            return error_response("wrong_token", "wrong access token", FORBIDDEN)
        return error_response("token_required", "this studio needs its access token: open the URL "
                              "`hark studio` printed (it ends in ?token=...)", UNAUTHORIZED)


def inject_csrf(html: str, csrf_token: str) -> str:
    """index.html with the CSRF <meta> tag in its <head>."""
    tag = f'<meta name="{CSRF_META}" content="{csrf_token}">'
    return html.replace("<head>", "<head>\n  " + tag, 1)
