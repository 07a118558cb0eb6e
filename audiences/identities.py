"""Normalising identities, so that the same person is found however a system spells them.

Every way in (import, API, events, admin search) normalises before it stores or looks up:
e-mail addresses are trimmed and lower-cased, phone numbers become E.164 (`+31612345678`,
default region NL), other ids are trimmed. Pure code, no I/O.
"""

from __future__ import annotations

import re
from typing import cast

import phonenumbers

from audiences.models import Identity

DEFAULT_PHONE_REGION = "NL"
# The stubs type any max_length as optional; this CharField has one.
MAX_LENGTH = cast(int, Identity._meta.get_field("value").max_length)
KINDS = frozenset(Identity.Kind.values)

# Deliberately simple: one @, no spaces, a dot in the domain. Mail servers decide the rest.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
# The spellings of Dutch numbers met in almost every file: 06-12345678, 0612345678,
# +31 6 12345678, 0031612345678, 020-1234567. They skip the (slower) full parser.
_PHONE_SEPARATORS = str.maketrans("", "", " -.()/")
_DUTCH_NATIONAL = re.compile(r"^0([1-9]\d{8})$")
_DUTCH_INTERNATIONAL = re.compile(r"^(?:\+|00)31([1-9]\d{8})$")


class InvalidIdentity(ValueError):
    """An identity that cannot be normalised; the message says what is wrong with it."""


def normalise_email(value: str) -> str:
    email = value.strip().lower()
    if not _EMAIL.match(email):
        raise InvalidIdentity(f"{value!r} is not an e-mail address")
    return email


def normalise_phone(value: str, region: str = DEFAULT_PHONE_REGION) -> str:
    compact = value.strip().translate(_PHONE_SEPARATORS)
    if region == "NL":
        match = _DUTCH_NATIONAL.match(compact) or _DUTCH_INTERNATIONAL.match(compact)
        if match:
            return f"+31{match.group(1)}"
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as error:
        raise InvalidIdentity(f"{value!r} is not a phone number") from error
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentity(f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_identity(kind: str, value: object) -> str:
    """The stored form of an identity of this kind, or InvalidIdentity saying why not."""
    if kind not in KINDS:
        raise InvalidIdentity(f"unknown identity kind {kind!r}; known: {', '.join(Identity.Kind.values)}")
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidIdentity(f"{kind} must be text, not {type(value).__name__}")
    text = str(value)
    if "\x00" in text:
        raise InvalidIdentity(f"{kind} contains a NUL character")
    if not text.strip():
        raise InvalidIdentity(f"{kind} is empty")
    if kind == Identity.Kind.EMAIL:
        normalised = normalise_email(text)
    elif kind == Identity.Kind.PHONE:
        normalised = normalise_phone(text)
    else:
        normalised = text.strip()
    if len(normalised) > MAX_LENGTH:
        raise InvalidIdentity(f"{kind} is longer than {MAX_LENGTH} characters")
    return normalised
