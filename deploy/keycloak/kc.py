#!/usr/bin/env python3
"""The demo authorization server's moving parts, for ``deploy/local/stack.sh`` (stdlib only).

The realm itself is code (``realm-dicom-fhir.json``, imported at Keycloak's first start).
What depends on this machine is set here, through Keycloak's admin REST API, after every
start and on demand:

- ``configure``: the FHIR audience (the stack's HAPI base), the sidecar's client secret, the
  public key of the ``private_key_jwt`` client, the viewer's redirect URIs for the sidecar's
  port, the user profile attributes ``patient`` and ``fhirUser`` (admin-only: a user cannot
  choose their own patient), and the demo users ``practitioner`` and ``operator``.
- ``user NAME --patient Patient/ID``: a demo user bound to a Patient (SMART patient context).
- ``token``: an access token for demos and tests (password grant of a demo user, or the
  sidecar's client credentials).
- ``allow-origin URL``: one more origin (and its ``/viewer/*``, ``/admin/*`` redirect URIs) for
  the browser client.

Secrets are read from files under the stack's data directory, never from the repository,
and never printed except the access token that ``token`` is asked for.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REALM = "dicom-fhir"
CLI_CLIENT = "dicom-fhir-cli"
SIDECAR_CLIENT = "dicom-fhir-sidecar"
JWT_CLIENT = "dicom-fhir-sidecar-jwt"
VIEWER_CLIENT = "dicom-fhir-viewer"
AUDIENCE_SCOPE = "fhir-audience"
#: SMART App Launch 2 scopes asked for each kind of demo user (section "Scopes and launch context").
PATIENT_SCOPES = "openid fhirUser launch/patient patient/*.rs"
USER_SCOPES = "openid fhirUser user/*.rs"
SYSTEM_SCOPES = "system/*.cruds"
#: FHIR logical id (R4 2.1.0 "id" datatype).
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
#: declared user profile attributes (Keycloak 24+ refuses undeclared ones); admins only
PROFILE_ATTRIBUTES = {
    "patient": "SMART patient context: the id of the user's Patient",
    "fhirUser": "SMART fhirUser: Patient/ID or Practitioner/ID",
}
#: Keycloak grants an optional client scope to ANY user who asks for it, unless the scope has
#: role scope mappings: then only to members of one of those roles (Server Administration
#: Guide, "Client scopes permissions"). ``user/*.rs`` reads every Patient's records, so it
#: is mapped to this role: a patient user asking for ``scope=user/*.rs`` does not get it.
USER_SCOPE_ROLES = {"user/*.rs": "smart-user-access"}
DEMO_USERS = {
    "practitioner": {
        "attributes": {"fhirUser": ["Practitioner/demo-practitioner"]},
        "roles": ["smart-user-access"],
    },
    "operator": {
        "attributes": {"fhirUser": ["Practitioner/demo-operator"]},
        "roles": ["imaging-operator", "smart-user-access"],
    },
}


class KeycloakError(RuntimeError):
    pass


def _request(
    method: str, url: str, *, form: dict[str, str] | None = None, body: Any = None, token: str = ""
) -> Any:
    headers = {"Accept": "application/json"}
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
            location = response.headers.get("Location", "")
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:300]
        path = urllib.parse.urlsplit(url).path
        raise KeycloakError(f"{method} {path}: HTTP {error.code} {detail}") from None
    if not text:
        return {"location": location} if location else None
    return json.loads(text)


class Keycloak:
    """The realm's admin API and token endpoint on one Keycloak."""

    def __init__(self, url: str, var: Path) -> None:
        self.url = url.rstrip("/")
        self.var = var
        self._admin_token = ""

    # --- files under $VAR ------------------------------------------------------------------
    def secret(self, name: str) -> str:
        return (self.var / name).read_text().strip()

    @property
    def admin_api(self) -> str:
        return f"{self.url}/admin/realms/{REALM}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/realms/{REALM}/protocol/openid-connect/token"

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        if not self._admin_token:
            answer = _request(
                "POST",
                f"{self.url}/realms/master/protocol/openid-connect/token",
                form={
                    "grant_type": "password",
                    "client_id": "admin-cli",
                    "username": "admin",
                    "password": self.secret("keycloak-admin-password"),
                },
            )
            self._admin_token = answer["access_token"]
        return _request(method, f"{self.admin_api}{path}", body=body, token=self._admin_token)

    def client(self, client_id: str) -> dict[str, Any]:
        found = self.admin("GET", f"/clients?clientId={urllib.parse.quote(client_id)}")
        if not found:
            raise KeycloakError(f"client {client_id} is missing from realm {REALM}")
        return found[0]

    # --- configure -------------------------------------------------------------------------
    def configure(self, fhir_base: str, origins: list[str]) -> None:
        self.declare_profile_attributes()
        self.set_audience(fhir_base)
        self.restrict_user_scopes()
        sidecar = self.client(SIDECAR_CLIENT)
        sidecar["secret"] = self.secret("keycloak-sidecar-secret")
        self.admin("PUT", f"/clients/{sidecar['id']}", sidecar)
        self.register_jwt_key()
        for origin in origins:
            self.allow_origin(origin)
        password = self.secret("keycloak-demo-password")
        for name, spec in DEMO_USERS.items():
            self.ensure_user(name, spec["attributes"], password, spec["roles"])

    def declare_profile_attributes(self) -> None:
        profile = self.admin("GET", "/users/profile")
        names = {a["name"] for a in profile.get("attributes", [])}
        missing = [n for n in PROFILE_ATTRIBUTES if n not in names]
        if not missing:
            return
        for name in missing:
            profile["attributes"].append(
                {
                    "name": name,
                    "displayName": PROFILE_ATTRIBUTES[name],
                    "permissions": {"view": ["admin"], "edit": ["admin"]},
                    "multivalued": False,
                }
            )
        self.admin("PUT", "/users/profile", profile)

    def set_audience(self, fhir_base: str) -> None:
        scopes = self.admin("GET", "/client-scopes")
        scope = next(s for s in scopes if s["name"] == AUDIENCE_SCOPE)
        for mapper in scope.get("protocolMappers", []):
            config = mapper["config"]
            audience_mapper = mapper["protocolMapper"] == "oidc-audience-mapper"
            if audience_mapper and config.get("included.custom.audience") != fhir_base:
                config["included.custom.audience"] = fhir_base
                path = f"/client-scopes/{scope['id']}/protocol-mappers/models/{mapper['id']}"
                self.admin("PUT", path, mapper)

    def restrict_user_scopes(self) -> None:
        """Each scope of :data:`USER_SCOPE_ROLES` granted only to members of its role (also in
        a realm imported before the mapping existed: the import keeps an existing realm)."""
        scopes = {s["name"]: s for s in self.admin("GET", "/client-scopes")}
        for scope_name, role_name in USER_SCOPE_ROLES.items():
            quoted = urllib.parse.quote(role_name)
            if not any(r["name"] == role_name for r in self.admin("GET", "/roles")):
                self.admin("POST", "/roles", {"name": role_name})
            role = self.admin("GET", f"/roles/{quoted}")
            path = f"/client-scopes/{scopes[scope_name]['id']}/scope-mappings/realm"
            if not any(r["name"] == role_name for r in self.admin("GET", path) or []):
                self.admin("POST", path, [role])

    def register_jwt_key(self) -> None:
        """The public half of ``$VAR/keycloak-sidecar-jwt.pem``'s key, as its certificate."""
        cert_file = self.var / "keycloak-sidecar-jwt.crt"
        if not cert_file.exists():
            return
        pem = cert_file.read_text()
        body = "".join(line for line in pem.splitlines() if "-----" not in line)
        client = self.client(JWT_CLIENT)
        attributes = client.setdefault("attributes", {})
        if attributes.get("jwt.credential.certificate") != body:
            attributes["jwt.credential.certificate"] = body
            attributes["use.jwks.url"] = "false"
            self.admin("PUT", f"/clients/{client['id']}", client)

    def allow_origin(self, origin: str) -> None:
        parts = urllib.parse.urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise KeycloakError(f"not an origin (scheme://host:port): {origin}")
        origin = f"{parts.scheme}://{parts.netloc}"
        client = self.client(VIEWER_CLIENT)
        redirects = set(client.get("redirectUris", []))
        origins = set(client.get("webOrigins", []))
        wanted = {f"{origin}/viewer/*", f"{origin}/admin/*"}
        if wanted <= redirects and origin in origins:
            return
        client["redirectUris"] = sorted(redirects | wanted)
        client["webOrigins"] = sorted(origins | {origin})
        attributes = client.setdefault("attributes", {})
        logout = set(filter(None, attributes.get("post.logout.redirect.uris", "").split("##")))
        attributes["post.logout.redirect.uris"] = "##".join(sorted(logout | {f"{origin}/*"}))
        self.admin("PUT", f"/clients/{client['id']}", client)

    # --- users -----------------------------------------------------------------------------
    def ensure_user(
        self, name: str, attributes: dict[str, list[str]], password: str, roles: list[str] = ()
    ) -> None:
        """Create or update a demo user: attributes replaced, password set, roles added."""
        found = self.admin("GET", f"/users?exact=true&username={urllib.parse.quote(name)}")
        body = {
            "username": name,
            "enabled": True,
            "emailVerified": True,
            "email": f"{name}@demo.invalid",
            "firstName": "Demo",
            "lastName": name,
            "attributes": attributes,
            "requiredActions": [],
        }
        if found:
            user_id = found[0]["id"]
            current = found[0].get("attributes") or {}
            if any(current.get(k) != v for k, v in attributes.items()) or set(current) - set(
                attributes
            ):
                self.admin("PUT", f"/users/{user_id}", body)
        else:
            created = self.admin("POST", "/users", body)
            user_id = created["location"].rsplit("/", 1)[-1]
        self.admin(
            "PUT",
            f"/users/{user_id}/reset-password",
            {"type": "password", "value": password, "temporary": False},
        )
        for role in roles:
            representation = self.admin("GET", f"/roles/{urllib.parse.quote(role)}")
            self.admin("POST", f"/users/{user_id}/role-mappings/realm", [representation])

    def bind_patient(self, name: str, patient: str) -> str:
        """User ``name`` (or the per-patient user when None) bound to Patient ``patient``."""
        patient_id = patient_id_of(patient)
        user = name or patient_user(patient_id)
        attributes = {"patient": [patient_id], "fhirUser": [f"Patient/{patient_id}"]}
        self.ensure_user(user, attributes, self.secret("keycloak-demo-password"))
        return user

    # --- tokens ----------------------------------------------------------------------------
    def user_token(self, name: str, client: str = CLI_CLIENT, scope: str = "") -> dict[str, Any]:
        found = self.admin("GET", f"/users?exact=true&username={urllib.parse.quote(name)}")
        if not found:
            raise KeycloakError(f"no demo user '{name}' (stack.sh user NAME --patient Patient/ID)")
        is_patient = bool((found[0].get("attributes") or {}).get("patient"))
        return _request(
            "POST",
            self.token_url,
            form={
                "grant_type": "password",
                "client_id": client,
                "username": name,
                "password": self.secret("keycloak-demo-password"),
                "scope": scope or (PATIENT_SCOPES if is_patient else USER_SCOPES),
            },
        )

    def system_token(self, scope: str = SYSTEM_SCOPES) -> dict[str, Any]:
        return _request(
            "POST",
            self.token_url,
            form={
                "grant_type": "client_credentials",
                "client_id": SIDECAR_CLIENT,
                "client_secret": self.secret("keycloak-sidecar-secret"),
                "scope": scope,
            },
        )


def patient_id_of(reference: str) -> str:
    """``Patient/123`` or ``123`` -> ``123``; anything else is refused."""
    value = reference.removeprefix("Patient/")
    if not FHIR_ID.fullmatch(value):
        raise KeycloakError("expected Patient/ID with a FHIR id ([A-Za-z0-9-.]{1,64})")
    return value


def patient_user(patient_id: str) -> str:
    """The per-patient demo user's name. Keycloak lower-cases user names, so an id with
    capitals gets a digest of the exact id to stay one user per Patient."""
    name = f"patient-{patient_id.lower()}"
    if patient_id != patient_id.lower():
        name += "-" + hashlib.sha256(patient_id.encode()).hexdigest()[:8]
    return name


def claims_of(access_token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (for showing what a demo token says)."""
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kc.py", description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="Keycloak root, http://127.0.0.1:8180")
    parser.add_argument("--var", required=True, type=Path, help="the stack's data directory")
    commands = parser.add_subparsers(dest="command", required=True)
    configure = commands.add_parser("configure")
    configure.add_argument("--fhir-base", required=True)
    configure.add_argument("--origin", action="append", default=[])
    user = commands.add_parser("user")
    user.add_argument("name")
    user.add_argument("--patient", required=True)
    origin = commands.add_parser("allow-origin")
    origin.add_argument("origin")
    token = commands.add_parser("token")
    who = token.add_mutually_exclusive_group(required=True)
    who.add_argument("--patient", help="Patient/ID: its per-patient user, created on demand")
    who.add_argument("--user", help="a demo user: practitioner, operator, or one bound with `user`")
    who.add_argument("--system", action="store_true", help="the sidecar's client credentials")
    token.add_argument("--client", default=CLI_CLIENT, help="test-short-lived, test-other-audience")
    token.add_argument("--scope", default="", help="instead of the kind's default scopes")
    token.add_argument("--claims", action="store_true", help="print the claims, not the token")
    args = parser.parse_args(argv)

    keycloak = Keycloak(args.url, args.var)
    try:
        if args.command == "configure":
            keycloak.configure(args.fhir_base, args.origin)
        elif args.command == "user":
            print(keycloak.bind_patient(args.name, args.patient))
        elif args.command == "allow-origin":
            keycloak.allow_origin(args.origin)
        elif args.command == "token":
            if args.system:
                if args.client != CLI_CLIENT:
                    raise KeycloakError("--system uses the sidecar's client; --client is for users")
                answer = keycloak.system_token(args.scope or SYSTEM_SCOPES)
            else:
                name = args.user or keycloak.bind_patient("", args.patient)
                answer = keycloak.user_token(name, args.client, args.scope)
            access = answer["access_token"]
            print(json.dumps(claims_of(access), indent=2) if args.claims else access)
    except (KeycloakError, OSError) as error:
        print(f"kc.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
