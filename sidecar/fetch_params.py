"""``$fetch-imaging`` parameters (query string or a Parameters resource) -> FetchRequest.

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
from typing import Any

from sidecar import qido
from sidecar.fetch_imaging import FetchRequest
from sidecar.fhir_values import is_fhir_id
from sidecar.mapping import Detail
from sidecar.outcome import BadRequest

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
_DATE = re.compile(
    r"^(ge|gt|le|lt|eq)?(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(T[0-9:.]+(Z|[+-]\d{2}:\d{2})?)?$"
)


def parameters_from_resource(body: dict[str, Any]) -> list[tuple[str, str]]:
    """Flatten an R4 Parameters resource into (name, value) pairs."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("the request body must be a FHIR Parameters resource")
    pairs: list[tuple[str, str]] = []
    for param in body.get("parameter") or []:
        name = param.get("name")
        if not isinstance(name, str):
            raise BadRequest("a Parameters.parameter has no name")
        if "valueIdentifier" in param:
            ident = param["valueIdentifier"] or {}
            system, value = ident.get("system"), ident.get("value")
            pairs.append((name, f"{system}|{value}" if system else str(value or "")))
        elif "valueReference" in param:
            pairs.append((name, str((param["valueReference"] or {}).get("reference", ""))))
        elif "valueCoding" in param:
            coding = param["valueCoding"] or {}
            system = coding.get("system")
            pairs.append((name, f"{system}|{coding.get('code')}" if system else coding.get("code")))
        else:
            values = [v for k, v in param.items() if k.startswith("value")]
            if len(values) != 1 or isinstance(values[0], (dict, list)):
                raise BadRequest(f"parameter {name!r} needs one primitive value")
            value = values[0]
            pairs.append(
                (name, ("true" if value else "false") if isinstance(value, bool) else str(value))
            )
    return pairs


def parse_fetch_parameters(
    pairs: Iterable[tuple[str, str]], *, patient_id: str | None = None
) -> FetchRequest:
    """Validate the parameters; raises BadRequest (400) naming the offending parameter."""
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        if name.startswith("_"):
            continue  # _format, _pretty and friends
        if name not in KNOWN:
            raise BadRequest(f"unknown parameter {name!r} (known: {', '.join(sorted(KNOWN))})")
        values.setdefault(name, []).append(value)
    for name in _SINGLE & values.keys():
        if len(values[name]) > 1:
            raise BadRequest(f"parameter {name!r} may be given once")
    one = {k: v[0] for k, v in values.items() if k in _SINGLE}

    identifier = None
    if "patient" in one:
        ref = one["patient"].removeprefix("Patient/")
        if not is_fhir_id(ref):
            raise BadRequest(f"patient: {one['patient']!r} is not a Patient reference")
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
        raise BadRequest(f"{patient_id!r} is not a valid Patient id")

    ge, le = date_bounds(values.get("studyDate", []))
    accession = None
    if "accession" in one:
        accession = _refuse_syntax(one["accession"].rpartition("|")[2], "accession")
    uid = None
    if "studyInstanceUid" in one:
        uid = one["studyInstanceUid"].strip().removeprefix("urn:oid:")
        if not qido.is_uid(uid):
            raise BadRequest(f"studyInstanceUid: {one['studyInstanceUid']!r} is not a DICOM UID")
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
            match = _DATE.match(part.strip())
            if not match:
                raise BadRequest(f"studyDate: {part!r} is not [eq|ge|gt|le|lt]YYYY[-MM[-DD]]")
            prefix, year, month, day = match.group(1) or "eq", *match.group(2, 3, 4)
            try:
                first, last = _period(int(year), month, day)
            except ValueError:
                raise BadRequest(f"studyDate: {part!r} is not a valid date") from None
            low = {"eq": first, "ge": first, "gt": last + timedelta(days=1)}.get(prefix)
            high = {"eq": last, "le": last, "lt": first - timedelta(days=1)}.get(prefix)
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
    system, bar, value = text.rpartition("|") if "|" in text else ("", "", text)
    if not bar:
        system = ""
    if not value.strip():
        raise BadRequest("identifier: the value is empty")
    return (system or None), value


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
                raise BadRequest(f"modality: {token!r} is not a DICOM modality code")
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
