"""Access tokens of the authorization server, validated locally (JWT, RFC 7519 / RFC 9068).

The signature is checked against the server's published keys (its JWKS, found through
OpenID discovery unless ``SIDECAR_AUTH_JWKS_URL`` names it; cached, fetched again for an
unknown ``kid`` at most every 30 s), then ``iss``, ``aud`` (must contain
``SIDECAR_AUTH_AUDIENCE``: the FHIR base URL the token was issued for), ``exp`` and ``nbf``
(with ``SIDECAR_AUTH_LEEWAY_SECONDS``). Only asymmetric algorithms are accepted, so a token
signed with a shared secret (or ``none``) never passes. joserfc does the JOSE work.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from sidecar.adapters.http import pooled_session
from sidecar.core.caller import Caller
from sidecar.core.outcome import FetchError, Unauthorized
from sidecar.settings import AuthSettings

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
REFRESH_SECONDS = 30.0  # the fastest the keys are fetched again for an unknown kid


class InvalidToken(Unauthorized):
    """The bearer token is not one of ours, or no longer valid (401, ``invalid_token``)."""

    error = "invalid_token"


class AuthServerUnavailable(FetchError):
    """The authorization server's keys cannot be read (503: try again)."""

    status, code = 503, "transient"


class TokenValidator:
    """Bearer tokens -> :class:`Caller`. Thread-safe; one per process."""

    def __init__(
        self, settings: AuthSettings, *, timeout: float = 5.0, session: Any = None
    ) -> None:
        if not settings.issuer or not settings.audience:
            raise ValueError("SIDECAR_AUTH_ISSUER and SIDECAR_AUTH_AUDIENCE are required")
        self.issuer = settings.issuer
        self.audience = settings.audience
        self._jwks_url = settings.jwks_url
        self._leeway = int(settings.leeway_seconds)
        self._timeout = timeout
        self._http = session or pooled_session(
            pool_size=2, retries=1, deadline=timeout, max_bytes=1024 * 1024
        )
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched_at = 0.0

    def caller(self, authorization: str | None) -> Caller:
        """The caller of an ``Authorization`` header value; InvalidToken (401) if it is no
        valid bearer token of this server, Unauthorized (401) if there is none."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("a bearer token from the authorization server is required")
        claims = self._verified_claims(token)
        return Caller.from_claims(token, claims)

    def _verified_claims(self, token: str) -> dict[str, Any]:
        try:
            decoded = self._decode(token)
        except JoseError:
            if not self._refresh_allowed():
                raise InvalidToken("the token's signature is not valid") from None
            self._load_keys(force=True)  # the server may have rotated its keys
            try:
                decoded = self._decode(token)
            except (JoseError, ValueError):
                raise InvalidToken("the token's signature is not valid") from None
        except ValueError:
            raise InvalidToken("the token is not a JWT") from None
        registry = jwt.JWTClaimsRegistry(
            leeway=self._leeway,
            iss={"essential": True, "value": self.issuer},
            exp={"essential": True},
        )
        try:
            registry.validate(decoded.claims)
        except JoseError as exc:
            raise InvalidToken(f"the token is not valid here ({exc.error})") from None
        audience = decoded.claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise InvalidToken("the token was issued for another audience")
        return dict(decoded.claims)

    def _decode(self, token: str) -> Any:
        return jwt.decode(token, self._key_set(), algorithms=ALGORITHMS)

    def _refresh_allowed(self) -> bool:
        return time.monotonic() - self._fetched_at >= REFRESH_SECONDS

    def _key_set(self) -> KeySet:
        with self._lock:
            if self._keys is None:
                self._load_keys_locked()
            assert self._keys is not None
            return self._keys

    def _load_keys(self, *, force: bool = False) -> None:
        with self._lock:
            if force or self._keys is None:
                self._load_keys_locked()

    def _load_keys_locked(self) -> None:
        try:
            url = self._jwks_url or self._discover()
            response = self._http.get(url, timeout=self._timeout)
            response.raise_for_status()
            self._keys = KeySet.import_key_set(response.json())
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise AuthServerUnavailable(
                "the authorization server's signing keys cannot be read"
            ) from exc
        self._fetched_at = time.monotonic()

    def _discover(self) -> str:
        """The JWKS URL of the issuer's OpenID configuration (OpenID Connect Discovery 1.0 4)."""
        response = self._http.get(
            f"{self.issuer}/.well-known/openid-configuration", timeout=self._timeout
        )
        response.raise_for_status()
        return str(response.json()["jwks_uri"])
