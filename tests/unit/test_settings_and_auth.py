"""Settings parsing and caller authentication."""

import pytest

from sidecar.core.credentials import AcceptedCredentials, check_caller
from sidecar.core.outcome import Forbidden, Unauthorized
from sidecar.settings import IdentifierMapping, SettingsError, load_settings


def test_defaults():
    s = load_settings({})
    assert s.fhir.base_url == "http://127.0.0.1:8080/fhir" and s.fhir.auth.mode == "none"
    (main,) = s.pacs.values()
    assert main.name == "main" and main.url == "http://127.0.0.1:8042/dicom-web"
    assert main.wado_root == main.url and main.endpoint_id == "dicomweb-main"
    assert main.patient_identifiers == ()


def test_two_pacs_with_mappings_and_secrets_only_from_env(tmp_path):
    config = tmp_path / "sidecar.toml"
    config.write_text(
        'fhir_base_url = "http://fhir/base/"\npage_size = 50\n'
        '[pacs.second]\nurl = "http://pacs2/dicom-web"\ntimezone = "Europe/Paris"\n'
    )
    s = load_settings(
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
    assert s.fhir.base_url == "http://fhir/base" and s.qido.page_size == 50
    main, second = s.pacs.values()
    assert main.auth.mode == "basic" and main.wado_root == "https://public/dicom-web"
    assert main.patient_identifiers == (
        IdentifierMapping("urn:a", "HOSP-A"),
        IdentifierMapping("urn:b", None),
    )
    assert second.patient_identifiers == (IdentifierMapping("urn:b", "HOSP-B"),)
    assert second.timezone == "Europe/Paris" and second.url == "http://pacs2/dicom-web"
    assert (
        [t.get_secret_value() for t in s.bearer_tokens] == ["t1", "t2"]
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
        load_settings(env)


def test_secrets_are_refused_in_the_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[pacs.main]\npassword = "x"\n')
    with pytest.raises(SettingsError, match="secrets"):
        load_settings({"SIDECAR_CONFIG": str(config)})


SETTINGS = load_settings({"SIDECAR_RELAY_SECRET": "s3cret", "SIDECAR_BEARER_TOKENS": "tok"})
ACCEPTED = AcceptedCredentials.of(SETTINGS.relay_secret, SETTINGS.bearer_tokens)


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
        check_caller(headers, ACCEPTED)
    else:
        with pytest.raises(error):
            check_caller(headers, ACCEPTED)


def test_every_setting_is_documented_and_every_documented_name_exists():
    from pathlib import Path

    from sidecar import settings_names as names

    root = Path(__file__).resolve().parents[2]
    docs = (root / "docs" / "configuration.md").read_text() + (
        root / "docs" / "sync.md"
    ).read_text()
    for name in [*names.NAMES, names.PACS_LIST, names.DEFAULT_IDENTIFIERS, *names.DEPRECATED]:
        assert f"SIDECAR_{name}" in docs, name
    for suffix in names.PACS_NAMES:
        assert f"_{suffix}" in docs, suffix
    known = {f"SIDECAR_{n}" for n in [*names.NAMES, *names.DEPRECATED, names.CONFIG]}
    known |= {"SIDECAR_PACS", "SIDECAR_PATIENT_IDENTIFIERS"}
    import re

    mentioned = set(re.findall(r"SIDECAR_[A-Z_]+[A-Z]", docs))
    per_pacs = {
        m for m in mentioned if m.startswith(("SIDECAR_PACS_MAIN_", "SIDECAR_PACS_SECOND_"))
    }
    mentioned = {m for m in mentioned - per_pacs if not m.startswith("SIDECAR_PACS_<")}
    assert mentioned <= known, mentioned - known


def test_a_typo_in_the_file_and_a_secret_in_the_file_are_refused(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('fhir_base_ulr = "http://x/fhir"\n')
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings({"SIDECAR_CONFIG": str(config)})
    config.write_text('relay_secret = "x"\n')
    with pytest.raises(SettingsError, match="secrets"):
        load_settings({"SIDECAR_CONFIG": str(config)})


def test_the_notify_and_relay_secrets_must_differ_and_the_old_name_still_reads():
    with pytest.raises(SettingsError, match="differ"):
        load_settings({"SIDECAR_RELAY_SECRET": "a", "SIDECAR_NOTIFY_SECRET": "b,a"})
    s = load_settings({"SIDECAR_SHARED_SECRET": "old"})
    assert [v.get_secret_value() for v in s.relay_secret] == ["old"] and not s.notify_secret


def test_the_error_names_the_variable():
    with pytest.raises(SettingsError, match="^SIDECAR_PACS_MAIN_URL"):
        load_settings({"SIDECAR_PACS_MAIN_URL": "ftp://x"})
    with pytest.raises(SettingsError, match="^SIDECAR_WORKER_THREADS"):
        load_settings({"SIDECAR_WORKER_THREADS": "0"})
    with pytest.raises(SettingsError, match="^SIDECAR_PACS_SECOND_AUTH"):
        load_settings(
            {
                "SIDECAR_PACS": "main,second",
                "SIDECAR_PACS_SECOND_URL": "http://p/dw",
                "SIDECAR_PACS_SECOND_AUTH": "bearer",
            }
        )


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"SIDECAR_FHIR_BASE_URL": "http://user:pw@fhir/base"}, "SIDECAR_FHIR_BASE_URL"),
        ({"SIDECAR_PACS_MAIN_URL": "http://o:o@pacs/dicom-web"}, "SIDECAR_PACS_MAIN_URL"),
        ({"SIDECAR_PACS_MAIN_WADO_ROOT": "http://p/dw?x=1"}, "SIDECAR_PACS_MAIN_WADO_ROOT"),
        ({"SIDECAR_FHIR_BASE_URL": "http://a b/fhir"}, "SIDECAR_FHIR_BASE_URL"),
        ({"SIDECAR_PACS_MAIN_ENDPOINT_ID": "Patient/x"}, "SIDECAR_PACS_MAIN_ENDPOINT_ID"),
        ({"SIDECAR_SUBSCRIPTION_ID": "bad id!"}, "SIDECAR_SUBSCRIPTION_ID"),
        ({"SIDECAR_PATIENT_IDENTIFIERS": "sys|A*"}, "SIDECAR_PACS_MAIN_PATIENT_IDENTIFIERS"),
        ({"SIDECAR_PACS_TIMEOUT_SECONDS": "inf"}, "SIDECAR_PACS_TIMEOUT_SECONDS"),
        ({"SIDECAR_PACS": " , "}, "SIDECAR_PACS"),
        ({"SIDECAR_RELAY_SECRET": "a", "SIDECAR_NOTIFY_SECRET": "a"}, "SIDECAR_NOTIFY_SECRET"),
        ({"SIDECAR_SHARED_SECRET": "a", "SIDECAR_NOTIFY_SECRET": "a"}, "SIDECAR_SHARED_SECRET"),
    ],
)
def test_a_bad_value_stops_the_start_naming_its_variable(env, name):
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert name in str(err.value)
    assert "pw" not in str(err.value)


def test_a_boolean_is_no_count_and_a_pacs_table_must_be_listed(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("page_size = true\n")
    with pytest.raises(SettingsError, match="SIDECAR_PAGE_SIZE"):
        load_settings({"SIDECAR_CONFIG": str(config)})
    config.write_text('[pacs.mian]\nurl = "http://x:1/dicom-web"\n')
    with pytest.raises(SettingsError, match=r"\[pacs.mian\]"):
        load_settings({"SIDECAR_CONFIG": str(config), "SIDECAR_PACS": "main"})
