"""What every page that changes something (a form's POST) checks first.

The token cookie is ``SameSite=Strict``, so another site's form cannot send it; but the
sign-in form itself needs no cookie, and a cross-site POST to it would sign the
victim's browser in as the attacker (login CSRF). So every form POST must come from
this site: its ``Origin`` header (which browsers send with every cross-origin POST, and
with same-origin ones too), or else its ``Referer``, must name this registry's own
origin. A request with neither comes from a program, not a browser riding a visitor's
cookie, and is let through (curl with a Bearer header works as it does for the API).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request

from partsbin.registry.errors import Forbidden

__all__ = ["same_origin", "SECURITY_HEADERS"]

#: Sent with every page: no framing (clickjacking), no content sniffing, scripts and
#: styles from this site only, forms posting back here only.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: Request) -> None:
    """Refuse a form POST that another site's page made."""
    own = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}".lower()
    origin = request.headers.get("origin")
    if origin is not None:
        sender = None if origin == "null" else _origin_of(origin)
    elif (referer := request.headers.get("referer")) is not None:
        sender = _origin_of(referer)
    else:
        return
    if sender != own:
        raise Forbidden(
            f"this form must be sent from the registry's own pages ({own}), not from {origin or 'elsewhere'}"
        )
