"""Schemathesis against `/openapi.json`: generated requests to every operation, no 5xx, no hang.

The run uses the WSGI application in-process (schemathesis' WSGI transport), with caller
authentication on: each generated call carries a fresh JWT whose `aud` is the URL it calls, so the
generated bodies reach the hook-request validation and the pipeline, not just the 401 gate.
Responses are checked for server errors, status codes and content types the document declares,
conformance to the response schemas, and a response time bound.
"""

import time

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from support.jwt_issuer import JwksServer, Signer

BASE = "https://cds.example.org"
MAX_SECONDS = 8.0  # far above the 3.5 s FHIR deadline; a hang would blow through it


@pytest.fixture(scope="module")
def signer():
    server = JwksServer().start()
    try:
        yield Signer(server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def secured_app(engine, signer):
    config = Config(
        public_base_url=BASE,
        trusted_issuers=[signer.issuer_config()],
        allow_http_loopback=True,
        fhir_deadline=1.0,
        fhir_timeout=0.5,
    )
    app = create_app(config, engine=engine)
    app.testing = True
    return app


@pytest.fixture(scope="module")
def api(secured_app):
    return schemathesis.openapi.from_wsgi("/openapi.json", secured_app)


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def bounded(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def operations(api):
    found = [result.ok() for result in api.get_all_operations()]
    assert found, "no operations in /openapi.json"
    return found


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_generated_requests_never_get_a_server_error_or_hang(api, signer, mode):
    seen = []

    runs = []
    for operation in operations(api):
        if mode == GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # nothing to make invalid: no body, and every path segment is a valid string
        runs.append((operation, None))
        if "{service_id}" in operation.path:  # also aim at the real service, not only at 404s
            runs.append((operation, {"service_id": "lumbar-fusion"}))

    for operation, path_parameters in runs:

        @bounded(40)
        @given(case=operation.as_strategy(mode, path_parameters=path_parameters))
        def run(case):
            headers = {}
            if case.path.startswith("/cds-services"):
                headers["Authorization"] = "Bearer " + signer.token(BASE + case.formatted_path)
            started = time.monotonic()
            response = case.call(headers=headers)
            elapsed = time.monotonic() - started
            seen.append(response.status_code)
            assert response.status_code < 500, response.text[:300]
            assert elapsed < MAX_SECONDS, elapsed
            if mode == GenerationMode.POSITIVE:
                case.validate_response(response, checks=CHECKS)

        run()
    assert len(seen) >= 40
    print(f"schemathesis ({mode.value}): {len(seen)} calls, statuses {sorted(Counter(seen).items())}")


def test_without_a_token_every_cds_endpoint_is_401(api):
    calls = 0
    for operation in operations(api):
        if not operation.path.startswith("/cds-services"):
            continue

        @bounded(10)
        @given(case=operation.as_strategy())
        def run(case):
            nonlocal calls
            response = case.call()
            calls += 1
            assert response.status_code == 401
            case.validate_response(response, checks=CHECKS)

        run()
    assert calls >= 10
