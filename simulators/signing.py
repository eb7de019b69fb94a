"""Chatwoot's webhook signing scheme and its exact JSON serialisation.

A receiver must verify the signature over the raw bytes it got, so the simulators must produce the
very bytes Rails would: compact JSON, raw UTF-8, and ActiveSupport's HTML-safe escapes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

# ActiveSupport::JSON escapes these even inside strings (ERB::Util::JSON_ESCAPE); Python does not.
_RAILS_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_ESCAPE_TABLE = str.maketrans(_RAILS_ESCAPES)


def chatwoot_json(obj: Any) -> bytes:
    """Serialise ``obj`` the way Chatwoot's ``payload.to_json`` does (compact, UTF-8, ``<>&`` escaped).

    The characters only ever occur inside JSON strings, so a plain translation of the dumped text
    is exact.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.translate(_ESCAPE_TABLE).encode("utf-8")


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """``X-Chatwoot-Signature`` value: ``sha256=`` + hex HMAC-SHA256(secret, "<ts>." + body)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(body: bytes, secret: str, timestamp: str | int, signature: str) -> bool:
    """Constant-time check of a signature (handy for test receivers)."""
    return hmac.compare_digest(sign(body, secret, int(timestamp)), signature.strip())


def webhook_headers(
    body: bytes, *, delivery_id: str, secret: str | None, timestamp: int
) -> dict[str, str]:
    """Headers Chatwoot sends with a delivery; timestamp and signature only when a secret is set."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-Chatwoot-Delivery": delivery_id,
    }
    if secret:
        headers["X-Chatwoot-Timestamp"] = str(timestamp)
        headers["X-Chatwoot-Signature"] = sign(body, secret, timestamp)
    return headers
