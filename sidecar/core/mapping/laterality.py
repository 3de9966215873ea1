"""Laterality (0020,0060) / ImageLaterality (0020,0062) -> SNOMED CT Coding.

PS3.3 C.7.3.1.1.1 (Laterality: R, L) and C.7.6.2 (Image Laterality: R, L, U, B).
``U`` (unpaired) says no laterality applies, so it maps to nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .codes import SNOMED

LATERALITY_CODES: dict[str, tuple[str, str]] = {
    "R": ("24028007", "Right"),
    "L": ("7771000", "Left"),
    "B": ("51440002", "Right and left"),
}

#: Values that are valid DICOM but carry no laterality.
NO_LATERALITY = frozenset({"U"})


def laterality_coding(value: str) -> dict[str, Any] | None:
    """The SNOMED CT Coding for R/L/B; None for U or anything else."""
    row = LATERALITY_CODES.get(value)
    if row is None:
        return None
    return {"system": SNOMED, "code": row[0], "display": row[1]}


def combine_image_lateralities(values: Iterable[str]) -> str | None:
    """One laterality for a series from its instances' ImageLaterality values.

    A single side is kept; images of both sides (R and L, or B) make ``B``.
    """
    sides = {v for v in values if v in LATERALITY_CODES}
    if not sides:
        return None
    if len(sides) == 1:
        return next(iter(sides))
    return "B"
