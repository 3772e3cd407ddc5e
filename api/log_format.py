"""`constrained serve`'s logging: text for people, or one JSON object a line for log pipelines; either way
each line carries the request id of the request it was written for (api.request_ids)."""

from __future__ import annotations

import json
import logging

from api.request_ids import RequestIdFilter

_TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                "request_id": getattr(record, "request_id", "-"), "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, fmt: str) -> None:
    """Root logging at `level` in `fmt` ("text" or "json"), request ids on every record."""
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    handler.addFilter(RequestIdFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
