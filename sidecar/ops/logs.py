"""Provides the sidecar's logging: one line per event, secrets redacted, customer text escaped.

Customer text is attacker-controlled: CR, LF and other control characters are escaped so
a message can never start a forged log line. Every configured secret is masked in every
record, whatever logger produced it: each value is redacted before it is escaped (an escaped
secret would no longer match), and the finished line is redacted again, also for the escaped
spellings of each secret.

The file is ``<logging.dir>/chatwoot_mcp_connector.log``, rotated by size. Level, format
(text or JSON lines) and rotation can change at run time (:func:`reconfigure`); the
directory cannot (it needs a restart).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

LOG_FILE_NAME = "chatwoot_mcp_connector.log"
LOGGER_NAME = "connector"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
# json.dumps escapes C0 controls itself but, with ensure_ascii=False, leaves these raw; some
# log viewers (and str.splitlines) treat them as line breaks.
_JSON_EXTRA = re.compile(r"[\x7f\x85\u2028\u2029]")
_MIN_SECRET_LENGTH = 4
MAX_FIELD_CHARS = 2000
"""Longest value one log field keeps: a sender must not be able to write a 300 KB line (log
shippers and line readers have limits; a pipe reader stuck on one line blocks the process)."""


def escape(text: object) -> str:
    """Makes any value safe for a single log line."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _quote(value: object) -> str:
    text = escape(value)
    if text == "" or any(c in text for c in ' ="'):
        return '"' + text.replace('"', '\\"') + '"'
    return text


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return f"{value[:MAX_FIELD_CHARS]}…(+{len(value) - MAX_FIELD_CHARS} chars)"
    return value


def _json_line(doc: dict[str, Any]) -> str:
    text = json.dumps(doc, ensure_ascii=False, default=str)
    return _JSON_EXTRA.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class _Redactor:
    """Holds the current secrets; replaced when the config changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def set_secrets(self, secrets: Iterable[str]) -> None:
        # Secrets of 4 characters or fewer would mask ordinary words; config refuses nothing
        # that short on purpose, but redacting it word by word would wreck every line.
        values = {s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}
        spellings: set[str] = set()
        for secret in values:
            # The raw value plus how it looks once escaped for a text line or a JSON line.
            spellings.update({secret, escape(secret), _quote(secret).strip('"'),
                              _json_line({"v": secret})[7:-2]})
        ordered = sorted((s for s in spellings if s), key=len, reverse=True)
        with self._lock:
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def redact(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub("****", text) if pattern else text

    def redact_value(self, value: object) -> object:
        """A field value with secrets masked; numbers and booleans pass through."""
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.redact(value if isinstance(value, str) else str(value))


REDACTOR = _Redactor()


class SafeFormatter(logging.Formatter):
    """key=value lines (or JSON lines), escaped and redacted."""

    def __init__(self, *, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        relayed = record.__dict__.get("relayed_line")
        if relayed is not None:  # a child process's line, already formatted and redacted
            return relayed
        # Every handler (the file, stderr, the rotation check) formats the record: do it once.
        cached = record.__dict__.get("_connector_line")
        if cached is not None and cached[0] == self.as_json:
            return cached[1]
        line = self._format(record)
        record.__dict__["_connector_line"] = (self.as_json, line)
        return line

    def _format(self, record: logging.LogRecord) -> str:
        raw_fields: dict[str, Any] = getattr(record, "fields", {}) or {}
        fields = {k: _clip(REDACTOR.redact_value(v)) for k, v in raw_fields.items()}
        message = record.getMessage()
        if record.exc_info:
            message = f"{message} | {self.formatException(record.exc_info)}"
        message = REDACTOR.redact(message)
        if self.as_json:
            doc = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
                   "msg": message, **fields}
            return REDACTOR.redact(_json_line(doc))
        parts = [self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), record.levelname, escape(message)]
        parts += [f"{k}={_quote(v)}" for k, v in fields.items()]
        return REDACTOR.redact(" ".join(parts))


class _RotatingFile(logging.handlers.RotatingFileHandler):
    """Rotates by size like its parent, but tracks the size itself: the parent's check stats the
    file twice and seeks for every line (it also formats the line once more)."""

    def __init__(self, path: Path, *, max_bytes: int, backup_count: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
        self._size = path.stat().st_size if path.exists() else 0

    def shouldRollover(self, record: logging.LogRecord) -> int:  # noqa: N802 - the parent's name
        if self.maxBytes <= 0:
            return 0
        line = self.format(record)
        size = (len(line) if line.isascii() else len(line.encode("utf-8", "replace"))) + 1
        if self._size + size >= self.maxBytes and self._size > 0:
            self._size = size  # the line goes into the new file
            return 1
        self._size += size
        return 0


def _connector_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_connector", False)]


def setup_logging(log_dir: str, *, level: str, as_json: bool, max_bytes: int, backup_count: int,
                  secrets: Iterable[str], to_stderr: bool = True, to_file: bool = True) -> Path:
    """Configures the root logger once; returns the log file's path.

    ``to_file=False`` is for the children of the multi-process mode: they write their lines to
    stderr, and their parent (sidecar.processes) alone writes the file, so rotation never races.
    """
    REDACTOR.set_secrets(secrets)
    directory = Path(log_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOG_FILE_NAME
    root = logging.getLogger()
    for handler in _connector_handlers():
        root.removeHandler(handler)
        handler.close()
    formatter = SafeFormatter(as_json=as_json)
    handlers: list[logging.Handler] = []
    if to_file:
        handlers.append(_RotatingFile(path, max_bytes=max_bytes, backup_count=backup_count))
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._connector = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Sanic's own loggers would otherwise print customer-controlled paths unescaped.
    for name in ("sanic.root", "sanic.error", "sanic.access", "sanic.server"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    return path


def stop_logging() -> None:
    """Removes and closes the handlers :func:`setup_logging` added (a sidecar run in-process by
    a test ends without its process ending)."""
    root = logging.getLogger()
    for handler in _connector_handlers():
        root.removeHandler(handler)
        handler.close()


def reconfigure(*, level: str, as_json: bool, max_bytes: int, backup_count: int) -> None:
    """Applies a live change of ``logging.*`` (everything but the directory) in place."""
    logging.getLogger().setLevel(level.upper())
    formatter = SafeFormatter(as_json=as_json)
    for handler in _connector_handlers():
        handler.setFormatter(formatter)
        if isinstance(handler, logging.handlers.RotatingFileHandler):
            handler.maxBytes = max_bytes
            handler.backupCount = backup_count


def relay(line: str) -> None:
    """Writes a line a child process formatted (multi-process mode) to this process's log file
    and stderr, as it is."""
    record = logging.LogRecord(LOGGER_NAME, logging.INFO, __file__, 0, "relayed", None, None)
    record.relayed_line = line
    for handler in _connector_handlers():
        handler.handle(record)


def log_event(logger: logging.Logger, name: str, /, level: int = logging.INFO, **fields: object) -> None:
    """Logs one event line: ``name`` plus key=value fields (None values left out)."""
    logger.log(level, name, extra={"fields": {k: v for k, v in fields.items() if v is not None}})


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)
