"""Log output: plain text lines (default) or JSON lines (`LORE_LOG_FORMAT=json`).

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger`, `message`, the ids bound in
`app.log_context` (`team`, `event_id`, `channel`, `thread_ts`) when known, and `exc` (the whole
traceback as one string) for exceptions. A text line shows the same ids in brackets after the
logger's name. Both formats mask secrets wherever they appear, at every level (the DEBUG request
logs of slack-sdk and the Anthropic SDK included): the value of every secret setting, raw and
URL- or JSON-encoded (`mask_values`), and anything shaped like a Slack or Anthropic token (the
tokens OAuth installs and refreshes hand out at run time).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, quote_plus

from app import log_context

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(lore_ids)s: %(message)s"
SECRET = re.compile(
    r"(?:(?<![A-Za-z0-9])|(?<=%[0-9A-Fa-f][0-9A-Fa-f]))"
    r"(xoxe\.xox[abeprs]|xox[abeprs]|xapp|sk-ant)-[\w.-]+"
)
"""Slack tokens (bot, user, app-level, refresh) and Anthropic API keys, also right after a
URL-encoded character (`token%3Dxoxb-…`)."""
MASK = "[redacted]"


def encoded_forms(value: str) -> set[str]:
    """The ways `value` may be written in a log line: raw, URL-encoded (as a query value, a form
    field or a path), JSON- or repr-escaped."""
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
    }
    return {form for form in forms if form}


class SecretValues:
    """The secret values to mask in every log line (added once, kept for the process's life)."""

    def __init__(self) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            forms = {form for value in values if value for form in encoded_forms(value)}
            if forms <= self._forms:
                return
            self._forms |= forms
            longest_first = sorted(self._forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(form) for form in longest_first))

    def mask(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(MASK, text)


SECRET_VALUES = SecretValues()


def mask_values(values: Iterable[str]) -> None:
    """Mask these values (each secret setting's) wherever they appear in a log line from now on."""
    SECRET_VALUES.add(values)


def redact(text: str) -> str:
    """`text` with every secret value masked and anything shaped like a token replaced by its
    kind and `-[redacted]`."""
    return SECRET.sub(lambda match: f"{match.group(1)}-{MASK}", SECRET_VALUES.mask(text))


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


def configure_logging(level: str, log_format: LogFormat, secrets: Iterable[str] = ()) -> None:
    """Send every log record at `level` or above to stderr, one line each, in `log_format`,
    with `secrets` (the secret settings' values) masked."""
    mask_values(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler], force=True)
