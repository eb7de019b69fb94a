"""Provides the HTTP errors: exception types, and the one handler that renders every error as JSON.

A handler raises (``raise Unauthorized("missing or wrong bearer token")``); the answer is always
``{"status": <word>, "error": <reason>}`` with the type's status code, never a traceback, and a
5xx the app did not expect is logged with its traceback and answered "internal error".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sanic import Request
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json

from sidecar.ops.logs import get_logger

log = get_logger()


class HttpError(SanicException):
    """An expected error answer (``quiet``: not logged as a server error)."""

    status_code = 400
    word = "rejected"
    """The answer's ``status`` field."""
    quiet = True

    def __init__(self, reason: str, *, headers: Mapping[str, str] | None = None, **fields: Any) -> None:
        super().__init__(reason, status_code=self.status_code, headers=dict(headers or {}))
        self.reason = reason
        self.fields = fields
        """Extra members of the JSON answer (e.g. ``key`` for a refused config value)."""


class BadRequest(HttpError):
    status_code = 400


class Unauthorized(HttpError):
    status_code = 401
    word = "unauthorized"


class Forbidden(HttpError):
    status_code = 403
    word = "forbidden"


class NotFound(HttpError):
    status_code = 404
    word = "unknown"


class RequestTimeout(HttpError):
    status_code = 408


class TooManyRequests(HttpError):
    status_code = 429


class Unavailable(HttpError):
    status_code = 503
    word = "unavailable"


_STATUS_REASONS = {413: "request body too large", 431: "request header fields too large"}


async def render(request: Request, exception: Exception) -> HTTPResponse:
    """Every error answers JSON with a clear reason; never a traceback."""
    if isinstance(exception, HttpError):
        return json({"status": exception.word, "error": exception.reason, **exception.fields},
                    status=exception.status_code, headers=exception.headers)
    status = getattr(exception, "status_code", 500) if isinstance(exception, SanicException) else 500
    if status == 413 and "header" in str(exception).lower():
        # Sanic 25.12 raises the same PayloadTooLarge for a request head over
        # REQUEST_MAX_HEADER_SIZE (8 KiB, sanic/http/http1.py) as for a body over the limit.
        status = 431
    if status >= 500:
        log.error("unhandled error on %s %s: %s", request.method, request.path, type(exception).__name__,
                  exc_info=exception)
        message = "internal error"
    else:
        message = _STATUS_REASONS.get(status) or str(exception) or type(exception).__name__
    return json({"status": "rejected", "error": message}, status=status)
