"""The PACS adapter: QIDO-RS (DICOM PS3.18 10.6) on a pooled session, our timeouts and retries.

- **Study level** is sent as a query string we build (:mod:`sidecar.core.qido`): Orthanc 1.10
  does not percent-decode filter values, and dicomweb-client would encode them. These go
  straight through the session this client owns.
- **Series and instance level** (a StudyInstanceUID in the path, nothing to encode) go
  through dicomweb-client's public ``search_for_series`` / ``search_for_instances``.
- Every level pages through :meth:`DicomwebPacs._pages`: ``limit``/``offset``, the next offset
  counting the rows the PACS returned (not the rows kept), a short page ending the walk
  unless the PACS says ``Warning: 299`` (PS3.18 6.7.1.2.2: more results than it sent), and a
  page cap that ends in a clear error instead of an endless loop.

dicomweb-client's own retry (5 attempts on every exception) is off; the session retries
connect errors and 502/503/504 (``SIDECAR_PACS_RETRIES``). Errors become PacsUnavailable
(502) or PacsTimeout (504).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

import requests
from dicomweb_client import DICOMwebClient
from prometheus_client import Histogram

from sidecar.adapters.http import AnswerTooLarge, pooled_session, renewing, requests_auth
from sidecar.core import qido
from sidecar.core.outcome import PacsTimeout, PacsUnavailable
from sidecar.ports import PatientStudies, Record, Retrieval
from sidecar.settings import PacsSettings, QidoSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

QIDO_SECONDS = Histogram(
    "sidecar_qido_request_seconds", "QIDO-RS request time", ["pacs", "level", "outcome"]
)

#: One page: (rows, the PACS said there are more than it sent).
Page = tuple[list[Record], bool]
DICOM_JSON = "application/dicom+json, application/json"
UID_BATCH = 50  # StudyInstanceUIDs per UID-list query (keeps the URL under 4 KB)


class DicomwebPacs:
    """One configured PACS. Thread-safe; share one instance per PACS per process."""

    def __init__(
        self,
        settings: PacsSettings,
        qido_settings: QidoSettings,
        *,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.page_size = qido_settings.page_size
        self.max_pages = qido_settings.max_pages
        self._timeout = (qido_settings.connect_timeout_seconds, qido_settings.timeout_seconds)
        self._session = session or pooled_session(
            pool_size=qido_settings.concurrency + 2,
            retries=qido_settings.retries,
            deadline=qido_settings.timeout_seconds,
            max_bytes=qido_settings.max_response_bytes,
        )
        self._auth = requests_auth(settings.auth, timeout=qido_settings.timeout_seconds)
        self._session.auth = self._auth
        self._session.headers["Accept"] = DICOM_JSON
        # the Warning header of the last response on this thread (dicomweb-client hides it)
        self._last = threading.local()
        self._session.hooks["response"].append(self._remember_warning)
        self._client = DICOMwebClient(settings.url, session=self._session, timeout=self._timeout)
        self._client.set_http_retry_params(retry=False)
        self._pool = ThreadPoolExecutor(
            qido_settings.concurrency, thread_name_prefix=f"qido-{self.name}"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    # -- study level -------------------------------------------------------------------

    def search_patient_studies(
        self, patient_id: str, issuer: str | None, criteria: qido.StudyCriteria
    ) -> PatientStudies:
        """All studies of one patient identifier, checked exactly (PatientID, issuer,
        criteria); what the PACS matched loosely is dropped and counted."""
        filters = qido.study_filters(patient_id, issuer, criteria)
        kept: list[Record] = []
        invalid: list[str] = []
        dropped = pages = 0
        for page in self.study_pages(filters, fields=qido.STUDY_FIELDS):
            pages += 1
            for record in page:
                exact = qido.is_exact_patient(record, patient_id, issuer)
                uid = qido.first_value(record, qido.STUDY_INSTANCE_UID) or ""
                if exact and not qido.is_uid(uid):
                    invalid.append(uid[:80])  # this patient's, but unusable: say so
                elif exact and qido.matches_criteria(record, criteria):
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
        return PatientStudies(kept, dropped, pages, invalid)

    def study_pages(
        self, filters: list[tuple[str, str]], *, fields: Iterable[str]
    ) -> Iterator[list[Record]]:
        """Study-level QIDO pages; the caller applies the exact checks. Filters must come
        from :mod:`sidecar.core.qido` (values safe to send unencoded)."""
        field_list = tuple(fields)

        def page(offset: int) -> Page:
            query = qido.query_string(
                filters, fields=field_list, limit=self.page_size, offset=offset
            )
            return self._get_rows(f"{self.settings.url}/studies?{query}")

        return self._pages("study", page)

    def find_study(self, study_uid: str) -> list[Record]:
        """The study-level records of one study, whoever's they are (none: the PACS lacks
        it; several: the PACS files one StudyInstanceUID under several patients)."""
        return self.find_studies([study_uid]).get(study_uid, [])

    def find_studies(self, study_uids: Iterable[str]) -> dict[str, list[Record]]:
        """Study-level records of these studies that the PACS holds, whoever's they are.

        One query per 50 UIDs (UID list matching, PS3.4 C.2.2.2.2); asks for
        IssuerOfPatientID (0010,0021), which Orthanc returns only when asked.
        """
        uids = [u for u in dict.fromkeys(study_uids) if qido.is_uid(u)]
        found: dict[str, list[Record]] = {}
        for start in range(0, len(uids), UID_BATCH):
            batch = uids[start : start + UID_BATCH]
            filters = [(qido.STUDY_INSTANCE_UID, ",".join(batch))]
            for page in self.study_pages(filters, fields=qido.STUDY_FIELDS):
                for record in page:
                    uid = qido.first_value(record, qido.STUDY_INSTANCE_UID)
                    if uid in batch:
                        found.setdefault(uid, []).append(record)
        return found

    # -- series / instance level ---------------------------------------------------------

    def study_contents(self, study_uids: Iterable[str], level: str) -> dict[str, list[Record]]:
        """Series- or instance-level records per study: one paged query per study, in
        parallel (bounded by ``SIDECAR_QIDO_CONCURRENCY``)."""
        uids = list(study_uids)
        answered = dict(self.study_contents_as_answered(uids, level))
        return {uid: answered[uid] for uid in uids if uid in answered}  # in the order asked

    def study_contents_as_answered(
        self, study_uids: Iterable[str], level: str
    ) -> Iterator[tuple[str, list[Record]]]:
        """Each study's records in the order the PACS answers; queries not yet started are
        cancelled when one fails or the caller stops early."""
        uids = list(study_uids)
        if level not in ("series", "instance") or not uids:
            return
        futures = {self._pool.submit(self._contents, uid, level): uid for uid in uids}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()

    def _contents(self, study_uid: str, level: str) -> list[Record]:
        search = (
            self._client.search_for_series
            if level == "series"
            else self._client.search_for_instances
        )
        fields = list(qido.SERIES_FIELDS if level == "series" else qido.INSTANCE_FIELDS)

        def page(offset: int) -> Page:
            self._last.warning = ""
            rows = search(
                study_instance_uid=study_uid,
                fields=fields,
                limit=self.page_size,
                offset=offset or None,
            )
            return list(rows), "299" in self._last.warning

        records: list[Record] = []
        for rows in self._pages(level, page):
            # A PACS may ignore the study in the path; keep only this study's records.
            records.extend(
                r for r in rows if qido.first_value(r, qido.STUDY_INSTANCE_UID) in (None, study_uid)
            )
        return records

    # -- the imaging gateway: a client's request, on its behalf ---------------------------

    def search(self, path: str, query: str) -> list[Record]:
        """One QIDO-RS answer of ``{url}/{path}?{query}`` (a path and query the gateway
        rebuilt from validated parts), bounded like every answer."""
        url = f"{self.settings.url}/{path}" + (f"?{query}" if query else "")
        return self._timed("gateway", lambda: self._get_rows(url))[0]

    def retrieve(self, path: str, query: str, headers: Mapping[str, str]) -> Retrieval:
        """A WADO-RS answer of ``{url}/{path}``, streamed (never a whole study in memory):
        ``Accept`` and ``Range`` as the client sent them, identity encoding (the bytes go
        on as they come), our credentials. A 401 fetches a new token once."""
        url = f"{self.settings.url}/{path}" + (f"?{query}" if query else "")
        sent = {k: v for k, v in headers.items() if k.lower() in ("accept", "range")}
        sent.setdefault("Accept", "*/*")
        sent["Accept-Encoding"] = "identity"

        def call() -> requests.Response:
            response = self._session.get(url, headers=sent, stream=True, timeout=self._timeout)
            if response.status_code == 401:
                response.close()
                response.raise_for_status()
            return response

        return _Streamed(self._timed("retrieve", call))

    # -- health ------------------------------------------------------------------------

    def ping(self) -> None:
        """One cheap QIDO request (dicomweb-client's search); raises PacsUnavailable/Timeout."""
        self._timed("ping", lambda: self._client.search_for_studies(limit=1))

    # -- transport ---------------------------------------------------------------------

    def _pages(self, level: str, page: Callable[[int], Page]) -> Iterator[list[Record]]:
        """The one paging loop of every level (see the module docstring)."""
        offset = 0
        for _ in range(self.max_pages):
            rows, more = self._timed(level, lambda o=offset: page(o))
            yield rows
            offset += len(rows)
            if not rows or (len(rows) < self.page_size and not more):
                return
        raise PacsUnavailable(
            f"PACS {self.name!r} sent more than {self.max_pages} pages of {level}-level "
            f"results ({offset} rows); it may ignore 'offset' (SIDECAR_QIDO_MAX_PAGES)"
        )

    def _get_rows(self, url: str) -> Page:
        response = self._session.get(url, timeout=self._timeout)
        response.raise_for_status()
        more = "299" in response.headers.get("Warning", "")
        if not response.content:
            return [], more
        body = response.json()
        return ([body] if isinstance(body, dict) else list(body)), more

    def _remember_warning(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last.warning = response.headers.get("Warning", "")

    def _timed(self, level: str, call: Callable[[], T]) -> T:
        return timed(self.name, level, call, auth=self._auth)


def _unauthorized(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    return isinstance(exc, requests.HTTPError) and getattr(response, "status_code", 0) == 401


def timed(pacs: str, level: str, call: Callable[[], T], *, auth: Any = None) -> T:
    """Run one PACS request: its time in ``sidecar_qido_request_seconds``, its failure as
    PacsTimeout (504) or PacsUnavailable (502) naming the PACS; a 401 once more with a new
    token when the credentials are OAuth2 (the cached one expired or was revoked)."""
    started = time.perf_counter()
    outcome = "error"
    try:
        result = renewing(auth, call, _unauthorized)
        outcome = "ok"
        return result
    except AnswerTooLarge as exc:
        raise PacsUnavailable(
            f"PACS {pacs!r} sent a {level} answer larger than SIDECAR_PACS_MAX_RESPONSE_BYTES"
        ) from exc
    except requests.TooManyRedirects as exc:
        raise PacsUnavailable(f"PACS {pacs!r} answered a {level} query with a redirect") from exc
    except requests.Timeout as exc:
        raise PacsTimeout(f"PACS {pacs!r} did not answer in time ({level} query)") from exc
    except requests.ConnectionError as exc:
        if "timed out" in str(exc).lower():
            raise PacsTimeout(f"PACS {pacs!r} did not answer in time ({level})") from exc
        raise PacsUnavailable(f"PACS {pacs!r} is unreachable ({level} query)") from exc
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        if status == 504:
            raise PacsTimeout(f"PACS {pacs!r} timed out (HTTP 504)") from exc
        raise PacsUnavailable(f"PACS {pacs!r} answered HTTP {status} to a {level} query") from exc
    except (requests.RequestException, ValueError, TypeError) as exc:
        raise PacsUnavailable(
            f"PACS {pacs!r} sent an unusable answer ({type(exc).__name__})"
        ) from exc
    finally:
        QIDO_SECONDS.labels(pacs, level, outcome).observe(time.perf_counter() - started)


class _Streamed:
    """A PACS answer on its way to a client (implements :class:`sidecar.ports.Retrieval`)."""

    CHUNK = 1024 * 1024

    def __init__(self, response: requests.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = dict(response.headers)

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self._response.raw.stream(self.CHUNK, decode_content=False)
        finally:
            self._response.close()

    def close(self) -> None:
        self._response.close()
