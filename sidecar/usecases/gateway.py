"""The imaging gateway: a caller's DICOMweb request, answered with exactly what the FHIR
server shows that caller (SMART Imaging Access, "Retrieving images").

For every request: which studies may the caller see (the FHIR server, asked with the
caller's own token, returns their ImagingStudies; cached for ``ttl`` seconds and never
past the token's expiry), then the rules of :mod:`sidecar.core.imaging_access` on what the
PACS holds. The PACS is asked with the sidecar's own credentials; answers stream on.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from sidecar.core import identity, imaging_access, qido
from sidecar.core.caller import Caller
from sidecar.core.dicomweb_paths import Target
from sidecar.core.imaging_access import StudyAccess
from sidecar.core.outcome import FetchError
from sidecar.ports import FhirServer, Pacs, Record, Retrieval
from sidecar.settings import PacsSettings

BATCH = 50  # StudyInstanceUIDs per FHIR search as the caller
THUMBNAIL_VIEWPORT = "viewport=128,128"  # PS3.18 8.3.5.1.3: a thumbnail is a small rendering


class NotAllowed(FetchError):
    """Not the caller's (or not there): 404, never saying which (PS3.18 8.7.3)."""

    status, code = 404, "not-found"

    def __init__(self) -> None:
        super().__init__("no such resource for this caller")


class _Cache:
    """(caller, key) -> value until min(ttl, the token's expiry); bounded, oldest out."""

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl, self.size = ttl, size
        self._items: OrderedDict[tuple[str, ...], tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> tuple[bool, Any]:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] < time.time():
                self._items.pop(key, None)
                return False, None
            self._items.move_to_end(key)
            return True, item[1]

    def put(self, key: tuple[str, ...], value: Any, not_after: float) -> None:
        with self._lock:
            self._items[key] = (min(time.time() + self.ttl, not_after), value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class ImagingGateway:
    """Decisions and answers of the gateway; thread-safe, one per process."""

    def __init__(
        self,
        pacs_settings: Mapping[str, PacsSettings],
        pacs: Mapping[str, Pacs],
        fhir: FhirServer,
        *,
        ttl: float = 60.0,
        size: int = 10_000,
    ) -> None:
        self.pacs_settings = pacs_settings
        self.pacs = pacs
        self.fhir = fhir
        self._decisions = _Cache(ttl, size)
        self._contents = _Cache(ttl, size)

    def knows(self, pacs: str) -> bool:
        return pacs in self.pacs

    def root(self, pacs: str) -> str:
        """Where clients reach this PACS through the gateway (its Endpoint.address)."""
        return str(self.pacs_settings[pacs].wado_root)

    # -- what the caller may see ------------------------------------------------------------

    def access(
        self, caller: Caller, pacs: str, study_uids: Iterable[str]
    ) -> dict[str, StudyAccess]:
        """The studies among ``study_uids`` the FHIR server shows this caller in this PACS."""
        found: dict[str, StudyAccess] = {}
        asked = []
        for uid in dict.fromkeys(u for u in study_uids if qido.is_uid(u)):
            hit, value = self._decisions.get((caller.key, pacs, uid))
            if hit:
                if value is not None:
                    found[uid] = value
            else:
                asked.append(uid)
        for start in range(0, len(asked), BATCH):
            batch = asked[start : start + BATCH]
            decided = self._ask_fhir(caller, pacs, batch)
            for uid in batch:
                self._decisions.put((caller.key, pacs, uid), decided.get(uid), caller.expires_at)
            found.update(decided)
        return found

    def _ask_fhir(self, caller: Caller, pacs: str, uids: list[str]) -> dict[str, StudyAccess]:
        settings = self.pacs_settings[pacs]
        tokens = ",".join(f"urn:dicom:uid|urn:oid:{uid}" for uid in uids)
        studies = self.fhir.search_as(
            caller.token, "ImagingStudy", {"identifier": tokens}, limit=len(uids) * 2
        )
        keys: dict[str, list[identity.PatientKey]] = {}
        decided: dict[str, StudyAccess] = {}
        for study in studies:
            subject = ((study.get("subject") or {}).get("reference") or "").removeprefix("Patient/")
            if subject and subject not in keys:
                patient = self.fhir.read_as(caller.token, "Patient", subject) or {}
                keys[subject] = identity.patient_keys(patient, [settings])[0]
            access = imaging_access.study_access(
                study, f"Endpoint/{settings.endpoint_id}", keys.get(subject, [])
            )
            if access is not None and access.study_uid in uids:
                decided[access.study_uid] = access
        return decided

    def study(self, caller: Caller, pacs: str, study_uid: str) -> StudyAccess:
        access = self.access(caller, pacs, [study_uid]).get(study_uid)
        if access is None:
            raise NotAllowed()
        return access

    # -- WADO-RS ------------------------------------------------------------------------------

    def check(self, caller: Caller, pacs: str, target: Target) -> StudyAccess:
        """NotAllowed unless every part of the target is the caller's."""
        assert target.study is not None
        access = self.study(caller, pacs, target.study)
        if target.series and not access.has_series(target.series):
            raise NotAllowed()
        if target.instance and not access.has_instance(target.series or "", target.instance):
            raise NotAllowed()
        if target.whole and not imaging_access.whole_is_allowed(
            access, target.series, self._held(pacs, target.study, target.series)
        ):
            raise NotAllowed()  # a partial study is never returned as if it were whole
        return access

    def _held(self, pacs: str, study_uid: str, series_uid: str | None) -> list[Record]:
        """What the PACS holds under a study (its series) or a series (its instances)."""
        level = "series" if series_uid is None else "instance"
        key = ("pacs", pacs, study_uid, level)
        hit, rows = self._contents.get(key)
        if not hit:
            rows = self.pacs[pacs].study_contents([study_uid], level).get(study_uid, [])
            self._contents.put(key, rows, time.time() + self._contents.ttl)
        if series_uid is None:
            return rows
        return [r for r in rows if qido.first_value(r, imaging_access.SERIES_UID) == series_uid]

    def retrieve(
        self, caller: Caller, pacs: str, target: Target, query: str, headers: Mapping[str, str]
    ) -> Retrieval:
        """A checked WADO-RS resource from the PACS, streamed. A thumbnail is the rendered
        resource in a small viewport (the PACS need not know thumbnails)."""
        access = self.check(caller, pacs, target)
        path = target.path
        if target.resource == "thumbnail":
            path, query = self._thumbnail(access, target), THUMBNAIL_VIEWPORT
        return self.pacs[pacs].retrieve(path, query, headers)

    def _thumbnail(self, access: StudyAccess, target: Target) -> str:
        """The rendered resource standing for a thumbnail: the frame or instance itself, or
        the middle listed instance of the series (of the study's first series)."""
        if target.instance:
            base = f"studies/{target.study}/series/{target.series}/instances/{target.instance}"
            return (
                f"{base}/frames/{target.frames}/rendered" if target.frames else f"{base}/rendered"
            )
        series = target.series or next(iter(sorted(access.series)), None)
        instances = sorted(access.series.get(series or "", ()))
        if not series or not instances:
            raise NotAllowed()
        middle = instances[len(instances) // 2]
        return f"studies/{target.study}/series/{series}/instances/{middle}/rendered"

    def metadata(self, caller: Caller, pacs: str, target: Target) -> list[Record]:
        """Checked metadata, its bulk data URLs pointing at the gateway."""
        access = self.check(caller, pacs, target)
        items = self.pacs[pacs].search(target.path, "")
        # check() judged the PACS's rows with their issuer; a metadata item may lack it
        visible = imaging_access.visible_rows(
            items, {access.study_uid: access}, "instance", issuer_checked=True
        )
        return imaging_access.rewrite_urls(visible, self.root(pacs))

    # -- QIDO-RS --------------------------------------------------------------------------

    def search(self, caller: Caller, pacs: str, target: Target, query: str) -> list[Record]:
        """A QIDO-RS answer with only the rows of studies, series and instances the caller
        may see (a study search is first narrowed by nothing: the PACS's rows are judged)."""
        if target.study:  # the study (and series) searched in must be the caller's
            access = self.study(caller, pacs, target.study)
            if target.series and not access.has_series(target.series):
                raise NotAllowed()
        rows = self.pacs[pacs].search(target.path, query)
        uids = [qido.first_value(r, qido.STUDY_INSTANCE_UID) or "" for r in rows]
        access = self.access(caller, pacs, uids)
        visible = imaging_access.visible_rows(rows, access, target.level)
        return imaging_access.rewrite_urls(visible, self.root(pacs))
