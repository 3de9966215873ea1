"""Settings parsing and caller authentication."""

import pytest

from sidecar.outcome import Forbidden, Unauthorized
from sidecar.settings import IdentifierMapping, Settings, SettingsError
from sidecar.web.auth import check_caller


def test_defaults():
    s = Settings.from_env({})
    assert s.fhir_base_url == "http://127.0.0.1:8080/fhir" and s.fhir_auth.mode == "none"
    (main,) = s.pacs
    assert main.name == "main" and main.url == "http://127.0.0.1:8042/dicom-web"
    assert main.wado_root == main.url and main.endpoint_id == "dicomweb-main"
    assert main.patient_identifiers == ()


def test_two_pacs_with_mappings_and_secrets_only_from_env(tmp_path):
    config = tmp_path / "sidecar.toml"
    config.write_text(
        'fhir_base_url = "http://fhir/base/"\npage_size = 50\n'
        '[pacs.second]\nurl = "http://pacs2/dicom-web"\ntimezone = "Europe/Paris"\n'
    )
    s = Settings.from_env(
        {
            "SIDECAR_CONFIG": str(config),
            "SIDECAR_PACS": "main, second",
            "SIDECAR_PACS_MAIN_USERNAME": "orthanc",
            "SIDECAR_PACS_MAIN_PASSWORD": "pacs-pa55",
            "SIDECAR_PACS_MAIN_WADO_ROOT": "https://public/dicom-web/",
            "SIDECAR_PATIENT_IDENTIFIERS": "urn:a|HOSP-A,urn:b",
            "SIDECAR_PACS_SECOND_PATIENT_IDENTIFIERS": "urn:b|HOSP-B",
            "SIDECAR_FHIR_AUTH": "oauth2",
            "SIDECAR_FHIR_TOKEN_URL": "http://idp/token",
            "SIDECAR_FHIR_CLIENT_ID": "c",
            "SIDECAR_FHIR_CLIENT_SECRET": "cl1ent-s3cret",
            "SIDECAR_BEARER_TOKENS": "t1, t2",
        }
    )
    assert s.fhir_base_url == "http://fhir/base" and s.page_size == 50
    main, second = s.pacs
    assert main.auth.mode == "basic" and main.wado_root == "https://public/dicom-web"
    assert main.patient_identifiers == (
        IdentifierMapping("urn:a", "HOSP-A"),
        IdentifierMapping("urn:b", None),
    )
    assert second.patient_identifiers == (IdentifierMapping("urn:b", "HOSP-B"),)
    assert second.timezone == "Europe/Paris" and second.url == "http://pacs2/dicom-web"
    assert (
        s.bearer_tokens == ("t1", "t2")
        and "cl1ent-s3cret" not in repr(s)
        and "pacs-pa55" not in repr(s)
    )


@pytest.mark.parametrize(
    "env",
    [
        {"SIDECAR_PACS": "bad name"},
        {"SIDECAR_PACS": "x"},  # no URL for x
        {"SIDECAR_FHIR_AUTH": "kerberos"},
        {"SIDECAR_FHIR_AUTH": "bearer"},  # no token
        {"SIDECAR_PACS_MAIN_TIMEZONE": "Mars/Olympus"},
        {"SIDECAR_PACS_TIMEOUT_SECONDS": "0"},
        {"SIDECAR_QIDO_CONCURRENCY": "many"},
    ],
)
def test_bad_settings(env):
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_secrets_are_refused_in_the_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[pacs.main]\npassword = "x"\n')
    with pytest.raises(SettingsError, match="secrets"):
        Settings.from_env({"SIDECAR_CONFIG": str(config)})


SETTINGS = Settings.from_env({"SIDECAR_SHARED_SECRET": "s3cret", "SIDECAR_BEARER_TOKENS": "tok"})


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"X-Sidecar-Secret": "s3cret"}, None),
        ({"Authorization": "Bearer tok"}, None),
        ({"Authorization": "bearer tok"}, None),
        ({}, Unauthorized),
        ({"X-Sidecar-Secret": "wrong"}, Forbidden),
        ({"Authorization": "Bearer s3cret"}, Forbidden),  # the secret is not a bearer token
        ({"Authorization": "Basic dXNlcjpwdw=="}, Forbidden),
    ],
)
def test_caller_auth(headers, error):
    if error is None:
        check_caller(headers, SETTINGS)
    else:
        with pytest.raises(error):
            check_caller(headers, SETTINGS)
