"""Patient isolation rules of sidecar.core.qido, tabled."""

from datetime import date

import pytest

from sidecar.core import qido
from sidecar.core.qido import StudyCriteria


@pytest.mark.parametrize(
    "value",
    ["", "   ", None, "12*", "1?3", "A\\B", "12,123", "*", "a\tb", "x" * 65, "ü", "  ^  "],
)
def test_refused_values(value):
    with pytest.raises(qido.RefusedValue):
        qido.check_match_value(value)


@pytest.mark.parametrize(
    ("value", "accepted", "sent"),
    [
        ("12", "12", "12"),
        (" 12 ", "12", "12"),  # LO padding is not part of the value
        ("abc", "abc", "abc"),
        ("P-SAME", "P-SAME", "P-SAME"),
        ("1.2_3~x", "1.2_3~x", "1.2_3~x"),
        ("A B", "A B", "A?B"),  # would be percent-encoded: wildcard instead
        ("A^B", "A^B", "A?B"),
        ("a%41", "a%41", "a?41"),
        ("A&B=C", "A&B=C", "A?B?C"),
        ("A+B", "A+B", "A?B"),  # '+' is a space to form decoders
        ("Müller", "Müller", "M*ller"),
        ("Zoë Ø", "Zoë Ø", "Zo*?*"),
    ],
)
def test_accepted_values_are_sent_without_percent_encoding(value, accepted, sent):
    assert qido.check_match_value(value) == accepted
    assert qido.qido_value(accepted) == sent
    assert all(c.isascii() and (c.isalnum() or c in "-._~*?") for c in sent)


def record(pid, issuer=None, uid="1.2.3", **more):
    out = {
        qido.PATIENT_ID: {"vr": "LO", "Value": [pid]},
        qido.STUDY_INSTANCE_UID: {"vr": "UI", "Value": [uid]},
    }
    if issuer is not None:
        out[qido.ISSUER_OF_PATIENT_ID] = {"vr": "LO", "Value": [issuer]}
    out.update(more)
    return out


@pytest.mark.parametrize(
    ("rec", "pid", "issuer", "expected"),
    [
        (record("12"), "12", None, True),
        (record("123"), "12", None, False),
        (record("12*"), "12", None, False),
        (record("ABC"), "abc", None, False),
        (record("abc"), "abc", None, True),
        (record("P-SAME", "HOSP-A"), "P-SAME", "HOSP-A", True),
        (record("P-SAME", "HOSP-B"), "P-SAME", "HOSP-A", False),
        (record("P-SAME"), "P-SAME", "HOSP-A", False),
        (record("P-SAME", "HOSP-B"), "P-SAME", None, True),  # no issuer configured
        (record("A B"), "A B", None, True),
        (record("AxB"), "A B", None, False),
        ({qido.STUDY_INSTANCE_UID: {"vr": "UI", "Value": ["1.2"]}}, "12", None, False),
    ],
)
def test_exact_patient_check(rec, pid, issuer, expected):
    assert qido.is_exact_patient(rec, pid, issuer) is expected


def test_study_filters_and_query_string():
    criteria = StudyCriteria(
        modalities=frozenset({"CT"}),
        study_date_ge=date(2020, 1, 1),
        study_date_le=date(2020, 12, 31),
        accession="ACC 1",
        study_instance_uid="1.2.3",
    )
    filters = qido.study_filters("P 1", "HOSP-A", criteria)
    query = qido.query_string(filters, fields=("00081030",), limit=100, offset=200)
    assert query == (
        "00100020=P?1&00100021=HOSP-A&00080020=20200101-20201231&00080050=ACC?1"
        "&0020000D=1.2.3&00080061=CT&includefield=00081030&limit=100&offset=200"
    )


def test_study_filters_refuse_wildcards():
    with pytest.raises(qido.RefusedValue):
        qido.study_filters("12*", None, StudyCriteria())
    with pytest.raises(qido.RefusedValue):
        qido.study_filters("12", "HOSP*", StudyCriteria())


@pytest.mark.parametrize(
    ("ge", "le", "expected"),
    [
        (None, None, None),
        (date(2020, 1, 2), None, "20200102-"),
        (None, date(2020, 1, 2), "-20200102"),
        (date(2020, 1, 2), date(2020, 1, 2), "20200102"),
        (date(2020, 1, 2), date(2021, 3, 4), "20200102-20210304"),
    ],
)
def test_dicom_date_range(ge, le, expected):
    assert qido.dicom_date_range(ge, le) == expected


def test_criteria_are_checked_exactly():
    rec = record(
        "12",
        **{
            qido.STUDY_DATE: {"vr": "DA", "Value": ["20200615"]},
            qido.ACCESSION_NUMBER: {"vr": "SH", "Value": ["A1"]},
            qido.MODALITIES_IN_STUDY: {"vr": "CS", "Value": ["CT", "SR"]},
        },
    )
    assert qido.matches_criteria(rec, StudyCriteria())
    assert qido.matches_criteria(rec, StudyCriteria(modalities=frozenset({"MR", "SR"})))
    assert not qido.matches_criteria(rec, StudyCriteria(modalities=frozenset({"MR"})))
    assert not qido.matches_criteria(rec, StudyCriteria(accession="a1"))
    assert qido.matches_criteria(rec, StudyCriteria(study_date_ge=date(2020, 6, 15)))
    assert not qido.matches_criteria(rec, StudyCriteria(study_date_le=date(2020, 6, 14)))
    assert not qido.matches_criteria(rec, StudyCriteria(study_instance_uid="1.2.4"))
    bad_date = record("12", **{qido.STUDY_DATE: {"vr": "DA", "Value": ["20200230"]}})
    assert not qido.matches_criteria(bad_date, StudyCriteria(study_date_ge=date(2020, 1, 1)))
    assert not qido.matches_criteria(record("12", uid="not-a-uid"), StudyCriteria())
