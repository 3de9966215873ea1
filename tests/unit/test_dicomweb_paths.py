"""The gateway's path rules: a DICOMweb resource, rebuilt from validated parts, or nothing."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from sidecar.core.dicomweb_paths import NotAResource, parse, render_query, search_query
from sidecar.core.outcome import BadRequest

S, SE, IN = "1.2.3", "1.2.3.4", "1.2.3.4.5"


@pytest.mark.parametrize(
    ("path", "rebuilt", "search", "level", "whole"),
    [
        ("studies", "studies", True, "study", False),
        (f"studies/{S}", f"studies/{S}", False, "study", True),
        (f"studies/{S}/metadata", f"studies/{S}/metadata", False, "study", True),
        (f"studies/{S}/rendered", f"studies/{S}/rendered", False, "study", True),
        (f"studies/{S}/series", f"studies/{S}/series", True, "series", False),
        (f"studies/{S}/instances", f"studies/{S}/instances", True, "instance", False),
        (f"studies/{S}/series/{SE}", f"studies/{S}/series/{SE}", False, "series", True),
        (
            f"studies/{S}/series/{SE}/thumbnail",
            f"studies/{S}/series/{SE}/thumbnail",
            False,
            "series",
            True,
        ),
        (
            f"studies/{S}/series/{SE}/instances",
            f"studies/{S}/series/{SE}/instances",
            True,
            "instance",
            False,
        ),
        (
            f"studies/{S}/series/{SE}/instances/{IN}",
            f"studies/{S}/series/{SE}/instances/{IN}",
            False,
            "instance",
            False,
        ),
        (
            f"studies/{S}/series/{SE}/instances/{IN}/frames/1,3/rendered",
            f"studies/{S}/series/{SE}/instances/{IN}/frames/1,3/rendered",
            False,
            "frames",
            False,
        ),
        (
            f"studies/{S}/series/{SE}/instances/{IN}/bulk/7fe00010",
            f"studies/{S}/series/{SE}/instances/{IN}/bulk/7fe00010",
            False,
            "bulk",
            False,
        ),
        (
            f"studies/{S}/series/{SE}/instances/{IN}/bulk/00540016/0/00181072",
            f"studies/{S}/series/{SE}/instances/{IN}/bulk/00540016/0/00181072",
            False,
            "bulk",
            False,
        ),
        ("series", "series", True, "series", False),
        ("instances", "instances", True, "instance", False),
        (f"studies/{S}/", f"studies/{S}", False, "study", True),
    ],
)
def test_each_resource_of_ps3_18_is_named_and_rebuilt(path, rebuilt, search, level, whole):
    target = parse(path)
    assert (target.path, target.search, target.level, target.whole) == (
        rebuilt,
        search,
        level,
        whole,
    )


@pytest.mark.parametrize(
    "path",
    [
        "",
        "studies/../patients",
        f"studies/{S}/../{S}",
        f"studies/{S}/series/..",
        f"studies/{S}//series",
        "studies/1.2.x",
        "studies/01.2",  # a UID component with a leading zero (PS3.5 9.1)
        f"studies/{S}/series/{SE}/instances/{IN}/frames/0",
        f"studies/{S}/series/{SE}/instances/{IN}/frames/1/pixeldata",
        f"studies/{S}/series/{SE}/instances/{IN}/bulk/7fe0001",
        f"studies/{S}/series/{SE}/instances/{IN}/bulk/7fe00010/x",
        f"studies/{S}/series/{SE}/instances/{IN}/bulk",
        "tools/find",  # Orthanc's REST API is not DICOMweb
        f"studies/{S}/series/{SE}/thumbnail/extra",
        "patients",
    ],
)
def test_anything_else_is_no_resource(path):
    with pytest.raises(NotAResource):
        parse(path)


def test_a_search_keeps_attributes_and_parameters_and_caps_the_limit():
    query = search_query("PatientID=12*&00080060=CT&includefield=00081030&limit=99999&offset=5")
    assert query == (
        "PatientID=12*&00080060=CT&includefield=00081030&limit=1000&offset=5"
        "&includefield=00100020&includefield=00100021"
    )
    assert "&limit=1000&" in search_query("StudyDate=20200101-")
    with pytest.raises(NotAResource):
        search_query("orthanc.query=1")


@pytest.mark.parametrize(
    "limit", ["0", "00", "\u00b2", "\u0661\u0662", "-1", "1e3", " 5", "", "99999999999999999999"]
)
def test_a_limit_that_is_not_a_positive_ascii_number_is_the_cap(limit):
    """``limit=0`` is "no limit" to Orthanc (the cap would be gone); ``²`` passes
    ``str.isdigit`` and failed ``int()`` as an unhandled 500."""
    assert search_query(f"limit={quote(limit)}").startswith("limit=1000&")
    assert search_query("limit=7").startswith("limit=7&")


@pytest.mark.parametrize("offset", ["-5", "\u00b2", "1e3", "", "x", "1234567890123"])
def test_an_offset_that_is_not_an_ascii_number_is_no_query(offset):
    with pytest.raises(NotAResource):
        search_query(f"offset={quote(offset)}")
    assert search_query("offset=40").startswith("offset=40&")


def test_a_rendering_keeps_its_own_parameters_only():
    assert (
        render_query("window=40,400,linear&viewport=64,64&x=1")
        == "window=40,400,linear&viewport=64,64"
    )


@pytest.mark.parametrize(
    "query",
    [
        "viewport=99999,99999",  # one such request segfaulted Orthanc 1.10 (the whole PACS)
        "viewport=4097,64",
        "viewport=0,64",
        "viewport=64",
        "viewport=64,64,a,b,c,d",
        "quality=0",
        "quality=101",
        "quality=%C2%B2",
        "window=a,1,linear",
        "window=40,400,cubic",
        "window=40,nan,linear",
        "annotation=name",
        "iccprofile=evil",
    ],
)
def test_a_rendering_parameter_out_of_its_ps3_18_range_is_a_400(query):
    with pytest.raises(BadRequest):
        render_query(query)


def test_a_rendering_parameter_in_its_range_is_passed_on():
    query = (
        "viewport=4096,4096&quality=100&window=-40.5,400,sigmoid"
        "&annotation=patient,technique&iccprofile=srgb"
    )
    assert render_query(query) == query
    assert render_query("viewport=512,512,0,0,-64,64") == "viewport=512,512,0,0,-64,64"
