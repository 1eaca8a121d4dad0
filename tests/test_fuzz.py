"""Property-based fuzzing of request bodies (hypothesis): whatever arrives, the answer is a JSON
object with a 2xx/4xx status (never 5xx), a conformant response when it is 200, and it comes quickly.

Bodies are the seed request with parts replaced by arbitrary JSON or removed, arbitrary JSON
documents, and arbitrary bytes. The engine is the real CQL engine; nothing is mocked.
"""

import copy
import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import request_fixture
from support.conformance import assert_conformant
from support.hooks import SERVICE

SEED = request_fixture("seed")
EXPECTED = {200, 400, 403, 412, 413, 415}
MAX_SECONDS = 6.0

ORDER = ["context", "draftOrders", "entry", 0, "resource"]
PATHS = [
    ["hook"],
    ["hookInstance"],
    ["fhirServer"],
    ["fhirAuthorization"],
    ["fhirAuthorization", "access_token"],
    ["context"],
    ["context", "userId"],
    ["context", "patientId"],
    ["context", "encounterId"],
    ["context", "draftOrders"],
    ["context", "draftOrders", "entry"],
    ["context", "draftOrders", "entry", 0],
    ORDER,
    ORDER + ["resourceType"],
    ORDER + ["code"],
    ORDER + ["code", "coding"],
    ORDER + ["code", "coding", 0, "code"],
    ORDER + ["code", "coding", 0, "system"],
    ORDER + ["bodySite"],
    ORDER + ["subject"],
    ORDER + ["status"],
    ORDER + ["intent"],
    ORDER + ["reasonCode"],
    ["prefetch"],
    ["prefetch", "patient"],
    ["prefetch", "coverage"],
    ["prefetch", "conditions"],
    ["prefetch", "conditions", "entry"],
    ["prefetch", "conditions", "entry", 0, "resource"],
    ["prefetch", "conditions", "entry", 0, "resource", "code"],
    ["prefetch", "procedures", "entry"],
    ["prefetch", "procedures", "entry", 0, "resource", "performedPeriod"],
    ["prefetch", "imagingStudies"],
    ["prefetch", "diagnosticReports", "entry", 0, "resource", "conclusion"],
    ["prefetch", "observations", "entry"],
    ["prefetch", "medicationRequests"],
    ["prefetch", "encounters", "entry", 0, "resource", "period"],
]

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
# Values that look like FHIR, so mutations get past the first checks more often.
fhir_like = st.fixed_dictionaries(
    {
        "resourceType": st.sampled_from(
            ["Bundle", "ServiceRequest", "Condition", "Procedure", "OperationOutcome", "Patient", "Nope"]
        )
    },
    optional={
        "id": st.text(max_size=10),
        "entry": st.lists(st.fixed_dictionaries({"resource": json_values}), max_size=3),
        "code": json_values,
        "status": st.text(max_size=10),
    },
)
replacement = json_values | fhir_like

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def mutated(body: dict, path: list, value, delete: bool) -> dict:
    out = copy.deepcopy(body)
    node = out
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return out
    last = path[-1]
    try:
        if delete:
            del node[last]
        else:
            node[last] = value
    except (KeyError, IndexError, TypeError):
        pass
    return out


def check(response, elapsed):
    assert response.status_code in EXPECTED, (response.status_code, response.get_data(as_text=True)[:300])
    body = response.get_json()
    assert isinstance(body, dict)
    if response.status_code == 200:
        assert_conformant(body)
    else:
        assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str)
        assert "Traceback" not in body["message"]
    assert elapsed < MAX_SECONDS


@FUZZ
@given(mutations=st.lists(st.tuples(st.sampled_from(PATHS), replacement, st.booleans()), min_size=1, max_size=3))
def test_a_seed_request_with_any_parts_replaced_or_removed_never_fails_the_service(client, mutations):
    body = SEED
    for path, value, delete in mutations:
        body = mutated(body, path, value, delete)
    started = time.monotonic()
    response = client.post(SERVICE, json=body)
    check(response, time.monotonic() - started)


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(document=json_values)
def test_any_json_document_gets_a_json_answer(client, document):
    started = time.monotonic()
    response = client.post(SERVICE, data=json.dumps(document), content_type="application/json")
    check(response, time.monotonic() - started)


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.binary(max_size=400),
    content_type=st.sampled_from(
        ["application/json", "application/fhir+json", "text/plain", "application/json; charset=utf-16"]
    ),
)
def test_any_bytes_get_a_json_answer(client, data, content_type):
    started = time.monotonic()
    response = client.post(SERVICE, data=data, content_type=content_type)
    check(response, time.monotonic() - started)
