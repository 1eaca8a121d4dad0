"""The try-it page: an EHR simulator for the service, served at `/try` when `tryit_enabled` is set.

The page (tryit_static/) picks a patient (a bundled fixture, or a patient on the configured FHIR
server), picks or edits the fusion order, and then behaves as a CDS client would: it sends the
order-sign request to `POST /cds-services/{id}` (CDS Hooks 2.0, "Calling a CDS Service"), renders
the cards ("Card Attributes") and the coverage information of its `systemActions` (Da Vinci CRD),
and sends feedback to `POST /cds-services/{id}/feedback` ("Feedback"). When the coverage information
asks for documentation, the page fetches the questionnaire package from the service (Da Vinci DTR
`$questionnaire-package`), has it pre-populated here as an EHR's DTR client would (the package's CQL
run on the request's record by the same engine), lets the user answer it, and signs again with the
completed QuestionnaireResponse in the prefetch. This blueprint serves the page, prepares request
bodies and pre-populates the questionnaire; the criteria are evaluated only by the service. The FHIR server it reads is the configured one,
never a URL from the browser.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import requests
from flask import Blueprint, current_app, jsonify, request, send_from_directory

from cds_hooks.errors import InvalidRequest
from cds_hooks.hooks.hook_request import draft_order_resources
from cds_hooks.hooks.prefetch import resources_of
from cds_hooks.pipeline.fhir_client import FhirError
from cds_hooks.pipeline.orders import group_cases
from cds_hooks.pipeline.profiles import select_profile
from cds_hooks.sandbox import draft_orders
from cds_hooks.sandbox.dtr_client import prepopulate
from cds_hooks.sandbox.ehr_client import order_sign_request, resolve_prefetch
from cds_hooks.sandbox.fixtures import FixtureError, fixture_prefetch, load_fixture, load_fixtures
from cds_hooks.spine.levels import INTERSPACES
from cds_hooks.web.extensions import registry_of

STATIC = Path(__file__).resolve().parent / "tryit_static"
DEFAULT_USER = "Practitioner/surgeon-1"
FIXTURE, FHIR = "fixture", "fhir"
# Everything the page loads comes from this service; nothing from anywhere else.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)

bp = Blueprint("tryit", __name__, url_prefix="/try")


@bp.after_request
def _headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _config():
    return registry_of(current_app).config


@bp.get("/")
def page():
    return send_from_directory(STATIC, "index.html")


@bp.get("/static/<path:name>")
def asset(name: str):
    return send_from_directory(STATIC, name)


def _fixture_entry(fixture, registry) -> dict:
    entry = {
        "key": f"{FIXTURE}:{fixture.name}",
        "source": FIXTURE,
        "label": fixture.label(),
        "patientId": fixture.patient_id,
        "order": None,
        "ordersText": None,
        "service": None,
    }
    if fixture.orders:
        entry["order"] = draft_orders.order_summary(fixture.orders)
        entry["ordersText"] = draft_orders.describe_orders(fixture.orders)
        # The service an EHR's call would get cards from: the first whose pack claims these orders.
        claiming = registry.claiming("order-sign", draft_order_resources(fixture.orders))
        entry["service"] = claiming[0].pack.service_id if claiming else None
    return entry


def _patient_label(patient: dict) -> str:
    names = patient.get("name") or [{}]
    first = names[0] if isinstance(names[0], dict) else {}
    name = " ".join([*first.get("given", []), first.get("family", "")]).strip() or "(no name)"
    return f"{patient.get('id')}: {name} ({patient.get('gender', 'unknown')}, {patient.get('birthDate', '?')})"


def _server_patients(base_url: str, fixture_ids: list[str], timeout: float) -> list[dict]:
    """Patients on the configured server: the fixture patients loaded there first, then up to 20 more.

    One page of each search only: a public server holds thousands of patients.
    """
    found: dict[str, dict] = {}
    headers = {"Accept": "application/fhir+json"}
    queries = ([f"Patient?_id={','.join(fixture_ids)}"] if fixture_ids else []) + ["Patient?_count=20"]
    for query in queries:
        try:
            response = requests.get(f"{base_url.rstrip('/')}/{query}", headers=headers, timeout=timeout)
            bundle = response.json() if response.status_code == 200 else None
        except (requests.RequestException, ValueError) as exc:
            raise FhirError("network", f"FHIR server unreachable ({type(exc).__name__})") from exc
        if not isinstance(bundle, dict):
            raise FhirError("http", f"FHIR server answered HTTP {response.status_code}", response.status_code)
        for p in resources_of(bundle):
            if p.get("resourceType") == "Patient" and isinstance(p.get("id"), str):
                found.setdefault(p["id"], p)
    return list(found.values())


@bp.get("/api/patients")
def patients():
    config = _config()
    out = {"patients": [], "fhirServer": config.tryit_fhir_server, "fhirError": None}
    fixtures = []
    try:
        fixtures = load_fixtures(config.fixtures_root)
        out["patients"] = [_fixture_entry(f, registry_of(current_app)) for f in fixtures]
    except FixtureError as exc:
        out["fixtureError"] = str(exc)
    if config.tryit_fhir_server:
        try:
            for p in _server_patients(config.tryit_fhir_server, [f.patient_id for f in fixtures], config.fhir_timeout):
                out["patients"].append(
                    {
                        "key": f"{FHIR}:{p['id']}",
                        "source": FHIR,
                        "label": _patient_label(p),
                        "patientId": p["id"],
                        "order": None,
                        "ordersText": None,
                        "service": None,
                    }
                )
        except FhirError as exc:
            out["fhirError"] = f"could not list patients on {config.tryit_fhir_server}: {exc}"
    return jsonify(out)


@bp.get("/api/orders")
def orders():
    evaluators = registry_of(current_app).evaluators.values()
    return jsonify(
        {
            "orders": draft_orders.order_catalogue(e.pack for e in evaluators),
            # Per service: the orders its pack claims and the levels of its spinal region, in spinal order
            # (none for a pack without one), so that the page offers what the chosen service checks.
            "services": {
                e.pack.service_id: {
                    "orders": draft_orders.order_catalogue([e.pack]),
                    "levels": [s for s in INTERSPACES if e.region and s in e.region],
                }
                for e in evaluators
            },
            "priorities": list(draft_orders.PRIORITIES),
            "today": date.today().isoformat(),
        }
    )


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid-tryit-request")


@bp.post("/api/request")
def build_request():
    """The order-sign request body the page will send, with prefetch resolved as the EHR would."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    registry = registry_of(current_app)
    config = registry.config
    evaluator = registry.get(str(body.get("service") or ""))
    if evaluator is None:
        raise _bad("service must name a service from discovery")
    source, _, ident = str(body.get("patient") or "").partition(":")
    levels = body.get("levels")
    if not isinstance(levels, list) or not all(isinstance(x, str) for x in levels):
        raise _bad("levels must be a list of interspaces")
    catalogue = {c["code"]: c for c in draft_orders.order_catalogue(registry.packs())}
    cpt = str(body.get("cpt") or "").strip()

    fixture = None
    if source == FIXTURE:
        try:
            fixture = load_fixture(config.fixtures_root, ident)
        except FixtureError as exc:
            raise _bad(str(exc)) from exc
        patient_id = fixture.patient_id
    elif source == FHIR and config.tryit_fhir_server and ident:
        patient_id = ident
    else:
        raise _bad("patient must be one of the patients the page lists")

    if body.get("asWritten"):
        # The fixture's own draft orders, exactly as the fixture files hold them.
        if fixture is None or not fixture.orders:
            raise _bad("only a bundled fixture with draft orders can be signed as written")
        orders = fixture.orders
    else:
        try:
            parsed = draft_orders.parse_levels(levels) if levels else []
        except draft_orders.OrderError as exc:
            raise _bad(str(exc)) from exc
        foreign = [lvl for lvl in parsed if evaluator.region and lvl not in evaluator.region]
        if foreign:
            raise _bad(
                f"{', '.join(foreign)} is not a level of this service (its levels: {', '.join(evaluator.region.interspaces)})"
            )
        try:
            orders = draft_orders.bundle(
                [
                    draft_orders.fusion_order(
                        patient_id=patient_id,
                        cpt=cpt,
                        levels=parsed,
                        priority=str(body.get("priority") or "routine"),
                        user_id=DEFAULT_USER,
                        occurrence=body.get("date") or None,
                        display=(catalogue.get(cpt) or {}).get("display"),
                        order_id="tryit-order-1",
                    )
                ]
            )
        except draft_orders.OrderError as exc:
            raise _bad(str(exc)) from exc
    context = {"userId": DEFAULT_USER, "patientId": patient_id}
    templates = dict(evaluator.pack.prefetch)
    notes: dict[str, str] = {}
    fhir_server = None
    if fixture is not None:
        prefetch = fixture_prefetch(fixture, templates, context, DEFAULT_USER)
        notes = {k: "from the bundled fixture" for k in prefetch}
    else:
        fhir_server = config.tryit_fhir_server
        if body.get("prefetch", True):
            outcome = resolve_prefetch(
                templates, context, fhir_server, user_id=DEFAULT_USER, timeout=config.fhir_timeout
            )
            prefetch, notes = outcome.prefetch, outcome.notes
        else:
            prefetch = None
    hook_request = order_sign_request(
        patient_id=patient_id,
        user_id=DEFAULT_USER,
        draft_orders=orders,
        fhir_server=fhir_server,
        service_id=evaluator.pack.service_id,
        prefetch=prefetch,
    )
    return jsonify({"request": hook_request, "prefetchNotes": notes})


@bp.post("/api/prepopulate")
def prepopulate_questionnaire():
    """Da Vinci DTR "Pre-population": the service's documentation questionnaire filled from the record
    the page sent with its order-sign request (its prefetch), as an in-progress QuestionnaireResponse."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
        raise _bad("the body must be {service, request}")
    registry = registry_of(current_app)
    evaluator = registry.get(str(body.get("service") or ""))
    if evaluator is None or evaluator.dtr is None:
        raise _bad("service must name a service with a documentation questionnaire")
    hook = body["request"]
    context = hook.get("context") if isinstance(hook.get("context"), dict) else {}
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not patient_id:
        raise _bad("request.context.patientId is required")
    draft = context.get("draftOrders") if isinstance(context.get("draftOrders"), dict) else {}
    prefetch = hook.get("prefetch") if isinstance(hook.get("prefetch"), dict) else {}
    resources = [r for value in prefetch.values() for r in resources_of(value)]
    cases = group_cases(
        evaluator.detector.detect(
            [
                e.get("resource")
                for e in draft.get("entry") or []
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            ]
        )
    )
    if not cases:
        raise _bad("the request has no fusion order to document")
    coverages = [r for r in resources if r.get("resourceType") == "Coverage"]
    profile = select_profile(evaluator.pack, coverages, cases[0], registry.config.payer_profiles).profile
    values = {"ReferenceDate": cases[0].reference_date, **profile.parameters}
    parameters = {k: v for k, v in values.items() if k in evaluator.dtr.parameters}
    response = prepopulate(registry.engine, evaluator.dtr.questionnaire, resources, patient_id, parameters)
    return jsonify({"questionnaire": evaluator.dtr.questionnaire, "response": response})
