"""Signed tracking links in a delivery's email: an open pixel and click redirects.

Only signed links redirect: the signature covers the delivery and the target URL, so the click
endpoint cannot be used as an open redirect, and nobody can count opens or clicks of another
delivery. Built once per message at send time; the views that read them are in tracking/views.py.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote_plus

from django.conf import settings
from django.core import signing

from dialoog.signing import signature

SALT = "campaigns.tracking"
HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT)


def _signature(value: str) -> str:
    """`signing.Signer(salt=SALT).signature(value)`, with the key derived once."""
    return signature(value, salt=SALT)


@functools.lru_cache(maxsize=256)
def _quoted(url: str) -> str:
    return quote_plus(url, safe="")


def delivery_token(delivery_id: int) -> str:
    value = str(delivery_id)
    return f"{value}:{_signature(value)}"


def click_url(delivery_id: int, url: str) -> str:
    # As urlencode({"u": url, "s": signature}) writes it: the signature's URL-safe base64 needs no quoting.
    return f"{settings.PUBLIC_URL}/t/c/{delivery_id}/?u={_quoted(url)}&s={_signature(f'{delivery_id}|{url}')}"


def click_target(delivery_id: int, url: str, signature: str) -> str | None:
    """The URL to redirect to, when the signature is right; None otherwise."""
    try:
        _signer().unsign(f"{delivery_id}|{url}:{signature}")
    except signing.BadSignature:
        return None
    return url


def open_pixel_url(delivery_id: int) -> str:
    return f"{settings.PUBLIC_URL}/t/o/{delivery_token(delivery_id)}.gif"


def opened_delivery(token: str) -> int | None:
    try:
        return int(_signer().unsign(token))
    except (signing.BadSignature, ValueError):
        return None


def tracked_html(html: str, delivery_id: int, *, skip: tuple[str, ...] = ()) -> str:
    """The email's HTML with every http(s) link sent through the click redirect (except the links in
    `skip`, such as the unsubscribe link, which must work without a redirect) and the open pixel
    added at the end of the body."""

    def rewrite(match: re.Match[str]) -> str:
        url = match.group(3).replace("&amp;", "&")
        if url in skip:
            return match.group(0)
        quote = match.group(2)
        return f"{match.group(1)}{quote}{click_url(delivery_id, url).replace('&', '&amp;')}{quote}"

    html = HREF.sub(rewrite, html)
    pixel = f'<img src="{open_pixel_url(delivery_id)}" width="1" height="1" alt="" style="display:none">'
    closing = _last_body_end(html)
    return html[:closing] + pixel + html[closing:] if closing >= 0 else html + pixel


def _last_body_end(html: str) -> int:
    """Where the last `</body>` starts, in any case; -1 when there is none. Looked for from the end,
    without lowering the whole message (slow for text with accents, and lowering may change
    where a character is)."""
    position = len(html)
    while (position := html.rfind("</", 0, position)) >= 0:
        if html[position : position + 7].lower() == "</body>":
            return position
    return -1
