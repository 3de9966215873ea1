"""A ``$fetch-imaging`` request body (FHIR R4 ``Parameters``) -> (name, value) pairs.

Everything a caller sends is type-checked here before it means anything: the body is JSON
of bounded size and depth, a ``Parameters`` resource whose ``parameter`` is a list of
objects, each with a string ``name`` and exactly one ``value[x]`` of a type this parameter
takes, of the right JSON type. Anything else is a 400 OperationOutcome naming the problem.

References: FHIR R4 Parameters (https://hl7.org/fhir/R4/parameters.html), Operations
(https://hl7.org/fhir/R4/operations.html#request).
"""

from __future__ import annotations

import json
from typing import Any

from sidecar.core.outcome import BadRequest

MAX_DEPTH = 8  # Parameters.parameter[].valueIdentifier.value is depth 4
MAX_PARAMETERS = 50

#: The primitive value[x] types, and the JSON type each must have.
_PRIMITIVES: dict[str, type | tuple[type, ...]] = {
    "valueString": str,
    "valueCode": str,
    "valueUri": str,
    "valueOid": str,
    "valueId": str,
    "valueDate": str,
    "valueDateTime": str,
    "valueBoolean": bool,
}
#: value[x] types each parameter takes (its OperationDefinition type, and string forms).
ACCEPTED: dict[str, frozenset[str]] = {
    "identifier": frozenset({"valueIdentifier", "valueString"}),
    "patient": frozenset({"valueReference", "valueString", "valueId"}),
    "modality": frozenset({"valueCoding", "valueCode", "valueString"}),
    "studyDate": frozenset({"valueDate", "valueDateTime", "valueString"}),
    "accession": frozenset({"valueString", "valueIdentifier"}),
    "studyInstanceUid": frozenset({"valueString", "valueOid", "valueUri", "valueId"}),
    "detail": frozenset({"valueCode", "valueString"}),
    "persist": frozenset({"valueBoolean"}),
}


def parse_json_body(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON of a request body, or 400 (not JSON, not UTF-8, nested too deeply)."""
    too_deep = f"the request body is nested deeper than {max_depth} levels"
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BadRequest(too_deep) from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not JSON") from None
    if _depth(body, 0, max_depth) > max_depth:
        raise BadRequest(too_deep)
    return body


def _depth(value: Any, level: int, max_depth: int) -> int:
    if level > max_depth:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1, max_depth) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1, max_depth) for v in value), default=level + 1)
    return level


def parameters_from_resource(body: Any) -> list[tuple[str, str]]:
    """Flatten a Parameters resource into (name, value) pairs; 400 for any wrong type."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("the request body must be a FHIR Parameters resource")
    params = body.get("parameter", [])
    if not isinstance(params, list):
        raise BadRequest("Parameters.parameter must be an array")
    if len(params) > MAX_PARAMETERS:
        raise BadRequest(f"more than {MAX_PARAMETERS} parameters")
    return [_pair(p, i) for i, p in enumerate(params)]


def _pair(param: Any, index: int) -> tuple[str, str]:
    where = f"Parameters.parameter[{index}]"
    if not isinstance(param, dict):
        raise BadRequest(f"{where} must be an object")
    name = param.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{where}.name must be a non-empty string")
    # a caller's text is never quoted back (it may be an MRN, and refusals are logged): a
    # parameter is named when it is one of ours, else by its position
    label = f"parameter {name!r}" if name in ACCEPTED else where
    if "part" in param or "resource" in param:
        raise BadRequest(f"{label}: part and resource are not supported")
    kinds = [k for k in param if k.startswith("value")]
    if len(kinds) != 1:
        raise BadRequest(f"{label} needs exactly one value[x]")
    kind = kinds[0]
    if not kind.isidentifier() or len(kind) > 40:
        raise BadRequest(f"{label}: not a FHIR value[x] element")
    accepted = ACCEPTED.get(name)
    if accepted is not None and kind not in accepted:
        raise BadRequest(f"{label} takes {', '.join(sorted(accepted))}, not {kind}")
    return name, _text(label, kind, param[kind])


def _text(label: str, kind: str, value: Any) -> str:
    """The value as the query-string form of the same parameter."""
    if kind in _PRIMITIVES:
        if not isinstance(value, _PRIMITIVES[kind]):
            raise BadRequest(f"{label}: {kind} has the wrong JSON type")
        if isinstance(value, bool):
            return "true" if value else "false"
        return value
    if not isinstance(value, dict):
        raise BadRequest(f"{label}: {kind} must be an object")
    if kind == "valueIdentifier":
        system, text = _strings(label, value, "system", "value")
        if text is None:
            raise BadRequest(f"{label}: valueIdentifier.value is required")
        return text if system is None else f"{system}|{text}"
    if kind == "valueCoding":
        system, code = _strings(label, value, "system", "code")
        if code is None:
            raise BadRequest(f"{label}: valueCoding.code is required")
        return code if system is None else f"{system}|{code}"
    if kind == "valueReference":
        (reference,) = _strings(label, value, "reference")
        if reference is None:
            raise BadRequest(f"{label}: valueReference.reference is required")
        return reference
    raise BadRequest(f"{label}: {kind} is not supported")


def _strings(label: str, value: dict[str, Any], *keys: str) -> tuple[str | None, ...]:
    out = []
    for key in keys:
        item = value.get(key)
        if item is not None and not isinstance(item, str):
            raise BadRequest(f"{label}: {key} must be a string")
        out.append(item)
    return tuple(out)
