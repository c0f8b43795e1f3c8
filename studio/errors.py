"""The studio's one exception base, and the one place errors become JSON responses.

Every problem a browser request can cause is a StudioError with a 4xx status, a short
code and a message saying what was wrong and how to fix it:

    {"error": {"code": "busy", "message": "a train job is already running ..."}}
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

BAD_REQUEST = 400
UNAUTHORIZED = 401
FORBIDDEN = 403
NOT_FOUND = 404
CONFLICT = 409
INTERNAL_ERROR = 500


class StudioError(Exception):
    """A request the user can fix. status: HTTP status; code: snake_case identifier."""

    def __init__(self, message: str, *, status: int = BAD_REQUEST, code: str = "bad_request") -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


def error_response(code: str, message: str, status: int):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(StudioError)
    def _studio(exc: StudioError):
        return error_response(exc.code, exc.message, exc.status)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(code, exc.description or exc.name, exc.code or BAD_REQUEST)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # The text of an unexpected exception often holds absolute paths (an OSError's filename,
        # a traceback's frames): it goes to the studio's log, the browser gets its type only.
        log.exception("unexpected error")
        return error_response("internal_error", f"unexpected error ({type(exc).__name__}); the "
                              "`hark studio` log has the details", INTERNAL_ERROR)
