"""What the application holds for its views (Flask's `app.extensions`): the services it serves."""

from __future__ import annotations

from flask import Flask

from cds_hooks.pipeline.registry import EXTENSION, ServiceRegistry


def registry_of(app: Flask) -> ServiceRegistry:
    return app.extensions[EXTENSION]
