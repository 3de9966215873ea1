"""What a fetch answers: the stored (or mapped) ImagingStudies, their Endpoints, warnings.

:meth:`FetchResult.bundle` is the ``$fetch-imaging`` answer: a searchset Bundle with the
studies (``search.mode = match``), their Endpoints (``include``) and an OperationOutcome of
warnings (``outcome``), FHIR R4 Bundle.entry.search (https://hl7.org/fhir/R4/bundle.html).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sidecar.core.mapping import Detail, trim_to_detail
from sidecar.core.outcome import operation_outcome

Resource = dict[str, Any]


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
