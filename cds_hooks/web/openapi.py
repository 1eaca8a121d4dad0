"""The OpenAPI 3 description of the service, served at `GET /openapi.json`.

Each operation is written here by hand (CDS Hooks 2.0 defines the shapes: "Discovery", "Calling a
CDS Service", "CDS Service Response", "Feedback"; Da Vinci DTR 2.x "$questionnaire-package"). The served document lists the operations whose
routes the application has registered; a test fails when a registered route has no operation here.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from cds_hooks.pipeline.registry import EXTENSION

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.0.3"


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_AUTH_ERRORS = {
    "401": _error('No valid caller JWT (CDS Hooks 2.0, "Trusting CDS Clients")'),
}
_BODY_ERRORS = {
    "400": _error("The request cannot be used: malformed or too deeply nested JSON, or missing fields"),
    "413": _error("The body is larger than the configured limit"),
    "415": _error("The body is not JSON"),
}
_SECURED = [{"cdsClientJwt": []}]
_SERVICE_ID = {
    "name": "service_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The `id` of a service listed by discovery",
}

_HTML = {"text/html": {"schema": {"type": "string"}}}
_CASE_LINK = [
    {"name": "call_id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "The call"},
    {"name": "card_uuid", "in": "path", "required": True, "schema": {"type": "string"}, "description": "Its card"},
    {
        "name": "e",
        "in": "query",
        "required": True,
        "schema": {"type": "string"},
        "description": "Expiry of the link (Unix seconds)",
    },
    {
        "name": "s",
        "in": "query",
        "required": True,
        "schema": {"type": "string"},
        "description": "HMAC-SHA-256 of the call, the card and the expiry",
    },
]
_CASE_PAGE = {
    "200": {"description": "The page", "content": _HTML},
    "403": {"description": "The link is incomplete, altered, signed for another card or expired", "content": _HTML},
    "404": {"description": "The case is no longer in the audit trail", "content": _HTML},
}

# (Flask rule, method) -> OpenAPI operation.
OPERATIONS: dict[tuple[str, str], dict] = {
    ("/cds-services", "GET"): {
        "operationId": "discovery",
        "summary": "Discovery: the services this CDS service offers",
        "security": _SECURED,
        "responses": {
            "200": {
                "description": "The services",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Discovery"}}},
            },
            **_AUTH_ERRORS,
        },
    },
    ("/cds-services/<service_id>", "POST"): {
        "operationId": "callService",
        "summary": "Call a service with a hook request",
        "security": _SECURED,
        "parameters": [_SERVICE_ID],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/HookRequest"}},
                "application/fhir+json": {"schema": {"$ref": "#/components/schemas/HookRequest"}},
            },
        },
        "responses": {
            "200": {
                "description": "Cards (possibly none)",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CdsResponse"}}},
            },
            **_BODY_ERRORS,
            **_AUTH_ERRORS,
            "403": _error("fhirServer is not allowed and the service would have to fetch from it"),
            "404": _error("No service with this id"),
            "412": _error("No patient data could be obtained from prefetch or the FHIR server"),
            "503": _error("The criteria engine is unavailable"),
        },
    },
    ("/cds-services/<service_id>/dtr/Questionnaire/$questionnaire-package", "POST"): {
        "operationId": "questionnairePackage",
        "summary": "Da Vinci DTR $questionnaire-package: the documentation questionnaire, its CQL Libraries and ValueSets",
        "security": _SECURED,
        "parameters": [_SERVICE_ID],
        "requestBody": {
            "required": True,
            "content": {
                "application/fhir+json": {"schema": {"$ref": "#/components/schemas/FhirResource"}},
                "application/json": {"schema": {"$ref": "#/components/schemas/FhirResource"}},
            },
        },
        "responses": {
            "200": {
                "description": "Parameters with one PackageBundle (DTR dtr-qpackage-output-parameters)",
                "content": {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/FhirResource"}}},
            },
            "400": {
                "description": "Not a Parameters resource, or no coverage (an OperationOutcome)",
                "content": {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/FhirResource"}}},
            },
            "404": {
                "description": "No such service or questionnaire (an OperationOutcome)",
                "content": {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/FhirResource"}}},
            },
            "413": _BODY_ERRORS["413"],
            "415": _BODY_ERRORS["415"],
            **_AUTH_ERRORS,
        },
    },
    ("/cds-services/<service_id>/feedback", "POST"): {
        "operationId": "feedback",
        "summary": 'Feedback on the cards a service returned (CDS Hooks 2.0, "Feedback")',
        "security": _SECURED,
        "parameters": [_SERVICE_ID],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Feedback"}}},
        },
        "responses": {
            "200": {"description": "Feedback recorded"},
            **_BODY_ERRORS,
            **_AUTH_ERRORS,
            "404": _error("No service with this id"),
        },
    },
    # Operations (docs/operations.md): for the platform, not for EHRs; no caller JWT.
    ("/healthz", "GET"): {
        "operationId": "healthz",
        "summary": "Liveness: the process answers",
        "tags": ["operations"],
        "responses": {"200": {"description": "Alive", "content": {"application/json": {"schema": {"type": "object"}}}}},
    },
    ("/readyz", "GET"): {
        "operationId": "readyz",
        "summary": "Readiness: the CQL engine answers and the audit database is reachable",
        "tags": ["operations"],
        "responses": {
            "200": {"description": "Ready", "content": {"application/json": {"schema": {"type": "object"}}}},
            "503": {
                "description": "Not ready; the body says which check failed",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
        },
    },
    ("/metrics", "GET"): {
        "operationId": "metrics",
        "summary": "Prometheus metrics",
        "tags": ["operations"],
        "responses": {
            "200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    },
    # The try-it page: an EHR simulator for testing, served only when `tryit_enabled` (docs/sandbox.md).
    ("/try/", "GET"): {
        "operationId": "tryItPage",
        "summary": "The try-it page (development and sandbox testing only)",
        "tags": ["try-it"],
        "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
    },
    ("/try/static/<path:name>", "GET"): {
        "operationId": "tryItStatic",
        "summary": "Script and style sheet of the try-it page",
        "tags": ["try-it"],
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The file"}, "404": _error("No such file")},
    },
    ("/try/api/patients", "GET"): {
        "operationId": "tryItPatients",
        "summary": "Patients the try-it page offers (bundled fixtures, configured FHIR server)",
        "tags": ["try-it"],
        "responses": {
            "200": {"description": "Patients", "content": {"application/json": {"schema": {"type": "object"}}}}
        },
    },
    ("/try/api/orders", "GET"): {
        "operationId": "tryItOrders",
        "summary": "Fusion order codes, levels and priorities the try-it page offers",
        "tags": ["try-it"],
        "responses": {
            "200": {"description": "Order catalogue", "content": {"application/json": {"schema": {"type": "object"}}}}
        },
    },
    ("/try/api/request", "POST"): {
        "operationId": "tryItRequest",
        "summary": "Build the order-sign request body the try-it page sends",
        "tags": ["try-it"],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {
            "200": {
                "description": "A CDS Hooks order-sign request",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HookRequest"}}},
            },
            "400": _error("The page's request is not usable"),
        },
    },
    ("/try/api/prepopulate", "POST"): {
        "operationId": "tryItPrepopulate",
        "summary": "Pre-populate the service's DTR questionnaire from the record of a try-it order-sign request",
        "tags": ["try-it"],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {
            "200": {
                "description": "The Questionnaire and an in-progress QuestionnaireResponse",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "400": _error("The page's request is not usable"),
        },
    },
    ("/policies/<service_id>/<profile_name>", "GET"): {
        "operationId": "policy",
        "summary": "The human-readable policy a card links to",
        "parameters": [
            _SERVICE_ID,
            {"name": "profile_name", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {"description": "The policy page", "content": {"text/html": {"schema": {"type": "string"}}}},
            "404": _error("No such service or profile"),
        },
    },
    ("/cases/<call_id>/<card_uuid>", "GET"): {
        "operationId": "caseView",
        "summary": "The whole evaluation behind one card, from the audit trail (the card's signed link)",
        "parameters": _CASE_LINK,
        "responses": _CASE_PAGE,
    },
    ("/cases/<call_id>/<card_uuid>/brief", "GET"): {
        "operationId": "peerToPeerBrief",
        "summary": "The printable peer-to-peer brief for one card (same signed link as the case view)",
        "parameters": _CASE_LINK,
        "responses": _CASE_PAGE,
    },
    ("/openapi.json", "GET"): {
        "operationId": "openapi",
        "summary": "This document",
        "responses": {
            "200": {
                "description": "OpenAPI 3 document",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    },
}

_CODING = {
    "type": "object",
    "properties": {"system": {"type": "string"}, "code": {"type": "string"}, "display": {"type": "string"}},
}

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "A short machine-readable code"},
            "message": {"type": "string", "description": "One sentence for a person"},
        },
    },
    "Discovery": {
        "type": "object",
        "required": ["services"],
        "properties": {
            "services": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["hook", "description", "id"],
                    "properties": {
                        "hook": {"type": "string"},
                        "title": {"type": "string"},
                        "description": {"type": "string"},
                        "id": {"type": "string"},
                        "prefetch": {"type": "object", "additionalProperties": {"type": "string"}},
                        "usageRequirements": {"type": "string"},
                    },
                },
            }
        },
    },
    "HookRequest": {
        "type": "object",
        "required": ["hook", "hookInstance", "context"],
        "properties": {
            "hook": {"type": "string", "enum": ["order-sign"], "description": "The hook the service answers"},
            "hookInstance": {"type": "string", "format": "uuid"},
            "fhirServer": {"type": "string", "format": "uri"},
            "fhirAuthorization": {
                "type": "object",
                "required": ["access_token", "token_type", "scope", "subject"],
                "properties": {
                    "access_token": {"type": "string"},
                    "token_type": {"type": "string", "enum": ["Bearer"]},
                    "expires_in": {"type": "integer"},
                    "scope": {"type": "string"},
                    "subject": {"type": "string"},
                    "patient": {"type": "string"},
                },
            },
            "context": {
                "type": "object",
                "required": ["userId", "patientId", "draftOrders"],
                "properties": {
                    "userId": {"type": "string", "maxLength": 256},
                    "patientId": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"},
                    "encounterId": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"},
                    "draftOrders": {"type": "object", "description": "FHIR Bundle of the orders being signed"},
                },
            },
            "prefetch": {"type": "object", "additionalProperties": {"type": "object", "nullable": True}},
        },
    },
    "Card": {
        "type": "object",
        "required": ["summary", "indicator", "source"],
        "properties": {
            "uuid": {"type": "string", "format": "uuid"},
            "summary": {"type": "string", "maxLength": 140},
            "detail": {"type": "string"},
            "indicator": {"type": "string", "enum": ["info", "warning", "critical"]},
            "source": {
                "type": "object",
                "required": ["label"],
                "properties": {
                    "label": {"type": "string"},
                    "url": {"type": "string"},
                    "icon": {"type": "string"},
                    "topic": _CODING,
                },
            },
            "suggestions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["label"],
                    "properties": {
                        "label": {"type": "string"},
                        "uuid": {"type": "string"},
                        "isRecommended": {"type": "boolean"},
                        "actions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["type", "description"],
                                "properties": {
                                    "type": {"type": "string", "enum": ["create", "update", "delete"]},
                                    "description": {"type": "string"},
                                    "resource": {"type": "object"},
                                    "resourceId": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
            },
            "selectionBehavior": {"type": "string", "enum": ["at-most-one", "any"]},
            "overrideReasons": {"type": "array", "items": _CODING},
            "links": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["label", "url", "type"],
                    "properties": {
                        "label": {"type": "string"},
                        "url": {"type": "string"},
                        "type": {"type": "string", "enum": ["absolute", "smart"]},
                        "appContext": {"type": "string"},
                    },
                },
            },
            "extension": {"type": "object"},
        },
    },
    "CdsResponse": {
        "type": "object",
        "required": ["cards"],
        "properties": {
            "cards": {"type": "array", "items": {"$ref": "#/components/schemas/Card"}},
            "systemActions": {"type": "array", "items": {"type": "object"}},
            "extension": {"type": "object"},
        },
    },
    "FhirResource": {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string"}},
        "additionalProperties": True,
    },
    "Feedback": {
        "type": "object",
        "required": ["feedback"],
        "properties": {
            "feedback": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["card", "outcome", "outcomeTimestamp"],
                    "properties": {
                        "card": {"type": "string"},
                        "outcome": {"type": "string", "enum": ["accepted", "overridden"]},
                        "acceptedSuggestions": {
                            "type": "array",
                            "items": {"type": "object", "properties": {"id": {"type": "string"}}},
                        },
                        "overrideReason": {
                            "type": "object",
                            "properties": {"reason": _CODING, "userComment": {"type": "string"}},
                        },
                        "outcomeTimestamp": {"type": "string", "format": "date-time"},
                    },
                },
            }
        },
    },
}


def _openapi_path(rule: str) -> str:
    return rule.replace("<", "{").replace(">", "}")


def registered_operations(app) -> set[tuple[str, str]]:
    """(rule, method) for every route the application serves (HEAD and OPTIONS are implied)."""
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out.add((rule.rule, method))
    return out


def _procedures(app) -> str:
    """The procedures the served rule packs check (pack.json `cards.procedureName`)."""
    registry = app.extensions.get(EXTENSION)
    packs = registry.packs() if registry is not None else []
    return ", ".join(dict.fromkeys(pack.procedure_name for pack in packs)) or "surgical"


def document(app) -> dict:
    paths: dict[str, dict] = {}
    for rule, method in sorted(registered_operations(app)):
        operation = OPERATIONS.get((rule, method))
        if operation is not None:
            paths.setdefault(_openapi_path(rule), {})[method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "fusion-cds",
            "version": "0.1.0",
            "description": f"CDS Hooks 2.0 service checking {_procedures(app)} orders against payer "
            "medical-necessity criteria. Decision support, not a coverage determination.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "cdsClientJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A JWT signed by a trusted CDS client, aud = the URL called "
                    '(CDS Hooks 2.0, "Trusting CDS Clients")',
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi():
    return jsonify(document(current_app))
