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
    # Endpoint.address: the imaging gateway, where a client's SMART token opens the images
    assert main.wado_root == "http://127.0.0.1:8090/dicomweb/main" and main.through_gateway
    assert main.endpoint_id == "dicomweb-main"
    assert main.patient_identifiers == ()


def test_two_pacs_with_mappings_and_secrets_only_from_env(tmp_path):
    config = tmp_path / "sidecar.toml"
    config.write_text(
        '[fhir]\nbase_url = "http://fhir/base/"\n[qido]\npage_size = 50\n'
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
            "SIDECAR_BEARER_TOKENS": "token-one-0123456789, token-two-0123456789",
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
        [t.get_secret_value() for t in s.bearer_tokens]
        == ["token-one-0123456789", "token-two-0123456789"]
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
    config.write_text('[pacs.main.auth]\npassword = "x"\n')
    with pytest.raises(SettingsError, match="secrets"):
        load_settings({"SIDECAR_CONFIG": str(config)})


SECRET, TOKEN = "s3cret-relay-0123456789", "tok-bearer-0123456789"
SETTINGS = load_settings({"SIDECAR_RELAY_SECRET": SECRET, "SIDECAR_BEARER_TOKENS": TOKEN})
ACCEPTED = AcceptedCredentials.of(SETTINGS.relay_secret, SETTINGS.bearer_tokens)


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"X-Sidecar-Secret": SECRET}, None),
        ({"Authorization": f"Bearer {TOKEN}"}, None),
        ({"Authorization": f"bearer {TOKEN}"}, None),
        ({}, Unauthorized),
        ({"X-Sidecar-Secret": "wrong"}, Forbidden),
        ({"Authorization": f"Bearer {SECRET}"}, Forbidden),  # the secret is not a bearer token
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
    import re
    from pathlib import Path

    from sidecar import settings as s

    root = Path(__file__).resolve().parents[2]
    docs = (root / "docs" / "configuration.md").read_text() + (
        root / "docs" / "sync.md"
    ).read_text()
    for name in [*s.FIXED_NAMES, s.PACS_LIST, s.DEFAULT_IDENTIFIERS, *s.DEPRECATED, s.CONFIG]:
        assert f"SIDECAR_{name}" in docs, name
    for suffix in s.PACS_FIELD_NAMES:
        assert f"_{suffix}" in docs, suffix
    known = {f"SIDECAR_{n}" for n in [*s.FIXED_NAMES, *s.DEPRECATED, s.CONFIG]}
    known |= {"SIDECAR_PACS", "SIDECAR_PATIENT_IDENTIFIERS"}
    known |= {f"{n}_FILE" for n in known}
    mentioned = set(re.findall(r"SIDECAR_[A-Z_]+[A-Z]", docs))
    per_pacs = {
        m for m in mentioned if m.startswith(("SIDECAR_PACS_MAIN_", "SIDECAR_PACS_SECOND_"))
    }
    mentioned = {m for m in mentioned - per_pacs if not m.startswith("SIDECAR_PACS_<")}
    assert mentioned <= known, mentioned - known


def test_a_typo_in_the_file_and_a_secret_in_the_file_are_refused(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[fhir]\nbase_ulr = "http://x/fhir"\n')
    with pytest.raises(SettingsError, match="unknown setting 'fhir.base_ulr'"):
        load_settings({"SIDECAR_CONFIG": str(config)})
    config.write_text('relay_secret = "x"\n')
    with pytest.raises(SettingsError, match="secrets"):
        load_settings({"SIDECAR_CONFIG": str(config)})


def test_the_notify_and_relay_secrets_must_differ_and_the_old_name_still_reads():
    with pytest.raises(SettingsError, match="differ"):
        load_settings(
            {
                "SIDECAR_RELAY_SECRET": "relay-secret-0123456789",
                "SIDECAR_NOTIFY_SECRET": "notify-secret-0123456789,relay-secret-0123456789",
            }
        )
    s = load_settings({"SIDECAR_SHARED_SECRET": "old-shared-secret-0123"})
    assert [v.get_secret_value() for v in s.relay_secret] == ["old-shared-secret-0123"]
    assert not s.notify_secret


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
        (
            {
                "SIDECAR_RELAY_SECRET": "relay-secret-0123456789",
                "SIDECAR_NOTIFY_SECRET": "relay-secret-0123456789",
            },
            "SIDECAR_NOTIFY_SECRET",
        ),
        (
            {
                "SIDECAR_SHARED_SECRET": "relay-secret-0123456789",
                "SIDECAR_NOTIFY_SECRET": "relay-secret-0123456789",
            },
            "SIDECAR_NOTIFY_SECRET",
        ),
    ],
)
def test_a_bad_value_stops_the_start_naming_its_variable(env, name):
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert name in str(err.value)
    assert "pw" not in str(err.value)


def test_a_boolean_is_no_count_and_a_pacs_table_must_be_listed(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[qido]\npage_size = true\n")
    with pytest.raises(SettingsError, match="SIDECAR_PAGE_SIZE"):
        load_settings({"SIDECAR_CONFIG": str(config)})
    config.write_text('[pacs.mian]\nurl = "http://x:1/dicom-web"\n')
    with pytest.raises(SettingsError, match=r"\[pacs.mian\]"):
        load_settings({"SIDECAR_CONFIG": str(config), "SIDECAR_PACS": "main"})


# -- issue 17: own sources, unknown names stop the start, a file for every secret ----------------


def test_an_unknown_sidecar_variable_stops_the_start_naming_it():
    with pytest.raises(SettingsError, match="^SIDECAR_PACS_MAIN_TIMEZONEE: unknown"):
        load_settings({"SIDECAR_PACS_MAIN_TIMEZONEE": "UTC"})
    with pytest.raises(SettingsError, match="^SIDECAR_PACS_THIRD_URL: unknown"):
        load_settings({"SIDECAR_PACS_THIRD_URL": "http://p/dw"})  # not in SIDECAR_PACS


def test_every_secret_may_come_from_a_file(tmp_path):
    relay = tmp_path / "relay"
    relay.write_text("relay-secret-0123456789\n")
    password = tmp_path / "pw"
    password.write_text("pacs-pa55")
    s = load_settings(
        {
            "SIDECAR_RELAY_SECRET_FILE": str(relay),
            "SIDECAR_PACS_MAIN_USERNAME": "orthanc",
            "SIDECAR_PACS_MAIN_PASSWORD_FILE": str(password),
        }
    )
    assert [v.get_secret_value() for v in s.relay_secret] == ["relay-secret-0123456789"]
    assert s.pacs["main"].auth.password.get_secret_value() == "pacs-pa55"
    with pytest.raises(SettingsError, match="set one of them"):
        load_settings(
            {
                "SIDECAR_RELAY_SECRET": "relay-secret-0123456789",
                "SIDECAR_RELAY_SECRET_FILE": str(relay),
            }
        )
    with pytest.raises(SettingsError, match="^SIDECAR_NOTIFY_SECRET_FILE: cannot read"):
        load_settings({"SIDECAR_NOTIFY_SECRET_FILE": str(tmp_path / "missing")})
    with pytest.raises(SettingsError, match="unknown"):  # not a secret: no _FILE form
        load_settings({"SIDECAR_FHIR_BASE_URL_FILE": str(relay)})


@pytest.mark.parametrize("value", ["a", "short-secret", "change-me-change-me-123", "x" * 15])
def test_a_short_or_placeholder_secret_is_refused(value):
    with pytest.raises(SettingsError, match="^SIDECAR_RELAY_SECRET"):
        load_settings({"SIDECAR_RELAY_SECRET": value})


def test_the_notify_secret_may_not_be_a_bearer_token():
    with pytest.raises(SettingsError, match="SIDECAR_NOTIFY_SECRET must differ"):
        load_settings(
            {
                "SIDECAR_NOTIFY_SECRET": "notify-secret-0123456789",
                "SIDECAR_BEARER_TOKENS": "notify-secret-0123456789",
            }
        )


def test_the_change_feed_is_chosen_by_a_typed_setting():
    from sidecar.settings import NoChangeFeed, OrthancChangeLog, QidoPoll

    assert isinstance(load_settings({}).pacs["main"].changes, QidoPoll)
    orthanc = (
        load_settings(
            {"SIDECAR_PACS_MAIN_CHANGES": "orthanc", "SIDECAR_PACS_MAIN_ORTHANC_URL": "http://o:1/"}
        )
        .pacs["main"]
        .changes
    )
    assert isinstance(orthanc, OrthancChangeLog) and orthanc.url == "http://o:1"
    assert isinstance(
        load_settings({"SIDECAR_PACS_MAIN_CHANGES": "none"}).pacs["main"].changes, NoChangeFeed
    )
    with pytest.raises(SettingsError, match="^SIDECAR_PACS_MAIN_ORTHANC_URL"):
        load_settings({"SIDECAR_PACS_MAIN_CHANGES": "orthanc"})
