"""FHIR adapter: reads through fhirpy, one transaction per fetch, connections reused.

fhirpy 2.x's sync client opens a new connection per request (``requests.request``), so the
client here routes fhirpy's requests through one pooled ``requests.Session`` (with the
configured authentication); the transaction is posted through the same session.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import requests
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import (
    AuthorizationError,
    ForbiddenError,
    MultipleResourcesFound,
    OperationOutcome,
    ResourceNotFound,
)

from sidecar.http import pooled_session, requests_auth
from sidecar.outcome import FetchError, FhirConflict, FhirUnavailable, PatientNotFound
from sidecar.settings import Settings

log = logging.getLogger(__name__)
Resource = dict[str, Any]
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
FHIR_JSON = "application/fhir+json"
_ID_CHUNK = 50  # ids per _id search, to keep URLs short


class _PooledFHIRClient(SyncFHIRClient):
    """fhirpy's sync client, with requests sent through a shared pooled session."""

    def __init__(self, url: str, session: requests.Session, timeout: float) -> None:
        super().__init__(url)
        self._session = session
        self._timeout = timeout

    def _do_request(  # type: ignore[override]
        self,
        method: str,
        path: str,
        data: dict | None = None,
        params: dict | None = None,
        extra_headers: dict | None = None,
        *,
        returning_status: bool = False,
    ) -> Any:
        headers = {**self._build_request_headers(), **(extra_headers or {})}
        if data is not None:
            headers["Content-Type"] = FHIR_JSON
        url = self._build_request_url(path, params)
        response = self._session.request(
            method, url, json=data, headers=headers, timeout=self._timeout
        )
        body = response.content.decode("utf-8") if response.content else ""
        status = response.status_code
        if 200 <= status < 300 or status == 304:
            parsed = json.loads(body) if body else None
            return (parsed, status) if returning_status else parsed
        errors = {401: AuthorizationError, 403: ForbiddenError, 404: ResourceNotFound}
        errors.update({410: ResourceNotFound, 412: MultipleResourcesFound})
        if status in errors:
            raise errors[status](body)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("resourceType") == "OperationOutcome":
            raise _StatusOutcome(status, resource=parsed)
        raise _StatusOutcome(status, reason=body[:500])


class _StatusOutcome(OperationOutcome):
    def __init__(self, status: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.status = status


class FhirStore:
    """The FHIR server, as the fetch use case needs it. Thread-safe."""

    def __init__(self, settings: Settings, *, session: requests.Session | None = None) -> None:
        self.base_url = settings.fhir_base_url
        self._timeout = settings.fhir_timeout_seconds
        self._session = session or pooled_session(
            pool_size=16, retries=1, methods=frozenset({"GET"})
        )
        self._session.auth = requests_auth(settings.fhir_auth, timeout=self._timeout)
        self._session.headers["Accept"] = FHIR_JSON
        # HAPI reuses a search's results for 60 s by default; a fetch must see its own writes
        self._session.headers["Cache-Control"] = "no-cache"
        self.client = _PooledFHIRClient(self.base_url, self._session, self._timeout)

    def close(self) -> None:
        self._session.close()

    # -- reads ---------------------------------------------------------------------------

    def read_patient(self, patient_id: str) -> Resource:
        if not FHIR_ID.match(patient_id):
            raise PatientNotFound(f"Patient/{patient_id} is not a valid resource id")
        try:
            return self._call(lambda: self.client.get("Patient", patient_id))
        except ResourceNotFound:
            raise PatientNotFound(f"Patient/{patient_id} is not known") from None

    def find_patients(self, system: str | None, value: str, *, limit: int = 2) -> list[Resource]:
        token = f"{system}|{value}" if system else value
        search = self.client.resources("Patient").search(identifier=token).limit(limit)
        return self._call(lambda: [r.serialize() for r in search.fetch()])

    def studies_of(self, patient_id: str) -> dict[str, Resource]:
        """Every ImagingStudy whose subject is this Patient, by id."""
        search = (
            self.client.resources("ImagingStudy").search(subject=f"Patient/{patient_id}").limit(200)
        )
        return self._call(lambda: {r["id"]: r.serialize() for r in search.fetch_all()})

    def read_many(self, resource_type: str, ids: list[str]) -> dict[str, Resource]:
        """The resources of these ids that exist (one search per 50 ids)."""
        found: dict[str, Resource] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start : start + _ID_CHUNK]
            search = (
                self.client.resources(resource_type).search(_id=",".join(chunk)).limit(_ID_CHUNK)
            )
            found.update(self._call(lambda s=search: {r["id"]: r.serialize() for r in s.fetch()}))
        return found

    def ping(self) -> None:
        self._call(
            lambda: self.client.execute("metadata", method="get", params={"_summary": "true"})
        )

    # -- writes --------------------------------------------------------------------------

    def transaction(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST one transaction Bundle; returns the response entries (same order)."""
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        response = self._call(lambda: self.client.execute("", method="post", data=bundle))
        return list((response or {}).get("entry", []))

    def create_if_none_exist(self, resource: Resource, condition: str) -> tuple[Any, int]:
        """Conditional create (``If-None-Exist: <condition>``): the answer's body and status
        (201 created, 200 an existing match; HAPI may send no body for the latter)."""
        return self._call(
            lambda: self.client._do_request(  # noqa: SLF001 - our pooled subclass's request
                "post",
                resource["resourceType"],
                data=resource,
                extra_headers={"If-None-Exist": condition},
                returning_status=True,
            )
        )

    # -- errors --------------------------------------------------------------------------

    def _call(self, action):
        try:
            return action()
        except (ResourceNotFound, PatientNotFound):
            raise
        except requests.Timeout as exc:
            raise FhirUnavailable("the FHIR server did not answer in time", status=504) from exc
        except requests.ConnectionError as exc:
            raise FhirUnavailable("the FHIR server is unreachable") from exc
        except (AuthorizationError, ForbiddenError) as exc:
            raise FhirUnavailable("the FHIR server refused the sidecar's credentials") from exc
        except MultipleResourcesFound as exc:  # HTTP 412: a version precondition failed
            raise FhirConflict("a resource changed while it was being written") from exc
        except _StatusOutcome as exc:
            if exc.status == 409:
                raise FhirConflict(f"the FHIR server reported a conflict: {exc}") from exc
            if exc.status >= 500:
                raise FhirUnavailable(f"the FHIR server failed (HTTP {exc.status})") from exc
            raise FetchError(
                f"the FHIR server rejected the request (HTTP {exc.status}): {exc}", status=502
            ) from exc
