"""Orthanc's own REST API, for what DICOMweb has no word for: the change log.

``GET /changes?since=N&limit=M`` answers ``{"Changes": [...], "Done": bool, "Last": N}``;
``GET /changes?last`` the newest sequence number. Measured on Orthanc 1.10.1 (docs/sync.md):
storing a study logs ``NewInstance``, ``NewSeries``, ``NewStudy``, ``NewPatient`` at once and
``StableSeries``, ``StableStudy``, ``StablePatient`` once nothing arrived for ``StableAge``
seconds; **deleting a study logs nothing and removes that study's earlier entries**, so
deletions are found by the sweep (``subscription_handlers.usecases.triggers.sweep``), not here.

References: Orthanc Book, REST API (https://orthanc.uclouvain.be/book/users/rest.html),
"Tracking changes".
"""

from __future__ import annotations

from typing import Any

import requests

from sidecar.adapters.dicomweb import timed
from sidecar.adapters.http import pooled_session, requests_auth
from sidecar.core.outcome import PacsUnavailable
from sidecar.ports import Change
from sidecar.settings import OrthancChangeLog, PacsSettings, QidoSettings

#: Change types that may bring a new or grown study (NewInstance is covered by NewSeries
#: and the Stable* that follows; Patient-level changes carry no study).
STUDY_CHANGES = frozenset({"NewStudy", "StableStudy", "NewSeries", "StableSeries"})


class OrthancChanges:
    """The change log of one Orthanc PACS, with the PACS's credentials and timeouts
    (implements :class:`sidecar.ports.ChangeLog`)."""

    study_change_types = STUDY_CHANGES

    def __init__(
        self,
        settings: PacsSettings,
        log: OrthancChangeLog,
        qido: QidoSettings,
        *,
        session: requests.Session | None = None,
    ) -> None:
        self.name = settings.name
        self.root = log.url
        self._timeout = (qido.connect_timeout_seconds, qido.timeout_seconds)
        self._session = session or pooled_session(
            pool_size=2,
            retries=qido.retries,
            deadline=qido.timeout_seconds,
            max_bytes=qido.max_response_bytes,
        )
        self._auth = requests_auth(settings.auth, timeout=qido.timeout_seconds)
        self._session.auth = self._auth

    def close(self) -> None:
        self._session.close()

    def _get(self, path: str, *, missing_ok: bool = False, **params: Any) -> Any:
        def call() -> Any:
            response = self._session.get(f"{self.root}{path}", params=params, timeout=self._timeout)
            if response.status_code == 404 and missing_ok:
                return None
            response.raise_for_status()
            return response.json()

        return timed(self.name, "changes", call, auth=self._auth)

    def _log(self, **params: Any) -> dict[str, Any]:
        """One answer of ``/changes``; a 404 (no change log at this URL: not Orthanc's REST
        root) or a malformed answer is an error, never an empty log."""
        body = self._get("/changes", missing_ok=True, **params)
        if body is None:
            raise PacsUnavailable(
                f"PACS {self.name!r} has no change log at {self.root}/changes (HTTP 404): "
                f"SIDECAR_PACS_{self.name.upper()}_ORTHANC_URL must be Orthanc's REST root"
            )
        if not isinstance(body, dict) or not _sequence(body.get("Last")):
            raise PacsUnavailable(
                f"PACS {self.name!r} sent an unusable change log answer (no valid 'Last')"
            )
        return body

    def last(self) -> int:
        """The newest sequence number of the change log."""
        return int(self._log(last="")["Last"])

    def since(self, seq: int, limit: int = 100) -> tuple[list[Change], int, bool]:
        """Changes after ``seq``: (changes, the last sequence they cover, done?).

        With changes, the cursor they allow is the newest ``Seq`` among them (not the
        answer's ``Last``, which a wrong answer could set anywhere); without, ``Last`` (a
        log newer than ``seq`` whose entries were deleted, or one reset below ``seq``)."""
        body = self._log(since=seq, limit=limit)
        rows = body.get("Changes") or []
        if not isinstance(rows, list):
            raise PacsUnavailable(f"PACS {self.name!r} sent an unusable change log answer")
        changes = [
            Change(int(c["Seq"]), str(c["ChangeType"]), str(c["ResourceType"]), str(c["ID"]))
            for c in rows
            if isinstance(c, dict)
            and {"Seq", "ChangeType", "ResourceType", "ID"} <= set(c)
            and _sequence(c["Seq"])
        ]
        covered = max((c.seq for c in changes), default=None)
        if covered is None:
            return [], int(body["Last"]), bool(body.get("Done", True))
        return changes, covered, bool(body.get("Done", True))

    def study_uid(self, change: Change) -> str | None:
        """The StudyInstanceUID (0020,000D) a study or series change is about (None: gone)."""
        if change.resource_type == "Study":
            study = self._get(f"/studies/{change.resource_id}", missing_ok=True)
        elif change.resource_type == "Series":
            series = self._get(f"/series/{change.resource_id}", missing_ok=True)
            parent = (series or {}).get("ParentStudy")
            study = self._get(f"/studies/{parent}", missing_ok=True) if parent else None
        else:
            return None
        return ((study or {}).get("MainDicomTags") or {}).get("StudyInstanceUID")


def _sequence(value: Any) -> bool:
    """A change sequence number: a non-negative JSON integer (not a bool, float or text)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
