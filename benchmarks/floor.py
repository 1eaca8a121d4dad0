"""The floor: a no-op Flask application that parses the same request body and answers no cards.

Served exactly like the service (gunicorn with cds_hooks/ops/gunicorn_conf.py), it measures what the
HTTP server, Flask and JSON parsing cost by themselves; every scenario is reported as a ratio to it.

    gunicorn --config python:cds_hooks.ops.gunicorn_conf benchmarks.floor:app
"""

from __future__ import annotations

from flask import Flask, jsonify, request


def create_floor_app() -> Flask:
    app = Flask(__name__)

    @app.post("/cds-services/<service_id>")
    def call_service(service_id: str):
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return jsonify({"error": "malformed-json"}), 400
        return jsonify({"cards": []})

    @app.get("/cds-services")
    def discovery():
        return jsonify({"services": []})

    return app


app = create_floor_app()
