"""Which URLs a subscription may deliver to.

A webhook makes the registry send requests where a token holder says: without a check,
a publish token could aim it at the registry's own network (a database's HTTP port, a
cloud metadata address) and read the outcome from the delivery log (server-side request
forgery). So a subscription made by a namespace owner must name an ``http(s)`` URL whose
host resolves only to public addresses, checked when it is made and again before every
attempt (the name may resolve elsewhere later). Admins, and deployments that set
``PARTSBIN_WEBHOOK_ALLOW_PRIVATE=true`` (a receiver on the same host or network), may
name any address. Redirects are never followed: a public receiver cannot forward a
delivery inward.

Left as it is: between the check and httpx's own resolution a name could change
(DNS rebinding within one attempt); pinning the checked address would need a transport
of our own.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["MAX_URL", "InvalidTarget", "check_url", "check_address"]

MAX_URL = 2048


class InvalidTarget(ValueError):
    """A URL a subscription may not deliver to; the message says why."""


def check_url(url: str) -> str:
    """The URL's shape: ``http(s)://host[:port]/path``, no credentials, bounded length."""
    url = url.strip()
    if len(url) > MAX_URL:
        raise InvalidTarget(f"the URL is {len(url)} characters long; at most {MAX_URL}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidTarget(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidTarget(f"the URL must start with http:// or https://, got {url[:40]!r}")
    if not parts.hostname:
        raise InvalidTarget("the URL names no host")
    if parts.username or parts.password:
        raise InvalidTarget("the URL may not carry a user or password: authenticate deliveries by their signature")
    if port == 0:
        raise InvalidTarget("port 0 is not a port")
    return url


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise InvalidTarget(f"the host {host!r} does not resolve: {exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def check_address(url: str) -> None:
    """Refuse a URL whose host resolves to any address that is not public."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for address in _addresses(host, port):
        if not address.is_global:
            raise InvalidTarget(
                f"{host} resolves to {address}, a private, loopback or link-local address: only admins may "
                "subscribe such a receiver (or the deployment sets PARTSBIN_WEBHOOK_ALLOW_PRIVATE=true)"
            )
