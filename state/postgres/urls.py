"""Provides the PostgreSQL URL helpers: telling a URL from a SQLite path, checking, redacting.

Free of psycopg, so that ``import state`` (every sidecar, console and test process, also on
SQLite) loads the driver only when a PostgreSQL URL is actually opened.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")


def is_url(location: str) -> bool:
    """Whether ``location`` names a PostgreSQL database (a URL) rather than a SQLite file."""
    return location.split(":", 1)[0].lower() in SCHEMES and "://" in location


def check_url(url: str) -> str | None:
    """Why ``url`` is not a usable PostgreSQL URL (None when it is). Never quotes the URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL (expected postgresql://user:password@host:port/database)"
    if parts.scheme.lower() not in SCHEMES:
        return "must start with postgresql:// (or postgres://)"
    if not parts.hostname and "host=" not in parts.query:
        return "names no host (expected postgresql://user:password@host:port/database)"
    if not parts.path.strip("/"):
        return "names no database (expected postgresql://user:password@host:port/database)"
    if port == 0:
        return "has port 0"
    return None


def redact(url: str) -> str:
    """The URL with its password replaced by ``****`` (what messages and logs may show)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:****@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<invalid database URL>"


def describe(url: str) -> str:
    """``host:port/database`` of a URL, for messages (no user, no password)."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}/{parts.path.strip('/')}"
    except ValueError:
        return "<invalid database URL>"
