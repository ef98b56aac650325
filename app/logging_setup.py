"""Log output: plain text lines (default) or JSON lines (`LORE_LOG_FORMAT=json`).

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger`, `message`, the ids bound in
`app.log_context` (`team`, `event_id`, `channel`, `thread_ts`) when known, and `exc` (the whole
traceback as one string) for exceptions. A text line shows the same ids in brackets after the
logger's name. Both formats mask Slack and Anthropic tokens that slip into a message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from app import log_context

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(lore_ids)s: %(message)s"
SECRET = re.compile(r"\b(xoxe\.xox[abeprs]|xox[abeprs]|xapp|sk-ant)-[\w.-]+")
"""Slack tokens (bot, user, app-level, refresh) and Anthropic API keys."""


def redact(text: str) -> str:
    """`text` with anything shaped like a token replaced by its kind and `-[redacted]`."""
    return SECRET.sub(lambda match: f"{match.group(1)}-[redacted]", text)


class TextFormatter(logging.Formatter):
    """The classic one-line format with the bound ids (`[team=T1 channel=C1]`), tokens masked."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        fields = log_context.current()
        ids = " ".join(f"{name}={fields[name]}" for name in log_context.FIELDS if name in fields)
        record.lore_ids = f" [{ids}]" if ids else ""
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the ids of the team, event and conversation."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        fields = log_context.current()
        line.update((name, fields[name]) for name in log_context.FIELDS if name in fields)
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Send every log record at `level` or above to stderr, one line each, in `log_format`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler], force=True)
