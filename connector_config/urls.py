"""Provides the rules for URLs the sidecar calls (Chatwoot, MCP-Crew, crews, decision engine).

An outbound URL must be http or https, name a host and carry no ``user:password@``. It must
not point at a link-local or cloud-metadata address: a crew URL set through ``POST /config``
must not turn the sidecar into a way to read the instance's credentials. The address check
looks at what the URL says, in every spelling a resolver accepts (decimal, hex, trailing dot,
full-width digits, IPv4 inside IPv6), plus the well-known metadata host names below. It does
not resolve names: loopback and private addresses stay allowed, because the sidecar runs
next to Chatwoot and the crews, and a DNS answer can change after the check anyway (the
sidecar never follows redirects, which closes the other door).

Messages never quote the URL: it may carry a token in its query string.
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from urllib.parse import urlsplit

from connector_config.errors import ConfigError, Refused, kind

METADATA_HOSTS: frozenset[str] = frozenset({
    "metadata.google.internal",  # Google Cloud
    "metadata",  # Google Cloud, short name on the instance's search path
    "instance-data",  # AWS EC2
    "instance-data.ec2.internal",  # AWS EC2 (us-east-1 internal domain)
    "metadata.packet.net",  # Equinix Metal
    "metadata.platformequinix.com",  # Equinix Metal
})
"""Host names that resolve to an instance-metadata service on some cloud; compared
case-insensitively, without a trailing dot."""

METADATA_ADDRESSES: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset({
    ipaddress.ip_address("fd00:ec2::254"),  # AWS EC2, IPv6
    ipaddress.ip_address("fd20:ce::254"),  # Google Cloud, IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("192.0.0.192"),  # Oracle Cloud (classic)
    ipaddress.ip_address("168.63.129.16"),  # Azure WireServer
})
"""Metadata addresses outside the link-local ranges (169.254.0.0/16 and fe80::/10, which
hold AWS's, Azure's, GCP's, DigitalOcean's and OpenStack's 169.254.169.254, are refused whole)."""

REFUSED_REASON = "link-local/metadata address refused"

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _host_of(url: str) -> str:
    """Scheme, host and no credentials; returns the host."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise Refused("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # parsing the port is the check
    except ValueError:
        raise Refused("is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise Refused("must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise Refused("must not contain credentials (user:password@)")
    if not parts.hostname:
        raise Refused("must include a host")
    return parts.hostname


def _folded(host: str) -> str:
    # Full-width letters, digits and dots are folded by IDNA into ASCII ones, so fold them first.
    return unicodedata.normalize("NFKC", host).replace("\u3002", ".").rstrip(".").lower()


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a (folded) host names literally, in any form a resolver would accept, else None."""
    host = host.split("%", 1)[0]  # IPv6 zone id (fe80::1%eth0)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if ":" in host:
        return None
    try:
        # inet_aton knows the legacy forms resolvers accept: 2852039166, 0xa9fea9fe, 169.254.43518.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, NAT64 or IPv4-compatible IPv6 address."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or (ip.packed[:12] == bytes(12) and int(ip) > 1):
        return ipaddress.IPv4Address(ip.packed[12:])
    return None


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip not in METADATA_ADDRESSES:
        embedded = _embedded_v4(ip)
        if embedded is not None:
            ip = embedded
    return ip.is_link_local or ip in METADATA_ADDRESSES


def check_http_url(url: str) -> str:
    """``url`` stripped if it is a well-formed http(s) URL (empty allowed); raises :class:`Refused`."""
    url = url.strip()
    if url:
        _host_of(url)
    return url


def check_outbound_url(url: str) -> str:
    """``url`` stripped if the sidecar may call it (empty allowed); raises :class:`Refused`."""
    url = url.strip()
    if not url:
        return url
    host = _folded(_host_of(url))
    ip = _literal_ip(host)
    if ip is not None and _refused(ip):
        raise Refused(REFUSED_REASON)
    if host in METADATA_HOSTS:
        raise Refused(f"{REFUSED_REASON} (a cloud metadata host name)")
    return url


def validate_outbound_url(key: str, url: str, *, allow_empty: bool = True) -> None:
    """:func:`check_outbound_url` for callers outside the schema; raises ``ConfigError`` naming ``key``.

    Args:
        key: the dotted key reported in the error.
        url: the URL to check.
        allow_empty: whether an empty URL is acceptable (else "is required").
    """
    if not isinstance(url, str):
        raise ConfigError(key, f"must be a string, not {kind(url)}")
    if not url.strip():
        if allow_empty:
            return
        raise ConfigError(key, "is required")
    try:
        check_outbound_url(url)
    except Refused as exc:
        raise ConfigError(key, exc.reason) from None


DATABASE_SCHEMES = ("postgresql", "postgres")


def check_database_url(url: str) -> str:
    """``url`` stripped if it is empty (SQLite at ``state.path``) or a PostgreSQL URL
    (``postgresql://user:password@host:port/database``); raises :class:`Refused`, whose reason
    never quotes the URL (it carries the password)."""
    url = url.strip()
    if not url:
        return url
    expected = "expected postgresql://user:password@host:port/database"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused(f"is not a valid URL ({expected})") from None
    if parts.scheme.lower() not in DATABASE_SCHEMES or not url.lower().startswith(f"{parts.scheme.lower()}://"):
        raise Refused(f"must start with postgresql:// or postgres:// ({expected})")
    if not parts.hostname and "host=" not in parts.query:
        raise Refused(f"names no host ({expected})")
    if not parts.path.strip("/"):
        raise Refused(f"names no database ({expected})")
    if port == 0:
        raise Refused("has port 0")
    return url


def database_url_password(url: str) -> str:
    """The password in a database URL ("" when there is none or the URL is not valid)."""
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""
