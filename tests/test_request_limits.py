"""Input limits: size (413), media type (415), depth and field sanity (400), all as JSON errors."""

import json

import pytest

from support.hooks import SERVICE, call


def post_raw(client, data, content_type="application/json"):
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return client.post(SERVICE, data=data, headers=headers)


def test_a_body_over_the_size_limit_is_413(client, app):
    limit = app.extensions["cds_hooks"].config.max_body_bytes
    r = post_raw(client, b" " * (limit + 1))
    assert r.status_code == 413 and r.get_json()["error"] == "too-large"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/x-www-form-urlencoded", "application/json; charset=latin-1", None],
)
def test_a_body_that_is_not_declared_json_is_415(client, seed_request, content_type):
    r = post_raw(client, json.dumps(seed_request), content_type)
    assert r.status_code == 415 and r.get_json()["error"] == "unsupported-media-type"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "application/fhir+json",
        "application/fhir+json; fhirVersion=4.0",
    ],
)
def test_json_media_types_are_accepted(client, seed_request, content_type):
    r = post_raw(client, json.dumps(seed_request), content_type)
    assert r.status_code == 200, r.get_json()


def test_json_nested_deeper_than_the_limit_is_400(client):
    r = post_raw(client, "[" * 100 + "]" * 100)
    assert r.status_code == 400 and r.get_json()["error"] == "too-deep"


def test_json_nested_past_the_parser_recursion_limit_is_400_not_500(client):
    r = post_raw(client, '{"a":' * 200_000 + "1" + "}" * 200_000)
    assert r.status_code in (400, 413)
    assert r.get_json()["error"] in ("too-deep", "too-large")


def test_json_nested_past_the_recursion_limit_but_small_enough_is_too_deep(client):
    r = post_raw(client, "[" * 50_000 + "]" * 50_000)
    assert r.status_code == 400 and r.get_json()["error"] == "too-deep"


def test_a_real_request_is_well_inside_the_depth_limit(client, seed_request):
    call(client, seed_request)


@pytest.mark.parametrize("patient_id", ["../Patient", "..", "seed patient", "a" * 65, "x/y", "Patient?x=1"])
def test_a_patient_id_that_is_not_a_fhir_id_is_400_and_not_echoed(client, seed_request, patient_id):
    seed_request["context"]["patientId"] = patient_id
    r = client.post(SERVICE, json=seed_request)
    assert r.status_code == 400 and "FHIR resource id" in r.get_json()["message"]
    assert patient_id not in r.get_json()["message"]


@pytest.mark.parametrize(
    "server",
    [
        "file:///etc/passwd",
        "ftp://fhir.example.org/r4",
        "javascript:alert(1)",
        "https://user:secret@fhir.example.org/r4",
        "/relative/fhir",
        "https://fhir.example.org/r4#frag",
        "https://" + "a" * 3000 + ".org",
    ],
)
def test_a_fhir_server_that_is_not_an_http_url_is_400(client, seed_request, server):
    seed_request["fhirServer"] = server
    r = client.post(SERVICE, json=seed_request)
    assert r.status_code == 400 and "fhirServer" in r.get_json()["message"]


def test_identifiers_with_control_characters_are_400(client, seed_request):
    seed_request["hookInstance"] = 'd1577c69\n{"forged": "log line"}'
    r = client.post(SERVICE, json=seed_request)
    assert r.status_code == 400 and "hookInstance" in r.get_json()["message"]


def test_an_absurdly_long_access_token_is_400(client, seed_request):
    seed_request["fhirAuthorization"] = {"access_token": "t" * 20_000, "token_type": "Bearer"}
    r = client.post(SERVICE, json=seed_request)
    assert r.status_code == 400


def test_the_wrong_method_is_405_as_json(client):
    r = client.get(SERVICE)
    assert r.status_code == 405 and r.get_json()["error"]


def test_an_unknown_route_is_404_as_json(client):
    r = client.get("/cds-services/lumbar-fusion/nothing-here")
    assert r.status_code == 404 and r.get_json()["error"]
