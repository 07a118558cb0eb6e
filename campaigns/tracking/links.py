"""Signed tracking links in a delivery's email: an open pixel and click redirects.

Only signed links redirect: the signature covers the delivery and the target URL, so the click
endpoint cannot be used as an open redirect, and nobody can count opens or clicks of another
delivery. Built once per message at send time; the views that read them are in tracking/views.py.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing

SALT = "campaigns.tracking"
HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT)


def delivery_token(delivery_id: int) -> str:
    return _signer().sign(str(delivery_id))


def click_url(delivery_id: int, url: str) -> str:
    signature = _signer().sign(f"{delivery_id}|{url}").rsplit(":", 1)[1]
    return f"{settings.PUBLIC_URL}/t/c/{delivery_id}/?{urlencode({'u': url, 's': signature})}"


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
    closing = html.lower().rfind("</body>")
    return html[:closing] + pixel + html[closing:] if closing >= 0 else html + pixel
