"""The one use case: fetch a Patient's imaging from the PACS into FHIR.

Called by the ``$fetch-imaging`` operation, the subscription worker and the CLI alike
(:mod:`sidecar.wiring` builds it once per process):

    result = services.fetch(FetchRequest(patient_id="123"))   # or identifier=(system, value)
    bundle = result.bundle(settings.fhir.base_url)

Steps: resolve the Patient; derive one QIDO query per (PACS, mappable identifier); query
every PACS (study level, then one series/instance query per study, bounded concurrency)
while the stored ImagingStudies/Endpoints are read; map; compare with what is stored; write
what changed in ONE transaction (client-assigned ids, If-Match on updates); answer.
Status rules for studies that left the patient: docs/fetch-imaging.md.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import Counter, Histogram

from sidecar.core import identity, qido, steady_state
from sidecar.core.fetch_request import FetchRequest
from sidecar.core.fhir_values import identifier_token
from sidecar.core.identity import PatientKey
from sidecar.core.mapping import (
    Detail,
    build_endpoint,
    imaging_study_id,
    map_studies,
    merge_studies,
    study_uid_of,
    trim_to_detail,
)
from sidecar.core.outcome import (
    AmbiguousPatient,
    BadRequest,
    DuplicatePatient,
    FetchError,
    FhirConflict,
    NotMappable,
    PatientNotFound,
    issue,
    operation_outcome,
)
from sidecar.ports import FhirServer, Pacs, Record, Resource
from sidecar.settings import PacsSettings, Settings

log = logging.getLogger(__name__)
#: the QIDO level below the study that each depth reads
_LEVELS = {Detail.SERIES: "series", Detail.INSTANCE: "instance"}

FETCHES = Counter("sidecar_fetch_total", "Fetches by outcome", ["outcome"])
FETCH_SECONDS = Histogram("sidecar_fetch_seconds", "Wall time of a fetch", ["outcome"])
STUDIES = Counter("sidecar_fetch_studies_total", "Studies per write decision", ["action"])
DROPPED = Counter("sidecar_isolation_dropped_total", "PACS records dropped by exact checks")
CONFLICTS = Counter(
    "sidecar_identity_conflicts_total", "Fetches refused: another Patient claims the PACS patient"
)
CLAIM_LIMIT = 10  # other Patients listed in a conflict's OperationOutcome

WRITE_ATTEMPTS = 3
ACTIVE_STATUSES = ("available", "registered")
#: Status of a study this patient had that the PACS now files under another patient.
STATUS_REFILED = "entered-in-error"
#: Status of a study this patient had that no configured PACS holds any more.
STATUS_GONE = "unknown"


@dataclass
class PacsAnswer:
    """What one PACS answered for a patient: the records kept, and what was left out."""

    pacs: str
    records: list[Record] = field(default_factory=list)
    foreign: int = 0  # study records not exactly this patient's (or outside the criteria)
    invalid_uids: list[str] = field(default_factory=list)  # study records without a valid UID
    reused: list[Resource] = field(default_factory=list)  # stored studies nothing changed in
    rows: dict[str, Record] = field(default_factory=dict)  # study-level rows by StudyInstanceUID
    foreign_contents: int = 0  # series/instance rows of another patient under a study UID


@dataclass
class FetchResult:
    """The stored (or, with persist=false, mapped) ImagingStudies and their Endpoints."""

    patient: Resource
    studies: list[Resource]
    endpoints: list[Resource]
    issues: list[dict[str, Any]] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    withdrawn: list[Resource] = field(default_factory=list)
    persisted: bool = True

    def shaped(self, detail: Detail) -> FetchResult:
        """The same result with each ImagingStudy trimmed to ``detail`` for the answer
        (what was stored stays the full mapping)."""
        if detail is Detail.INSTANCE:
            return self
        return replace(self, studies=[trim_to_detail(s, detail) for s in self.studies])

    def bundle(self, base_url: str) -> dict[str, Any]:
        """A searchset Bundle: studies (match), their Endpoints (include), warnings (outcome)."""
        base = base_url.rstrip("/")

        def entry(resource: Resource, mode: str) -> dict[str, Any]:
            out: dict[str, Any] = {}
            if resource.get("id"):
                out["fullUrl"] = f"{base}/{resource['resourceType']}/{resource['id']}"
            out["resource"] = resource
            out["search"] = {"mode": mode}
            return out

        entries = [entry(s, "match") for s in self.studies]
        entries += [entry(e, "include") for e in self.endpoints]
        if self.issues:
            entries.append(entry(operation_outcome(self.issues), "outcome"))
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(self.studies),
            "entry": entries,
        }


class FetchImaging:
    """The use case. Thread-safe: one instance serves every request of a process."""

    def __init__(self, settings: Settings, fhir: FhirServer, pacs: dict[str, Pacs]) -> None:
        self.settings = settings
        self.fhir = fhir
        self.pacs = pacs
        self._pool = ThreadPoolExecutor(len(pacs) + 4, thread_name_prefix="fetch")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.fhir.close()
        for client in self.pacs.values():
            client.close()

    # -- the worker's cheap relevance check ---------------------------------------------

    def mappable_identifiers(self, patient: Resource) -> list[PatientKey]:
        """The PACS queries this Patient resource implies (no I/O). A Patient update is
        relevant to imaging when this list changes; values the PACS could misread are left
        out (``refused_identifiers`` says why)."""
        return identity.patient_keys(patient, self.settings.pacs.values())[0]

    def refused_identifiers(self, patient: Resource) -> list[str]:
        return identity.patient_keys(patient, self.settings.pacs.values())[1]

    # -- the use case ----------------------------------------------------------------------

    def __call__(self, request: FetchRequest) -> FetchResult:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = self._fetch(request)
            outcome = "ok"
            return result
        except FetchError as exc:
            outcome = str(exc.status)
            raise
        finally:
            FETCHES.labels(outcome).inc()
            FETCH_SECONDS.labels(outcome).observe(time.perf_counter() - started)

    def _fetch(self, request: FetchRequest) -> FetchResult:
        patient = self._resolve_patient(request)
        patient_id = patient["id"]
        keys, refused = identity.patient_keys(patient, self.settings.pacs.values())
        if not keys:
            systems = sorted(
                {m.system for p in self.settings.pacs.values() for m in p.patient_identifiers}
            )
            reason = "; ".join(refused) or (
                "the Patient has no identifier of a system mapped to a PACS "
                f"(mapped systems: {', '.join(systems) or 'none configured'})"
            )
            raise NotMappable(f"Patient/{patient_id}: no identifier can be queried: {reason}")
        issues = [issue("warning", "processing", f"identifier skipped: {r}") for r in refused]

        pacs_names = list(dict.fromkeys(k.pacs for k in keys))
        endpoint_ids = [str(self.settings.pacs[n].endpoint_id) for n in pacs_names]
        # one FHIR search finds any other Patient claiming these PACS patients (in parallel
        # with the PACS queries); nothing is answered or written before it says "none"
        claims = self._pool.submit(self._claimants, patient_id, keys)
        stored_future = (
            self._pool.submit(self._read_stored, patient_id, endpoint_ids)
            if request.persist
            else None
        )
        # what is stored is always the full mapping: instance level whenever we write
        depth = Detail.INSTANCE if request.persist else request.detail
        found = self._query_all(pacs_names, keys, request, depth, stored_future, patient_id)
        if stored_future is not None:
            self._read_shared_in_full(found, stored_future.result(), depth)
        self._refuse_duplicates(patient_id, claims.result())
        issues += _drop_issues(found.values())

        studies, endpoints = self._map(patient_id, found, depth, issues)
        if not request.persist:
            return FetchResult(patient, studies, endpoints, issues, persisted=False)
        assert stored_future is not None
        stored = stored_future.result()
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                result = self._write(patient, keys, studies, endpoints, stored, request, issues)
                return result.shaped(request.detail)
            except FhirConflict:
                if attempt == WRITE_ATTEMPTS:
                    raise
                log.info("write conflict, re-reading", extra={"patient_id": patient_id})
                stored = self._read_stored(patient_id, endpoint_ids)
        raise AssertionError("unreachable")

    def _claimants(self, patient_id: str, keys: list[PatientKey]) -> dict[str, list[PatientKey]]:
        tokens = identity.claim_tokens(keys, self.settings.pacs.values())
        candidates = self.fhir.search(
            "Patient",
            {"identifier": ",".join(tokens), "_elements": "identifier,link,active"},
            limit=CLAIM_LIMIT + 1,
        )
        return identity.claimants(patient_id, keys, candidates, self.settings.pacs.values())

    def _refuse_duplicates(self, patient_id: str, claims: dict[str, list[PatientKey]]) -> None:
        """Two Patients for one PACS patient: 409, nothing written (docs/fetch-imaging.md)."""
        if not claims:
            return
        CONFLICTS.inc()
        others = sorted(claims)[:CLAIM_LIMIT]
        shared = sorted({k.identity for ks in claims.values() for k in ks}, key=str)
        what = "; ".join(
            f"PACS {p} PatientID {pid!r}" + (f" issuer {iss!r}" if iss else "")
            for p, pid, iss in shared
        )
        log.warning(
            "identity conflict",
            extra={"patient_id": patient_id, "other_patient_ids": others},
        )
        raise DuplicatePatient(
            f"Patient/{patient_id} and {', '.join(f'Patient/{o}' for o in others)} carry "
            f"identifiers of the same PACS patient ({what}); nothing was written. Resolve it "
            "on the FHIR server: merge the records (link replaced-by), retire the wrong "
            "identifier (use=old) or correct it",
            patient_ids=(patient_id, *others),
        )

    def _resolve_patient(self, request: FetchRequest) -> Resource:
        if (request.patient_id is None) == (request.identifier is None):
            raise BadRequest("give exactly one of a Patient id or an identifier")
        if request.patient_id is not None:
            return self.fhir.read_patient(request.patient_id)
        system, value = request.identifier  # type: ignore[misc]
        found = self.fhir.find_patients(identifier_token(system, value), limit=CLAIM_LIMIT)
        # a server may match loosely (HAPI trims and drops control characters): compare
        exact = [p for p in found if identity.carries_identifier(p, system, value)]
        shown = f"{system}|{value}" if system else value
        if not exact:
            raise PatientNotFound(f"no Patient has identifier {shown!r}")
        if len(exact) > 1:
            ids = ", ".join(f"Patient/{p.get('id')}" for p in exact)
            raise AmbiguousPatient(f"more than one Patient has identifier {shown!r}: {ids}")
        return exact[0]

    def _read_stored(self, patient_id: str, endpoint_ids: list[str]) -> dict[str, Resource]:
        stored = {("ImagingStudy", k): v for k, v in self.fhir.studies_of(patient_id).items()}
        endpoints = self.fhir.read_many("Endpoint", endpoint_ids)
        stored.update({("Endpoint", k): v for k, v in endpoints.items()})
        return stored  # type: ignore[return-value]

    def _query_all(
        self,
        pacs_names: list[str],
        keys: list[PatientKey],
        request: FetchRequest,
        depth: Detail,
        stored: Future | None,
        patient_id: str,
    ) -> dict[str, PacsAnswer]:
        """Per PACS: the records (study + series/instance level) and what was dropped."""
        futures: dict[str, Future] = {
            name: self._pool.submit(
                self._query_pacs,
                self.pacs[name],
                [k for k in keys if k.pacs == name],
                request,
                depth,
                stored,
                patient_id,
            )
            for name in pacs_names
        }
        try:
            return {name: future.result() for name, future in futures.items()}
        finally:
            for future in futures.values():
                future.cancel()

    def _query_pacs(
        self,
        client: Pacs,
        keys: list[PatientKey],
        request: FetchRequest,
        depth: Detail,
        stored: Future | None,
        patient_id: str,
    ) -> PacsAnswer:
        by_uid: dict[str, Record] = {}
        answer = PacsAnswer(client.name)
        for key in keys:
            found = client.search_patient_studies(key.patient_id, key.issuer, request.criteria)
            answer.foreign += found.dropped
            answer.invalid_uids += found.invalid_uids
            if key.issuer is None:
                _refuse_mixed_issuers(client.name, key, found.records)
            for record in found.records:
                by_uid.setdefault(qido.first_value(record, qido.STUDY_INSTANCE_UID), record)
        answer.rows = dict(by_uid)
        level = _LEVELS.get(depth)
        if level and stored is not None and not request.refresh:
            reusable = self._reusable(client.name, by_uid, stored.result(), patient_id)
            answer.reused = [r for r in reusable if study_uid_of(r) not in request.refresh_studies]
            for reused in answer.reused:
                by_uid.pop(study_uid_of(reused) or "", None)
        answer.records = list(by_uid.values())
        if level:
            self._read_contents(client, answer, by_uid, level)
        log.info(
            "queried PACS",
            extra={"pacs": client.name, "study_uids": sorted(by_uid), "dropped": answer.foreign},
        )
        return answer

    @staticmethod
    def _read_contents(
        client: Pacs, answer: PacsAnswer, rows: dict[str, Record], level: str
    ) -> None:
        """The series/instance rows of ``rows``' studies, into ``answer.records``."""
        for uid, contents in client.study_contents(rows, level).items():
            # a StudyInstanceUID a PACS also files under another patient: only this
            # patient's series and instances (rows that say whose they are)
            mine = [r for r in contents if _same_patient(r, rows[uid])]
            answer.foreign_contents += len(contents) - len(mine)
            answer.records.extend(mine)

    def _read_shared_in_full(
        self, found: dict[str, PacsAnswer], stored: dict[tuple[str, str], Resource], depth: Detail
    ) -> None:
        """A study several PACS hold (or held) is reused only when every one of them says
        nothing changed; otherwise the PACS that reused it read it in full too, so the
        union of their series (sidecar.core.mapping.merge) holds nothing stale."""
        level = _LEVELS.get(depth)
        if not level or not any(a.reused for a in found.values()):
            return
        by_endpoint = {f"Endpoint/{p.endpoint_id}": p.name for p in self.settings.pacs.values()}
        holders = {
            uid: {by_endpoint.get(e.get("reference"), "?") for e in r.get("endpoint") or []}
            for (kind, _), r in stored.items()
            if kind == "ImagingStudy" and (uid := study_uid_of(r))
        }
        answers = {
            n: ({study_uid_of(r) or "" for r in a.reused}, set(a.rows)) for n, a in found.items()
        }
        for name, uids in steady_state.shared_reuse_to_undo(answers, holders).items():
            answer = found[name]
            answer.reused = [r for r in answer.reused if study_uid_of(r) not in uids]
            rows = {uid: answer.rows[uid] for uid in uids}
            answer.records.extend(rows.values())
            self._read_contents(self.pacs[name], answer, rows, level)

    def _reusable(
        self,
        pacs_name: str,
        rows: dict[str, Record],
        stored: dict[tuple[str, str], Resource],
        patient_id: str,
    ) -> list[Resource]:
        """Stored studies whose study-level row says nothing changed (sidecar.core.steady_state)."""
        pacs = self.settings.pacs[pacs_name]
        reusable = steady_state.unchanged_studies(
            rows,
            stored,
            subject={"reference": f"Patient/{patient_id}"},
            endpoint={"reference": f"Endpoint/{pacs.endpoint_id}"},
            timezone=pacs.timezone,
            accession_system=pacs.accession_system,
        )
        return list(reusable.values())

    def _map(
        self,
        patient_id: str,
        found: dict[str, PacsAnswer],
        depth: Detail,
        issues: list[dict[str, Any]],
    ) -> tuple[list[Resource], list[Resource]]:
        studies: dict[str, Resource] = {}
        endpoints: list[Resource] = []
        subject = {"reference": f"Patient/{patient_id}"}
        for name, answer in found.items():
            pacs = self.settings.pacs[name]
            records = answer.records
            endpoint_ref = {"reference": f"Endpoint/{pacs.endpoint_id}"}
            for reused in answer.reused:
                # ImagingStudy.endpoint: the PACS that hold it now, not those stored before
                study = {**_content(reused), "endpoint": [endpoint_ref]}
                known = studies.get(study["id"])
                studies[study["id"]] = merge_studies(known, study) if known else study
            if answer.reused:
                endpoints.append(_endpoint(pacs))
            if not records:
                continue
            mapped = map_studies(
                records,
                subject=subject,
                endpoint=endpoint_ref,
                timezone=pacs.timezone,
                accession_system=pacs.accession_system,
                detail=depth,
            )
            issues.extend(mapped.issues)
            for study in mapped.studies:  # the same study in two PACS: one resource
                known = studies.get(study["id"])
                studies[study["id"]] = merge_studies(known, study) if known else study
            if not answer.reused:
                endpoints.append(_endpoint(pacs))
        ordered = sorted(studies.values(), key=_study_sort_key, reverse=True)
        return ordered, endpoints

    def _write(
        self,
        patient: Resource,
        keys: list[PatientKey],
        studies: list[Resource],
        endpoints: list[Resource],
        stored: dict[tuple[str, str], Resource],
        request: FetchRequest,
        issues: list[dict[str, Any]],
    ) -> FetchResult:
        patient_id = patient["id"]
        missing = [s["id"] for s in studies if ("ImagingStudy", s["id"]) not in stored]
        if missing:  # studies stored under another patient: read them to compare
            for k, v in self.fhir.read_many("ImagingStudy", missing).items():
                stored[("ImagingStudy", k)] = v
            blocked = self._blocked_moves(patient_id, missing, stored, issues)
            studies = [s for s in studies if s["id"] not in blocked]
        withdrawn = (
            self._withdrawn(patient_id, keys, studies, stored)
            if request.criteria.is_complete
            else []
        )
        plan = [(r, stored.get((r["resourceType"], r["id"]))) for r in endpoints + studies]
        plan += [(w, stored[("ImagingStudy", w["id"])]) for w in withdrawn]
        entries, written = [], []
        final: dict[tuple[str, str], Resource] = {}
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        for resource, before in plan:
            key = (resource["resourceType"], resource["id"])
            if before is not None and _content(before) == _content(resource):
                final[key] = before
                counts["unchanged"] += 1 if key[0] == "ImagingStudy" else 0
                continue
            req: dict[str, Any] = {"method": "PUT", "url": f"{key[0]}/{key[1]}"}
            if before is not None and (before.get("meta") or {}).get("versionId"):
                req["ifMatch"] = f'W/"{before["meta"]["versionId"]}"'
            entries.append({"fullUrl": f"{key[0]}/{key[1]}", "resource": resource, "request": req})
            written.append((key, resource))
            if key[0] == "ImagingStudy":
                counts["updated" if before is not None else "created"] += 1
        if entries:
            response = self.fhir.transaction(entries)
            for (key, resource), answer in zip(written, response, strict=False):
                final[key] = _with_version(resource, answer.get("response") or {})
        for action, n in counts.items():
            STUDIES.labels(action).inc(n)
        for w in withdrawn:
            issues.append(
                issue(
                    "warning",
                    "informational",
                    f"ImagingStudy/{w['id']} is no longer this patient's in the PACS: "
                    f"status set to {w['status']}",
                )
            )
        log.info(
            "fetch written",
            extra={
                "patient_id": patient_id,
                **{f"studies_{k}": v for k, v in counts.items()},
                "withdrawn": [w["id"] for w in withdrawn],
                "study_ids": [s["id"] for s in studies],
            },
        )
        return FetchResult(
            patient,
            [final[("ImagingStudy", s["id"])] for s in studies],
            [final[("Endpoint", e["id"])] for e in endpoints],
            issues,
            withdrawn=[final[("ImagingStudy", w["id"])] for w in withdrawn],
            **counts,
        )

    def _blocked_moves(
        self,
        patient_id: str,
        study_ids: list[str],
        stored: dict[tuple[str, str], Resource],
        issues: list[dict[str, Any]],
    ) -> set[str]:
        """Studies stored for another Patient that the PACS *still* files under that
        Patient's identifiers (the same StudyInstanceUID used for two patients): they are
        not moved. A study moves only when its Patient no longer carries the identifier."""
        owners: dict[str, str] = {}
        for sid in study_ids:
            before = stored.get(("ImagingStudy", sid))
            ref = ((before or {}).get("subject") or {}).get("reference", "")
            if before and ref != f"Patient/{patient_id}" and ref.startswith("Patient/"):
                owners[sid] = ref.removeprefix("Patient/")
        if not owners:
            return set()
        patients = self.fhir.read_many("Patient", sorted(set(owners.values())))
        uids = {sid: study_uid_of(stored[("ImagingStudy", sid)]) or "" for sid in owners}
        rows: dict[str, list[Record]] = {}
        for name, client in self.pacs.items():
            for uid, records in client.find_studies(uids.values()).items():
                rows.setdefault(uid, []).extend({**r, "_pacs": name} for r in records)
        blocked = set()
        for sid, owner in owners.items():
            keys, _ = identity.patient_keys(patients.get(owner) or {}, self.settings.pacs.values())
            if any(
                qido.is_exact_patient(row, k.patient_id, k.issuer)
                for row in rows.get(uids[sid], [])
                for k in keys
                if k.pacs == row["_pacs"]
            ):
                blocked.add(sid)
                log.warning(
                    "study not moved: one StudyInstanceUID filed under two patients",
                    extra={"imaging_study": sid, "patient_id": patient_id, "owner": owner},
                )
                issues.append(
                    issue(
                        "warning",
                        "multiple-matches",
                        f"ImagingStudy/{sid} was not moved: the PACS files StudyInstanceUID "
                        f"{uids[sid]} under Patient/{owner}'s identifiers too (one UID for "
                        "two patients needs fixing in the PACS)",
                    )
                )
        return blocked

    def _withdrawn(
        self,
        patient_id: str,
        keys: list[PatientKey],
        studies: list[Resource],
        stored: dict[tuple[str, str], Resource],
    ) -> list[Resource]:
        """Stored studies of this patient, from our PACS, that the PACS no longer returns."""
        ours = {f"Endpoint/{p.endpoint_id}": p.name for p in self.settings.pacs.values()}
        current = {s["id"] for s in studies}
        changed = []
        for (rtype, rid), resource in list(stored.items()):
            if rtype != "ImagingStudy" or rid in current:
                continue
            if (resource.get("subject") or {}).get("reference") != f"Patient/{patient_id}":
                continue
            if resource.get("status") not in ACTIVE_STATUSES:
                continue
            refs = [e.get("reference") for e in resource.get("endpoint") or []]
            if not any(r in ours for r in refs):
                continue  # not written by this sidecar: not ours to judge
            uid = study_uid_of(resource)
            if uid is None or imaging_study_id(uid) != rid:
                continue
            status = self._status_of_missing(uid, keys)
            if status is not None:
                changed.append({**_content(resource), "status": status})
        return changed

    def _status_of_missing(self, study_uid: str, keys: list[PatientKey]) -> str | None:
        """entered-in-error if a PACS files the study under someone else, unknown if no PACS
        has it, None (leave it) if a PACS still files it under this patient."""
        status = STATUS_GONE
        for name, client in self.pacs.items():
            records = client.find_study(study_uid)
            if not records:
                continue
            mine = [k for k in keys if k.pacs == name]
            if any(qido.is_exact_patient(r, k.patient_id, k.issuer) for r in records for k in mine):
                return None
            status = STATUS_REFILED
        return status


# -- small pure helpers ----------------------------------------------------------------------


def _endpoint(pacs: PacsSettings) -> Resource:
    return build_endpoint(
        endpoint_id=str(pacs.endpoint_id),
        wado_root=str(pacs.wado_root),
        name=f"DICOMweb PACS {pacs.name}",
    )


def _refuse_mixed_issuers(pacs: str, key: PatientKey, records: list[Record]) -> None:
    """An identifier without issuer takes a PatientID's studies under any issuer; when the PACS
    files that PatientID under several issuers, those are several patients: 409."""
    issuers = {qido.first_value(r, qido.ISSUER_OF_PATIENT_ID) for r in records} - {None}
    if len(issuers) > 1:
        raise AmbiguousPatient(
            f"PACS {pacs} files PatientID {key.patient_id!r} under several issuers "
            f"({', '.join(sorted(i for i in issuers if i))}); the identifier system "
            f"{key.system!r} implies no issuer and cannot tell these patients apart. Map it "
            "to an issuer (SIDECAR_PACS_<NAME>_PATIENT_IDENTIFIERS system|ISSUER)"
        )


def _same_patient(row: Record, study: Record) -> bool:
    """A series/instance row is the study record's patient's unless it says otherwise."""
    for tag in (qido.PATIENT_ID, qido.ISSUER_OF_PATIENT_ID):
        value = qido.first_value(row, tag)
        if value is not None and value != qido.first_value(study, tag):
            return False
    return True


def _drop_issues(answers: Any) -> list[dict[str, Any]]:
    """One issue per kind of study record the PACS sent and the sidecar left out."""
    issues = []
    for answer in answers:
        if answer.foreign_contents:
            issues.append(
                issue(
                    "warning",
                    "multiple-matches",
                    f"PACS {answer.pacs}: {answer.foreign_contents} series/instance record(s) "
                    "under this patient's StudyInstanceUIDs belong to another patient (a UID "
                    "used for two patients) and were left out",
                )
            )
        if answer.foreign:
            DROPPED.inc(answer.foreign)
            issues.append(
                issue(
                    "information",
                    "informational",
                    f"PACS {answer.pacs}: {answer.foreign} study record(s) that were not exactly "
                    "this patient's (PatientID, IssuerOfPatientID) or outside the criteria "
                    "were left out",
                )
            )
        for uid in answer.invalid_uids:
            issues.append(
                issue(
                    "warning",
                    "invalid",
                    f"PACS {answer.pacs}: a study record of this patient was skipped: its "
                    f"StudyInstanceUID (0020,000D) {uid!r} is not a valid DICOM UID",
                )
            )
    return issues


def _content(resource: Resource) -> Resource:
    """The resource without server-managed elements, for change detection."""
    return {k: v for k, v in resource.items() if k not in ("meta", "text")}


def _with_version(resource: Resource, response: dict[str, Any]) -> Resource:
    etag = str(response.get("etag") or "")
    version = etag.removeprefix("W/").strip('"')
    meta = {
        k: v
        for k, v in (("versionId", version), ("lastUpdated", response.get("lastModified")))
        if v
    }
    return {**resource, "meta": meta} if meta else resource


def _study_sort_key(study: Resource) -> tuple[str, str]:
    return (str(study.get("started") or ""), str(study.get("id")))
