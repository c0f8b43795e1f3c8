"""The judge's one exception base, and the one place errors become JSON responses.

Every error a client can cause is a JudgeError with an HTTP status in the 4xx range, a
short machine-readable code and a message saying what was wrong and how to fix it. The
handlers registered here turn it, werkzeug's own HTTP errors (404, 405, 413...) and any
unexpected exception into the same JSON shape, so no request ever gets an HTML page
or a traceback:

    {"error": {"code": "not_wav", "message": "the body is not a WAV file ..."}}
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Flask is imported where responses are made, so JudgeError needs none
    from flask import Flask, Response

log = logging.getLogger(__name__)

BAD_REQUEST = 400
UNAUTHORIZED = 401
NOT_FOUND = 404
PAYLOAD_TOO_LARGE = 413
UNSUPPORTED_MEDIA_TYPE = 415
INTERNAL_ERROR = 500
SERVICE_UNAVAILABLE = 503


class JudgeError(Exception):
    """A problem with a request (or the server's setup) that its sender can fix.

    status: HTTP status code sent back (4xx for anything a request caused).
    code: short snake_case identifier clients can branch on, e.g. "clip_too_long".
    message: what was wrong and how to fix it.
    headers: extra response headers (WWW-Authenticate on 401).
    """

    def __init__(self, message: str, *, status: int = BAD_REQUEST, code: str = "bad_request",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.headers = dict(headers or {})


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    """The JSON body every error shares."""
    from flask import jsonify

    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _snake(name: str) -> str:
    """werkzeug's 'Request Entity Too Large' -> 'request_entity_too_large'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def register_error_handlers(app: Flask) -> None:
    """Route every exception a view can raise to a JSON error response."""
    from werkzeug.exceptions import HTTPException

    @app.errorhandler(JudgeError)
    def _judge_error(exc: JudgeError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or INTERNAL_ERROR
        if status == PAYLOAD_TOO_LARGE:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            return error_response(status, "payload_too_large",
                                  f"the request body is larger than this server accepts "
                                  f"({limit} bytes); send a shorter clip (a few seconds of "
                                  "16 kHz mono 16-bit audio is plenty)")
        return error_response(status, _snake(exc.name), exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # A bug on our side: the details go to the server log, never to the client.
        log.exception("unhandled error while serving a request")
        return error_response(INTERNAL_ERROR, "internal_error",
                              "the judge failed on this request; the server log has the "
                              "details. Retrying with the same input will fail the same way.")
