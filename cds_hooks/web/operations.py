"""Operations endpoints: `/healthz` (the process answers), `/readyz` (it can do its job), `/metrics`.

Readiness means the CQL engine answers a ping and, when the audit trail is on, the audit database
answers a query: without either, hook calls would fail, so a load balancer should send none.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from cds_hooks.web.extensions import registry_of
from cds_hooks.web.recording import recorder_of

bp = Blueprint("operations", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "alive"})


@bp.get("/readyz")
def readyz():
    recorder = recorder_of(current_app)
    checks = {"engine": "ok" if registry_of(current_app).engine.ping() else "failing"}
    if recorder.store is None:
        checks["database"] = "not configured"
    else:
        checks["database"] = "ok" if recorder.store.ping() else "failing"
    ready = "failing" not in checks.values()
    response = jsonify({"status": "ready" if ready else "not ready", "checks": checks})
    response.status_code = 200 if ready else 503
    return response


@bp.get("/metrics")
def metrics():
    body, content_type = recorder_of(current_app).metrics.exposition()
    return Response(body, content_type=content_type)
