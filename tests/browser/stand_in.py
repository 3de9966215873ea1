"""A stand-in for the stack the viewer talks to, so its browser tests run before (and
without) Keycloak, HAPI and a PACS: an authorization server, a FHIR server and the sidecar
(the real viewer blueprint plus an imaging gateway), each on a free loopback port.

It is as loose as the real servers, never stricter: it checks what they check and what the
tests are about (PKCE S256 at the token endpoint, the token's expiry, a patient token sees
its own compartment, the gateway answers 401 without a token and 404 for what the token may
not see) and accepts everything else. The login form has Keycloak's field ids; the token
response carries ``patient`` only in the tokens' claims, as Keycloak does; tokens are
unsigned JWTs (nothing here verifies a signature). Images are synthetic: a disc with two
dark and one bright spot, in Hounsfield-like units, windowed as asked.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import numpy as np
from flask import Flask, Response, abort, jsonify, redirect, request
from PIL import Image
from werkzeug.serving import make_server

from sidecar.entry.web.viewer import ViewerConfig, viewer_blueprint

REALM = "/realms/dicom-fhir"
OIDC = f"{REALM}/protocol/openid-connect"
DCM = "http://dicom.nema.org/resources/ontology/DCM"

#: username -> claims. ``password`` is any non-empty string.
USERS = {
    "anna": {"patient": "pat-a", "fhirUser": "Patient/pat-a", "name": "Anna Example"},
    "bert": {"patient": "pat-b", "fhirUser": "Patient/pat-b", "name": "Bert Sample"},
    "dana": {"fhirUser": "Practitioner/dr-1", "name": "Dana Doctor"},
}
PATIENTS = {
    pid: {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": family, "given": [given]}],
        "birthDate": born,
        "identifier": [{"system": "urn:mrn", "value": mrn}],
    }
    for pid, family, given, born, mrn in [
        ("pat-a", "Example", "Anna", "1961-04-12", "MRN-1001"),
        ("pat-b", "Sample", "Bert", "1978-09-30", "MRN-1002"),
    ]
}


def _series(uid, number, modality, description, site, instances, frames=1):
    return {
        "uid": uid,
        "number": number,
        "modality": {"system": DCM, "code": modality},
        "description": description,
        "bodySite": {"system": "http://snomed.info/sct", "code": site[0], "display": site[1]},
        "numberOfInstances": instances,
        "instance": [
            {"uid": f"{uid}.{i}", "sopClass": {"code": "urn:oid:1.2.840.10008.5.1.4.1.1.2"}}
            | {"number": i}
            for i in range(1, instances + 1)
        ],
        "frames": frames,  # the stand-in's own: NumberOfFrames of each instance
    }


CHEST = ("51185008", "Chest")
STUDIES = [
    ("st-a1", "pat-a", "1.2.826.0.1.1", "2024-05-02T09:14:00+02:00", "CT", "CT Chest",
     [_series("1.2.826.0.1.1.1", 1, "CT", "Scout", CHEST, 1),
      _series("1.2.826.0.1.1.2", 2, "CT", "Axial 5 mm", CHEST, 12)]),
    ("st-a2", "pat-a", "1.2.826.0.1.2", "2023-11-10", "MR", "MR Brain",
     [_series("1.2.826.0.1.2.1", 1, "MR", "T2 multi-frame", ("12738006", "Brain"), 1, 6)]),
    ("st-b1", "pat-b", "1.2.826.0.1.3", "2022-02-20T11:00:00Z", "CR", "Chest X-ray",
     [_series("1.2.826.0.1.3.1", 1, "CR", "PA", CHEST, 1)]),
]  # fmt: skip


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(jwt: str) -> dict | None:
    try:
        part = jwt.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return None


def _bearer() -> dict | None:
    header = request.headers.get("Authorization", "")
    claims = _claims(header[7:]) if header.startswith("Bearer ") else None
    return claims if claims and claims.get("exp", 0) > time.time() else None


def _cors(response: Response) -> Response:
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Cache-Control, Content-Type"
    return response


@dataclass
class StandIn:
    """``start()`` serves the three; ``viewer_url``, ``issuer``, ``fhir_base_url`` then."""

    token_seconds: int = 600
    urls: dict[str, str] = field(default_factory=dict)
    _servers: list = field(default_factory=list)
    _codes: dict[str, dict] = field(default_factory=dict)

    @property
    def viewer_url(self) -> str:
        return f"{self.urls['sidecar']}/viewer/"

    @property
    def issuer(self) -> str:
        return self.urls["auth"] + REALM

    @property
    def fhir_base_url(self) -> str:
        return self.urls["fhir"] + "/fhir"

    def start(self) -> StandIn:
        # ports first: each app needs the others' URLs
        servers = {
            n: make_server("127.0.0.1", 0, Flask(n), threaded=True) for n in ("auth", "fhir")
        }
        self.urls.update({n: f"http://127.0.0.1:{s.server_port}" for n, s in servers.items()})
        for name, server in servers.items():
            server.app = self._auth() if name == "auth" else self._fhir()
        sidecar = make_server("127.0.0.1", 0, self._sidecar(), threaded=True)
        self.urls["sidecar"] = f"http://127.0.0.1:{sidecar.server_port}"
        for server in (*servers.values(), sidecar):
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()

    # -- authorization server ------------------------------------------------------------

    def _auth(self) -> Flask:
        app = Flask("stand-in-auth")
        app.after_request(_cors)

        @app.get(f"{REALM}/.well-known/openid-configuration")
        def _discovery():
            return jsonify(
                issuer=self.issuer,
                authorization_endpoint=self.urls["auth"] + f"{OIDC}/auth",
                token_endpoint=self.urls["auth"] + f"{OIDC}/token",
                end_session_endpoint=self.urls["auth"] + f"{OIDC}/logout",
            )

        @app.get(f"{OIDC}/auth")
        def _authorize():
            if request.args.get("code_challenge_method") != "S256":
                return "PKCE S256 is required", 400
            pending = secrets.token_urlsafe(8)
            self._codes[pending] = dict(request.args)
            return (
                "<!doctype html><title>Sign in</title><h1>Sign in (stand-in)</h1>"
                f'<form method="post" action="login?pending={pending}">'
                '<label>User <input id="username" name="username"></label>'
                '<label>Password <input id="password" name="password" type="password"></label>'
                '<input type="submit" id="kc-login" value="Sign In"></form>'
            )

        @app.post(f"{OIDC}/login")
        def _login():
            asked = self._codes.pop(request.args.get("pending", ""), None)
            user = request.form.get("username", "")
            if not asked or user not in USERS or not request.form.get("password"):
                return "Invalid username or password", 401
            code = secrets.token_urlsafe(12)
            self._codes[code] = {**asked, "user": user}
            answer = {
                "code": code,
                "state": asked["state"],
                "session_state": "s",
                "iss": self.issuer,
            }
            return redirect(f"{asked['redirect_uri']}?{urlencode(answer)}")

        @app.route(f"{OIDC}/token", methods=["POST", "OPTIONS"])
        def _token():
            if request.method == "OPTIONS":
                return ""
            asked = self._codes.pop(request.form.get("code", ""), None)
            verifier = request.form.get("code_verifier", "").encode()
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest())
            if not asked or challenge.rstrip(b"=").decode() != asked["code_challenge"]:
                return jsonify(error="invalid_grant"), 400
            claims = {
                "iss": self.issuer,
                "aud": self.fhir_base_url,
                "sub": asked["user"],
                "exp": int(time.time()) + self.token_seconds,
                "scope": asked["scope"],
                "preferred_username": asked["user"],
                **USERS[asked["user"]],
            }
            return jsonify(
                access_token=f"{_b64({'alg': 'none'})}.{_b64(claims)}.",
                id_token=f"{_b64({'alg': 'none'})}.{_b64(claims | {'aud': asked['client_id']})}.",
                token_type="Bearer",
                expires_in=self.token_seconds,
                scope=asked["scope"],
            )

        @app.get(f"{OIDC}/logout")
        def _logout():
            return redirect(request.args["post_logout_redirect_uri"])

        return app

    # -- FHIR server ---------------------------------------------------------------------

    def _imaging_study(self, study) -> dict:
        sid, patient, uid, started, modality, description, series = study
        return {
            "resourceType": "ImagingStudy",
            "id": sid,
            "status": "available",
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
            "subject": {"reference": f"Patient/{patient}"},
            "started": started,
            "modality": [{"system": DCM, "code": modality}],
            "description": description,
            "numberOfSeries": len(series),
            "numberOfInstances": sum(s["numberOfInstances"] for s in series),
            "endpoint": [{"reference": "Endpoint/main"}],
            "series": [{k: v for k, v in s.items() if k != "frames"} for s in series],
        }

    def _fhir(self) -> Flask:
        app = Flask("stand-in-fhir")
        app.after_request(_cors)

        def outcome(status: int, code: str):
            issue = {"severity": "error", "code": code}
            return jsonify(resourceType="OperationOutcome", issue=[issue]), status

        def searchset(resources):
            entries = [{"resource": r} for r in resources]
            return jsonify(resourceType="Bundle", type="searchset", entry=entries)

        @app.route("/fhir/<path:_>", methods=["OPTIONS"])
        def _preflight(_):
            return ""

        @app.get("/fhir/.well-known/smart-configuration")
        def _smart():
            return jsonify(
                issuer=self.issuer,
                authorization_endpoint=self.urls["auth"] + f"{OIDC}/auth",
                token_endpoint=self.urls["auth"] + f"{OIDC}/token",
                code_challenge_methods_supported=["S256"],
                capabilities=["launch-standalone", "client-public", "smart-imaging-access"],
            )

        @app.get("/fhir/ImagingStudy")
        def _studies():
            token = _bearer()
            if not token:
                return outcome(401, "login")
            subject = request.args.get("subject", "").removeprefix("Patient/")
            if token.get("patient") not in (None, subject):
                return outcome(403, "forbidden")
            found = [self._imaging_study(s) for s in STUDIES if s[1] == subject]
            endpoint = {
                "resourceType": "Endpoint",
                "id": "main",
                "status": "active",
                "address": self.urls["sidecar"] + "/dicomweb/main",
            }
            return searchset(found + ([endpoint] if found else []))

        @app.get("/fhir/Patient/<pid>")
        def _patient(pid):
            token = _bearer()
            if not token:
                return outcome(401, "login")
            if token.get("patient") not in (None, pid) or pid not in PATIENTS:
                return outcome(404, "not-found")
            return jsonify(PATIENTS[pid])

        @app.get("/fhir/Patient")
        def _patients():
            token = _bearer()
            if not token:
                return outcome(401, "login")
            name = request.args.get("name", "").lower()
            identifier = request.args.get("identifier", "").split("|")[-1]

            def matches(p):
                names = [p["name"][0]["family"], *p["name"][0]["given"]]
                return (name and any(n.lower().startswith(name) for n in names)) or (
                    identifier and p["identifier"][0]["value"] == identifier
                )

            visible = [p for p in PATIENTS.values() if token.get("patient") in (None, p["id"])]
            return searchset([p for p in visible if matches(p)])

        return app

    # -- the sidecar: the real viewer blueprint and a gateway ------------------------------

    def _sidecar(self) -> Flask:
        app = Flask("stand-in-sidecar")
        config = ViewerConfig(self.fhir_base_url, self.issuer, "dicom-fhir-viewer")
        app.register_blueprint(viewer_blueprint(config))
        root = "/dicomweb/main/studies/<study>/series/<series>"

        def allowed(study_uid: str, series_uid: str) -> dict:
            token = _bearer()
            if not token:
                abort(Response("", 401, {"WWW-Authenticate": 'Bearer realm="imaging"'}))
            study = next((s for s in STUDIES if s[2] == study_uid), None)
            if not study or token.get("patient") not in (None, study[1]):
                abort(404)  # never says whether it exists
            series = next((s for s in study[6] if s["uid"] == series_uid), None)
            return series or abort(404)

        @app.get(f"{root}/thumbnail")
        def _thumbnail(study, series):
            allowed(study, series)
            return _rendered(0, 1, None, _viewport(128))

        @app.get(f"{root}/metadata")
        def _metadata(study, series):
            found = allowed(study, series)

            def dataset(instance):
                return {
                    "00080018": {"vr": "UI", "Value": [instance["uid"]]},
                    "00200013": {"vr": "IS", "Value": [instance["number"]]},
                    "00280008": {"vr": "IS", "Value": [found["frames"]]},
                    "00281050": {"vr": "DS", "Value": [40]},
                    "00281051": {"vr": "DS", "Value": [400]},
                }

            body = json.dumps([dataset(i) for i in reversed(found["instance"])])
            return Response(body, content_type="application/dicom+json")

        @app.get(f"{root}/instances/<instance>/frames/<int:frame>/rendered")
        def _frame(study, series, instance, frame):
            found = allowed(study, series)
            number = next((i["number"] for i in found["instance"] if i["uid"] == instance), None)
            if number is None or not 1 <= frame <= found["frames"]:
                abort(404)
            window = request.args.get("window")
            center_width = tuple(float(v) for v in window.split(",")[:2]) if window else None
            index = (number - 1) * found["frames"] + frame
            total = found["numberOfInstances"] * found["frames"]
            return _rendered(index, total, center_width, _viewport(512))

        return app


def _viewport(default: int) -> int:
    viewport = request.args.get("viewport")
    return min(int(viewport.split(",")[0]), 1024) if viewport else default


def _rendered(index: int, total: int, window: tuple[float, float] | None, size: int) -> Response:
    """A synthetic slice as JPEG: the spots grow through the series, so frames differ."""
    y, x = np.mgrid[0:size, 0:size] / size * 2 - 1
    units = np.full((size, size), -1000.0)
    units[x**2 + y**2 < 0.8] = 40
    units[(x - 0.35) ** 2 + y**2 < 0.05 + 0.05 * index / total] = -800
    units[(x + 0.35) ** 2 + y**2 < 0.06] = -800
    units[x**2 + (y + 0.5) ** 2 < 0.01 + 0.01 * index / total] = 900
    units += np.random.default_rng(index).normal(0, 15, units.shape)
    center, width = window or (40, 400)
    grey = np.clip((units - center + width / 2) / width * 255, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, "JPEG", quality=90)
    return Response(buffer.getvalue(), content_type="image/jpeg")
