"""Who the suite made up, remembered so that the suite's last test can look for them in every
log stream it left behind (issue 18: no identifier value, name or birth date in any log).

The identifier values of every Patient the tests send to the FHIR server through the shared
``fhir_http`` session are read back from the request body (:func:`remember_sent`, a
``requests`` response hook); the sample roster's PatientIDs are added by
:func:`roster_values`. Values shorter than :data:`MIN_CHARS` are left out: "12" occurs in
every timestamp, so finding it proves nothing. Names and birth dates are checked where they
are distinctive, by tests/integration/test_no_phi_in_logs.py with values of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import requests

MIN_CHARS = 4

#: when the session began: older files are not the suite's
STARTED = time.time()

#: the identifier values of the Patients the session sent (see :func:`remember_sent`)
SENT: set[str] = set()


def identifier_values(patient: dict[str, Any]) -> set[str]:
    """Patient.identifier.value (stripped: a padded copy contains the value)."""
    values = {i.get("value") for i in patient.get("identifier") or []}
    return {v.strip() for v in values if isinstance(v, str) and len(v.strip()) >= MIN_CHARS}


def patient_values(patient: dict[str, Any]) -> set[str]:
    """Patient.identifier.value, every Patient.name part and Patient.birthDate, in both the
    FHIR (1913-05-17) and the DICOM DA (19130517, PS3.5 6.2) form of the date."""
    values = {i.get("value") for i in patient.get("identifier") or []}
    for name in patient.get("name") or []:
        values |= {name.get("family"), name.get("text"), *(name.get("given") or [])}
    birth = patient.get("birthDate")
    if birth:
        values |= {birth, birth.replace("-", "")}
    return {v.strip() for v in values if isinstance(v, str) and len(v.strip()) >= MIN_CHARS}


def _patients(body: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(body, dict):
        return
    if body.get("resourceType") == "Patient":
        yield body
    for entry in body.get("entry") or []:  # a transaction or batch Bundle
        yield from _patients(entry.get("resource"))


def remember_sent(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """``requests`` response hook: remember the Patients of a PUT or POST body."""
    request = response.request
    if request.method not in ("PUT", "POST") or not request.body:
        return
    try:
        body = json.loads(request.body)
    except (ValueError, TypeError):
        return
    for patient in _patients(body):
        SENT.update(identifier_values(patient))


def roster_values() -> set[str]:
    """The sample roster's PatientIDs (sidecar.samples), loaded into PACS main by the suite."""
    from sidecar.samples import sample_patients

    return {p.patient_id for p in sample_patients() if len(p.patient_id) >= MIN_CHARS}


def found_in(paths: Iterable[Path], values: Iterable[str]) -> dict[str, list[str]]:
    """For each file holding one of ``values`` (as UTF-8 bytes), the values it holds."""
    needles = {v: v.encode() for v in values}
    found: dict[str, list[str]] = {}
    for path in paths:
        data = path.read_bytes()
        hits = sorted(v for v, needle in needles.items() if needle in data)
        if hits:
            found[str(path)] = hits
    return found
