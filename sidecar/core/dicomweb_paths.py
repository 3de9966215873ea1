"""Which DICOMweb resource a gateway request names (DICOM PS3.18 10.4 WADO-RS, 10.6 QIDO-RS).

The imaging gateway forwards a request to the PACS only as a path *rebuilt* from the parts
this module validated: every UID is a DICOM UID (PS3.5 9.1), every keyword is one of the
standard's, a frame list is numbers, a bulk data path is tags; anything else (``..``,
percent-encoded separators, unknown words, a query key that is no attribute) is refused,
so no request reaches a PACS resource the checks did not see.

References: https://dicom.nema.org/medical/dicom/current/output/chtml/part18/sect_10.4.html
(Retrieve Transaction: study, series, instance, frames, bulkdata, metadata, rendered,
thumbnail), .../sect_10.6.html (Search Transaction).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from sidecar.core.outcome import BadRequest
from sidecar.core.qido import ISSUER_OF_PATIENT_ID, PATIENT_ID, is_uid

#: What may follow a study, series, instance or frame list (PS3.18 Table 10.4.1-1).
RESOURCES = frozenset({"", "metadata", "rendered", "thumbnail"})
_FRAMES = re.compile(r"^[1-9][0-9]{0,5}(,[1-9][0-9]{0,5}){0,99}$")
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_INDEX = re.compile(r"^[0-9]{1,6}$")
#: QIDO query keys: attribute tags or keywords, and the standard's own parameters
#: (PS3.18 8.3.4); values are the PACS's to match, the gateway filters what comes back.
_ATTRIBUTE = re.compile(r"^([0-9A-Fa-f]{8}(\.[0-9A-Fa-f]{8})*|[A-Za-z][A-Za-z0-9]{1,63})$")
QIDO_PARAMETERS = frozenset({"includefield", "limit", "offset", "fuzzymatching"})
#: Query parameters of a rendered resource that are passed on (PS3.18 8.3.5.1).
RENDER_PARAMETERS = frozenset({"window", "viewport", "quality", "annotation", "iccprofile"})
MAX_LIMIT = 1000
_NUMBER = re.compile(r"[0-9]{1,9}")  # ASCII digits only (str.isdigit takes "²", "١")


class NotAResource(ValueError):
    """The path names no DICOMweb resource the gateway serves (answered 404)."""


@dataclass(frozen=True)
class Target:
    """One gateway request, validated."""

    search: bool  # QIDO-RS (a list of matches) rather than WADO-RS (one resource)
    study: str | None = None
    series: str | None = None
    instance: str | None = None
    frames: str | None = None  # "1" or "1,2,3"
    bulk: str | None = None  # "7fe00010" or "00540016/0/00181072"
    resource: str = ""  # "", "metadata", "rendered", "thumbnail"
    level: str = "study"  # what a search lists, or the level of a retrieval

    @property
    def path(self) -> str:
        """The path below the DICOMweb root, rebuilt from the validated parts."""
        parts = []
        if self.study:
            parts += ["studies", self.study]
        if self.series:
            parts += ["series", self.series]
        if self.instance:
            parts += ["instances", self.instance]
        if self.frames:
            parts += ["frames", self.frames]
        if self.bulk:
            parts += ["bulk", self.bulk]
        if self.search:
            parts.append({"study": "studies", "series": "series"}.get(self.level, "instances"))
        elif self.resource:
            parts.append(self.resource)
        return "/".join(parts)

    @property
    def whole(self) -> bool:
        """A retrieval that returns every instance below a study or a series (its content
        must all be the caller's: a partial study is never returned)."""
        return not self.search and self.instance is None


def parse(path: str) -> Target:
    """The Target of a path below ``/dicomweb/<pacs>/``; NotAResource for anything else."""
    segments = path.split("/")
    if segments and segments[-1] == "":  # one trailing slash is tolerated
        segments.pop()
    if not segments or any(s == "" for s in segments):
        raise NotAResource("empty path segment")
    head = segments.pop(0)
    if head in ("series", "instances") and not segments:
        return Target(search=True, level="series" if head == "series" else "instance")
    if head != "studies":
        raise NotAResource(f"unknown resource {head!r}")
    if not segments:
        return Target(search=True, level="study")
    study = _uid(segments.pop(0))
    if not segments:
        return Target(search=False, study=study, level="study")
    word = segments.pop(0)
    if word in ("metadata", "rendered", "thumbnail") and not segments:
        return Target(search=False, study=study, resource=word, level="study")
    if word == "instances" and not segments:
        return Target(search=True, study=study, level="instance")
    if word != "series":
        raise NotAResource(f"unknown resource {word!r}")
    if not segments:
        return Target(search=True, study=study, level="series")
    series = _uid(segments.pop(0))
    if not segments:
        return Target(search=False, study=study, series=series, level="series")
    word = segments.pop(0)
    if word in ("metadata", "rendered", "thumbnail") and not segments:
        return Target(search=False, study=study, series=series, resource=word, level="series")
    if word != "instances":
        raise NotAResource(f"unknown resource {word!r}")
    if not segments:
        return Target(search=True, study=study, series=series, level="instance")
    instance = _uid(segments.pop(0))
    base = {"search": False, "study": study, "series": series, "instance": instance}
    if not segments:
        return Target(**base, level="instance")
    word = segments.pop(0)
    if word in ("metadata", "rendered", "thumbnail") and not segments:
        return Target(**base, resource=word, level="instance")
    if word == "frames" and segments and _FRAMES.match(segments[0]):
        frames = segments.pop(0)
        resource = segments.pop(0) if segments else ""
        if segments or resource not in ("", "rendered", "thumbnail"):
            raise NotAResource("unknown frame resource")
        return Target(**base, frames=frames, resource=resource, level="frames")
    if word == "bulk" and segments and _bulk(segments):
        return Target(**base, bulk="/".join(segments), level="bulk")
    raise NotAResource(f"unknown resource {word!r}")


def _uid(text: str) -> str:
    if not is_uid(text):
        raise NotAResource("not a DICOM UID")
    return text


def _bulk(segments: list[str]) -> bool:
    """A bulk data path: a tag, then (item index, tag) pairs into sequences."""
    return (
        len(segments) % 2 == 1
        and len(segments) <= 9
        and all(
            (_TAG if i % 2 == 0 else _INDEX).match(s) is not None for i, s in enumerate(segments)
        )
    )


def search_query(query_string: str) -> str:
    """A QIDO query with only attribute keys and the standard's parameters; ``limit``
    capped at :data:`MAX_LIMIT`. The values are sent as the client wrote them (Orthanc
    matches them undecoded); the gateway filters the answer by what the caller may see."""
    kept = []
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        if key in QIDO_PARAMETERS or _ATTRIBUTE.match(key):
            if key == "limit":  # 0 is "no limit" to Orthanc; "²".isdigit() but int() fails
                number = int(value) if _NUMBER.fullmatch(value) else 0
                value = str(min(number, MAX_LIMIT) if number > 0 else MAX_LIMIT)
            elif key == "offset" and not _NUMBER.fullmatch(value):
                raise NotAResource("offset is not a number")
            kept.append((key, value))
        else:
            raise NotAResource(f"unknown query parameter {key!r}")
    if not any(k == "limit" for k, _ in kept):
        kept.append(("limit", str(MAX_LIMIT)))
    # whose each row is: the gateway checks it (a PACS returns the issuer only when asked)
    kept += [("includefield", PATIENT_ID), ("includefield", ISSUER_OF_PATIENT_ID)]
    return urlencode(kept, safe=",*?^.")


def render_query(query_string: str) -> str:
    """The rendering parameters of a rendered/thumbnail request, nothing else; each value
    within its PS3.18 8.3.5.1 syntax and a viewport of at most :data:`MAX_VIEWPORT` pixels a
    side (BadRequest otherwise): the PACS renders into a buffer of that size, and Orthanc
    1.10 crashed (segfault, the whole PACS) on ``viewport=99999,99999``."""
    kept = [(k, v) for k, v in parse_qsl(query_string) if k in RENDER_PARAMETERS]
    for key, value in kept:
        if not _RENDER_VALUES[key](value):
            raise BadRequest(f"{key}: not a valid value of this rendering parameter")
    return urlencode(kept, safe=",")


def _viewport(value: str) -> bool:
    parts = value.split(",")
    if len(parts) not in (2, 6) or not all(_INTEGER.fullmatch(p) for p in parts):
        return False
    return all(0 < int(p) <= MAX_VIEWPORT for p in parts[:2])


def _window(value: str) -> bool:
    parts = value.split(",")
    return (
        len(parts) == 3
        and all(_DECIMAL.fullmatch(p) for p in parts[:2])
        and parts[2] in ("linear", "linear-exact", "sigmoid")
    )


_INTEGER = re.compile(r"-?[0-9]{1,6}")
_DECIMAL = re.compile(r"-?[0-9]{1,9}(\.[0-9]{1,9})?")
MAX_VIEWPORT = 4096
_RENDER_VALUES = {
    "viewport": _viewport,
    "window": _window,
    "quality": lambda v: _NUMBER.fullmatch(v) is not None and 1 <= int(v) <= 100,
    "annotation": lambda v: set(v.split(",")) <= {"patient", "technique"},
    "iccprofile": lambda v: v in ("no", "yes", "srgb", "adobergb", "rommrgb"),
}
