"""Property-based tests: random and edge-case DICOM JSON never crashes the mapping, the
output is valid R4, and whatever was dropped is reported as a warning."""

from __future__ import annotations

import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.core.mapping import Detail, map_studies, validate_r4
from sidecar.core.mapping.values import parse_uid

SUBJECT = {"reference": "Patient/p"}

good_uid = st.builds(
    lambda parts: ".".join(str(p) for p in parts),
    st.lists(st.integers(0, 10**6), min_size=2, max_size=8),
)
bad_uid = st.one_of(
    st.just("1." + "9" * 70),
    st.text(min_size=1, max_size=12),
    st.just("1..2"),
    st.just(""),
)
uid = st.one_of(good_uid, good_uid, bad_uid)
junk = st.one_of(
    st.none(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.text(max_size=5), max_size=3),
)
da = st.one_of(
    st.just("20240229"),
    st.just("20230229"),
    st.from_regex(r"\d{8}", fullmatch=True),
    st.text(max_size=10),
)
tm = st.one_of(
    st.just("235959.999999"),
    st.from_regex(r"\d{2,6}(\.\d{1,8})?", fullmatch=True),
    st.text(max_size=8),
)
number = st.one_of(
    st.integers(-5, 10**10), st.from_regex(r"[+-]?\d{1,12}", fullmatch=True), st.text(max_size=6)
)
text = st.text(max_size=30)
pn = st.one_of(
    st.builds(lambda a: {"Alphabetic": a}, text),
    st.builds(lambda a, i: {"Alphabetic": a, "Ideographic": i}, text, text),
    text,
)

SPEC = {
    "0020000D": ("UI", uid),
    "0020000E": ("UI", uid),
    "00080018": ("UI", uid),
    "00080016": ("UI", st.one_of(st.just("1.2.840.10008.5.1.4.1.1.2"), uid)),
    "00080060": ("CS", st.one_of(st.sampled_from(["CT", "MR", "SR", "US"]), text)),
    "00080061": ("CS", st.sampled_from(["CT", "MR", "OT"])),
    "00200011": ("IS", number),
    "00200013": ("IS", number),
    "00201206": ("IS", number),
    "00201208": ("IS", number),
    "00201209": ("IS", number),
    "00080020": ("DA", da),
    "00080030": ("TM", tm),
    "00080021": ("DA", da),
    "00080031": ("TM", tm),
    "00080201": ("SH", st.one_of(st.sampled_from(["+0100", "-0500", "+1500"]), text)),
    "00081030": ("LO", text),
    "0008103E": ("LO", text),
    "00080050": ("SH", text),
    "00180015": ("CS", st.one_of(st.sampled_from(["CHEST", "KNEE", "XYZ"]), text)),
    "00200060": ("CS", st.sampled_from(["R", "L", "U", "B", "Q"])),
    "00200062": ("CS", st.sampled_from(["R", "L", "U", "B"])),
    "00080090": ("PN", pn),
    "00081060": ("PN", pn),
    "00081050": ("PN", pn),
    "00401002": ("LO", text),
    "00420010": ("ST", text),
    "00100020": ("LO", text),
}


@st.composite
def element(draw, key):
    vr, values = SPEC[key]
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(junk)  # not even an element object
    if shape == 1:
        return {"vr": draw(st.sampled_from(["SQ", "UN", "LO", vr]))}  # no Value
    if shape == 2:
        return {"vr": vr, "Value": draw(st.lists(junk, max_size=3))}
    if shape == 3:
        return {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": [draw(text)]}}]}
    count = 2 if shape == 4 else 1  # multi-valued where single expected
    return {"vr": vr, "Value": [draw(values) for _ in range(count)]}


@st.composite
def dicom_json(draw):
    keys = draw(st.lists(st.sampled_from(sorted(SPEC)), unique=True, max_size=len(SPEC)))
    return {k: draw(element(k)) for k in keys}


@st.composite
def records(draw):
    # share a few UIDs so that merges happen
    studies = draw(st.lists(good_uid, min_size=1, max_size=2))
    out = []
    for _ in range(draw(st.integers(0, 6))):
        rec = draw(dicom_json())
        if draw(st.booleans()):
            rec["0020000D"] = {"vr": "UI", "Value": [draw(st.sampled_from(studies))]}
        out.append(rec)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records(), st.sampled_from(list(Detail)), st.sampled_from([None, "Europe/Zurich"]))
def test_random_dicom_json_never_crashes_and_output_is_valid_r4(recs, detail, zone):
    result = map_studies(recs, subject=SUBJECT, timezone=zone, detail=detail)
    for study in result.studies:
        validate_r4(study)
        json.dumps(study, ensure_ascii=False).encode("utf-8")
    for issue in result.issues:
        assert issue["severity"] == "warning" and issue["diagnostics"]
    # every record whose StudyInstanceUID is not usable is reported
    unusable = 0
    for rec in recs:
        element = rec.get("0020000D")
        values = element.get("Value") if isinstance(element, dict) else None
        if not (isinstance(values, list) and len(values) == 1 and parse_uid(values[0])):
            unusable += 1
    if unusable:
        assert any("StudyInstanceUID (0020,000D)" in i["diagnostics"] for i in result.issues)
    # each study in the output came from a record with that valid UID
    assert len(result.studies) <= len(recs) - unusable or not recs


@settings(max_examples=60, deadline=None)
@given(records(), st.randoms(use_true_random=False))
def test_any_order_same_bytes(recs, rnd: random.Random):
    def run(rs):
        r = map_studies(rs, subject=SUBJECT, timezone="Europe/Zurich")
        return json.dumps([r.studies, r.issues], sort_keys=True)

    shuffled = list(recs)
    rnd.shuffle(shuffled)
    assert run(recs) == run(shuffled)


@settings(max_examples=80, deadline=None)
@given(st.lists(good_uid, min_size=1, max_size=5, unique=True))
def test_valid_series_without_modality_is_reported(series_uids):
    recs = [
        {"0020000D": {"vr": "UI", "Value": ["1.2.3"]}, "0020000E": {"vr": "UI", "Value": [u]}}
        for u in series_uids
    ]
    result = map_studies(recs, subject=SUBJECT)
    text = "\n".join(i["diagnostics"] for i in result.issues)
    for u in series_uids:
        assert f"series {u}: series skipped, missing Modality (0008,0060)" in text
