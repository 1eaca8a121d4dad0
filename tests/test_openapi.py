"""`/openapi.json` describes exactly the routes the application serves."""

import pytest

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from cds_hooks.web.openapi import OPERATIONS, registered_operations


def openapi_path(rule: str) -> str:
    return rule.replace("<", "{").replace(">", "}")


def documented(doc) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in doc["paths"].items() for method in item}


def test_the_document_is_openapi_3_with_the_service_title(client):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and doc["info"]["title"] == "fusion-cds"


def test_every_route_the_app_serves_is_documented_and_nothing_else(app, client):
    """Generic: a route added anywhere (a new blueprint, another module) fails here until documented."""
    served = {(openapi_path(rule), method) for rule, method in registered_operations(app)}
    doc = client.get("/openapi.json").get_json()
    assert served - documented(doc) == set(), "routes without an OpenAPI operation (add them to OPERATIONS)"
    assert documented(doc) - served == set(), "documented operations the app does not serve"


def test_every_catalogued_operation_names_a_flask_rule_and_a_method():
    for rule, method in OPERATIONS:
        assert rule.startswith("/") and method in {"GET", "POST", "PUT", "PATCH", "DELETE"}


def test_a_feedback_route_appears_in_the_document_once_registered(engine):
    app = create_app(Config.development(), engine=engine)

    @app.post("/cds-services/<service_id>/feedback")
    def feedback(service_id):
        return {}

    doc = app.test_client().get("/openapi.json").get_json()
    operation = doc["paths"]["/cds-services/{service_id}/feedback"]["post"]
    assert operation["security"] == [{"cdsClientJwt": []}]


def test_every_operation_under_cds_services_declares_the_jwt_and_401(client):
    doc = client.get("/openapi.json").get_json()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if path.startswith("/cds-services"):
                assert operation["security"] == [{"cdsClientJwt": []}], (path, method)
                assert "401" in operation["responses"], (path, method)


@pytest.mark.parametrize("schema_name", ["Error", "Discovery", "HookRequest", "CdsResponse", "Feedback"])
def test_every_referenced_schema_exists(client, schema_name):
    doc = client.get("/openapi.json").get_json()
    assert schema_name in doc["components"]["schemas"]
