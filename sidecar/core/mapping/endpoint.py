"""The R4 Endpoint that ImagingStudy.endpoint points at: the PACS's WADO-RS root."""

from __future__ import annotations

from typing import Any

CONNECTION_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"


def build_endpoint(*, endpoint_id: str, wado_root: str, name: str | None = None) -> dict[str, Any]:
    """An active ``dicom-wado-rs`` Endpoint whose address is *wado_root*.

    *wado_root* is the DICOMweb root a client can reach; clients build
    ``{address}/studies/{uid}[/series/{uid}[/instances/{uid}]]`` from it, so a trailing
    slash is removed. payloadType is 1..* in R4: the DICOM WADO-RS payload.
    """
    endpoint: dict[str, Any] = {
        "resourceType": "Endpoint",
        "id": endpoint_id,
        "status": "active",
        "connectionType": {
            "system": CONNECTION_TYPE_SYSTEM,
            "code": "dicom-wado-rs",
            "display": "DICOM WADO-RS",
        },
        "payloadType": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type",
                        "code": "any",
                        "display": "Any",
                    }
                ],
                "text": "DICOM WADO-RS",
            }
        ],
        "payloadMimeType": ["application/dicom"],
        "address": wado_root.rstrip("/"),
    }
    if name:
        endpoint["name"] = name
    return endpoint
