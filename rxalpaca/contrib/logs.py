"""JSON log lines with rxalpaca's structured fields (stdlib only, no extra needed).

Every log record rxalpaca writes carries fields in ``extra=`` (see
:data:`rxalpaca._logging.FIELDS`: ``feed``, ``endpoint``, ``conn_id``, ``state``,
``error``, ``code``, ``attempt``, ``delay_s``, ``repeats``). :class:`JsonFormatter`
writes each record as one JSON object with those fields beside the message, for a
log shipper (Loki, Elasticsearch, CloudWatch) to index. For structlog, see
docs/operations.md (``structlog.stdlib.ExtraAdder`` picks up the same fields).

Example::

    import logging
    from rxalpaca.contrib.logs import JsonFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger("rxalpaca").addHandler(handler)
    # {"time": "2026-11-27T17:20:01.123456+00:00", "level": "WARNING", "logger": "rxalpaca",
    #  "message": "connection lost (...); reconnecting", "feed": "iex", "conn_id": 1, ...}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from .._logging import FIELDS

__all__ = ["JsonFormatter"]


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: time, level, logger, message, fields.

    Args:
        fields: the record attributes to copy when present (default rxalpaca's
            :data:`~rxalpaca._logging.FIELDS`).
        static: fields added to every line (e.g. ``{"service": "md-ingest"}``).
    """

    def __init__(
        self, fields: Iterable[str] = FIELDS, *, static: Mapping[str, object] | None = None
    ) -> None:
        super().__init__()
        self.fields = tuple(fields)
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object (non-JSON values as ``str``), on one line."""
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self.static,
        }
        for name in self.fields:
            if name in record.__dict__:
                out[name] = record.__dict__[name]
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)
