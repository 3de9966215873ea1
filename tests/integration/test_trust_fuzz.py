"""Generated hostile input against the real endpoint, on both paths: never a 5xx, always an
OperationOutcome on a 4xx, never a write.

The Patient's studies are stored before the run, so even a valid request finds nothing to
change: any new version or subject after a request is a write it should not have made.
"""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.core.fetch_params import KNOWN
from tests.integration.test_trust import Caller, put_patient, stored_state

pytestmark = pytest.mark.stack

NAMES = [*sorted(KNOWN), "_format", "x"]  # every parameter, one ignored, one unknown
text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
) | st.sampled_from(
    ["lt0001", "gt9999-12-31", "CT,MR", "urn:x|1", "true", "false", "study", "1.2.3", "", "*"]
)
pairs = st.lists(st.tuples(st.sampled_from(NAMES), text), max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)
parameter = st.fixed_dictionaries(
    {"name": st.sampled_from(NAMES) | text},
    optional={
        "valueString": json_values,
        "valueBoolean": json_values,
        "valueCode": json_values,
        "valueIdentifier": json_values,
        "valueCoding": json_values,
        "valueDate": json_values,
    },
)
bodies = (
    st.fixed_dictionaries(
        {"resourceType": st.sampled_from(["Parameters", "Patient", ""])},
        optional={"parameter": st.lists(parameter, max_size=4) | json_values},
    )
    | json_values
)


def check(response, fhir, before) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.json()["resourceType"] == "OperationOutcome", response.text[:300]
    assert stored_state(fhir) == before


@pytest.mark.parametrize(("path", "examples"), [("direct", 150), ("hapi", 60)])
def test_generated_requests_never_fail_the_server_or_write(
    path, examples, sidecar, stack, stack_sidecar, fhir, sample_data
):
    patient_id = f"fuzz-{uuid.uuid4().hex[:8]}"
    put_patient(fhir, patient_id, "P-1001")
    assert sidecar.fetch(patient_id).status_code == 200
    before = stored_state(fhir)
    caller = Caller(path, sidecar, stack)

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(query=pairs, body=bodies, method=st.sampled_from(["GET", "POST"]), form=st.booleans())
    def one(query, body, method, form):
        if method == "GET":
            check(caller.call(patient_id, "GET", params=query), fhir, before)
        elif form:
            check(caller.call(patient_id, params=query[:1], data=query), fhir, before)
        else:
            data = json.dumps(body)
            headers = {"Content-Type": "application/fhir+json"}
            check(caller.call(patient_id, params=query, data=data, headers=headers), fhir, before)

    one()
