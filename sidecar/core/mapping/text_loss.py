"""Evidence, in a record's own text, that characters were lost before the mapping saw it.

DICOM JSON (PS3.18 F.2) is always UTF-8 text, whatever SpecificCharacterSet (0008,0005)
the answer is labelled with; a pydicom Dataset is decoded with its own (0008,0005)
(PS3.5 6.1, PS3.3 C.12.1.1.2). Neither step loses text. What does lose it is a PACS that
transcodes its answers into a character set that cannot carry them: Orthanc 1.10 answers
QIDO-RS in its ``DefaultEncoding`` (Latin-1 unless configured) and *drops* what does not
fit; other converters put ``?`` or U+FFFD in place of each character.

Only strong evidence counts, so that a Latin-1 text with a legitimate ``?`` never warns:

* U+FFFD (REPLACEMENT CHARACTER) anywhere, whatever the label: a decoder replaced bytes
  it could not read.
* In a record whose character set cannot carry ideographic or non-Latin text (no
  SpecificCharacterSet, or only single-byte terms such as ISO_IR 100):

  - a PN whose ideographic or phonetic component group (PS3.5 6.2.1.2) is present but
    holds nothing but ``^`` delimiters and spaces (``Yamada^Tarou=^=^``). An empty
    *alphabetic* group (``^``, ``^^^^``) is not evidence: senders write it for unknown
    names;
  - ``?`` standing in for characters: a run of two or more ``?`` directly followed by
    a letter or digit (``??CT``), or at least two runs of two or more ``?`` that do not
    follow a letter or digit (``?? ??????? with contrast``, ``?????? ????`` as a name).
    Punctuation (``Follow-up?``, ``Why??``) and the radiology query mark (``?PE``,
    ``CTPA ?PE ?DVT``) are neither. A single lost character (``L4?L5`` for an en dash)
    or a lone lost word is not caught: too close to what people type.

Text that a lossy transcoder shortened without leaving a mark (Orthanc's Latin-1 answer
turns ``頭部CT 造影`` into ``CT`` and Cyrillic names into ``^``) cannot be detected in the
value itself; the PN evidence above usually comes with it in the same record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .values import pn_groups

#: SpecificCharacterSet defined terms (PS3.3 C.12.1.1.2) that can carry ideographic text.
WIDE_CHARACTER_SETS = frozenset(
    {
        "ISO_IR 192",
        "GB18030",
        "GBK",
        "ISO 2022 IR 87",
        "ISO 2022 IR 159",
        "ISO 2022 IR 149",
        "ISO 2022 IR 58",
    }
)

REPLACEMENT_CHARACTER = "\ufffd"

_RUN_BEFORE_WORD = re.compile(r"\?{2,}[^\W_]")
_RUN_NOT_AFTER_WORD = re.compile(r"(?<![^\W?_])\?{2,}")


def is_narrow(terms: Iterable[str]) -> bool:
    """True when no term of SpecificCharacterSet (0008,0005) can carry ideographic text
    (absent or empty means the default repertoire, ISO_IR 6)."""
    return not any(term in WIDE_CHARACTER_SETS for term in terms)


def has_replacement(text: str) -> bool:
    """U+FFFD in *text*: a decoder replaced bytes it could not read."""
    return REPLACEMENT_CHARACTER in text


def question_marks_replace_characters(text: str) -> bool:
    """``?`` stands in for characters (see the module rules); never for punctuation."""
    if "??" not in text:
        return False
    if _RUN_BEFORE_WORD.search(text):
        return True
    return len(_RUN_NOT_AFTER_WORD.findall(text)) >= 2


def emptied_pn_group(value: str) -> bool:
    """A PN (PS3.5 6.2.1.2) whose ideographic or phonetic group holds only delimiters."""
    _, ideographic, phonetic = pn_groups(value)
    return any(group and not group.replace("^", "").strip() for group in (ideographic, phonetic))


def pn_question_marks(value: str) -> bool:
    """``?`` in place of characters in any component group of a PN."""
    return any(
        question_marks_replace_characters(group.replace("^", " ")) for group in pn_groups(value)
    )
