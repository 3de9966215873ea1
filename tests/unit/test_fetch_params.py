"""$fetch-imaging parameter parsing: query string and Parameters resource."""

from datetime import date

import pytest

from sidecar.core.fetch_params import date_bounds, parse_fetch_parameters
from sidecar.core.mapping import Detail
from sidecar.core.outcome import BadRequest
from sidecar.core.parameters_body import parameters_from_resource


def test_defaults_at_instance_level():
    req = parse_fetch_parameters([], patient_id="p1")
    assert req.patient_id == "p1" and req.identifier is None
    assert req.detail is Detail.INSTANCE and req.persist is True
    assert req.criteria.is_complete


def test_all_parameters():
    req = parse_fetch_parameters(
        [
            ("modality", "CT,MR"),
            ("modality", "http://dicom.nema.org/resources/ontology/DCM|US"),
            ("studyDate", "ge2020-01"),
            ("studyDate", "le2020-03-15"),
            ("accession", "ACC-1"),
            ("studyInstanceUid", "urn:oid:1.2.3"),
            ("detail", "series"),
            ("persist", "false"),
            ("_format", "json"),
        ],
        patient_id="p1",
    )
    assert req.modalities == {"CT", "MR", "US"}
    assert (req.study_date_ge, req.study_date_le) == (date(2020, 1, 1), date(2020, 3, 15))
    assert req.accession == "ACC-1" and req.study_instance_uid == "1.2.3"
    assert req.detail is Detail.SERIES and req.persist is False
    assert not req.criteria.is_complete


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["2020"], (date(2020, 1, 1), date(2020, 12, 31))),
        (["eq2020-02"], (date(2020, 2, 1), date(2020, 2, 29))),
        (["gt2020-02-28"], (date(2020, 2, 29), None)),
        (["lt2020-03"], (None, date(2020, 2, 29))),
        (["ge2019", "le2020-06-30"], (date(2019, 1, 1), date(2020, 6, 30))),
        (["ge2019", "ge2020"], (date(2020, 1, 1), None)),
        (["ge2020-01-01T10:00:00+01:00"], (date(2020, 1, 1), None)),
    ],
)
def test_study_date_prefixes(values, expected):
    assert date_bounds(values) == expected


@pytest.mark.parametrize(
    "pairs",
    [
        [("studyDate", "ne2020")],
        [("studyDate", "2020-13-01")],
        [("studyDate", "ge2021"), ("studyDate", "le2020")],
        [("studyDate", "2020,2021")],
        [("modality", "ct")],
        [("modality", "http://loinc.org|CT")],
        [("accession", "A*")],
        [("studyInstanceUid", "1.2.03")],
        [("detail", "frames")],
        [("persist", "yes")],
        [("unknown", "x")],
        [("detail", "study"), ("detail", "series")],
        [("identifier", "sys|1")],  # both a Patient id and an identifier
    ],
)
def test_bad_parameters_are_400(pairs):
    with pytest.raises(BadRequest) as err:
        parse_fetch_parameters(pairs, patient_id="p1")
    assert err.value.status == 400
    assert err.value.outcome()["issue"][0]["code"] == "invalid"


def test_type_level_identifier():
    req = parse_fetch_parameters([("identifier", "urn:x:mrn|12")])
    assert req.identifier == ("urn:x:mrn", "12") and req.patient_id is None
    assert parse_fetch_parameters([("identifier", "12")]).identifier == (None, "12")
    with pytest.raises(BadRequest):
        parse_fetch_parameters([])
    with pytest.raises(BadRequest):
        parse_fetch_parameters([("identifier", "urn:x|")])


def test_parameters_resource():
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "identifier", "valueIdentifier": {"system": "urn:x", "value": "12"}},
            {"name": "modality", "valueCoding": {"code": "CT"}},
            {"name": "studyDate", "valueString": "ge2020"},
            {"name": "persist", "valueBoolean": False},
        ],
    }
    pairs = parameters_from_resource(body)
    assert pairs == [
        ("identifier", "urn:x|12"),
        ("modality", "CT"),
        ("studyDate", "ge2020"),
        ("persist", "false"),
    ]
    req = parse_fetch_parameters(pairs)
    assert req.identifier == ("urn:x", "12") and not req.persist
    with pytest.raises(BadRequest):
        parameters_from_resource({"resourceType": "Patient"})


@pytest.mark.parametrize(
    "value",
    [
        "urn:x|12\x01",
        "urn:x|12\t",
        "urn:x|12\n",
        "urn:x|12,",
        "urn:x|NOPE,12",
        "urn:x| 12",
        "urn:x|12 ",
        "urn:x|1\\2",
        "urn:x|1$2",
        "urn:x|a|b",
        "urn x|12",
        "urn:x\x00|12",
        " urn:x|12",
    ],
)
def test_an_identifier_that_a_search_could_read_loosely_is_400(value):
    with pytest.raises(BadRequest) as err:
        parse_fetch_parameters([("identifier", value)])
    assert err.value.status == 400


def test_identifier_without_system_and_with_an_empty_system():
    assert parse_fetch_parameters([("identifier", "12")]).identifier == (None, "12")
    assert parse_fetch_parameters([("identifier", "|12")]).identifier == ("", "12")


@pytest.mark.parametrize(
    "text",
    [
        "lt0001",
        "lt0001-01-01",
        "gt9999-12-31",
        "gt9999",
        "0000-01-01",
        "2021-02-30",
        "2021-13",
        "2020-01-01T25:00",
        "2020-01-01T10:61",
        "2020-01-01T10:00+24:00",
        "ge2020-1-1",
        "2020-01-01T",
        "ge2020 ",
    ],
)
def test_dates_out_of_range_or_unreal_are_400(text):
    with pytest.raises(BadRequest):
        date_bounds([text])


def test_real_date_times_are_accepted():
    assert date_bounds(["ge2020-01-01T10:00:00Z", "le2020-01-31T23:59:59.999+01:00"]) == (
        date(2020, 1, 1),
        date(2020, 1, 31),
    )
    assert date_bounds(["gt9999-12-30"]) == (date(9999, 12, 31), None)


def test_too_many_parameters_are_400():
    with pytest.raises(BadRequest, match="more than"):
        parse_fetch_parameters([("modality", "CT")] * 51, patient_id="p1")
