"""Dutch formatting filters for templates: `currency`, `number` and `date`; and `safe_url`.

Pure functions of their arguments, also usable outside templates. A missing value (None, an
undefined template variable, an empty string) formats as "", so that `{{ offer.price | currency }}`
on a contact without an offer leaves a gap rather than failing a send; a value that is not a
number or a date is shown as it is, so that a wrong variable is visible in the preview.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.utils import timezone
from jinja2 import Undefined

MONTHS = (
    "januari",
    "februari",
    "maart",
    "april",
    "mei",
    "juni",
    "juli",
    "augustus",
    "september",
    "oktober",
    "november",
    "december",
)
WEEKDAYS = ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag")
MAX_DECIMALS = 10

# The names of the date formats, for the editor and the checks.
DATE_FORMATS = ("long", "short", "full", "month", "datetime", "time")


def is_missing(value: object) -> bool:
    return value is None or isinstance(value, Undefined) or (isinstance(value, str) and not value.strip())


def to_decimal(value: object) -> Decimal | None:
    """The value as a finite Decimal, or None when it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))  # 0.1 is 0.1, not 0.1000000000000000055...
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip().replace(",", "."))
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def dutch_digits(number: Decimal, decimals: int) -> str | None:
    """`number` rounded half up to `decimals` places, with Dutch separators: 1.234.567,89."""
    try:
        rounded = number.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    except InvalidOperation:  # more digits than the decimal context holds
        return None
    if rounded == 0:
        rounded = abs(rounded)  # no "-0,00"
    english = f"{rounded:,.{decimals}f}"
    return english.replace(",", " ").replace(".", ",").replace(" ", ".")


def currency(value: object, symbol: str = "€") -> str:
    """`€ 1.234,56`; negative amounts `€ -1.234,56`; missing values ""."""
    if is_missing(value):
        return ""
    number = to_decimal(value)
    if number is None:
        return str(value)
    digits = dutch_digits(number, 2)
    if digits is None:
        return str(value)
    return f"{symbol} {digits}" if symbol else digits


def number(value: object, decimals: int | None = None) -> str:
    """Dutch separators: `1.234.567`, `1.234,5`. Without `decimals`, the value's own are kept."""
    if is_missing(value):
        return ""
    parsed = to_decimal(value)
    if parsed is None:
        return str(value)
    if decimals is None:
        exponent = parsed.as_tuple().exponent
        decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    decimals = max(0, min(int(decimals), MAX_DECIMALS))
    digits = dutch_digits(parsed, decimals)
    return str(value) if digits is None else digits


def to_date(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return timezone.localtime(value) if timezone.is_aware(value) else value
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.date.fromisoformat(text) if len(text) == 10 else to_date(dt.datetime.fromisoformat(text))
        except ValueError:
            return None
    return None


def date(value: object, format: str = "long") -> str:
    """`22 november 2026` (long), `22-11-2026` (short), `zondag 22 november 2026` (full),
    `november 2026` (month), `22 november 2026 14:30` (datetime), `14:30` (time).

    Accepts a date, a datetime (aware ones are shown in the current timezone) or ISO text.
    """
    if is_missing(value):
        return ""
    day = to_date(value)
    if day is None:
        return str(value)
    long = f"{day.day} {MONTHS[day.month - 1]} {day.year}"
    clock = f"{day.hour:02d}:{day.minute:02d}" if isinstance(day, dt.datetime) else ""
    formats = {
        "long": long,
        "short": f"{day.day:02d}-{day.month:02d}-{day.year}",
        "full": f"{WEEKDAYS[day.weekday()]} {long}",
        "month": f"{MONTHS[day.month - 1]} {day.year}",
        "datetime": f"{long} {clock}".strip(),
        "time": clock,
    }
    return formats.get(format, long)


SAFE_URL_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
URL_IGNORED = re.compile(r"[\x00-\x20\x7f]")  # browsers skip these in a URL, even inside "java\tscript:"
URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*):")


def safe_url(value: object) -> str:
    """The value as a link address when it is a web, mail or phone link or a relative address;
    "" otherwise (`javascript:`, `data:`, ...). Email links whose address comes from a variable pass
    through it (the HTML preparation adds it), so contact data cannot turn a link into a script."""
    if is_missing(value):
        return ""
    text = str(value).strip()
    scheme = URL_SCHEME.match(URL_IGNORED.sub("", text))
    if scheme and scheme.group(1).lower() not in SAFE_URL_SCHEMES:
        return ""
    return text
