"""Discovery: `GET /cds-services` (CDS Hooks 2.0, "Discovery").

Each service is described by its rule pack: `hook`, `title`, `description`, `id`, `prefetch`, and
`usageRequirements`.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from cds_hooks.web.extensions import registry_of

bp = Blueprint("discovery", __name__)


def discovery_document(packs) -> dict:
    services = []
    for pack in packs:
        entry = {
            "hook": pack.hook,
            "title": pack.service["title"],
            "description": pack.service["description"],
            "id": pack.service_id,
            "prefetch": dict(pack.prefetch),
        }
        if pack.service.get("usageRequirements"):
            entry["usageRequirements"] = pack.service["usageRequirements"]
        services.append(entry)
    return {"services": services}


@bp.get("/cds-services")
def discovery():
    return jsonify(discovery_document(registry_of(current_app).packs()))
