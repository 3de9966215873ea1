"""PACS adapter: QIDO-RS over dicomweb-client with a pooled session, our timeouts and retries.

dicomweb-client's own retry (5 attempts, exponential, on every exception) is switched off;
the session retries connect errors and 502/503/504 once or as configured. Study-level
queries are sent with values that Orthanc 1.10 matches without decoding (see sidecar.qido),
which dicomweb-client's ``quote_plus`` encoding would break, so that one request goes
through the client's GET helper with a query string we build; series/instance queries
(UID filters only) use the public API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from dicomweb_client import DICOMwebClient
from prometheus_client import Histogram

from sidecar import qido
from sidecar.http import pooled_session, requests_auth
from sidecar.outcome import PacsTimeout, PacsUnavailable
from sidecar.settings import PacsSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

QIDO_SECONDS = Histogram(
    "sidecar_qido_request_seconds", "QIDO-RS request time", ["pacs", "level", "outcome"]
)

Record = dict[str, Any]


@dataclass(frozen=True)
class PatientStudies:
    """Studies a PACS holds for one (PatientID, issuer), after the exact checks."""

    records: list[Record]
    dropped: int  # records the PACS returned that were not exactly this patient's
    requests: int


class PacsClient:
    """One configured PACS. Thread-safe; share one instance per PACS per process."""

    def __init__(
        self,
        settings: PacsSettings,
        *,
        timeout: float,
        connect_timeout: float,
        retries: int,
        concurrency: int,
        page_size: int,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.page_size = page_size
        self._session = session or pooled_session(pool_size=concurrency + 2, retries=retries)
        self._session.auth = requests_auth(settings.auth, timeout=timeout)
        self._client = DICOMwebClient(
            settings.url, session=self._session, timeout=(connect_timeout, timeout)
        )
        self._client.set_http_retry_params(retry=False)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"qido-{self.name}")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    # -- study level -------------------------------------------------------------------

    def search_patient_studies(
        self, patient_id: str, issuer: str | None, criteria: qido.StudyCriteria
    ) -> PatientStudies:
        """All studies of one patient identifier, paged with limit/offset, checked exactly."""
        filters = qido.study_filters(patient_id, issuer, criteria)
        kept: list[Record] = []
        dropped = requests_made = 0
        for page in self.study_pages(filters, fields=qido.STUDY_FIELDS):
            requests_made += 1
            for record in page:
                if qido.is_exact_patient(record, patient_id, issuer) and qido.matches_criteria(
                    record, criteria
                ):
                    kept.append(record)
                else:
                    dropped += 1
                    log.info(
                        "dropped a study the PACS matched loosely",
                        extra={
                            "pacs": self.name,
                            "study_uid": qido.first_value(record, qido.STUDY_INSTANCE_UID),
                        },
                    )
        return PatientStudies(kept, dropped, requests_made)

    def study_pages(
        self, filters: list[tuple[str, str]], *, fields: Iterable[str]
    ) -> Iterator[list[Record]]:
        """Study-level QIDO pages (limit/offset) until the PACS has no more; the caller
        applies the exact checks. Filters must come from :mod:`sidecar.qido`."""
        offset = 0
        while True:
            query = qido.query_string(filters, fields=fields, limit=self.page_size, offset=offset)
            page, more = self._get_json(f"{self.settings.url}/studies?{query}", level="study")
            yield page
            offset += len(page)
            if not page or (len(page) < self.page_size and not more):
                return

    def find_study(self, study_uid: str) -> Record | None:
        """The study-level record of one study, whoever's it is (None if the PACS lacks it)."""
        query = qido.query_string([(qido.STUDY_INSTANCE_UID, study_uid)], limit=2)
        page, _ = self._get_json(f"{self.settings.url}/studies?{query}", level="study")
        return next(
            (r for r in page if qido.first_value(r, qido.STUDY_INSTANCE_UID) == study_uid), None
        )

    # -- series / instance level ---------------------------------------------------------

    def study_contents(self, study_uids: Iterable[str], level: str) -> dict[str, list[Record]]:
        """Series- or instance-level records per study: one paged query per study, in parallel
        (bounded by the pool size)."""
        uids = list(study_uids)
        if level not in ("series", "instance") or not uids:
            return {}
        futures = {uid: self._pool.submit(self._contents, uid, level) for uid in uids}
        results: dict[str, list[Record]] = {}
        try:
            for uid, future in futures.items():
                results[uid] = future.result()
        finally:
            for future in futures.values():
                future.cancel()
        return results

    def _contents(self, study_uid: str, level: str) -> list[Record]:
        search = (
            self._client.search_for_series
            if level == "series"
            else self._client.search_for_instances
        )
        fields = qido.SERIES_FIELDS if level == "series" else qido.INSTANCE_FIELDS
        records: list[Record] = []
        while True:
            page = self._timed(
                level,
                lambda: search(
                    study_instance_uid=study_uid,
                    fields=list(fields),
                    limit=self.page_size,
                    offset=len(records) or None,
                ),
            )
            # A PACS may ignore the study in the path; keep only this study's records.
            records.extend(
                r for r in page if qido.first_value(r, qido.STUDY_INSTANCE_UID) in (None, study_uid)
            )
            if len(page) < self.page_size:
                return records

    # -- health ------------------------------------------------------------------------

    def ping(self) -> None:
        """One cheap QIDO request; raises PacsUnavailable/PacsTimeout."""
        self._get_json(f"{self.settings.url}/studies?limit=1", level="ping")

    # -- transport ---------------------------------------------------------------------

    def _get_json(self, url: str, *, level: str) -> tuple[list[Record], bool]:
        def call() -> tuple[list[Record], bool]:
            response = self._client._http_get(  # noqa: SLF001 - see module docstring
                url, headers={"Accept": "application/dicom+json, application/json"}
            )
            more = "299" in response.headers.get("Warning", "")
            if not response.content:
                return [], more
            body = response.json()
            return ([body] if isinstance(body, dict) else list(body)), more

        return self._timed(level, call)

    def _timed(self, level: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = call()
            outcome = "ok"
            return result
        except requests.Timeout as exc:
            raise PacsTimeout(f"PACS {self.name!r} did not answer in time ({level} query)") from exc
        except requests.ConnectionError as exc:
            if "timed out" in str(exc).lower():
                raise PacsTimeout(f"PACS {self.name!r} did not answer in time ({level})") from exc
            raise PacsUnavailable(f"PACS {self.name!r} is unreachable ({level} query)") from exc
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            if status == 504:
                raise PacsTimeout(f"PACS {self.name!r} timed out (HTTP 504)") from exc
            raise PacsUnavailable(
                f"PACS {self.name!r} answered HTTP {status} to a {level} query"
            ) from exc
        except (requests.RequestException, ValueError) as exc:
            raise PacsUnavailable(
                f"PACS {self.name!r} sent an unusable answer ({type(exc).__name__})"
            ) from exc
        finally:
            QIDO_SECONDS.labels(self.name, level, outcome).observe(time.perf_counter() - started)
