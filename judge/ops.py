"""Operational endpoints, outside the versioned API and without auth: probes, metrics
and the API description. They reveal no audio and no keys; bind the server to a private
address (the default is loopback) if the model's name and version are sensitive."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from .metrics import CONTENT_TYPE

ops = Blueprint("ops", __name__)


@ops.get("/healthz")
def healthz():
    """The process is up and answering (liveness)."""
    return jsonify({"status": "ok"})


@ops.get("/readyz")
def readyz():
    """The model is loaded and has run once (readiness): traffic can be sent here."""
    state = current_app.extensions["hark_judge"]
    return jsonify({"status": "ready", "model": state.verifier.name,
                    "model_version": state.verifier.version})


@ops.get("/metrics")
def metrics():
    """Prometheus text exposition of this worker's counters."""
    text = current_app.extensions["hark_judge"].metrics.render()
    return Response(text, content_type=CONTENT_TYPE)


@ops.get("/openapi.json")
def openapi():
    """This API's OpenAPI 3.1 description (the same file as judge/openapi.json)."""
    return jsonify(current_app.extensions["hark_judge"].openapi)
