"""Structured logs: JSON lines (``PARTSBIN_LOG_FORMAT=json``) or readable text.

Every line logged while a request is served carries its request id (and, once the
caller is known, the token's id — never the token) through a context variable that the
instrumentation middleware sets: the standard ``logging`` module, with one filter that
adds the request's fields, so any library's log lines get them too. Code that runs in a
worker thread sees the same request: Starlette hands threads a copy of the context,
and the request's fields live in one mutable object that the copy shares.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["RequestContext", "begin_request", "current_request", "configure_logging", "JsonFormatter", "TextFormatter"]

LogFormat = Literal["text", "json"]


@dataclass
class RequestContext:
    request_id: str
    method: str
    path: str
    token_id: int | None = None


_current: ContextVar[RequestContext | None] = ContextVar("partsbin_request", default=None)


def begin_request(request_id: str, method: str, path: str) -> RequestContext:
    # Not reset when the request ends: an unhandled error is logged after the
    # middleware returns (by Starlette's outermost handler and by the server), still
    # inside this request's task, and must carry its id. Each request is its own task.
    ctx = RequestContext(request_id, method, path)
    _current.set(ctx)
    return ctx


def current_request() -> RequestContext | None:
    return _current.get()


class _RequestFields(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _current.get()
        if ctx is not None:
            record.request_id = ctx.request_id
            if ctx.token_id is not None:
                record.token_id = ctx.token_id
        return True


class _TracebackOnce(logging.Filter):
    """An error's traceback is written once: the first record that carries an exception
    keeps it; later records of the same exception (the server's own "Exception in ASGI
    application", after the application has logged it) keep their message only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if getattr(exc, "_partsbin_logged", False):
                record.exc_info, record.exc_text = None, None
                record.traceback_logged_before = True
            else:
                try:
                    exc._partsbin_logged = True  # type: ignore[attr-defined]
                except (AttributeError, TypeError):  # an exception type without __dict__
                    pass
        return True


# Attributes every LogRecord has; anything else was passed with ``extra=`` and is a field.
# (uvicorn adds "color_message", its message with terminal colour codes.)
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the
    request's fields and any ``extra=`` fields, and ``traceback`` for an error."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER [request_id token=ID] message key=value ...`` and the traceback below."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        rid, token = fields.pop("request_id", None), fields.pop("token_id", None)
        where = f"[{rid}{f' token={token}' if token is not None else ''}] " if rid else ""
        line = f"{self.formatTime(record)} {record.levelname:<7} {record.name} {where}{record.getMessage()}"
        extra = " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("method", "path", "status", "duration_ms"))
        return f"{line} {extra}" if extra else line


def configure_logging(fmt: LogFormat = "text", level: str = "info", stream: Any = None) -> logging.Handler:
    """Send every log line (partsbin's, uvicorn's, libraries') through one handler on the
    root logger, in ``fmt``. The server's own access log is switched off: the
    instrumentation middleware writes one richer line per request instead."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_RequestFields())
    handler.addFilter(_TracebackOnce())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers, access.propagate = [], False
    return handler
