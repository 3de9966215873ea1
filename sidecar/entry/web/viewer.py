"""The imaging viewer's static files under ``/viewer/`` and its ``/viewer/config.json``; the
operator page, a second page of the same build, under ``/admin/``.

The pages are SMART apps built from ``sidecar/entry/web/viewer/`` (``make viewer``) into
``sidecar/entry/web/viewer/dist/``, which is checked in: serving them needs no Node.js. The page
talks to three origins only: this one (its files, the imaging gateway), the FHIR server and
the authorization server; the Content-Security-Policy says exactly that, so a script that
got in some other way could not send the user's token anywhere else.

The app factory registers both when an authorization server is configured:
``app.register_blueprint(viewer_blueprint(config))``, ``operator_page_blueprint(config)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, jsonify, redirect, send_from_directory

DIST = Path(__file__).resolve().parent / "viewer" / "dist"
#: esbuild names bundles ``name-HASH.ext`` (the hash of their content): cacheable for ever.
HASHED = re.compile(r"-[A-Z0-9]{8}\.(js|css|map)$")
#: Stated rather than left to the platform's mimetypes table (which differs between hosts);
#: Werkzeug adds "; charset=utf-8" to the text/* ones.
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".map": "application/json",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


@dataclass(frozen=True)
class ViewerConfig:
    """What the viewer needs to sign a user in and find their studies.

    ``fhir_base_url``: the FHIR server the browser reads (its ``/.well-known/smart-configuration``
    names the authorization server's endpoints); ``issuer``: the authorization server
    (OIDC issuer URL); ``client_id``: the viewer's public client there (PKCE, no secret);
    ``imaging_origins``: origins of imaging gateways other than this server's own (an
    Endpoint.address elsewhere); the viewer sends the user's token to no other origin.
    """

    fhir_base_url: str
    issuer: str
    client_id: str = "dicom-fhir-viewer"
    imaging_origins: tuple[str, ...] = ()

    def public(self) -> dict[str, object]:
        """The JSON the page reads at start (nothing secret: a public client has none)."""
        return {
            "fhirBaseUrl": self.fhir_base_url.rstrip("/"),
            "issuer": self.issuer.rstrip("/"),
            "clientId": self.client_id,
            "imagingOrigins": [origin_of(o) for o in self.imaging_origins],
        }


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an absolute http(s) URL (ValueError for anything else)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(config: ViewerConfig) -> str:
    """No inline script or style; network access to this origin, the FHIR server and the
    authorization server (plus any other imaging gateway configured); images from this
    origin and from blob: URLs (frames fetched with the token) and data: URLs."""
    remote = {origin_of(config.fhir_base_url), origin_of(config.issuer)}
    remote.update(origin_of(o) for o in config.imaging_origins)
    connect = " ".join(["'self'", *sorted(remote)])
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' blob: data:",
            f"connect-src {connect}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def viewer_blueprint(config: ViewerConfig, dist: Path = DIST) -> Blueprint:
    """``/viewer/`` (the page), ``/viewer/config.json`` and the built files in ``dist``."""
    return _page_blueprint("viewer", "/viewer", "index.html", config, dist)


def operator_page_blueprint(config: ViewerConfig, dist: Path = DIST) -> Blueprint:
    """``/admin/``: the operator page, a second page of the same build (``admin.html``),
    signing in through the same public client; its data comes from ``/admin/api/...``
    (``sidecar/entry/web/admin.py``), which checks the operator role."""
    return _page_blueprint("operator_page", "/admin", "admin.html", config, dist)


def _page_blueprint(
    name: str, prefix: str, index: str, config: ViewerConfig, dist: Path
) -> Blueprint:
    """``prefix/`` (the ``index`` page), ``prefix/config.json`` and the built files."""
    csp = content_security_policy(config)  # also fails fast on a malformed URL in config
    bp = Blueprint(name, __name__, url_prefix=prefix)
    page = prefix.rsplit("/", 1)[-1]

    @bp.get("")
    def _no_slash() -> Response:
        # relative, so it survives a reverse proxy's path prefix; the page's own URLs
        # (bundles, config.json, the OAuth redirect) are relative to prefix/
        return redirect(f"{page}/", code=308)

    @bp.get("/config.json")
    def _config() -> Response:
        response = jsonify(config.public())
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.get("/", defaults={"name": index})
    @bp.get("/<path:name>")
    def _file(name: str) -> Response:
        suffix = Path(name).suffix
        if suffix not in CONTENT_TYPES or (suffix == ".html" and name != index):
            abort(404)  # each prefix serves its own page only
        # send_from_directory refuses paths that leave dist (404)
        response = send_from_directory(dist, name, mimetype=CONTENT_TYPES[suffix])
        # a re-built bundle has a new name; the page and the rest are revalidated each time
        response.headers["Cache-Control"] = (
            "public, max-age=31536000, immutable" if HASHED.search(name) else "no-cache"
        )
        return response

    @bp.after_request
    def _headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        # the OAuth redirect puts a code in the page's URL: send it to nobody
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    return bp
