"""SMS length and part counting: GSM-7 or UCS-2, as a handset or gateway will send the text.

Pure code, no I/O. `content/static/content/sms-counter.js` applies the same rules in the editor;
`tests/test_sms.py` runs both on the same samples and requires them to agree.

The alphabet is the GSM 03.38 default alphabet and its extension table, as in 3GPP TS 23.038
(section 6.2.1 and 6.2.1.1). National language shift tables are not used: few gateways send them.
"""

from dataclasses import dataclass

from django.utils.translation import gettext

# The default alphabet, positions 0x00 to 0x7F. Position 0x1B is the escape to the extension
# table, not a character of its own, so it is left out (a literal ESC in a text is not GSM-7).
# Position 0x09 is the capital Ç, as in the standard (some handsets show it as a small ç, but
# the small ç itself is not in the alphabet).
# fmt: off
GSM7_BASIC_TABLE: tuple[str | None, ...] = (
    # 0x00-0x0F
    "@", "£", "$", "¥", "è", "é", "ù", "ì", "ò", "Ç", "\n", "Ø", "ø", "\r", "Å", "å",
    # 0x10-0x1F (0x1B is the escape)
    "Δ", "_", "Φ", "Γ", "Λ", "Ω", "Π", "Ψ", "Σ", "Θ", "Ξ", None, "Æ", "æ", "ß", "É",
    # 0x20-0x2F
    " ", "!", '"', "#", "¤", "%", "&", "'", "(", ")", "*", "+", ",", "-", ".", "/",
    # 0x30-0x3F
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", ":", ";", "<", "=", ">", "?",
    # 0x40-0x5F
    "¡", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "Ä", "Ö", "Ñ", "Ü", "§",
    # 0x60-0x7F
    "¿", *"abcdefghijklmnopqrstuvwxyz", "ä", "ö", "ñ", "ü", "à",
)
# fmt: on

# The extension table: each is sent as the escape (0x1B) followed by this code, two septets.
GSM7_EXTENSION_TABLE: dict[str, int] = {
    "\f": 0x0A,  # form feed (page break)
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

GSM7_BASIC: frozenset[str] = frozenset(c for c in GSM7_BASIC_TABLE if c is not None)
GSM7_EXTENSION: frozenset[str] = frozenset(GSM7_EXTENSION_TABLE)

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# A single message carries 140 octets: 160 septets or 70 UTF-16 units. A concatenated one
# spends 6 octets of each part on the header (UDH), leaving 153 septets or 67 units.
GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67

SMS_PART_WARNING = 3


@dataclass(frozen=True)
class SmsInfo:
    encoding: str
    length: int
    parts: int
    per_part: int
    non_gsm_characters: list[str]


def _septets(character: str) -> int:
    return 2 if character in GSM7_EXTENSION else 1


def _utf16_units(character: str) -> int:
    return 2 if ord(character) > 0xFFFF else 1


def _non_gsm_characters(text: str) -> list[str]:
    return list(dict.fromkeys(c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENSION))


def sms_encoding(text: str) -> str:
    """GSM-7 when every character is in the default alphabet or its extension, else UCS-2."""
    return UCS2 if _non_gsm_characters(text) else GSM7


def _unit_sizes(text: str, encoding: str) -> list[int]:
    size = _septets if encoding == GSM7 else _utf16_units
    return [size(c) for c in text]


def sms_length(text: str) -> int:
    """Septets for GSM-7 (an extension character takes two), UTF-16 code units for UCS-2."""
    return sum(_unit_sizes(text, sms_encoding(text)))


def _count_parts(sizes: list[int], single: int, multi: int) -> int:
    if not sizes:
        return 0
    if sum(sizes) <= single:
        return 1
    # Walk the characters: an escape and its character, or a surrogate pair, stay in one part,
    # so a part ends one unit early rather than split them.
    parts, used = 1, 0
    for size in sizes:
        if used + size > multi:
            parts, used = parts + 1, 0
        used += size
    return parts


def _measure(text: str) -> SmsInfo:
    non_gsm = _non_gsm_characters(text)
    encoding = UCS2 if non_gsm else GSM7
    sizes = _unit_sizes(text, encoding)
    single, multi = (GSM7_SINGLE, GSM7_MULTI) if encoding == GSM7 else (UCS2_SINGLE, UCS2_MULTI)
    parts = _count_parts(sizes, single, multi)
    return SmsInfo(
        encoding=encoding,
        length=sum(sizes),
        parts=parts,
        per_part=multi if parts > 1 else single,
        non_gsm_characters=non_gsm,
    )


def sms_parts(text: str) -> int:
    """How many messages the text is sent as (and charged for); 0 for an empty text."""
    return _measure(text).parts


def sms_info(text: str) -> SmsInfo:
    """Everything the editor shows: encoding, length, parts, capacity of a part, and which
    characters forced UCS-2 (unique, in the order they first appear)."""
    return _measure(text)


def sms_warning(text: str, max_parts: int = SMS_PART_WARNING) -> str | None:
    """A sentence for the marketeer when the text takes more than `max_parts` parts, else None."""
    parts = sms_parts(text)
    if parts <= max_parts:
        return None
    return gettext("This SMS takes %(parts)d parts (each one is charged); keep it to %(max_parts)d or fewer.") % {
        "parts": parts,
        "max_parts": max_parts,
    }
