"""A fake DICOMweb (QIDO-RS) server on pytest-httpserver: as loose as the worst PACS.

It applies **no** matching rule: every study-level query gets every study it holds, whatever
the PatientID, issuer or date asked for (a PACS that wildcard-matches, ignores case or
ignores unknown keys looks like this). What the sidecar keeps is therefore decided by the
sidecar alone, which is what the tests check. It pages with ``limit``/``offset`` and can be
told to cap pages with ``Warning: 299`` or to ignore ``offset``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

Record = dict[str, Any]
ROOT = "/dicom-web"


def element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)}


def study_row(patient_id: str, study_uid: str, issuer: str | None = None, **tags: Any) -> Record:
    row = {
        "00100020": element("LO", patient_id),
        "0020000D": element("UI", study_uid),
        "00080020": element("DA", tags.pop("date", "20200101")),
        "00080061": element("CS", *tags.pop("modalities", ["CT"])),
    }
    if issuer is not None:
        row["00100021"] = element("LO", issuer)
    row.update(tags)
    return row


def instance_row(study_uid: str, series_uid: str, sop_uid: str, modality: str = "CT") -> Record:
    return {
        "0020000D": element("UI", study_uid),
        "0020000E": element("UI", series_uid),
        "00080018": element("UI", sop_uid),
        "00080016": element("UI", "1.2.840.10008.5.1.4.1.1.2"),
        "00080060": element("CS", modality),
    }


@dataclass
class FakeDicomWeb:
    server: HTTPServer
    studies: list[Record] = field(default_factory=list)
    instances: dict[str, list[Record]] = field(default_factory=dict)
    cap: int | None = None  # answer at most this many rows, with Warning: 299
    ignore_offset: bool = False
    status: int = 200
    queries: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    root: str = ROOT  # another root on the same server is another PACS

    @property
    def url(self) -> str:
        return self.server.url_for(self.root)

    def install(self) -> FakeDicomWeb:
        pattern = re.compile(rf"^{re.escape(self.root)}/.*")
        self.server.expect_request(pattern).respond_with_handler(self._answer)
        return self

    def query_strings(self, path_suffix: str = "/studies") -> list[str]:
        """The raw query strings received on paths ending with ``path_suffix``."""
        return [r.query_string.decode() for r, _ in self.server.log if r.path.endswith(path_suffix)]

    def _with_patient(self, study_uid: str, rows: list[Record], query: list) -> list[Record]:
        """Like Orthanc 1.10: a series/instance row carries the patient tags of its study's
        record when ``includefield`` asks for them (the first study record of that UID; a
        row that names its own patient keeps it)."""
        asked = {v for k, v in query if k == "includefield"}
        study = next(
            (s for s in self.studies if s.get("0020000D", {}).get("Value") == [study_uid]), None
        )
        if study is None:
            return rows
        tags = {t: study[t] for t in ("00100020", "00100021") if t in asked and t in study}
        return [{**tags, **row} for row in rows]

    def _answer(self, request: Request) -> Response:
        query = parse_qsl(request.query_string.decode(), keep_blank_values=True)
        self.queries.append((request.path, query))
        if self.status != 200:
            return Response("failure", status=self.status)
        path = request.path.removeprefix(self.root)
        if path == "/studies":
            rows = self.studies
        elif m := re.fullmatch(r"/studies/([0-9.]+)/(series|instances)", path):
            rows = self._with_patient(m[1], self.instances.get(m[1], []), query)
        else:
            return Response("not found", status=404)
        params = dict(query)
        limit = int(params.get("limit", 10**9))
        offset = 0 if self.ignore_offset else int(params.get("offset", 0))
        headers = {}
        page_size = limit if self.cap is None else min(limit, self.cap)
        page = rows[offset : offset + page_size]
        if self.cap is not None and offset + len(page) < len(rows) and len(page) < limit:
            headers["Warning"] = '299 fake: "There are more results"'
        return Response(json.dumps(page), content_type="application/dicom+json", headers=headers)
