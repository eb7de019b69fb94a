"""Provides the sidecar's logging: one line per event, secrets redacted, customer text escaped.

Customer text is attacker-controlled: CR, LF and other control characters are escaped so
a message can never start a forged log line. Every configured secret is masked in every
record, whatever logger produced it.
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


def escape(text: object) -> str:
    """Makes any value safe for a single log line."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


class _Redactor:
    """Holds the current secrets; replaced when the config changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def set_secrets(self, secrets: Iterable[str]) -> None:
        # Short strings would mask ordinary words; secrets of 4 characters or fewer are
        # rejected by nobody but are also not worth redacting word-by-word.
        values = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        with self._lock:
            self._pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def redact(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub("****", text) if pattern else text


REDACTOR = _Redactor()


class SafeFormatter(logging.Formatter):
    """key=value lines (or JSON lines), escaped and redacted."""

    def __init__(self, *, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {}) or {}
        message = record.getMessage()
        if record.exc_info:
            message = f"{message} | {self.formatException(record.exc_info)}"
        if self.as_json:
            doc = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
                   "msg": message, **{k: v for k, v in fields.items()}}
            # json.dumps escapes control characters itself, so one record is one line.
            return REDACTOR.redact(json.dumps(doc, ensure_ascii=False, default=str))
        parts = [self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), record.levelname, escape(message)]
        parts += [f"{k}={_quote(v)}" for k, v in fields.items()]
        return REDACTOR.redact(" ".join(parts))


def _quote(value: object) -> str:
    text = escape(value)
    if text == "" or any(c in text for c in ' ="'):
        return '"' + text.replace('"', '\\"') + '"'
    return text


def setup_logging(log_dir: str, *, level: str, as_json: bool, max_bytes: int, backup_count: int,
                  secrets: Iterable[str], to_stderr: bool = True) -> Path:
    """Configures the root logger once; returns the log file's path."""
    REDACTOR.set_secrets(secrets)
    directory = Path(log_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOG_FILE_NAME
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_connector", False):
            root.removeHandler(handler)
            handler.close()
    formatter = SafeFormatter(as_json=as_json)
    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
    )
    handlers: list[logging.Handler] = [file_handler]
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


def log_event(logger: logging.Logger, name: str, /, level: int = logging.INFO, **fields: object) -> None:
    """Logs one event line: ``name`` plus key=value fields (None values left out)."""
    logger.log(level, name, extra={"fields": {k: v for k, v in fields.items() if v is not None}})


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)
