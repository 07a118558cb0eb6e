"""Django's `signing.Signer` signatures with the key derived once per salt: a send signs several
links per message (tracking, unsubscribe, preferences), and the Signer derives its key again for
every signature. The same text as `signing.Signer(salt=salt)` writes (tests/test_send_fast_paths.py)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac

from django.conf import settings
from django.utils.encoding import force_bytes


@functools.lru_cache(maxsize=16)
def _keyed_mac(salt: str, secret: str | bytes) -> hmac.HMAC:
    # salted_hmac(salt + "signer", value, secret): the key is sha256(key_salt + secret).
    key = hashlib.sha256(force_bytes(f"{salt}signer") + force_bytes(secret)).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def signature(value: str, *, salt: str) -> str:
    """`signing.Signer(salt=salt).signature(value)`."""
    mac = _keyed_mac(salt, settings.SECRET_KEY).copy()
    mac.update(value.encode())
    return base64.urlsafe_b64encode(mac.digest()).strip(b"=").decode()


def sign(value: str, *, salt: str) -> str:
    """`signing.Signer(salt=salt).sign(value)`."""
    return f"{value}:{signature(value, salt=salt)}"
