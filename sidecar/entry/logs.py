"""JSON log lines: one object per record, with the ids passed in ``extra`` (never names).

No identifier value, name or birth date may reach a log line (an MRN is PHI). Two rules
make that hold for text we do not write ourselves:

- our own messages carry resource ids, StudyInstanceUIDs and counts only; errors raised
  by us say *what* is wrong, never the value (``sidecar.core.qido.RefusedValue``,
  ``sidecar.core.outcome``), and a server's free-text diagnostics are not copied into them;
- every message, extra field and exception text goes through
  :func:`sidecar.core.redaction.redact`: URL query strings and identifier search values out
  (where libraries such as urllib3's retry warnings print them).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from sidecar.core.redaction import redact, redact_all

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        entry.update({k: redact_all(v) for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """Route the root logger to stderr as JSON lines (idempotent)."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.handlers = [handler]
    root.setLevel(level)
    # urllib3's retry warnings name whole request URLs (redacted above all the same)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    logging.getLogger("dicomweb_client").setLevel(logging.WARNING)
