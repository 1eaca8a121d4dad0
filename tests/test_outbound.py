"""Where the service may send requests: the FHIR server allowlist and the transport rule."""

import pytest

from cds_hooks.config import Config
from cds_hooks.auth.outbound import FhirServerPolicy, is_loopback_host, transport_allowed

EPIC = "https://fhir.hospital.example.org/interconnect-fhir-oauth/api/FHIR/R4"


@pytest.fixture()
def policy():
    return FhirServerPolicy(servers=(EPIC, "https://tenants.example.org/fhir/*"))


@pytest.mark.parametrize(
    "url",
    [
        EPIC,
        EPIC + "/",
        "https://FHIR.hospital.example.org:443/interconnect-fhir-oauth/api/FHIR/R4",
        "https://tenants.example.org/fhir/hospital-a",
        "https://tenants.example.org/fhir",
    ],
)
def test_allowlisted_base_urls_are_allowed(policy, url):
    assert policy.allows(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://fhir.hospital.example.org/interconnect-fhir-oauth/api/FHIR/R4",  # downgraded to http
        "https://fhir.hospital.example.org:8443/interconnect-fhir-oauth/api/FHIR/R4",  # another port
        "https://fhir.hospital.example.org/interconnect-fhir-oauth/api/FHIR/R4/../../../admin",
        "https://fhir.hospital.example.org/other",  # same host, another base
        "https://fhir.hospital.example.org.evil.net/interconnect-fhir-oauth/api/FHIR/R4",
        "https://user@fhir.hospital.example.org/interconnect-fhir-oauth/api/FHIR/R4",
        "https://tenants.example.org/fhirx",
        "https://127.0.0.1:8090/fhir",
        "http://localhost/fhir",
        EPIC + "?_format=json",
        "https://tenants.example.org/fhir/../admin",
        "https://tenants.example.org/fhir/%2e%2e/admin",
    ],
)
def test_anything_else_is_refused(policy, url):
    assert not policy.allows(url)


def test_loopback_is_allowed_only_when_configured():
    dev = FhirServerPolicy.from_config(Config.development())
    assert dev.allows("http://127.0.0.1:8090/fhir") and dev.allows("http://[::1]:8090/fhir")
    assert dev.allows("http://localhost:8090/fhir")
    assert not dev.allows("http://10.0.0.5/fhir") and not dev.allows("http://127.0.0.1.nip.io/fhir")
    assert not FhirServerPolicy.from_config(Config()).allows("http://127.0.0.1:8090/fhir")


def test_no_fhir_server_is_allowed_by_default():
    assert not FhirServerPolicy.from_config(Config()).allows("https://fhir.example.org/r4")


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("localhost.example.org", False),
    ],
)
def test_loopback_means_literal_loopback_addresses(host, loopback):
    assert is_loopback_host(host) is loopback


def test_http_is_used_only_for_loopback_and_only_when_allowed():
    assert transport_allowed("https://keys.example.org/jwks.json", False)
    assert not transport_allowed("http://keys.example.org/jwks.json", True)
    assert not transport_allowed("http://127.0.0.1:9/jwks.json", False)
    assert transport_allowed("http://127.0.0.1:9/jwks.json", True)


@pytest.mark.parametrize(
    "entry", ["fhir.example.org/r4", "ftp://fhir.example.org/r4", "https://x/r4?a=1", "https://u:p@fhir.example.org/r4"]
)
def test_malformed_allowlist_entries_are_configuration_errors(entry):
    with pytest.raises(ValueError):
        Config(fhir_servers=[entry])
