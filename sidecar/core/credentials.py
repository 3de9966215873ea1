"""Caller authentication, the one check for ``$fetch-imaging`` and ``/notify``.

A caller shows ``X-Sidecar-Secret: <secret>`` (HAPI's relay, HAPI's REST-hook) or
``Authorization: Bearer <token>`` (direct callers). Each value is compared in constant time
against every accepted one, so the time does not tell which matched. No credential: 401
(with ``WWW-Authenticate``); a wrong one: 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from sidecar.core.outcome import Forbidden, Unauthorized

SECRET_HEADER = "X-Sidecar-Secret"


@dataclass(frozen=True)
class AcceptedCredentials:
    """What one endpoint accepts: header secrets, bearer tokens, or (closed networks) none."""

    secrets: tuple[str, ...] = ()
    bearer_tokens: tuple[str, ...] = ()
    anonymous: bool = False

    @classmethod
    def of(
        cls,
        secrets: Iterable[SecretStr] = (),
        bearer_tokens: Iterable[SecretStr] = (),
        *,
        anonymous: bool = False,
    ) -> AcceptedCredentials:
        return cls(
            tuple(s.get_secret_value() for s in secrets),
            tuple(t.get_secret_value() for t in bearer_tokens),
            anonymous,
        )

    @property
    def configured(self) -> bool:
        return bool(self.secrets or self.bearer_tokens)


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def check_caller(headers: Mapping[str, str], accepted: AcceptedCredentials) -> None:
    """Raise Unauthorized/Forbidden unless the request carries an accepted credential."""
    if accepted.anonymous and not accepted.configured:
        return
    secret = headers.get(SECRET_HEADER)
    authorization = headers.get("Authorization") or ""
    if secret is None and not authorization:
        raise Unauthorized(f"credentials required: {SECRET_HEADER} or Authorization: Bearer")
    scheme, _, token = authorization.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    # every comparison runs, whatever matched first
    results = [_equal(secret, s) for s in accepted.secrets] if secret is not None else []
    results += [_equal(token, t) for t in accepted.bearer_tokens] if token else []
    if not any(results):
        raise Forbidden("the credentials are not accepted")
