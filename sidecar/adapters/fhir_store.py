"""The FHIR adapter: the one FHIR client of the sidecar (use case, registration, backfill).

fhirpy's public API does the FHIR REST work (searches, transactions, reads, updates) with
our credentials and timeout in its ``requests_config``. Two ``requests`` response hooks run
before fhirpy sees an answer: the first reads it whole within ``SIDECAR_FHIR_TIMEOUT_SECONDS``
and ``SIDECAR_FHIR_MAX_RESPONSE_BYTES`` (decoded; :func:`sidecar.adapters.http.read_bounded`),
the second turns an error status into :class:`FhirHttpError`, so this module alone decides
what each status means for a caller (:meth:`FhirStore._call`): 404/410 not found, 409/412 a
conflict to retry, 401 once more with a new token, 401/403 our credentials refused, 5xx and
timeouts the server unavailable (502/504); idempotent requests are retried after connect
errors and 502/503/504 (:func:`sidecar.core.retry.transient`). Redirects are not followed.

Search pages follow the Bundle's ``next`` links, re-based onto the configured base URL (a
link's host is never trusted with our credentials: FHIR R4 3.1.1.5.6 lets a server choose
its paging URLs, not where a client sends its token) and capped at
``SIDECAR_FHIR_MAX_PAGES``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from fhirpy import SyncFHIRClient

from sidecar.adapters.http import (
    ACCEPT_ENCODING,
    AnswerTooLarge,
    bounded_hook,
    renewing,
    requests_auth,
)
from sidecar.core import retry
from sidecar.core.fhir_values import is_fhir_id
from sidecar.core.outcome import (
    FetchError,
    FhirConflict,
    FhirRefused,
    FhirUnavailable,
    PatientNotFound,
)
from sidecar.settings import FhirSettings

log = logging.getLogger(__name__)
Resource = dict[str, Any]
T = TypeVar("T")

FHIR_JSON = "application/fhir+json"
RETRY_STATUSES = frozenset({502, 503, 504})
_ID_CHUNK = 50  # ids per _id search, to keep URLs short
PAGE_SIZE = 200  # our HAPI serves up to 500 a page (hapi.fhir.max-page-size)


class FhirHttpError(Exception):
    """The FHIR server answered with an error status; ``outcome`` is its OperationOutcome."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.outcome: dict[str, Any] | None = None
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("resourceType") == "OperationOutcome":
            self.outcome = parsed
        super().__init__(f"HTTP {status}: {self.diagnostics()}")

    def diagnostics(self) -> str:
        issues = (self.outcome or {}).get("issue") or []
        text = "; ".join(str(i.get("diagnostics") or i.get("code") or "") for i in issues)
        return text[:300] or "no OperationOutcome"


class CallerRefused(FetchError):
    """The FHIR server refused a caller's own token (401/403) on a request made as it."""

    status, code = 403, "forbidden"


class FhirNotFound(FetchError):
    """A read found nothing (HTTP 404, or 410 Gone: ``http_status``)."""

    status, code = 404, "not-found"

    def __init__(self, diagnostics: str, *, http_status: int = 404) -> None:
        super().__init__(diagnostics)
        self.http_status = http_status


def _raise_for_status(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """Response hook: error statuses and redirects (not followed) become FhirHttpError
    (fhirpy never parses them)."""
    if response.status_code >= 300 and response.status_code != 304:
        raise FhirHttpError(response.status_code, response.content)


class FhirStore:
    """The FHIR server as the sidecar needs it. Thread-safe (no shared mutable state)."""

    def __init__(self, settings: FhirSettings, *, auth: requests.auth.AuthBase | None = None):
        self.base_url = settings.base_url
        self._base = urlsplit(self.base_url)
        self._retries = settings.retries
        self._max_pages = settings.max_pages
        self._auth = (
            auth
            if auth is not None
            else requests_auth(settings.auth, timeout=settings.timeout_seconds)
        )
        bounded = bounded_hook(settings.timeout_seconds, settings.max_response_bytes)
        self.client = SyncFHIRClient(
            self.base_url,
            # HAPI reuses a search's results for 60 s by default; a fetch must see its writes
            extra_headers={
                "Cache-Control": "no-cache",
                "Content-Type": FHIR_JSON,
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            requests_config={
                "auth": self._auth,
                "timeout": settings.timeout_seconds,
                "stream": True,  # read by the bounded hook, not by requests
                "allow_redirects": False,
                "hooks": {"response": [bounded, _raise_for_status]},
            },
        )

    def close(self) -> None:
        """Nothing to release: fhirpy opens a connection per request."""

    # -- reads ---------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> Resource | None:
        """``GET [type]/[id]``; None when the server has no such resource (404/410) or the
        id is not a FHIR id (nothing else may reach the URL path)."""
        if not is_fhir_id(resource_id):
            return None
        try:
            return dict(
                self._call(
                    lambda: self.client.execute(f"{resource_type}/{resource_id}", method="get")
                )
            )
        except FhirNotFound:
            return None

    def read_patient(self, patient_id: str) -> Resource:
        patient = self.read("Patient", patient_id)
        if patient is None:
            raise PatientNotFound(f"Patient/{patient_id} is not known")
        return patient

    # -- as a caller (the imaging gateway, $fetch-imaging's patient check) ---------------

    def read_as(self, token: str, resource_type: str, resource_id: str) -> Resource | None:
        """``GET [type]/[id]`` with a caller's own token: None when missing or refused to
        that caller (401/403/404/410: the server decides, and a refusal says nothing)."""
        if not is_fhir_id(resource_id):
            return None
        client = self._as(token)
        try:
            return dict(
                self._call(
                    lambda: client.execute(f"{resource_type}/{resource_id}", method="get"),
                    as_caller=True,
                )
            )
        except (FhirNotFound, CallerRefused):
            return None

    def search_as(
        self, token: str, resource_type: str, params: dict[str, Any], *, limit: int
    ) -> list[Resource]:
        """One page of a search with a caller's own token (refused: nothing)."""
        client = self._as(token)
        try:
            bundle = self._call(
                lambda: client.execute(
                    resource_type, method="get", params={**params, "_count": limit}
                ),
                as_caller=True,
            )
        except CallerRefused:
            return []
        return [
            e["resource"]
            for e in (bundle or {}).get("entry") or []
            if (e.get("search") or {}).get("mode", "match") == "match" and "resource" in e
        ][:limit]

    def _as(self, token: str) -> SyncFHIRClient:
        """A client that sends the caller's token instead of ours (same bounds, no retry of
        a 401: it is the caller's token that is refused)."""
        config = {**self.client.requests_config, "auth": None}
        return SyncFHIRClient(
            self.base_url,
            authorization=f"Bearer {token}",
            extra_headers=dict(self.client.extra_headers or {}),
            requests_config=config,
        )

    def was_deleted(self, resource_type: str, resource_id: str) -> bool:
        """Whether the server says this resource was deleted: a read answers 410 Gone, or
        its newest history entry is a DELETE (FHIR R4 3.1.0.7.1). A plain 404 is not proof:
        a wrong base URL or a proxy answers it too."""
        if not is_fhir_id(resource_id):
            return False
        try:
            self._call(lambda: self.client.execute(f"{resource_type}/{resource_id}", method="get"))
            return False
        except FhirNotFound as exc:
            if exc.http_status == 410:
                return True
        try:
            history = self._call(
                lambda: self.client.execute(
                    f"{resource_type}/{resource_id}/_history", method="get", params={"_count": 1}
                )
            )
        except FhirNotFound:
            return False
        entries = (history or {}).get("entry") or []
        return bool(entries) and (entries[0].get("request") or {}).get("method") == "DELETE"

    def search(self, resource_type: str, params: dict[str, Any], *, limit: int) -> list[Resource]:
        """One page of a search (at most ``limit`` resources)."""
        return next(self._pages(resource_type, {**params, "_count": limit}), [])[:limit]

    def search_all(self, resource_type: str, params: dict[str, Any]) -> list[Resource]:
        """Every match, following the Bundle's ``next`` links."""
        return list(self.iterate(resource_type, params))

    def iterate(self, resource_type: str, params: dict[str, Any]) -> Iterator[Resource]:
        """Every match, one page in memory at a time (``next`` links followed lazily)."""
        for page in self._pages(resource_type, {"_count": PAGE_SIZE, **params}):
            yield from page

    def _pages(
        self, resource_type: str, params: dict[str, Any], modes: tuple[str, ...] = ("match",)
    ) -> Iterator[list[Resource]]:
        """The searchset's pages, as plain resource dicts (fhirpy's ``execute`` keeps them
        as parsed: a patient's 100 full ImagingStudies converted to fhirpy resources and
        back cost more than the request itself); entries of the search ``modes`` only."""
        bundle = self._call(lambda: self.client.execute(resource_type, method="get", params=params))
        pages = 0
        while bundle:
            pages += 1
            yield [
                e["resource"]
                for e in bundle.get("entry") or []
                if (e.get("search") or {}).get("mode", "match") in modes and "resource" in e
            ]
            following = next(
                (x.get("url") for x in bundle.get("link") or [] if x.get("relation") == "next"),
                None,
            )
            if not following:
                return
            if pages >= self._max_pages:
                raise FhirUnavailable(
                    f"the FHIR server sent more than {self._max_pages} pages of {resource_type} "
                    "(SIDECAR_FHIR_MAX_PAGES)"
                )
            url = self._rebased(str(following))
            bundle = self._call(lambda u=url: self.client.execute(u, method="get"))

    def _rebased(self, link: str) -> str:
        """A ``next`` link as a URL under our base URL: its path must lie under the base
        path; its scheme and host are replaced by ours (never trusted with credentials)."""
        parts = urlsplit(link)
        base_path = self._base.path.rstrip("/")
        if parts.path.rstrip("/") != base_path and not parts.path.startswith(base_path + "/"):
            raise FhirUnavailable("the FHIR server sent a paging link outside its base URL")
        rest = parts.path[len(base_path) :].lstrip("/")
        return f"{self.base_url}/{rest}".rstrip("/") + (f"?{parts.query}" if parts.query else "")

    def find_patients(self, token: str, *, limit: int = 2) -> list[Resource]:
        """Patients matching an ``identifier`` search token (already escaped, see qido)."""
        return self.search("Patient", {"identifier": token}, limit=limit)

    def studies_of(self, patient_id: str) -> dict[str, Resource]:
        """Every ImagingStudy whose subject is this Patient, by id."""
        found = self.search_all("ImagingStudy", {"subject": f"Patient/{patient_id}"})
        return {r["id"]: r for r in found}

    def studies_and_endpoints_of(
        self, patient_id: str
    ) -> tuple[dict[str, Resource], dict[str, Resource]]:
        """Every ImagingStudy of this Patient and the Endpoints they reference, by id: one
        search (``_include=ImagingStudy:endpoint``, FHIR R4 search 3.1.1.5.1)."""
        params = {"_count": PAGE_SIZE, "subject": f"Patient/{patient_id}"}
        params["_include"] = "ImagingStudy:endpoint"
        studies: dict[str, Resource] = {}
        endpoints: dict[str, Resource] = {}
        for page in self._pages("ImagingStudy", params, modes=("match", "include")):
            for resource in page:
                kind = resource.get("resourceType")
                if kind == "ImagingStudy":
                    studies[resource["id"]] = resource
                elif kind == "Endpoint":
                    endpoints[resource["id"]] = resource
        return studies, endpoints

    def read_many(self, resource_type: str, ids: list[str]) -> dict[str, Resource]:
        """The resources of these ids that exist (one search per 50 ids)."""
        found: dict[str, Resource] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start : start + _ID_CHUNK]
            for r in self.search(resource_type, {"_id": ",".join(chunk)}, limit=_ID_CHUNK):
                found[r["id"]] = r
        return found

    def ping(self) -> None:
        self._call(
            lambda: self.client.execute("metadata", method="get", params={"_summary": "true"})
        )

    # -- writes --------------------------------------------------------------------------

    def put(self, resource: Resource) -> Resource:
        """``PUT [type]/[id]`` (create or update under a client-assigned id)."""
        path = f"{resource['resourceType']}/{resource['id']}"
        answer = self._call(lambda: self.client.execute(path, method="put", data=resource))
        return dict(answer) if answer else resource

    def delete(self, resource_type: str, resource_id: str) -> None:
        """``DELETE [type]/[id]`` (a missing resource is not an error)."""
        if not is_fhir_id(resource_id):
            return
        try:
            self._call(
                lambda: self.client.execute(f"{resource_type}/{resource_id}", method="delete")
            )
        except FhirNotFound:
            return

    def transaction(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST one transaction Bundle; returns the response entries (same order)."""
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        response = self._call(
            lambda: self.client.execute("", method="post", data=bundle), idempotent=False
        )
        return [dict(e) for e in (response or {}).get("entry", [])]

    def batch(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST one batch Bundle (R4 3.1.0.11: each entry on its own); the response entries
        in order. Retried like an idempotent request when every entry is a PUT."""
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": entries}
        idempotent = all((e.get("request") or {}).get("method") == "PUT" for e in entries)
        response = self._call(
            lambda: self.client.execute("", method="post", data=bundle), idempotent=idempotent
        )
        return [dict(e) for e in (response or {}).get("entry", [])]

    def create_if_none_exist(self, resource: Resource, condition: str) -> tuple[str | None, bool]:
        """Conditional create (R4 transaction ``request.ifNoneExist``): the id of the match or
        of the new resource (None when the server does not say), and whether it was created."""
        entry = {
            "resource": resource,
            "request": {
                "method": "POST",
                "url": resource["resourceType"],
                "ifNoneExist": condition,
            },
        }
        answers = self.transaction([entry])
        response = (answers[0] if answers else {}).get("response") or {}
        created = str(response.get("status", "")).startswith("201")
        return _id_from_location(str(response.get("location") or "")), created

    # -- errors --------------------------------------------------------------------------

    def _call(
        self, action: Callable[[], T], *, idempotent: bool = True, as_caller: bool = False
    ) -> T:
        """Run one request; map failures to the use case's errors; retry where safe.

        Idempotent requests (GET, PUT) are retried after connect errors and 502/503/504;
        a transaction (POST) never is: it may have been applied. A 401 to our own token is
        tried once more with a new one (it expired or was revoked: nothing was applied); a
        401/403 to a caller's token is that caller's refusal (:class:`CallerRefused`).
        """
        policy = retry.transient("FHIR request", self._retries if idempotent else 0, _transient)
        try:
            if as_caller:
                return policy(action)
            return policy(renewing, self._auth, action, _unauthorized)
        except FhirHttpError as exc:
            if as_caller and exc.status in (401, 403):
                raise CallerRefused("the FHIR server refused the caller") from exc
            raise _translate(exc) from exc
        except (requests.RequestException, ValueError) as exc:
            raise _translate(exc) from exc


def _id_from_location(location: str) -> str | None:
    """``Patient/123/_history/1`` (or an absolute URL of it) -> ``123``."""
    parts = [p for p in location.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-1] if len(parts) >= 2 else None


def _unauthorized(exc: BaseException) -> bool:
    return isinstance(exc, FhirHttpError) and exc.status == 401


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, FhirHttpError):
        return exc.status in RETRY_STATUSES
    return isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout)


def _translate(exc: BaseException) -> FetchError:
    """What a failed FHIR request means for the caller (an OperationOutcome's status)."""
    if isinstance(exc, FhirHttpError):
        status = exc.status
        if status in (404, 410):
            return FhirNotFound(
                f"the FHIR server has no such resource (HTTP {status})", http_status=status
            )
        if 300 <= status < 400:
            return FhirUnavailable(f"the FHIR server answered with a redirect (HTTP {status})")
        if status in (409, 412):
            return FhirConflict(f"a resource changed while it was being written (HTTP {status})")
        if status in (401, 403):
            return FhirUnavailable(
                f"the FHIR server refused the sidecar's credentials (HTTP {status})"
            )
        if status == 504:
            return FhirUnavailable("the FHIR server timed out (HTTP 504)", status=504)
        if status >= 500:
            return FhirUnavailable(f"the FHIR server failed (HTTP {status})")
        # the server's own diagnostics may quote the request (an identifier value): they
        # stay on FhirHttpError.outcome, not in a message that is logged and stored
        return FhirRefused(
            f"the FHIR server rejected the request (HTTP {status})", http_status=status
        )
    if isinstance(exc, AnswerTooLarge):
        return FhirUnavailable(
            "the FHIR server's answer was larger than SIDECAR_FHIR_MAX_RESPONSE_BYTES"
        )
    if isinstance(exc, requests.Timeout):
        return FhirUnavailable("the FHIR server did not answer in time", status=504)
    if isinstance(exc, requests.ConnectionError):
        return FhirUnavailable("the FHIR server is unreachable")
    if isinstance(exc, ValueError):  # a 2xx whose body is not JSON
        return FhirUnavailable("the FHIR server sent an answer that is not FHIR JSON")
    return FhirUnavailable(f"the FHIR request failed ({type(exc).__name__})")
