"""Where logs go and how they look: stderr (journald takes it), text or one JSON object a line.

[log] format = "text" (the default) writes `time LEVEL logger: message`; "json" writes

    {"time": "2026-01-02T03:04:05.678Z", "level": "INFO", "logger": "tgws.server",
     "message": "conn#3: chats", "conn": 3, "api_key": "archiver"}

`conn` and `api_key` (the key's *name*, never the key) are there when the line was logged
on behalf of a connection: server.py binds the connection to the context of the task
that serves it (bind_connection), and asyncio copies that context into every task the
connection starts (its handlers, its stream), so no log call has to pass them.

Nothing here adds secrets: tgws never puts a code, a password, an API key or a session in
a log message, and the websockets logger (which would log frames) stays at INFO.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from tgws.config import LOG_FORMATS

if TYPE_CHECKING:
    from tgws.context import Connection

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_connection: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "tgws_connection", default=None)
_handler: logging.Handler | None = None  # the stderr handler setup_logging installed


def bind_connection(conn: Connection) -> None:
    """Lines logged from now on in this task (and the tasks it starts) name `conn`."""
    _connection.set(conn)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a newline in a message stays inside its string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        conn = _connection.get()
        if conn is not None:
            entry["conn"] = conn.id
            if conn.api_key is not None:
                entry["api_key"] = conn.api_key.name
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _utc(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def formatter(fmt: str) -> logging.Formatter:
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}")
    return JsonFormatter() if fmt == "json" else logging.Formatter(LOG_FORMAT)


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr in `fmt`. Telethon's chatter stays at WARNING."""
    global _handler
    root = logging.getLogger()
    if not root.handlers:
        _handler = logging.StreamHandler()
        root.addHandler(_handler)
    set_log_format(fmt)
    set_log_level(level)
    logging.getLogger("tgws.telethon").setLevel(logging.WARNING)
    logging.getLogger("tgws.websockets").setLevel(logging.WARNING)


def set_log_format(fmt: str) -> None:
    """Switch the stderr handler's format (a reload applies [log] format this way)."""
    if _handler is not None:
        _handler.setFormatter(formatter(fmt))


def set_log_level(level: str) -> None:
    logging.getLogger().setLevel(level)
    logging.getLogger("tgws").setLevel(level)
