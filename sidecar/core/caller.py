"""Who is calling, from a validated access token, and what its SMART scopes let it do.

A :class:`Caller` is built by the token adapter (``sidecar/adapters/tokens.py``) from a JWT
the authorization server signed; the rules here read its claims (SMART App Launch 2.x,
https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html): ``scope``
(``patient/*.rs``, ``user/*.rs``, ``system/*.rs``, v1 ``*.read``), the ``patient`` launch
context, ``fhirUser``, and realm roles (``realm_access.roles``, Keycloak's claim).
The FHIR server stays the one place that decides what a caller may read; these rules only
say who it is (for the audit) and whether it holds a role the sidecar itself checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: the realm role of the operator page (sidecar/entry/web/admin.py)
OPERATOR_ROLE = "imaging-operator"


@dataclass(frozen=True)
class Caller:
    """The holder of one validated access token."""

    token: str = field(repr=False)  # the bearer token itself: to ask FHIR as this caller
    issuer: str
    subject: str | None
    client_id: str | None
    scopes: frozenset[str]
    expires_at: float
    patient: str | None = None  # SMART launch context: the bare Patient id
    fhir_user: str | None = None  # e.g. Practitioner/123, Patient/456
    roles: frozenset[str] = frozenset()

    @classmethod
    def from_claims(cls, token: str, claims: Mapping[str, Any]) -> Caller:
        roles = (claims.get("realm_access") or {}).get("roles") or []
        scope = claims.get("scope") or claims.get("scp") or ""
        scopes = scope.split() if isinstance(scope, str) else [str(s) for s in scope]
        return cls(
            token=token,
            issuer=str(claims.get("iss") or ""),
            subject=_text(claims.get("sub")),
            client_id=_text(claims.get("azp") or claims.get("client_id")),
            scopes=frozenset(scopes),
            expires_at=float(claims.get("exp") or 0),
            patient=_text(claims.get("patient")),
            fhir_user=_text(claims.get("fhirUser")),
            roles=frozenset(str(r) for r in roles if isinstance(r, str)),
        )

    @property
    def key(self) -> str:
        """A short, stable name of this token for caches (never the token itself)."""
        return hashlib.sha256(self.token.encode()).hexdigest()[:32]

    @property
    def kind(self) -> str:
        """``patient``, ``user`` or ``system``: the widest context its scopes name."""
        contexts = {s.split("/", 1)[0] for s in self.scopes if "/" in s}
        for kind in ("system", "user", "patient"):
            if kind in contexts:
                return kind
        return "unknown"

    @property
    def is_operator(self) -> bool:
        return OPERATOR_ROLE in self.roles


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None
