"""OperationOutcome helpers and the typed errors of the fetch use case.

Every error a caller sees is a FHIR OperationOutcome with the HTTP status it implies; the
web layer only serialises ``FetchError.outcome()`` with ``FetchError.status``.
"""

from __future__ import annotations

from typing import Any


def issue(severity: str, code: str, diagnostics: str, **extra: Any) -> dict[str, Any]:
    """One OperationOutcome.issue (R4: severity fatal|error|warning|information)."""
    entry: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    entry.update({k: v for k, v in extra.items() if v is not None})
    return entry


def operation_outcome(issues: list[dict[str, Any]], *, id: str | None = None) -> dict[str, Any]:  # noqa: A002
    outcome: dict[str, Any] = {"resourceType": "OperationOutcome"}
    if id:
        outcome["id"] = id
    outcome["issue"] = issues or [issue("information", "informational", "All OK")]
    return outcome


class FetchError(Exception):
    """A fetch that cannot complete; nothing has been written when it is raised."""

    status = 500
    code = "exception"

    def __init__(self, diagnostics: str, *, status: int | None = None) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        if status is not None:
            self.status = status

    def outcome(self) -> dict[str, Any]:
        return operation_outcome([issue("error", self.code, self.diagnostics)])


class BadRequest(FetchError):
    """A parameter is missing, unknown or malformed (400)."""

    status, code = 400, "invalid"


class WritesNeedPost(FetchError):
    """A GET that would write: FHIR operations that affect state are invoked with POST (405)."""

    status, code = 405, "not-supported"


class PayloadTooLarge(FetchError):
    """The request body is larger than this operation takes (413)."""

    status, code = 413, "too-long"


class PatientNotFound(FetchError):
    """The Patient does not exist on the FHIR server (404)."""

    status, code = 404, "not-found"


class PatientNotVisible(PatientNotFound):
    """The Patient exists but the caller's token may not read it: answered exactly like a
    Patient that does not exist (404, same text), so the answer never tells that it exists;
    ``patient_id`` is for the audit only, never for the answer."""

    def __init__(self, diagnostics: str, *, patient_id: str) -> None:
        super().__init__(diagnostics)
        self.patient_id = patient_id


class AmbiguousPatient(FetchError):
    """An identifier matches more than one Patient (409)."""

    status, code = 409, "multiple-matches"


class DuplicatePatient(FetchError):
    """Another Patient carries an identifier of the same PACS patient (409); ``patient_ids``
    names them all, this one first."""

    status, code = 409, "multiple-matches"

    def __init__(self, diagnostics: str, *, patient_ids: tuple[str, ...]) -> None:
        super().__init__(diagnostics)
        self.patient_ids = patient_ids


class NotMappable(FetchError):
    """The Patient has no identifier that can be sent to any configured PACS (422)."""

    status, code = 422, "processing"


class PacsUnavailable(FetchError):
    """A PACS refused, failed or answered with an error (502)."""

    status, code = 502, "transient"


class PacsTimeout(PacsUnavailable):
    """A PACS did not answer within the configured timeout (504)."""

    status, code = 504, "timeout"


class FhirUnavailable(FetchError):
    """The FHIR server failed or timed out (502/504)."""

    status, code = 502, "transient"


class FhirRefused(FetchError):
    """The FHIR server refused a request with a client error (4xx other than 401, 403, 404,
    409, 410, 412): our request was wrong, so sending it again unchanged will not help
    (502 to our caller; ``http_status`` is the server's)."""

    status, code = 502, "processing"

    def __init__(self, diagnostics: str, *, http_status: int) -> None:
        super().__init__(diagnostics)
        self.http_status = http_status


class FhirConflict(FetchError):
    """A write kept conflicting with concurrent writers (409)."""

    status, code = 409, "conflict"


class Unauthorized(FetchError):
    """No credentials (401)."""

    status, code = 401, "login"


class Forbidden(FetchError):
    """Wrong credentials (403)."""

    status, code = 403, "forbidden"
