"""A small read-only accessor over a DICOM record, whatever its form.

Two forms are supported without converting one into the other:

* a DICOM JSON object (PS3.18 Annex F.2), as QIDO-RS rows and WADO-RS metadata return it:
  ``{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}, ...}``; PN values are objects
  ``{"Alphabetic": ..., "Ideographic": ..., "Phonetic": ...}`` (F.2.2);
* a :class:`pydicom.dataset.Dataset`, read lazily: only the elements asked for are
  decoded (character sets per (0008,0005) are applied by pydicom).

Values come back as plain Python objects: ``str`` for text (PN as ``"alpha=ideo=phon"``),
``int``/``float`` for numbers, and records for sequence items. Nothing here validates; the
parsers in :mod:`sidecar.core.mapping.values` do, so both forms share one set of rules.

Character sets: DICOM JSON is UTF-8 text (PS3.18 F.2), so a JSON row's strings are used
as they are; its SpecificCharacterSet (0008,0005) only says what the PACS transcoded to.
A Dataset's bytes are decoded by pydicom with its own (0008,0005) (PS3.5 6.1); bytes that
are invalid there come back with U+FFFD in place (see :mod:`sidecar.core.mapping.text_loss`).

A value that is there but cannot be read (sent as BulkDataURI or InlineBinary, an empty
JSON ``Value`` array for a number, bytes pydicom cannot decode) comes back as an
:class:`Unreadable` saying why, so that the reader can name it instead of treating the
attribute as empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.valuerep import PersonName

from .tags import json_key


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A value the record has but that cannot be read; *why* is for diagnostics."""

    why: str


#: PS3.18 F.2.5 sends no ``Value`` for an empty attribute; Orthanc 1.10 sends ``[]`` for an
#: IS it cannot parse (``abc``, ``1.5``, ``1e3``): the value existed and was lost.
EMPTY_NUMBER = Unreadable(
    "the PACS sent an empty Value array (it could not render the stored value as a number)"
)
BULK_DATA = Unreadable("sent as BulkDataURI, not inline")
INLINE_BINARY = Unreadable("sent as InlineBinary, not as a value")
UNDECODABLE = Unreadable("the bytes could not be decoded for its VR")
_NUMBER_VRS = frozenset({"IS", "DS"})


@runtime_checkable
class DicomRecord(Protocol):
    """What the mapping needs from a record: values, VR and sequence items by tag."""

    def values(self, tag: int) -> list[Any] | None:
        """All values of *tag*: None if absent, [] if present but empty."""

    def vr(self, tag: int) -> str | None:
        """The VR the record declares for *tag*, if any."""

    def items(self, tag: int) -> list[DicomRecord]:
        """Sequence items of *tag* ([] if absent, empty, or not a sequence)."""


def _pn_json_to_str(value: Mapping[str, Any]) -> str:
    groups = [value.get(k) for k in ("Alphabetic", "Ideographic", "Phonetic")]
    texts = [g if isinstance(g, str) else "" for g in groups]
    while texts and not texts[-1]:
        texts.pop()
    return "=".join(texts)


class JsonRecord:
    """:class:`DicomRecord` over a DICOM JSON object (PS3.18 F.2)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def _element(self, tag: int) -> Any:
        return self._data.get(json_key(tag))

    def values(self, tag: int) -> list[Any] | None:
        element = self._element(tag)
        if element is None:
            return None
        if not isinstance(element, Mapping):
            return [element]  # malformed; the value parsers will reject it
        value = element.get("Value")
        if value is None:
            if "BulkDataURI" in element:
                return [BULK_DATA]
            if "InlineBinary" in element:
                return [INLINE_BINARY]
            return []
        if not isinstance(value, list):
            value = [value]
        if not value and element.get("vr") in _NUMBER_VRS:
            return [EMPTY_NUMBER]
        if element.get("vr") == "PN":
            return [_pn_json_to_str(v) if isinstance(v, Mapping) else v for v in value]
        return value

    def vr(self, tag: int) -> str | None:
        element = self._element(tag)
        if isinstance(element, Mapping):
            vr = element.get("vr")
            return vr if isinstance(vr, str) else None
        return None

    def items(self, tag: int) -> list[DicomRecord]:
        values = self.values(tag)
        if not values:
            return []
        return [JsonRecord(v) for v in values if isinstance(v, Mapping)]


def _raw_values(raw: Any) -> list[Any]:
    """Fallback for an element pydicom could not convert: its bytes as latin-1 text."""
    value = getattr(raw, "value", None)
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("latin-1").strip(" \x00")
        return text.split("\\") if text else []
    return [value]


class DatasetRecord:
    """:class:`DicomRecord` over a pydicom Dataset (no conversion to JSON).

    Values are decoded once per tag and cached: the mapping asks for some tags more than
    once, and ``Dataset.__getitem__`` is the hot spot of a header-only conversion.
    """

    __slots__ = ("_ds", "_cache")

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds
        self._cache: dict[int, list[Any] | None] = {}

    def values(self, tag: int) -> list[Any] | None:
        cache = self._cache
        if tag in cache:
            return cache[tag]
        result = cache[tag] = self._values(tag)
        return result

    def _values(self, tag: int) -> list[Any] | None:
        ds = self._ds
        try:
            element = ds.get_item(tag)  # public, and no conversion if already decoded
            if element is None:
                return None
            if not isinstance(element, DataElement):
                element = ds[tag]  # a RawDataElement: decode it (charset, VR) once
        except Exception:  # invalid bytes for the VR (e.g. IS "abc"), bad charset
            try:
                return _raw_values(ds.get_item(tag))
            except Exception:
                return [UNDECODABLE]
        value = element.value
        if value is None or value == "" or value == b"":
            return []
        values = list(value) if isinstance(value, MultiValue | Sequence | list) else [value]
        out: list[Any] = []
        for v in values:
            if isinstance(v, PersonName):
                out.append(str(v))
            elif isinstance(v, bytes | bytearray):  # UN/OB where text was expected
                out.extend(_raw_values(element))
                break
            else:
                out.append(v)
        return out

    def vr(self, tag: int) -> str | None:
        try:
            return self._ds[tag].VR
        except Exception:
            return None

    def items(self, tag: int) -> list[DicomRecord]:
        try:
            value = self._ds[tag].value
        except Exception:
            return []
        if not isinstance(value, Sequence | list):
            return []
        return [DatasetRecord(item) for item in value if isinstance(item, Dataset)]


def as_record(obj: Any) -> DicomRecord | None:
    """Wrap a DICOM JSON mapping or a pydicom Dataset; None for anything else."""
    if isinstance(obj, Dataset):
        return DatasetRecord(obj)
    if isinstance(obj, JsonRecord | DatasetRecord):
        return obj
    if isinstance(obj, Mapping):
        return JsonRecord(obj)
    return None
