"""R4 validation of mapping output with fhir.resources' R4B models (tests, boundaries).

fhir.resources 8 models R5 by default; the R4B models have the R4 shapes for the
resources used here. They do not check the 64-character ``id`` limit, so that is
checked here too. Not for the hot path.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def validate_r4(resource: dict[str, Any]) -> Any:
    """Validate *resource* (a dict with ``resourceType``); return the model instance.

    Raises ValueError (pydantic's ValidationError is one) when it is not valid R4.
    """
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type.isalpha():
        raise ValueError(f"not a FHIR resource: resourceType={resource_type!r}")
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    model = getattr(module, resource_type)
    if "id" in resource and not _ID_RE.fullmatch(str(resource["id"])):
        raise ValueError(f"invalid FHIR id: {resource['id']!r}")
    instance = model.model_validate(resource)
    if resource_type == "Bundle":
        for entry in resource.get("entry", []):
            if "resource" in entry:
                validate_r4(entry["resource"])
    return instance
