"""Issue 19 (items 1 and 2): HAPI enforces the SMART tokens of the stack's Keycloak.

Eight kinds of caller against the REAL HAPI and the REAL Keycloak that ``stack.sh`` starts:
patient A, patient B, a practitioner, the sidecar (system), an expired token, a token signed by
another key, a token for another audience, and no token. For each: FHIR reads (Patient,
ImagingStudy search, Endpoint) and ``$fetch-imaging`` through HAPI at instance and type level.

For ``$fetch-imaging`` the test asserts HAPI's decision: refused by HAPI (401, or 403 with the
``insufficient_scope`` challenge), or relayed to the sidecar (whatever the sidecar then answers:
what it does with ``X-Caller-Authorization`` is the sidecar's own test).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.conftest import Stack, token_claims

pytestmark = pytest.mark.stack

FHIR_JSON = "application/fhir+json"
MRN_A = "urn:example:mrn:hosp-a"
#: HAPI's clock skew for exp (smart-auth.clock-skew-seconds, default 5) and a margin
EXPIRY_WAIT_SECONDS = 5 + 2

VALID = ("patient A", "patient B", "practitioner", "system")
INVALID = ("expired", "another key", "another audience", "none")


class World:
    """Two Patients with one ImagingStudy each, an Endpoint, and a token of every kind."""

    def __init__(self, stack: Stack, http: requests.Session) -> None:
        self.base = stack.fhir_base
        self.stack = stack
        suffix = uuid.uuid4().hex[:10]
        self.a, self.b = f"authz-a-{suffix}", f"authz-b-{suffix}"
        self.endpoint = f"authz-e-{suffix}"
        self.tokens: dict[str, str | None] = {}
        self.http = http

    def put(self, resource: dict) -> None:
        url = f"{self.base}/{resource['resourceType']}/{resource['id']}"
        response = self.http.put(url, json=resource)
        assert response.status_code in (200, 201), response.text

    def call(self, kind: str, method: str, path: str, **kwargs) -> requests.Response:
        token = self.tokens[kind]
        headers = {"Accept": FHIR_JSON, "Cache-Control": "no-cache"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(
            method, f"{self.base}/{path}", headers=headers, timeout=120, **kwargs
        )


def study(study_id: str, patient: str, endpoint: str) -> dict:
    return {
        "resourceType": "ImagingStudy",
        "id": study_id,
        "status": "available",
        "subject": {"reference": f"Patient/{patient}"},
        "endpoint": [{"reference": f"Endpoint/{endpoint}"}],
    }


def resigned_with_another_key(token: str) -> str:
    """The same header (kid included) and claims, signed by a key Keycloak never had."""
    head = token.split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    key = RSAKey.generate_key(2048)
    return jwt.encode(
        {"alg": "RS256", "typ": "JWT", "kid": header["kid"]}, token_claims(token), key
    )


@pytest.fixture(scope="module")
def world(stack: Stack, fhir_http: requests.Session) -> Iterator[World]:
    w = World(stack, fhir_http)
    # first, so it has expired by the time the tests run
    expired = stack.token("--patient", f"Patient/{w.a}", "--client", "test-short-lived")
    w.put(
        {
            "resourceType": "Patient",
            "id": w.a,
            "identifier": [{"system": MRN_A, "value": f"AUTHZ-{w.a}"}],
        }
    )
    w.put({"resourceType": "Patient", "id": w.b})
    w.put(
        {
            "resourceType": "Endpoint",
            "id": w.endpoint,
            "status": "active",
            "connectionType": {
                "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                "code": "dicom-wado-rs",
            },
            "payloadType": [{"text": "DICOM"}],
            "address": "http://127.0.0.1:1/dicom-web",
        }
    )
    w.put(study(f"{w.a}-s", w.a, w.endpoint))
    w.put(study(f"{w.b}-s", w.b, w.endpoint))
    patient_a = stack.token("--patient", f"Patient/{w.a}")
    w.tokens = {
        "patient A": patient_a,
        "patient B": stack.token("--patient", f"Patient/{w.b}"),
        "practitioner": stack.token("--user", "practitioner"),
        "system": stack.token("--system"),
        "expired": expired,
        "another key": resigned_with_another_key(patient_a),
        "another audience": stack.token(
            "--user", "practitioner", "--client", "test-other-audience"
        ),
        "none": None,
    }
    wait = token_claims(expired)["exp"] + EXPIRY_WAIT_SECONDS - time.time()
    if wait > 0:
        time.sleep(wait)
    yield w
    for resource in (f"ImagingStudy/{w.a}-s", f"ImagingStudy/{w.b}-s"):
        fhir_http.delete(f"{w.base}/{resource}")


def refused_by_hapi(response: requests.Response, base: str) -> str | None:
    """'401' or '403' when HAPI refused the call itself (its RFC 6750 challenge names this FHIR
    base), else None: the call passed HAPI's checks."""
    challenge = response.headers.get("WWW-Authenticate", "")
    if not challenge.startswith(f'Bearer realm="{base}"'):
        return None
    if response.status_code == 401:
        return "401"
    if response.status_code == 403 and 'error="insufficient_scope"' in challenge:
        return "403"
    return None


def subjects(bundle: dict) -> set[str]:
    return {
        e["resource"]["subject"]["reference"]
        for e in bundle.get("entry", [])
        if e["resource"]["resourceType"] == "ImagingStudy"
    }


# --- the public face ---------------------------------------------------------------------------


def test_metadata_and_smart_configuration_need_no_token(world: World) -> None:
    metadata = requests.get(f"{world.base}/metadata", timeout=30)
    assert metadata.status_code == 200
    security = metadata.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["token"].endswith("/protocol/openid-connect/token")

    smart = requests.get(f"{world.base}/.well-known/smart-configuration", timeout=30)
    assert smart.status_code == 200
    config = smart.json()
    issuer = token_claims(world.tokens["system"])["iss"]
    assert config["issuer"] == issuer
    assert config["token_endpoint"] == uris["token"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    for capability in ("smart-imaging-access", "permission-v2", "context-standalone-patient"):
        assert capability in config["capabilities"]
    for scope in ("patient/*.rs", "user/*.rs", "system/*.rs", "launch/patient", "fhirUser"):
        assert scope in config["scopes_supported"]
    # what it names is real: the issuer's own discovery document agrees
    discovery = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=30).json()
    assert discovery["token_endpoint"] == config["token_endpoint"]
    assert discovery["jwks_uri"] == config["jwks_uri"]


@pytest.mark.parametrize("client", ["dicom-fhir-cli", "test-short-lived"])
def test_a_patient_user_asking_for_user_scope_does_not_get_it(world: World, client: str) -> None:
    """Keycloak grants an optional client scope to anyone who asks, unless the scope has role
    scope mappings: a patient user asking for ``user/*.rs`` (every Patient's records, and
    every study at the gateway) would read patient B with its own password. Only members of
    ``smart-user-access`` get it; the practitioner still does."""
    token = world.stack.token(
        "--patient", f"Patient/{world.a}", "--client", client, "--scope", "openid user/*.rs"
    )
    assert "user/*.rs" not in token_claims(token).get("scope", "").split()
    response = requests.get(
        f"{world.base}/ImagingStudy?subject=Patient/{world.b}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code in (401, 403), response.text[:300]
    practitioner = token_claims(world.tokens["practitioner"])
    assert "user/*.rs" in practitioner["scope"].split()


# --- reads -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", INVALID)
def test_invalid_or_missing_token_is_401_on_every_read(world: World, kind: str) -> None:
    for path in (
        f"Patient/{world.a}",
        f"ImagingStudy?subject=Patient/{world.a}",
        f"Endpoint/{world.endpoint}",
    ):
        response = world.call(kind, "GET", path)
        assert refused_by_hapi(response, world.base) == "401", (path, response.text)
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "login"
        challenge = response.headers["WWW-Authenticate"]
        if kind == "none":  # RFC 6750 3.1: no error code when no credentials were sent
            assert "error=" not in challenge
        else:
            assert 'error="invalid_token"' in challenge


def test_each_invalid_token_says_why(world: World) -> None:
    reasons = {
        kind: world.call(kind, "GET", f"Patient/{world.a}").json()["issue"][0]["diagnostics"]
        for kind in ("expired", "another key", "another audience")
    }
    assert "expired" in reasons["expired"]
    assert "signature" in reasons["another key"]
    assert "aud" in reasons["another audience"]


@pytest.mark.parametrize(
    ("kind", "own", "other"),
    [("patient A", "a", "b"), ("patient B", "b", "a")],
)
def test_a_patient_token_reads_its_own_compartment_only(
    world: World, kind: str, own: str, other: str
) -> None:
    own_id, other_id = getattr(world, own), getattr(world, other)

    assert world.call(kind, "GET", f"Patient/{own_id}").status_code == 200
    denied = world.call(kind, "GET", f"Patient/{other_id}")
    assert refused_by_hapi(denied, world.base) == "403", denied.text

    mine = world.call(kind, "GET", f"ImagingStudy?subject=Patient/{own_id}")
    assert mine.status_code == 200
    assert subjects(mine.json()) == {f"Patient/{own_id}"}
    theirs = world.call(kind, "GET", f"ImagingStudy?subject=Patient/{other_id}")
    assert refused_by_hapi(theirs, world.base) == "403", theirs.text

    # an unqualified search is narrowed to the patient's compartment
    everything = world.call(kind, "GET", "ImagingStudy?_count=500")
    assert everything.status_code == 200
    assert subjects(everything.json()) == {f"Patient/{own_id}"}

    # Endpoints hold no patient data; the study's Endpoint comes along
    assert world.call(kind, "GET", f"Endpoint/{world.endpoint}").status_code == 200
    included = world.call(
        kind, "GET", f"ImagingStudy?subject=Patient/{own_id}&_include=ImagingStudy:endpoint"
    ).json()
    types = {e["resource"]["resourceType"] for e in included["entry"]}
    assert types == {"ImagingStudy", "Endpoint"}


@pytest.mark.parametrize("kind", ["practitioner", "system"])
def test_user_and_system_tokens_read_everyone(world: World, kind: str) -> None:
    for patient in (world.a, world.b):
        assert world.call(kind, "GET", f"Patient/{patient}").status_code == 200
        found = world.call(kind, "GET", f"ImagingStudy?subject=Patient/{patient}")
        assert found.status_code == 200
        assert subjects(found.json()) == {f"Patient/{patient}"}
    assert world.call(kind, "GET", f"Endpoint/{world.endpoint}").status_code == 200


def test_only_the_system_token_writes(world: World) -> None:
    changed = {"resourceType": "Patient", "id": world.b, "active": True}
    for kind in ("patient B", "practitioner"):
        response = world.call(kind, "PUT", f"Patient/{world.b}", json=changed)
        assert refused_by_hapi(response, world.base) == "403", (kind, response.text)
    response = world.call("system", "PUT", f"Patient/{world.b}", json=changed)
    assert response.status_code == 200, response.text


# --- $fetch-imaging through HAPI ----------------------------------------------------------------


def fetch(world: World, kind: str, patient: str | None) -> requests.Response:
    if patient is None:  # type level: an identifier no Patient has (the sidecar answers 404)
        return world.call(
            kind,
            "POST",
            "Patient/$fetch-imaging",
            params={"identifier": f"{MRN_A}|AUTHZ-NOBODY-{uuid.uuid4().hex[:6]}"},
        )
    return world.call(kind, "POST", f"Patient/{patient}/$fetch-imaging")


EXPECTED_FETCH = {
    # kind: (instance A, instance B, type level); None = relayed to the sidecar
    "patient A": (None, "403", None),
    "patient B": ("403", None, None),
    "practitioner": (None, None, None),
    "system": (None, None, None),
    "expired": ("401", "401", "401"),
    "another key": ("401", "401", "401"),
    "another audience": ("401", "401", "401"),
    "none": ("401", "401", "401"),
}


@pytest.mark.parametrize("kind", list(EXPECTED_FETCH))
def test_fetch_imaging_through_hapi_is_decided_by_the_token(
    world: World, stack_sidecar: str, kind: str
) -> None:
    answers = (fetch(world, kind, world.a), fetch(world, kind, world.b), fetch(world, kind, None))
    decided = tuple(refused_by_hapi(r, world.base) for r in answers)
    assert decided == EXPECTED_FETCH[kind], [(r.status_code, r.text[:200]) for r in answers]
    for answer, decision in zip(answers, decided, strict=True):
        assert answer.headers["Content-Type"].startswith(FHIR_JSON)
        if decision is None:  # the sidecar's answer, relayed: never HAPI's own refusal
            assert answer.json()["resourceType"] in ("Bundle", "OperationOutcome")
            assert "HAPI-0333" not in answer.text and "HAPI-0334" not in answer.text
    if decided[2] is None:
        assert answers[2].status_code == 404, answers[2].text  # the sidecar found nobody
