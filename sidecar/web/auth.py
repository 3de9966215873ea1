"""Caller authentication: ``X-Sidecar-Secret: <shared secret>`` (HAPI's relay) or
``Authorization: Bearer <token>`` (direct callers). Compared in constant time.
No credentials -> 401 (with WWW-Authenticate), wrong credentials -> 403."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from sidecar.outcome import Forbidden, Unauthorized
from sidecar.settings import Settings

SECRET_HEADER = "X-Sidecar-Secret"


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def check_caller(headers: Mapping[str, str], settings: Settings) -> None:
    """Raise Unauthorized/Forbidden unless the request carries an accepted credential."""
    if settings.allow_anonymous and not (settings.shared_secret or settings.bearer_tokens):
        return
    secret = headers.get(SECRET_HEADER)
    authorization = headers.get("Authorization", "")
    if secret is None and not authorization:
        raise Unauthorized(f"credentials required: {SECRET_HEADER} or Authorization: Bearer")
    ok = False
    if secret is not None and settings.shared_secret:
        ok = _equal(secret, settings.shared_secret)
    scheme, _, token = authorization.partition(" ")
    if authorization and scheme.lower() == "bearer" and token:
        # compare against every token, so the time does not tell which one matched
        ok = any([_equal(token.strip(), t) for t in settings.bearer_tokens]) or ok
    if not ok:
        raise Forbidden("the credentials are not accepted")
