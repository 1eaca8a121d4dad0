"""The application the offline commands (`evaluate`, `corpus eval`) post requests to, in process."""

from __future__ import annotations

from cds_hooks.config import Config


def offline_app():
    """The service on its development settings, without an audit trail: an offline look at what it
    would answer is not a call to record. The caller closes `registry_of(app).engine`."""
    from cds_hooks.web.app import create_app

    return create_app(Config.development(audit_enabled=False), serving=False)
