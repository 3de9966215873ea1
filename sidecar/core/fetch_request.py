"""What one fetch asks for: the Patient, the QIDO criteria, the depth, whether to write.

The ``$fetch-imaging`` parameters (:mod:`sidecar.core.fetch_params`), the sync worker, the
backfill and the CLI all describe their request with a :class:`FetchRequest`; the use case
(:mod:`sidecar.usecases.fetch_imaging`) runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sidecar.core import qido
from sidecar.core.caller import Caller
from sidecar.core.mapping import Detail


@dataclass(frozen=True)
class FetchRequest:
    """What to fetch. Exactly one of ``patient_id`` / ``identifier`` (system may be None)."""

    patient_id: str | None = None
    identifier: tuple[str | None, str] | None = None
    modalities: frozenset[str] = frozenset()
    study_date_ge: date | None = None
    study_date_le: date | None = None
    accession: str | None = None
    study_instance_uid: str | None = None
    detail: Detail = Detail.INSTANCE
    persist: bool = True
    #: read every study down to its instances, even when its study-level facts say nothing
    #: changed (the periodic resync; docs/sync.md "steady state")
    refresh: bool = False
    #: StudyInstanceUIDs to read down to the instances even when unchanged (a PACS change
    #: log named them: an instance replaced under the same counts is seen at once)
    refresh_studies: frozenset[str] = frozenset()
    #: who asked (a validated token), or None: the sidecar itself (the worker, the backfill,
    #: a caller with a sidecar credential). With a caller, the FHIR server decides whether
    #: it may read the Patient, and the ImagingStudies written are recorded as its request.
    caller: Caller | None = None

    @property
    def criteria(self) -> qido.StudyCriteria:
        return qido.StudyCriteria(
            modalities=self.modalities,
            study_date_ge=self.study_date_ge,
            study_date_le=self.study_date_le,
            accession=self.accession,
            study_instance_uid=self.study_instance_uid,
        )
