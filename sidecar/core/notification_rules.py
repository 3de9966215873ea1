"""Pure decisions about a Patient notification: is it valid, is it relevant, what rule applies.

No I/O here; the notification endpoint and the worker call these and act on the answer.

Relevance: a sync depends only on ``Patient.identifier`` (what the PACS is queried with),
``Patient.active`` and ``Patient.link`` (merges). Their fingerprint is compared with the one
recorded after the last successful sync, so an update that touches anything else (telecom,
address, name) costs one look-up in the queue's storage and no PACS or FHIR work.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sidecar.core.fhir_values import is_fhir_id
from sidecar.core.outcome import BadRequest
from sidecar.core.parameters_body import parse_json_body

#: How deep a Patient's JSON may nest (extensions in extensions: about 8 in practice).
MAX_PATIENT_DEPTH = 32

MAX_PAYLOAD_BYTES = 1_000_000
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
DELETED_FINGERPRINT = "deleted"

# Patient.link.type (R4, value set link-type): this record is obsolete, `other` survives
REPLACED_BY = "replaced-by"


class InvalidNotification(ValueError):
    """A notification the endpoint must refuse; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def validate_patient_id(patient_id: str) -> str:
    """A FHIR logical id (R4 ``id``: 1-64 of ``[A-Za-z0-9\\-.]``)."""
    if not is_fhir_id(patient_id):
        raise InvalidNotification("the URL's Patient id is not a FHIR id ([A-Za-z0-9-.]{1,64})")
    return patient_id


def parse_patient_payload(patient_id: str, body: bytes, content_type: str | None) -> dict:
    """The Patient of a rest-hook delivery (``PUT {endpoint}/Patient/{id}``), checked.

    The body must be a JSON Patient whose ``id`` (when present) is the one in the URL.
    """
    validate_patient_id(patient_id)
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime not in JSON_TYPES:
        raise InvalidNotification(
            f"Content-Type {mime or 'missing'!r}: the Subscription must use payload "
            "application/fhir+json",
            status=415,
        )
    if not body:
        raise InvalidNotification("empty body: the Subscription must carry the resource")
    if len(body) > MAX_PAYLOAD_BYTES:
        raise InvalidNotification("payload too large", status=413)
    try:  # bounded depth: a deeply nested body is a 400, not a RecursionError (500)
        resource = parse_json_body(body, max_depth=MAX_PATIENT_DEPTH)
    except BadRequest as exc:
        raise InvalidNotification(exc.diagnostics) from None
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        # the caller's text is never quoted back (refusals are logged; it may be an MRN)
        raise InvalidNotification("expected a Patient resource (resourceType Patient)")
    body_id = resource.get("id")
    if body_id is not None and body_id != patient_id:
        raise InvalidNotification("Patient.id does not match the id in the URL")
    for name in ("identifier", "link"):
        if name in resource and not isinstance(resource[name], list):
            raise InvalidNotification(f"Patient.{name} must be an array")
    if "active" in resource and not isinstance(resource["active"], bool):
        raise InvalidNotification("Patient.active must be a boolean")
    return resource


def relevant_fingerprint(
    patient: dict[str, Any], identifier_keys: Iterable[tuple[Any, ...]] | None = None
) -> str:
    """A short hash of what a sync depends on: the PACS queries, ``active`` and ``link``.

    ``identifier_keys`` are the PACS queries the use case derives from the Patient
    (``FetchImaging.mappable_identifiers``); without them every identifier's system and
    value count. Order does not matter; other elements (name, telecom...) are ignored.
    """
    if identifier_keys is None:
        keys = {
            (str(i.get("system") or ""), str(i.get("value") or ""))
            for i in patient.get("identifier") or []
            if isinstance(i, dict) and i.get("value")
        }
    else:
        keys = {tuple("" if v is None else str(v) for v in key) for key in identifier_keys}
    links = {
        (str(link.get("type") or ""), str((link.get("other") or {}).get("reference") or ""))
        for link in patient.get("link") or []
        if isinstance(link, dict)
    }
    relevant = {
        "identifier": sorted(keys),
        "active": patient.get("active", True),
        "link": sorted(links),
    }
    text = json.dumps(relevant, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class PatientRule:
    """What a sync does with a Patient in its current state."""

    kind: str  # "sync" | "inactive" | "merged"
    survivor_id: str | None = None  # for "merged": the Patient that replaces this one

    @property
    def fetches_imaging(self) -> bool:
        return self.kind == "sync"


def rule_for(patient: dict[str, Any]) -> PatientRule:
    """The documented rule (docs/sync.md) for a Patient as read from the FHIR server.

    - ``link`` of type ``replaced-by`` (a merge): this record is obsolete; the surviving
      Patient is synced instead, and this one is not.
    - ``active`` false: the record is no longer in use; it is not synced (its existing
      ImagingStudies are left as they are).
    - otherwise: the patient's imaging is fetched and written.
    """
    for link in patient.get("link") or []:
        if not isinstance(link, dict) or link.get("type") != REPLACED_BY:
            continue
        survivor = patient_id_of_reference((link.get("other") or {}).get("reference"))
        if survivor and survivor != patient.get("id"):
            return PatientRule("merged", survivor_id=survivor)
    if patient.get("active") is False:
        return PatientRule("inactive")
    return PatientRule("sync")


def patient_id_of_reference(reference: str | None) -> str | None:
    """``Patient/123`` or ``http://x/fhir/Patient/123/_history/2`` -> ``123`` (else None)."""
    if not reference:
        return None
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2 or parts[-2] != "Patient" or not is_fhir_id(parts[-1]):
        return None
    return parts[-1]
