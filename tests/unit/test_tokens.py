"""Bearer tokens validated against the authorization server's published keys.

The authorization server here is a fake that publishes a JWKS and an OpenID configuration
(as Keycloak does); the tokens are signed with keys made in the test.
"""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from sidecar.adapters.tokens import InvalidToken, TokenValidator
from sidecar.core.outcome import Unauthorized
from sidecar.settings import AuthSettings

AUD = "http://127.0.0.1:8080/fhir"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
OTHER = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)  # same kid, other key


def publish_keys(httpserver) -> str:
    """A fake authorization server publishing KEY (OpenID discovery, JWKS); its issuer."""
    base = httpserver.url_for("/realms/demo")
    httpserver.expect_request("/realms/demo/.well-known/openid-configuration").respond_with_json(
        {"issuer": base, "jwks_uri": httpserver.url_for("/realms/demo/certs")}
    )
    httpserver.expect_request("/realms/demo/certs").respond_with_json(
        {"keys": [KEY.as_dict(private=False)]}
    )
    return base


@pytest.fixture
def issuer(httpserver):
    return publish_keys(httpserver)


def token(issuer: str, *, key=KEY, alg="RS256", **claims) -> str:
    now = int(time.time())
    body = {"iss": issuer, "aud": [AUD, "account"], "sub": "u1", "exp": now + 300, "iat": now}
    body.update(claims)
    return jwt.encode({"alg": alg, "kid": "k1"}, body, key)


def validator(issuer: str) -> TokenValidator:
    return TokenValidator(AuthSettings(issuer=issuer, audience=AUD, leeway_seconds=0))


def test_a_valid_token_names_its_caller(issuer):
    value = token(
        issuer,
        scope="openid patient/*.rs launch/patient",
        patient="p1",
        fhirUser="Patient/p1",
        azp="dicom-fhir-viewer",
        realm_access={"roles": ["imaging-operator"]},
    )
    caller = validator(issuer).caller(f"Bearer {value}")
    assert (caller.patient, caller.fhir_user, caller.client_id) == (
        "p1",
        "Patient/p1",
        "dicom-fhir-viewer",
    )
    assert caller.kind == "patient" and caller.is_operator and "patient/*.rs" in caller.scopes


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda iss: token(iss, exp=int(time.time()) - 60), "expired"),
        (lambda iss: token(iss, key=OTHER), "signed by another key"),
        (lambda iss: token(iss, aud="http://other.invalid/fhir"), "another audience"),
        (lambda iss: token("http://evil.invalid/realms/demo"), "another issuer"),
        (lambda iss: token(iss, key=OctKey.generate_key(256), alg="HS256"), "a shared secret"),
        (lambda iss: "not.a.jwt", "not a JWT"),
    ],
)
def test_a_token_that_is_not_ours_or_no_longer_valid_is_refused(issuer, make, why):
    with pytest.raises(InvalidToken):
        validator(issuer).caller(f"Bearer {make(issuer)}")


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwdw==", "Bearer "])
def test_no_bearer_token_is_a_401(issuer, header):
    with pytest.raises(Unauthorized):
        validator(issuer).caller(header)
