"""CORS: an origin allowlist, and preflights for Authorization and Content-Type on the CDS endpoints.

The application runs with caller authentication on: a preflight carries no credentials and must
still succeed, and a refused call must still be readable by an allowed browser origin.
"""

import pytest

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from support.jwt_issuer import JwksServer, Signer

ALLOWED = "https://ehr.example.org"
OTHER = "https://evil.example.net"
ROUTES = {
    "discovery": ("/cds-services", "GET"),
    "service": ("/cds-services/lumbar-fusion", "POST"),
    "feedback": ("/cds-services/lumbar-fusion/feedback", "POST"),
}


@pytest.fixture(scope="module")
def cors_app(engine):
    server = JwksServer().start()
    signer = Signer(server)
    config = Config(
        public_base_url="https://cds.example.org",
        trusted_issuers=[signer.issuer_config()],
        allow_http_loopback=True,
        cors_origins=[ALLOWED],
    )
    app = create_app(config, engine=engine)

    @app.post("/cds-services/<service_id>/feedback")
    def feedback(service_id):
        return {}

    app.testing = True
    yield app
    server.stop()


def preflight(app, path, method, origin=ALLOWED, headers="authorization, content-type"):
    return app.test_client().options(
        path,
        headers={"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
    )


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_preflight_from_an_allowed_origin_is_answered_without_credentials(cors_app, route):
    path, method = ROUTES[route]
    r = preflight(cors_app, path, method)
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert method in r.headers["Access-Control-Allow-Methods"]
    allowed_headers = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed_headers
    assert "Origin" in r.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in r.headers


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_preflight_from_another_origin_is_refused(cors_app, route):
    path, method = ROUTES[route]
    r = preflight(cors_app, path, method, origin=OTHER)
    assert r.status_code == 403
    assert "Access-Control-Allow-Origin" not in r.headers


def test_a_preflight_for_a_header_outside_the_list_is_refused(cors_app):
    r = preflight(cors_app, "/cds-services/lumbar-fusion", "POST", headers="authorization, x-debug")
    assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers


def test_a_preflight_for_a_method_the_route_lacks_is_refused(cors_app):
    r = preflight(cors_app, "/cds-services/lumbar-fusion", "DELETE")
    assert r.status_code == 403


def test_a_preflight_for_an_unknown_route_is_404(cors_app):
    r = preflight(cors_app, "/cds-services/lumbar-fusion/nothing", "POST")
    assert r.status_code == 404


def test_an_allowed_origin_can_read_a_refusal(cors_app):
    r = cors_app.test_client().get("/cds-services", headers={"Origin": ALLOWED})
    assert r.status_code == 401
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "X-Request-Id" in r.headers["Access-Control-Expose-Headers"]


def test_another_origin_gets_no_cors_headers_on_an_actual_request(cors_app):
    r = cors_app.test_client().get("/cds-services", headers={"Origin": OTHER})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Origin" in r.headers["Vary"]


def test_no_origins_are_allowed_by_default():
    assert Config().cors_origins == []


def test_development_allows_the_public_cds_hooks_sandbox(client):
    r = client.options(
        "/cds-services/lumbar-fusion",
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"
