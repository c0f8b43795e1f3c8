"""The studio's own page sends its per-launch CSRF token with every state-changing request
(studio/static/js/api.js); the Flask test clients of these tests do the same, as that page.
Tests of the defence itself (test_studio_security.py) build plain FlaskClients."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from studio.security import CSRF_HEADER


class PageClient(FlaskClient):
    """A test client that behaves like the studio's page: it echoes the CSRF token."""

    def open(self, *args, **kwargs):
        studio = self.application.extensions.get("hark_studio")
        if studio is not None:
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault(CSRF_HEADER, studio.csrf_token)
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)


@pytest.fixture(autouse=True)
def _page_client(monkeypatch):
    monkeypatch.setattr(Flask, "test_client_class", PageClient)


