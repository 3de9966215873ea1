"""The one use case: fetch a Patient's imaging from the PACS into FHIR.

Called by the ``$fetch-imaging`` operation, the subscription worker, the backfill and the
CLI alike (:mod:`sidecar.wiring` builds it once per process):

    result = services.fetch(FetchRequest(patient_id="123"))   # or identifier=(system, value)
    bundle = result.bundle(settings.fhir.base_url)

This module only orchestrates I/O; every decision is a pure rule of ``sidecar/core``. The
round trips run as early as their inputs allow (``bench/fetch.py`` measures it):

1. at once: the Patient (read, or found by identifier), its stored ImagingStudies and our
   Endpoints;
2. with the Patient's identifiers (:mod:`sidecar.core.identity`): the study-level QIDO of
   every PACS patient it implies, and the one search for other Patients claiming them;
3. with the study-level rows: the series/instance QIDO of the studies that changed
   (:mod:`sidecar.core.steady_state`), and a read of those stored under another Patient;
4. map (:mod:`sidecar.core.mapping`), plan (:mod:`sidecar.core.write_plan`), write ONE
   transaction (client-assigned ids, If-Match on updates); a concurrent writer re-plans.
Status rules for studies that left the patient: docs/fetch-imaging.md.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from prometheus_client import Counter, Histogram

from sidecar.core import audit as audit_events
from sidecar.core import identity, qido, retry, steady_state, write_plan
from sidecar.core.caller import Caller
from sidecar.core.fetch_request import FetchRequest
from sidecar.core.fetch_result import FetchResult
from sidecar.core.fhir_values import identifier_token
from sidecar.core.identity import PatientKey
from sidecar.core.mapping import (
    Detail,
    assemble,
    build_endpoint,
    extract_records,
    merge_studies,
    study_uid_of,
)
from sidecar.core.mapping import imaging_study_id as study_id
from sidecar.core.outcome import (
    AmbiguousPatient,
    BadRequest,
    DuplicatePatient,
    FetchError,
    FhirConflict,
    NotMappable,
    PatientNotFound,
    PatientNotVisible,
    issue,
)
from sidecar.core.pacs_answers import (
    ANONYMOUS,
    FOREIGN,
    PacsAnswer,
    drop_issues,
    refuse_mixed_issuers,
    row_owner,
)
from sidecar.ports import AuditSink, FhirServer, Pacs, Record, Resource
from sidecar.settings import PacsSettings, Settings
from sidecar.usecases import patients
from sidecar.usecases.audit_trail import observer_of

log = logging.getLogger(__name__)
#: the QIDO level below the study that each depth reads
_LEVELS = {Detail.SERIES: "series", Detail.INSTANCE: "instance"}
Stored = dict[tuple[str, str], Resource]

FETCHES = Counter("sidecar_fetch_total", "Fetches by outcome", ["outcome"])
FETCH_SECONDS = Histogram("sidecar_fetch_seconds", "Wall time of a fetch", ["outcome"])
STUDIES = Counter("sidecar_fetch_studies_total", "Studies per write decision", ["action"])
DROPPED = Counter("sidecar_isolation_dropped_total", "PACS records dropped by exact checks")
CONFLICTS = Counter(
    "sidecar_identity_conflicts_total", "Fetches refused: another Patient claims the PACS patient"
)
CLAIM_LIMIT = 10  # other Patients listed in a conflict's OperationOutcome
WRITE_ATTEMPTS = 3


class FetchImaging:
    """The use case. Thread-safe: one instance serves every request of a process.

    Its pool runs only leaf requests (none waits on another task of the pool), so any
    number of concurrent fetches queue, never deadlock.
    """

    def __init__(
        self,
        settings: Settings,
        fhir: FhirServer,
        pacs: dict[str, Pacs],
        audit: AuditSink | None = None,
    ) -> None:
        self.settings = settings
        self.fhir = fhir
        self.pacs = pacs
        #: where each ImagingStudy written is recorded (docs/audit.md); None: nowhere
        self.audit = audit
        self.observer = observer_of(settings)
        self._pool = ThreadPoolExecutor(3 * len(pacs) + 6, thread_name_prefix="fetch")

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
        if (request.patient_id is None) == (request.identifier is None):
            raise BadRequest("give exactly one of a Patient id or an identifier")
        persist = request.persist
        visible = None
        if request.patient_id is not None:
            patient_read = self._submit(self.fhir.read_patient, request.patient_id)
            stored_read = self._submit(self._read_studies, request.patient_id) if persist else None
            if request.caller is not None:
                visible = self._submit(self._may_read, request.caller, request.patient_id)
        else:
            patient_read = self._submit(self._find_patient, *request.identifier, request.caller)  # type: ignore[misc]
            stored_read = None
        patient = patient_read.result()
        patient_id = patient["id"]
        if request.caller is not None:  # before any PACS query is made for this caller
            if visible is None:
                visible = self._submit(self._may_read, request.caller, patient_id)
            if not visible.result():
                not_found = (
                    "no Patient has the given identifier"
                    if request.identifier is not None
                    else f"Patient/{patient_id} is not known"
                )
                raise PatientNotVisible(not_found, patient_id=patient_id)
        if persist and stored_read is None:
            stored_read = self._submit(self._read_studies, patient_id)
        keys, refused = identity.patient_keys(patient, self.settings.pacs.values())
        if not keys:
            raise NotMappable(
                f"Patient/{patient_id}: no identifier can be queried: "
                + self._why_not_mappable(refused)
            )
        issues = [issue("warning", "processing", f"identifier skipped: {r}") for r in refused]
        # any other Patient claiming these PACS patients: nothing is answered or written
        # before this search says "none" (in parallel with the PACS queries)
        claims = self._submit(
            patients.claimants,
            self.fhir,
            patient_id,
            keys,
            self.settings.pacs.values(),
            limit=CLAIM_LIMIT + 1,
        )
        # what is stored is always the full mapping: instance level whenever we write
        depth = Detail.INSTANCE if persist else request.detail
        found, elsewhere = self._query(keys, request, depth, stored_read, patient_id)
        self._refuse_duplicates(patient_id, claims.result())
        issues += drop_issues(found.values())
        DROPPED.inc(sum(a.foreign for a in found.values()))

        studies, endpoints = self._map(patient_id, found, depth, issues)
        if not persist:
            return FetchResult(patient, studies, endpoints, issues, persisted=False)
        assert stored_read is not None and elsewhere is not None
        stored = {**stored_read.result(), **elsewhere.result()}
        for attempt in retry.conflicts(
            "fetch write", WRITE_ATTEMPTS, lambda exc: isinstance(exc, FhirConflict)
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    log.info("write conflict, re-reading", extra={"patient_id": patient_id})
                    stored = self._read_all_stored(patient_id, studies)
                result = self._write(patient, keys, studies, endpoints, stored, request, issues)
        return result.shaped(request.detail)

    # -- the reads ---------------------------------------------------------------------------

    def _submit(self, call: Any, *args: Any, **kwargs: Any) -> Future:
        return self._pool.submit(call, *args, **kwargs)

    def _find_patient(
        self, system: str | None, value: str, caller: Caller | None = None
    ) -> Resource:
        """The one Patient that carries this identifier (compared exactly: a server may match
        loosely, HAPI trims and drops control characters). The value is not echoed.

        Several: a 409 for the sidecar's own callers; a user's token learns only of the
        Patients it may read (none of them: the same 404 as no Patient at all, else the 409
        names those only), so a type-level lookup is no oracle of other people's identifiers."""
        found = self.fhir.find_patients(identifier_token(system, value), limit=CLAIM_LIMIT)
        exact = [p for p in found if identity.carries_identifier(p, system, value)]
        if not exact:
            raise PatientNotFound("no Patient has the given identifier")
        if len(exact) > 1:
            if caller is not None:
                readable = [p for p in exact if self._may_read(caller, str(p.get("id")))]
                if not readable:
                    raise PatientNotVisible(
                        "no Patient has the given identifier", patient_id=str(exact[0].get("id"))
                    )
                exact = readable
            ids = ", ".join(f"Patient/{p.get('id')}" for p in exact)
            raise AmbiguousPatient(f"more than one Patient has the given identifier: {ids}")
        return exact[0]

    def _may_read(self, caller: Caller, patient_id: str) -> bool:
        """Whether the FHIR server lets this caller read the Patient: one read with the
        caller's own token (the server is the one place that decides who sees what)."""
        return self.fhir.read_as(caller.token, "Patient", patient_id) is not None

    def _read_studies(self, patient_id: str) -> Stored:
        """The Patient's stored ImagingStudies and every configured PACS's Endpoint (what
        the write plan compares with): the Endpoints its studies reference come with them
        in one search, only the others are read (a first fetch; a PACS with nothing of
        this Patient yet), so a fetch that finds nothing new asks one FHIR search here."""
        studies, endpoints = self.fhir.studies_and_endpoints_of(patient_id)
        stored: Stored = {("ImagingStudy", k): v for k, v in studies.items()}
        stored.update(self._read_endpoints(known=endpoints))
        return stored

    def _read_endpoints(self, known: dict[str, Resource] | None = None) -> Stored:
        known = known or {}
        ids = [str(p.endpoint_id) for p in self.settings.pacs.values()]
        missing = [i for i in ids if i not in known]
        found = {i: known[i] for i in ids if i in known}
        if missing:
            found |= self.fhir.read_many("Endpoint", missing)
        return {("Endpoint", k): v for k, v in found.items()}

    def _read_elsewhere(self, study_ids: list[str]) -> Stored:
        """Studies of this fetch that are not stored under this Patient: stored under
        another one (a move to judge), or not at all."""
        found = self.fhir.read_many("ImagingStudy", study_ids) if study_ids else {}
        return {("ImagingStudy", k): v for k, v in found.items()}

    def _read_all_stored(self, patient_id: str, studies: list[Resource]) -> Stored:
        """Everything the write plan compares with, read again (after a write conflict)."""
        stored = self._read_studies(patient_id)
        others = [s["id"] for s in studies if ("ImagingStudy", s["id"]) not in stored]
        return {**stored, **self._read_elsewhere(others)}

    def _why_not_mappable(self, refused: list[str]) -> str:
        systems = sorted(
            {m.system for p in self.settings.pacs.values() for m in p.patient_identifiers}
        )
        return "; ".join(refused) or (
            "the Patient has no identifier of a system mapped to a PACS "
            f"(mapped systems: {', '.join(systems) or 'none configured'})"
        )

    def _refuse_duplicates(self, patient_id: str, claims: dict[str, list[PatientKey]]) -> None:
        """Two Patients for one PACS patient: 409, nothing written (docs/fetch-imaging.md).
        The answer names the Patients and the PACS, never the identifier values."""
        if not claims:
            return
        CONFLICTS.inc()
        others = sorted(claims)[:CLAIM_LIMIT]
        pacs = sorted({k.pacs for ks in claims.values() for k in ks})
        log.warning(
            "identity conflict", extra={"patient_id": patient_id, "other_patient_ids": others}
        )
        raise DuplicatePatient(
            f"Patient/{patient_id} and {', '.join(f'Patient/{o}' for o in others)} carry "
            f"identifiers of the same patient of PACS {', '.join(pacs)}; nothing was written. "
            "Resolve it on the FHIR server: merge the records (link replaced-by), retire the "
            "wrong identifier (use=old) or correct it",
            patient_ids=(patient_id, *others),
        )

    # -- the PACS ----------------------------------------------------------------------------

    def _query(
        self,
        keys: list[PatientKey],
        request: FetchRequest,
        depth: Detail,
        stored_read: Future | None,
        patient_id: str,
    ) -> tuple[dict[str, PacsAnswer], Future | None]:
        """Per PACS: the records (study + series/instance level) and what was dropped; and
        the read of this fetch's studies that are stored under another Patient."""
        searches = [
            (
                key,
                self._submit(
                    self.pacs[key.pacs].search_patient_studies,
                    key.patient_id,
                    key.issuer,
                    request.criteria,
                ),
            )
            for key in keys
        ]
        found = {key.pacs: PacsAnswer(key.pacs) for key in keys}
        for key, search in searches:
            studies = search.result()
            answer = found[key.pacs]
            answer.foreign += studies.dropped
            answer.invalid_uids += studies.invalid_uids
            if key.issuer is None:
                refuse_mixed_issuers(key.pacs, key, studies.records)
            for record in studies.records:
                answer.rows.setdefault(qido_uid(record), record)
        level = _LEVELS.get(depth)
        stored = stored_read.result() if stored_read is not None else {}
        for name, answer in found.items():
            if level and stored_read is not None and not request.refresh:
                reusable = self._reusable(name, answer.rows, stored, patient_id)
                answer.reused = [
                    r for r in reusable if study_uid_of(r) not in request.refresh_studies
                ]
        elsewhere = None
        if stored_read is not None:
            ids = {study_id(u) for a in found.values() for u in a.rows}
            elsewhere = self._submit(
                self._read_elsewhere, sorted(i for i in ids if ("ImagingStudy", i) not in stored)
            )
        reads = []
        for answer in found.values():
            reused = {study_uid_of(r) for r in answer.reused}
            rows = {u: r for u, r in answer.rows.items() if u not in reused}
            answer.records = list(rows.values())
            if level:
                reads.append(self._submit(self._read_contents, answer, rows, level))
        for read in reads:
            read.result()
        if level:
            self._read_shared_in_full(found, stored, level)
        for answer in found.values():
            log.info(
                "queried PACS",
                extra={
                    "pacs": answer.pacs,
                    "study_uids": sorted(answer.rows),
                    "reused": len(answer.reused),
                    "dropped": answer.foreign,
                },
            )
        return found, elsewhere

    def _read_contents(self, answer: PacsAnswer, rows: dict[str, Record], level: str) -> None:
        """The series/instance rows of ``rows``' studies, into ``answer.records``: only those
        that name this study record's patient (a UID a PACS also files under another).

        Each study's records go through the mapping's first stage as soon as the PACS has
        answered for it, while it still answers for the others: the CPU work hides behind
        the waiting (the second stage needs them all: :meth:`_map`)."""
        timezone = self.settings.pacs[answer.pacs].timezone
        answered = self.pacs[answer.pacs].study_contents_as_answered(rows, level)
        for uid, contents in answered:
            kept = [rows[uid]]
            for row in contents:
                owner = row_owner(row, rows[uid])
                if owner == FOREIGN:
                    answer.foreign_contents += 1
                elif owner == ANONYMOUS:
                    answer.anonymous_contents += 1
                else:
                    answer.records.append(row)
                    kept.append(row)
            answer.facts.extend(extract_records(kept, timezone))
            answer.extracted.add(uid)

    def _read_shared_in_full(
        self, found: dict[str, PacsAnswer], stored: Stored, level: str
    ) -> None:
        """A study several PACS hold (or held) is reused only when every one of them says
        nothing changed; otherwise the PACS that reused it read it in full too, so the
        union of their series (sidecar.core.mapping.merge) holds nothing stale."""
        if not any(a.reused for a in found.values()):
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
            self._read_contents(answer, rows, level)

    def _reusable(
        self, pacs_name: str, rows: dict[str, Record], stored: Stored, patient_id: str
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

    def _rows_of(self, study_uids: list[str]) -> dict[str, list[tuple[str, Record]]]:
        """Per StudyInstanceUID, the study-level record of every PACS that holds it (all PACS
        asked at once)."""
        asked = {
            name: self._submit(client.find_studies, study_uids)
            for name, client in self.pacs.items()
        }
        rows: dict[str, list[tuple[str, Record]]] = {}
        for name, answer in asked.items():
            for uid, records in answer.result().items():
                rows.setdefault(uid, []).extend((name, r) for r in records)
        return rows

    # -- mapping and writing ----------------------------------------------------------------

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
            endpoint_ref = {"reference": f"Endpoint/{pacs.endpoint_id}"}
            # ImagingStudy.endpoint of a reused study: the PACS that hold it now
            mapped = [{**write_plan.content(r), "endpoint": [endpoint_ref]} for r in answer.reused]
            if answer.records:
                # stage 1 for what was not extracted as it arrived (study-level rows alone)
                rest = [r for r in answer.records if qido_uid(r) not in answer.extracted]
                result = assemble(
                    [*answer.facts, *extract_records(rest, pacs.timezone)],
                    subject=subject,
                    endpoint=endpoint_ref,
                    accession_system=pacs.accession_system,
                    detail=depth,
                )
                issues.extend(result.issues)
                mapped += result.studies
            for study in mapped:  # the same study in two PACS: one resource
                known = studies.get(study["id"])
                studies[study["id"]] = merge_studies(known, study) if known else study
            if answer.reused or answer.records:
                endpoints.append(_endpoint(pacs))
        ordered = sorted(studies.values(), key=_study_sort_key, reverse=True)
        return ordered, endpoints

    def _write(
        self,
        patient: Resource,
        keys: list[PatientKey],
        studies: list[Resource],
        endpoints: list[Resource],
        stored: Stored,
        request: FetchRequest,
        issues: list[dict[str, Any]],
    ) -> FetchResult:
        patient_id = patient["id"]
        issues = list(issues)
        owners = write_plan.moving_studies(patient_id, [s["id"] for s in studies], stored)
        if owners:
            blocked, warnings = self._blocked_moves(owners, stored)
            issues += warnings
            studies = [s for s in studies if s["id"] not in blocked]
        withdrawn: list[Resource] = []
        if request.criteria.is_complete:
            ours = [f"Endpoint/{p.endpoint_id}" for p in self.settings.pacs.values()]
            candidates = write_plan.withdrawal_candidates(
                patient_id, [s["id"] for s in studies], stored, ours
            )
            if candidates:
                rows = self._rows_of(sorted(candidates))
                withdrawn = write_plan.withdrawn_studies(candidates, rows, keys)
        plan = write_plan.plan_writes(endpoints, studies, withdrawn, stored)
        final = dict(plan.unchanged)
        if plan.entries:
            response = self.fhir.transaction(plan.entries)
            for (key, resource), answer in zip(plan.written, response, strict=False):
                final[key] = write_plan.with_version(resource, answer.get("response") or {})
        for action, n in plan.counts.items():
            STUDIES.labels(action).inc(n)
        self._record_writes(patient_id, plan.written, stored, request)
        log.info(
            "fetch written",
            extra={
                "patient_id": patient_id,
                **{f"studies_{k}": v for k, v in plan.counts.items()},
                "withdrawn": [w["id"] for w in withdrawn],
                "study_ids": [s["id"] for s in studies],
            },
        )
        return FetchResult(
            patient,
            [final[("ImagingStudy", s["id"])] for s in studies],
            [final[("Endpoint", e["id"])] for e in endpoints],
            issues + plan.issues,
            withdrawn=[final[("ImagingStudy", w["id"])] for w in withdrawn],
            **plan.counts,
        )

    def _record_writes(
        self,
        patient_id: str,
        written: list[tuple[tuple[str, str], Resource]],
        stored: Stored,
        request: FetchRequest,
    ) -> None:
        """One AuditEvent per ImagingStudy written (created or updated, withdrawals too),
        recorded as ``request.caller``'s request, else the sidecar's; one local write."""
        if self.audit is None:
            return
        at = audit_events.now()
        self.audit.record_all(
            audit_events.write_event(
                "U" if key in stored else "C",
                key[1],
                patient_id,
                at,
                request.caller,
                observer=self.observer,
            )
            for key, _ in written
            if key[0] == "ImagingStudy"
        )

    def _blocked_moves(
        self, owners: dict[str, str], stored: Stored
    ) -> tuple[set[str], list[dict[str, Any]]]:
        """Moves refused because the PACS still files the UID under the owner's identifiers."""
        patients_read = self._submit(self.fhir.read_many, "Patient", sorted(set(owners.values())))
        uids = [study_uid_of(stored[("ImagingStudy", sid)]) or "" for sid in owners]
        rows = self._rows_of(uids)
        owner_keys = {
            owner: identity.patient_keys(patient, self.settings.pacs.values())[0]
            for owner, patient in patients_read.result().items()
        }
        blocked, warnings = write_plan.blocked_moves(owners, stored, owner_keys, rows)
        for sid in sorted(blocked):
            log.warning(
                "study not moved: one StudyInstanceUID filed under two patients",
                extra={"imaging_study": sid, "owner": owners[sid]},
            )
        return blocked, warnings


def qido_uid(record: Record) -> str:
    """The StudyInstanceUID (0020,000D) of a study-level record."""
    return qido.first_value(record, qido.STUDY_INSTANCE_UID) or ""


def _endpoint(pacs: PacsSettings) -> Resource:
    return build_endpoint(
        endpoint_id=str(pacs.endpoint_id),
        wado_root=str(pacs.wado_root),
        name=f"DICOMweb PACS {pacs.name}",
        requires_access_token=pacs.through_gateway,
    )


def _study_sort_key(study: Resource) -> tuple[str, str]:
    return (str(study.get("started") or ""), str(study.get("id")))
