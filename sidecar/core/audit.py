"""AuditEvents for every access to a patient's imaging: FHIR R4 AuditEvent, IHE BALP.

Pure builders (data in, a FHIR R4 AuditEvent dict out) for what the sidecar records:

=====================  ===========================  ======  =====================================
builder                what                         action  IHE BALP pattern
=====================  ===========================  ======  =====================================
:func:`fetch_event`    one ``$fetch-imaging`` call  E       PatientQuery (subtype operation too)
:func:`write_event`    an ImagingStudy written      C / U   PatientCreate / PatientUpdate
:func:`retrieval_event` WADO-RS / QIDO-RS through   R / E   PatientRead / PatientQuery, with
                       the gateway (aggregated)             ``period`` and a request count
:func:`refusal_event`  a refused attempt            E / R   FHIR core "Access Denied" (outcome 4)
=====================  ===========================  ======  =====================================

References: FHIR R4 AuditEvent (https://hl7.org/fhir/R4/auditevent.html); IHE Basic Audit
Log Patterns (https://profiles.ihe.net/ITI/BALP/), its agent roles (DICOM DCM 110152
Destination Role ID, 110153 Source Role ID, 110150 Application) and the OAuth agent
pattern (user as ``who.identifier`` = issuer + subject, the client app as a second agent).

What is never in an event: identifier values (MRNs, accession numbers), names, birth
dates. A Patient is named by its reference (``Patient/123``, the ``entity.what`` that
``AuditEvent?patient=Patient/123`` finds), a study by its StudyInstanceUID (a UID names a
study, not a person; ``what.identifier`` with system ``urn:dicom:uid``), a query by its
parameter names and the values that are not identifiers (modality, dates, detail).
An ImagingStudy is named by identifier, not by reference: a reference from an AuditEvent
would make the study undeletable on a server that enforces referential integrity.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sidecar.core.caller import Caller
from sidecar.core.mapping import imaging_study_id
from sidecar.core.qido import is_uid

Event = dict[str, Any]

EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
DICOM_UID = "urn:dicom:uid"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"

#: R4 AuditEvent.agent.network.type: 2 IP address, 5 URI
NETWORK_IP, NETWORK_URI = "2", "5"
#: BALP's roles of the two ends of a request (DICOM PS3.16 CID 402 "Audit Active Participant
#: Role ID"): the requester of a query/write is the source; of a read, the destination
SOURCE_ROLE = {"system": DCM, "code": "110153", "display": "Source Role ID"}
DESTINATION_ROLE = {"system": DCM, "code": "110152", "display": "Destination Role ID"}
APPLICATION = {"system": DCM, "code": "110150", "display": "Application"}
RECIPIENT = {"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}
AUTHOR = {"system": PARTICIPATION, "code": "AUT", "display": "author (originator)"}

#: ``$fetch-imaging`` parameters whose values may be recorded: codes, dates, UIDs, a
#: reference. ``identifier`` and ``accession`` carry identifier values: their names only.
RECORDED_VALUES = frozenset(
    {"patient", "modality", "studyDate", "studyInstanceUid", "detail", "persist"}
)
NAMES_ONLY = frozenset({"identifier", "accession"})
#: an ``X-Request-Id`` recorded as it is (a caller sets it: anything else is left out)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


@dataclass(frozen=True)
class Observer:
    """The sidecar as it names itself in events: ``source.observer`` and the server agent.

    A logical reference (``type`` Device + identifier), not ``Device/...``: a literal one
    would need that Device to exist on every FHIR server the events go to."""

    name: str = "dicom-fhir-sidecar"
    address: str | None = None  # its public URL (the gateway's and the operation's)
    fhir_base: str | None = None  # the FHIR server it writes to (write events' server)

    def reference(self) -> dict[str, Any]:
        return {"type": "Device", "identifier": {"value": self.name}, "display": self.name}


SIDECAR = Observer()


def now() -> datetime:
    """The current time for ``at`` (callers use it; tests pass their own)."""
    return datetime.now(UTC)


# -- the builders --------------------------------------------------------------------------


def fetch_event(
    caller: Caller | None,
    patient_id: str | None,
    parameters: Iterable[tuple[str, str]],
    status: int,
    study_ids: Iterable[str],
    at: datetime,
    *,
    address: str | None = None,
    request_id: str | None = None,
    observer: Observer = SIDECAR,
) -> Event:
    """One ``$fetch-imaging`` call (BALP PatientQuery: action E, the query as an entity,
    the Patient when known; the ImagingStudies it answered with as Domain Resources; the
    ``X-Request-Id`` as BALP's transaction entity). ``caller`` None: a caller with a
    sidecar credential and no user token."""
    text = query_text(parameters)
    entities = [_patient(patient_id)] if patient_id else []
    entities.append(
        {
            "type": _coding(ENTITY_TYPE, "2", "System Object"),
            "role": _coding(OBJECT_ROLE, "24", "Query"),
            "description": text,
            "query": base64.b64encode(text.encode("utf-8")).decode("ascii"),
        }
    )
    entities += [_study(sid) for sid in study_ids]
    entities += _transaction(request_id)
    return _event(
        subtypes=("operation", "search-type"),
        action="E",
        status=status,
        at=at,
        agents=_caller_agents(caller, SOURCE_ROLE, RECIPIENT, address, observer),
        entities=entities,
        observer=observer,
    )


def write_event(
    action: str,
    study_id: str,
    patient_id: str,
    at: datetime,
    requested_by: Caller | None = None,
    *,
    observer: Observer = SIDECAR,
) -> Event:
    """An ImagingStudy the sidecar created (``C``) or updated (``U``) on the FHIR server
    (BALP PatientCreate / PatientUpdate). The author is the caller whose ``$fetch-imaging``
    asked for it, or the sidecar itself (the worker's syncs, the backfill)."""
    if action not in ("C", "U"):
        raise ValueError("a write is C (create) or U (update)")
    agents = []
    if requested_by is not None:
        agents += _caller_agents(requested_by, None, AUTHOR, None, None)
    else:
        agents.append({"type": _concept(AUTHOR), "who": observer.reference(), "requestor": True})
    # the sidecar wrote it (the client of the write), the FHIR server stored it
    agents.append(_end(SOURCE_ROLE, observer.reference(), observer.address, NETWORK_URI))
    fhir = {"type": "Device", "display": "FHIR server"}
    agents.append(_end(DESTINATION_ROLE, fhir, observer.fhir_base, NETWORK_URI))
    return _event(
        subtypes=("create",) if action == "C" else ("update",),
        action=action,
        status=200,
        at=at,
        agents=agents,
        entities=[_patient(patient_id), _study(study_id)],
        observer=observer,
    )


def retrieval_event(
    caller: Caller | None,
    patient_id: str | None,
    study_uid: str,
    pacs: str,
    status: int,
    count: int,
    first_at: datetime,
    last_at: datetime,
    kind: str,
    *,
    event_id: str | None = None,
    address: str | None = None,
    observer: Observer = SIDECAR,
) -> Event:
    """Requests through the imaging gateway for one study, summarised: ``kind`` ``wado``
    (BALP PatientRead, action R) or ``qido`` (PatientQuery, action E); ``count`` requests
    between ``first_at`` and ``last_at`` (``period``). Recorded again under the same id as
    the count grows (``sidecar.usecases.audit_trail.RetrievalAggregator``)."""
    if kind not in ("wado", "qido"):
        raise ValueError("a retrieval is wado or qido")
    read = kind == "wado"
    client_role = DESTINATION_ROLE if read else SOURCE_ROLE
    study = _study(imaging_study_id(study_uid))
    study["detail"] = [
        {"type": "pacs", "valueString": pacs},
        {"type": "kind", "valueString": "WADO-RS" if read else "QIDO-RS"},
        {"type": "requests", "valueString": str(count)},
    ]
    event = _event(
        subtypes=("read",) if read else ("search-type",),
        action="R" if read else "E",
        status=status,
        at=last_at,
        agents=_caller_agents(caller, client_role, RECIPIENT, address, observer),
        entities=([_patient(patient_id)] if patient_id else []) + [study],
        observer=observer,
        event_id=event_id,
    )
    event["period"] = {"start": instant(first_at), "end": instant(last_at)}
    return event


def refusal_event(
    caller: Caller | None,
    what: str,
    status: int,
    at: datetime,
    address: str | None = None,
    *,
    patient_id: str | None = None,
    action: str = "E",
    request_id: str | None = None,
    observer: Observer = SIDECAR,
) -> Event:
    """An attempt refused (FHIR core security "Access Denied": outcome 4, minor failure):
    no or an invalid token (``caller`` None), or a Patient the caller may not read.
    ``what`` says what was attempted without any value ("WADO-RS series",
    "$fetch-imaging type level"); ``patient_id`` when the Patient is known (a refusal
    that answered "not found" to the caller still names it here, for the audit)."""
    entities = [_patient(patient_id)] if patient_id else []
    entities.append(
        {
            "type": _coding(ENTITY_TYPE, "2", "System Object"),
            "role": _coding(OBJECT_ROLE, "20", "Job"),
            "description": what,
        }
    )
    entities += _transaction(request_id)
    event = _event(
        subtypes=(),
        action=action,
        status=status,
        at=at,
        agents=_caller_agents(caller, SOURCE_ROLE, RECIPIENT, address, observer),
        entities=entities,
        observer=observer,
    )
    event["outcome"] = outcome_code(status) if status >= 400 else "4"
    event["outcomeDesc"] = f"refused: {what} (HTTP {status})"
    return event


# -- helpers other modules use ---------------------------------------------------------------


def query_text(parameters: Iterable[tuple[str, str]]) -> str:
    """``$fetch-imaging?modality=CT&...``: the parameters whose values may be recorded, then
    the names of those whose values may not (``identifier``, ``accession``); unknown names
    are left out (their values could be anything). An empty value is shown as the name
    alone (a request refused before its values were checked passes names only)."""
    parameters = list(parameters)
    kept = [f"{n}={v}" if v else n for n, v in parameters if n in RECORDED_VALUES]
    omitted = sorted({n for n, _ in parameters if n in NAMES_ONLY})
    # a description, not a URL to send: values as the caller gave them (codes, dates, UIDs)
    text = "$fetch-imaging" + ("?" + "&".join(kept) if kept else "")
    if omitted:
        text += f" (values not recorded: {', '.join(omitted)})"
    return text


def outcome_code(status: int) -> str:
    """R4 AuditEvent.outcome for an HTTP status: 0 success, 4 minor failure (the caller's
    request was refused or not found), 8 serious failure (a server or upstream error)."""
    return "0" if status < 400 else "4" if status < 500 else "8"


def retrieval_id(
    caller_key: str, study_uid: str, pacs: str, status: int, since: float, kind: str = "wado"
) -> str:
    """The id of the aggregated event of one (token, study, PACS, outcome, kind) window: the
    same inputs give the same id, so recording it again replaces it (PUT AuditEvent/{id})."""
    text = "\n".join((caller_key, study_uid, pacs, str(status), kind, f"{since:.6f}"))
    return "audit-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def dereferenced(event: Mapping[str, Any], parts: Iterable[str] = ("agent", "entity")) -> Event:
    """The event with the literal references of its ``parts`` (agents' ``who``, entities'
    ``what``) kept as text (``display``): what is sent again when the server refused it
    because a reference's target is not there (a ``fhirUser`` this server does not hold,
    a Patient deleted before the event arrived). The agents go first: the Patient keeps
    the event findable by ``?patient=``; without it the event is not findable, not lost."""
    copy = dict(event)
    for part, key in (("agent", "who"), ("entity", "what")):
        if part in parts:
            copy[part] = [_without_reference(x, key) for x in event.get(part) or []]
    return copy


def instant(at: datetime) -> str:
    """An R4 ``instant``: UTC, milliseconds, ``Z``."""
    if at.tzinfo is None:
        raise ValueError("an audit time needs a time zone")
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the parts --------------------------------------------------------------------------------


def _event(
    *,
    subtypes: Iterable[str],
    action: str,
    status: int,
    at: datetime,
    agents: list[dict[str, Any]],
    entities: list[dict[str, Any]],
    observer: Observer,
    event_id: str | None = None,
) -> Event:
    event: Event = {
        "resourceType": "AuditEvent",
        "id": event_id or f"audit-{uuid.uuid4().hex}",
        "type": _coding(EVENT_TYPE, "rest", "Restful Operation"),
        "action": action,
        "recorded": instant(at),
        "outcome": outcome_code(status),
        "outcomeDesc": f"HTTP {status}",
        "agent": agents,
        "source": {
            "observer": observer.reference(),
            "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
        },
        "entity": entities,
    }
    subtype = [_coding(RESTFUL, code, code) for code in subtypes]
    if subtype:
        event["subtype"] = subtype
    return event


def _caller_agents(
    caller: Caller | None,
    client_role: dict[str, str] | None,
    user_type: dict[str, str],
    address: str | None,
    observer: Observer | None,
) -> list[dict[str, Any]]:
    """The user (``fhirUser`` and/or issuer + subject), the client app (``azp``), and —
    with ``observer`` — the sidecar as the server end (BALP OAuth pattern)."""
    agents: list[dict[str, Any]] = []
    user = _user(caller)
    if user is not None:
        agents.append({"type": _concept(user_type), "who": user, "requestor": True})
    roles = [client_role] if client_role else []
    if caller is not None and caller.client_id:
        client: dict[str, Any] = {
            "identifier": {"system": caller.issuer, "value": caller.client_id}
        }
    elif caller is not None:
        client = {"display": "client not named in the token"}
    else:
        client = {"display": "caller without a user token (a sidecar credential or none)"}
    app = {"type": {"coding": [*roles, APPLICATION]}, "who": client, "requestor": user is None}
    if address:
        app["network"] = {"address": address, "type": NETWORK_IP}
    agents.append(app)
    if observer is not None and client_role is not None:
        server_role = SOURCE_ROLE if client_role is DESTINATION_ROLE else DESTINATION_ROLE
        agents.append(_end(server_role, observer.reference(), observer.address, NETWORK_URI))
    return agents


def _user(caller: Caller | None) -> dict[str, Any] | None:
    if caller is None or not (caller.fhir_user or caller.subject):
        return None
    who: dict[str, Any] = {}
    if caller.fhir_user:
        who["reference"] = caller.fhir_user
    if caller.subject:
        who["identifier"] = {"system": caller.issuer, "value": caller.subject}
    return who


def _end(
    role: dict[str, str], who: dict[str, Any], address: str | None, kind: str
) -> dict[str, Any]:
    agent: dict[str, Any] = {"type": _concept(role), "who": who, "requestor": False}
    if address:
        agent["network"] = {"address": address, "type": kind}
    return agent


def _patient(patient_id: str) -> dict[str, Any]:
    """BALP's patient entity: what ``AuditEvent?patient=Patient/{id}`` finds."""
    return {
        "what": {"reference": f"Patient/{patient_id}"},
        "type": _coding(ENTITY_TYPE, "1", "Person"),
        "role": _coding(OBJECT_ROLE, "1", "Patient"),
    }


def _study(study_id: str) -> dict[str, Any]:
    """An ImagingStudy by its StudyInstanceUID (its id is the UID when the UID is valid,
    mapping/imaging_study.py); a study whose UID is not one (``dcm-`` ids) by its id only."""
    what: dict[str, Any] = {"type": "ImagingStudy"}
    if is_uid(study_id):
        what["identifier"] = {"system": DICOM_UID, "value": f"urn:oid:{study_id}"}
    else:
        what["display"] = f"ImagingStudy/{study_id}"
    return {
        "what": what,
        "type": _coding(ENTITY_TYPE, "2", "System Object"),
        "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
        "name": f"ImagingStudy/{study_id}",
    }


def _transaction(request_id: str | None) -> list[dict[str, Any]]:
    """BALP's transaction entity: the ``X-Request-Id`` that the log lines carry too."""
    if not request_id or not _REQUEST_ID.match(request_id):
        return []
    return [
        {
            "what": {"identifier": {"value": request_id}},
            "type": _coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"),
        }
    ]


def _without_reference(part: Mapping[str, Any], key: str) -> dict[str, Any]:
    ref = dict(part.get(key) or {})
    if "reference" in ref:
        ref["display"] = str(ref.pop("reference"))
    return {**part, key: ref} if part.get(key) else dict(part)


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _concept(coding: dict[str, str]) -> dict[str, Any]:
    return {"coding": [coding]}
