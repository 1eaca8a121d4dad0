"""Discovery: `GET /cds-services` (CDS Hooks 2.0, "Discovery").

Each service is described by its rule pack: `hook`, `title`, `description`, `id`, `prefetch`, and
`usageRequirements`; and the Da Vinci CRD 2.2.1 discovery extension (`davinci-crd.version`,
`davinci-crd.configuration-options`: hooks/crd_config.py). The prefetch includes the documentation
questionnaire's responses when the pack has one (packs/dtr.py).
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from cds_hooks.hooks.crd_config import discovery_extension
from cds_hooks.web.extensions import registry_of

bp = Blueprint("discovery", __name__)


def discovery_document(evaluators) -> dict:
    services = []
    for evaluator in evaluators:
        pack = evaluator.pack
        entry = {
            "hook": pack.hook,
            "title": pack.service["title"],
            "description": pack.service["description"],
            "id": pack.service_id,
            "prefetch": dict(evaluator.prefetch),
        }
        if pack.service.get("usageRequirements"):
            entry["usageRequirements"] = pack.service["usageRequirements"]
        entry["extension"] = discovery_extension()
        services.append(entry)
    return {"services": services}


@bp.get("/cds-services")
def discovery():
    return jsonify(discovery_document(registry_of(current_app).evaluators.values()))
