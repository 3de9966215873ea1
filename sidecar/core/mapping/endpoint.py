"""The R4 Endpoint that ImagingStudy.endpoint points at: a WADO-RS root for the PACS.

When that root is the sidecar's imaging gateway, the Endpoint carries SMART Imaging
Access's ``requires-access-token`` extension set to true: a client presents the same SMART
access token it used to find the study (SMART Imaging Access, SmartWadoEndpoint profile).
"""

from __future__ import annotations

from typing import Any

CONNECTION_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
REQUIRES_ACCESS_TOKEN = (
    "http://fhir.org/argonaut/smart-imaging/StructureDefinition/requires-access-token"
)


def build_endpoint(
    *,
    endpoint_id: str,
    wado_root: str,
    name: str | None = None,
    requires_access_token: bool | None = None,
) -> dict[str, Any]:
    """An active ``dicom-wado-rs`` Endpoint whose address is *wado_root*.

    *wado_root* is the DICOMweb root a client can reach; clients build
    ``{address}/studies/{uid}[/series/{uid}[/instances/{uid}]]`` from it, so a trailing
    slash is removed. payloadType is 1..* in R4: the DICOM WADO-RS payload.
    """
    endpoint: dict[str, Any] = {"resourceType": "Endpoint", "id": endpoint_id}
    if requires_access_token is not None:
        endpoint["extension"] = [
            {"url": REQUIRES_ACCESS_TOKEN, "valueBoolean": requires_access_token}
        ]
    endpoint |= {
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
