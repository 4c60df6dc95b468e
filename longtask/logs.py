"""Structured logs of all three processes: one JSON object a line, the event name in ``event``.

Fields passed with ``extra={...}`` become keys of the object, so a log line reads
``{"event": "chunk_committed", "task": "...", "rows": 500, ...}``. The runner, the API and
the operator (kopf's own lines too) all log through :func:`setup`; kopf's reference to the
object a line is about goes under ``object``.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# What kopf's object loggers attach: the object's reference (kept, as ``object``), and its
# own switches and settings (left out).
_KOPF_REF = "k8s_ref"
_KOPF_INTERNAL = frozenset({"k8s_skip", "settings"})


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, event and the extras."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key == _KOPF_REF:
                payload["object"] = value
            elif key not in _STANDARD and key not in _KOPF_INTERNAL and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


def setup(level: str = "INFO") -> None:
    """Send every log record to stderr as JSON lines at ``level`` (a logging level name)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
