"""``$fetch-imaging`` parameters -> FetchRequest: one meaning for every encoding.

The query string, an ``application/x-www-form-urlencoded`` body and a ``Parameters`` body
(:mod:`sidecar.core.parameters_body`) all arrive here as (name, value) pairs; every value is
checked and a bad one is a 400 OperationOutcome naming the parameter.

| name | card. | type | meaning |
|---|---|---|---|
| identifier | 0..1 | token ``system|value`` | type level: the Patient with this identifier |
| patient | 0..1 | reference | type level alternative: ``Patient/<id>`` or ``<id>`` |
| modality | 0..* | token (``CT`` or ``DCM-system|CT``; commas = OR) | ModalitiesInStudy |
| studyDate | 0..2 | date with prefix eq/ge/gt/le/lt | StudyDate range (AND) |
| accession | 0..1 | token | AccessionNumber, exact |
| studyInstanceUid | 0..1 | uid (``urn:oid:`` optional) | one study |
| detail | 0..1 | code study/series/instance | how deep the ImagingStudy goes (default instance) |
| persist | 0..1 | boolean | false: answer without writing |
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from datetime import date, timedelta

from sidecar.core import qido
from sidecar.core.fetch_request import FetchRequest
from sidecar.core.fhir_values import is_fhir_id
from sidecar.core.mapping import Detail
from sidecar.core.outcome import BadRequest

DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
KNOWN = {
    "identifier",
    "patient",
    "modality",
    "studyDate",
    "accession",
    "studyInstanceUid",
    "detail",
    "persist",
}
_SINGLE = KNOWN - {"modality", "studyDate"}
MAX_PAIRS = 50
# FHIR date search values (R4 search, date): [prefix]YYYY[-MM[-DD[Thh:mm[:ss[.f]][zone]]]]
_DATE = re.compile(
    r"^(ge|gt|le|lt|eq)?(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d)(?:\.\d{1,9})?)?(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?)?"
    r")?)?$"
)
#: Characters a caller's identifier value may not carry: FHIR search syntax (R4 search,
#: escaping: , | \ $) and control characters (a server may silently drop them).
_IDENTIFIER_SYNTAX = re.compile(r"[,|\\$\x00-\x1f\x7f]")


def parse_fetch_parameters(
    pairs: Iterable[tuple[str, str]], *, patient_id: str | None = None
) -> FetchRequest:
    """Validate the parameters; raises BadRequest (400) naming the offending parameter."""
    values: dict[str, list[str]] = {}
    pairs = list(pairs)
    if len(pairs) > MAX_PAIRS:
        raise BadRequest(f"more than {MAX_PAIRS} parameters")
    # a caller's text is never quoted back: it may be an MRN, and refusals are logged
    for position, (name, value) in enumerate(pairs, start=1):
        if name.startswith("_"):
            continue  # _format, _pretty and friends
        if name not in KNOWN:
            raise BadRequest(
                f"parameter {position} is not a parameter of $fetch-imaging "
                f"(known: {', '.join(sorted(KNOWN))})"
            )
        values.setdefault(name, []).append(value)
    for name in _SINGLE & values.keys():
        if len(values[name]) > 1:
            raise BadRequest(f"parameter {name!r} may be given once")
    one = {k: v[0] for k, v in values.items() if k in _SINGLE}

    identifier = None
    if "patient" in one:
        ref = one["patient"].removeprefix("Patient/")
        if not is_fhir_id(ref):
            raise BadRequest("patient: not a Patient reference (Patient/<id>)")
        if patient_id is not None and ref != patient_id:
            raise BadRequest("patient: differs from the Patient in the URL")
        patient_id = ref
    if "identifier" in one:
        identifier = _identifier(one["identifier"])
    if patient_id is not None and identifier is not None:
        raise BadRequest("give either a Patient (URL or patient) or identifier, not both")
    if patient_id is None and identifier is None:
        raise BadRequest("identifier is required at type level (Patient/$fetch-imaging)")
    if patient_id is not None and not is_fhir_id(patient_id):
        raise BadRequest("the Patient id is not a FHIR id ([A-Za-z0-9-.]{1,64})")

    ge, le = date_bounds(values.get("studyDate", []))
    accession = None
    if "accession" in one:
        accession = _refuse_syntax(one["accession"].rpartition("|")[2], "accession")
    uid = None
    if "studyInstanceUid" in one:
        uid = one["studyInstanceUid"].strip().removeprefix("urn:oid:")
        if not qido.is_uid(uid):
            raise BadRequest("studyInstanceUid: not a DICOM UID (PS3.5 9.1)")
    return FetchRequest(
        patient_id=patient_id,
        identifier=identifier,
        modalities=_modalities(values.get("modality", [])),
        study_date_ge=ge,
        study_date_le=le,
        accession=accession,
        study_instance_uid=uid,
        detail=_detail(one.get("detail")),
        persist=_boolean(one.get("persist"), "persist", default=True),
    )


def date_bounds(texts: Iterable[str]) -> tuple[date | None, date | None]:
    """Intersect FHIR date search values (prefixes eq, ge, gt, le, lt) into [ge, le]."""
    ge: date | None = None
    le: date | None = None
    for text in texts:
        for part in text.split(","):
            if "," in text:
                raise BadRequest("studyDate: a list of dates (OR) is not supported; repeat for AND")
            match = _DATE.fullmatch(part)
            if not match:
                raise BadRequest("studyDate: a value is not [eq|ge|gt|le|lt]YYYY[-MM[-DD]]")
            prefix, year, month, day = match.group(1) or "eq", *match.group(2, 3, 4)
            try:
                first, last = _period(int(year), month, day)
                low = {"eq": first, "ge": first, "gt": last + timedelta(days=1)}.get(prefix)
                high = {"eq": last, "le": last, "lt": first - timedelta(days=1)}.get(prefix)
            except (ValueError, OverflowError):  # 2021-02-30, year 0, gt9999-12-31, lt0001
                raise BadRequest(
                    "studyDate: a value is not a date in years 1-9999 or leaves none"
                ) from None
            if low is not None:
                ge = low if ge is None else max(ge, low)
            if high is not None:
                le = high if le is None else min(le, high)
    if ge and le and ge > le:
        raise BadRequest("studyDate: the range is empty (lower bound after upper bound)")
    return ge, le


def _period(year: int, month: str | None, day: str | None) -> tuple[date, date]:
    if month is None:
        return date(year, 1, 1), date(year, 12, 31)
    m = int(month)
    if day is None:
        return date(year, m, 1), date(year, m, calendar.monthrange(year, m)[1])
    d = date(year, m, int(day))
    return d, d


def _identifier(text: str) -> tuple[str | None, str]:
    """``system|value`` (``|value``: no system; ``value``: any system), checked exactly.

    Refused with 400: control characters, leading or trailing white space, FHIR search
    syntax in the value (``,`` ``|`` ``\\`` ``$``); nothing is passed on loosely.
    """
    system, bar, value = text.partition("|")
    if not bar:
        system, value = None, text  # type: ignore[assignment]
    if not value:
        raise BadRequest("identifier: the value is empty")
    if _IDENTIFIER_SYNTAX.search(value):
        raise BadRequest(
            "identifier: the value may not contain control characters or search syntax (, | \\ $)"
        )
    if value != value.strip() or (system and system != system.strip()):
        raise BadRequest("identifier: leading or trailing white space is not allowed")
    if system and (_IDENTIFIER_SYNTAX.search(system) or " " in system):
        raise BadRequest("identifier: the system must be a URI without spaces or search syntax")
    return system, value


def _refuse_syntax(value: str, what: str) -> str:
    try:
        return qido.check_match_value(value, what=what)
    except qido.RefusedValue as exc:
        raise BadRequest(str(exc)) from None


def _modalities(texts: Iterable[str]) -> frozenset[str]:
    codes = set()
    for text in texts:
        for token in text.split(","):
            system, _, code = token.strip().rpartition("|")
            if system and system != DCM_SYSTEM:
                raise BadRequest(f"modality: system must be {DCM_SYSTEM}")
            if not qido.is_modality(code):
                raise BadRequest("modality: a code is not a DICOM modality (CS, PS3.3 C.7.3.1.1.1)")
            codes.add(code)
    return frozenset(codes)


def _detail(text: str | None) -> Detail:
    if text is None:
        return Detail.INSTANCE
    try:
        return Detail(text)
    except ValueError:
        raise BadRequest("detail: must be study, series or instance") from None


def _boolean(text: str | None, name: str, *, default: bool) -> bool:
    if text is None:
        return default
    if text in ("true", "false"):
        return text == "true"
    raise BadRequest(f"{name}: must be true or false")
