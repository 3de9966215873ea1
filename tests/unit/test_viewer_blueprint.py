"""The viewer's blueprint: its files, their types and caching, the CSP, config.json."""

from pathlib import Path

import pytest
from flask import Flask

from sidecar.entry.web.viewer import (
    DIST,
    ViewerConfig,
    content_security_policy,
    operator_page_blueprint,
    viewer_blueprint,
)

CONFIG = ViewerConfig(
    fhir_base_url="http://127.0.0.1:8080/fhir/",
    issuer="http://127.0.0.1:8180/realms/dicom-fhir",
    client_id="dicom-fhir-viewer",
)


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text(
        '<!doctype html><script type="module" src="main-ABCDEFGH.js"></script>', "utf-8"
    )
    (tmp_path / "main-ABCDEFGH.js").write_text("export {};", "utf-8")
    (tmp_path / "style-ABCDEFGH.css").write_text("body{}", "utf-8")
    (tmp_path / "notes.txt").write_text("not served", "utf-8")
    return tmp_path


@pytest.fixture
def client(dist):
    app = Flask("test")
    app.register_blueprint(viewer_blueprint(CONFIG, dist=dist))
    return app.test_client()


def test_the_page_is_served_at_viewer_slash_and_revalidated(client):
    r = client.get("/viewer/")
    assert r.status_code == 200 and r.content_type == "text/html; charset=utf-8"
    assert b"main-ABCDEFGH.js" in r.data
    assert r.headers["Cache-Control"] == "no-cache"


def test_viewer_without_slash_redirects_relatively(client):
    r = client.get("/viewer")
    assert r.status_code == 308 and r.headers["Location"] == "viewer/"


def test_hashed_bundles_are_cached_for_ever_with_their_types(client):
    js = client.get("/viewer/main-ABCDEFGH.js")
    css = client.get("/viewer/style-ABCDEFGH.css")
    assert js.content_type == "text/javascript; charset=utf-8"
    assert css.content_type == "text/css; charset=utf-8"
    for r in (js, css):
        assert r.status_code == 200
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert r.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/viewer/missing-ABCDEFGH.js",
        "/viewer/notes.txt",
        "/viewer/../viewer.py",
        "/viewer/%2e%2e/x.js",
    ],
)
def test_nothing_else_is_served(client, path):
    assert client.get(path).status_code == 404


def test_config_json_says_where_to_sign_in_and_is_never_cached(client):
    r = client.get("/viewer/config.json")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert r.json == {
        "fhirBaseUrl": "http://127.0.0.1:8080/fhir",
        "issuer": "http://127.0.0.1:8180/realms/dicom-fhir",
        "clientId": "dicom-fhir-viewer",
        "imagingOrigins": [],
    }


def test_every_answer_carries_a_strict_content_security_policy(client):
    for path in ("/viewer/", "/viewer/config.json", "/viewer/main-ABCDEFGH.js", "/viewer/nope.js"):
        csp = client.get(path).headers["Content-Security-Policy"]
        directives = dict(d.split(" ", 1) for d in csp.split("; "))
        assert directives["script-src"] == "'self'"  # no inline script, no eval
        assert directives["default-src"] == "'none'"
        assert directives["img-src"] == "'self' blob: data:"
        assert directives["connect-src"] == ("'self' http://127.0.0.1:8080 http://127.0.0.1:8180")
        assert directives["frame-ancestors"] == "'none'"


def test_other_imaging_gateways_are_allowed_by_origin_only():
    config = ViewerConfig(
        "https://fhir.example/fhir",
        "https://login.example/realms/r",
        imaging_origins=("https://images.example:8443/dicomweb/main",),
    )
    csp = content_security_policy(config)
    assert "connect-src 'self' https://fhir.example https://images.example:8443 " in csp
    assert config.public()["imagingOrigins"] == ["https://images.example:8443"]


@pytest.mark.parametrize("bad", ["", "fhir", "ftp://x/fhir", "http:///fhir"])
def test_a_malformed_url_fails_when_the_blueprint_is_built(bad):
    with pytest.raises(ValueError):
        viewer_blueprint(ViewerConfig(bad, "http://127.0.0.1:8180/realms/r"))


def test_the_checked_in_build_is_there_and_its_pages_reach_every_bundle():
    pages = [(DIST / name).read_text("utf-8") for name in ("index.html", "admin.html")]
    bundles = [p.name for p in DIST.iterdir() if p.suffix in (".js", ".css")]
    entries = [
        p.read_text("utf-8") for p in DIST.glob("*.js") if p.name.startswith(("main-", "admin-"))
    ]
    # each bundle is named by a page, or imported by a page's bundle (the shared chunk)
    assert bundles and all(any(name in text for text in pages + entries) for name in bundles)
    assert all("<script>" not in page for page in pages)  # the CSP allows no inline script


@pytest.fixture
def both(dist):
    (dist / "admin.html").write_text(
        '<!doctype html><script type="module" src="admin-ABCDEFGH.js"></script>', "utf-8"
    )
    (dist / "admin-ABCDEFGH.js").write_text("export {};", "utf-8")
    app = Flask("test")
    app.register_blueprint(viewer_blueprint(CONFIG, dist=dist))
    app.register_blueprint(operator_page_blueprint(CONFIG, dist=dist))
    return app.test_client()


def test_the_operator_page_is_the_same_build_at_admin_slash(both):
    page = both.get("/admin/")
    assert page.status_code == 200 and b"admin-ABCDEFGH.js" in page.data
    assert page.headers["Content-Security-Policy"] == content_security_policy(CONFIG)
    assert both.get("/admin/admin-ABCDEFGH.js").status_code == 200
    assert both.get("/admin/config.json").json["clientId"] == "dicom-fhir-viewer"
    assert both.get("/admin").headers["Location"] == "admin/"


def test_each_prefix_serves_its_own_page_only(both):
    assert both.get("/viewer/admin.html").status_code == 404
    assert both.get("/admin/index.html").status_code == 404
    assert b"main-ABCDEFGH.js" in both.get("/viewer/").data


def test_the_checked_in_build_has_both_pages():
    for page, bundle in (("index.html", "main-"), ("admin.html", "admin-")):
        html = (DIST / page).read_text("utf-8")
        script = html.split('<script type="module" src="', 1)[1].split('"', 1)[0]
        assert script.startswith(bundle) and (DIST / script).exists()
