"""Columns of a file → fields of Dialoog, and each row parsed and normalised by that mapping.

A target is a string:

- contact fields: ``first_name``, ``last_name``, ``locale``, ``timezone``;
- identities: ``identity:<kind>`` for every `Identity.Kind` (``identity:email``, ``identity:phone`` ...);
- attributes: ``attribute:<key>`` or ``attribute:<key>:<type>``, type one of text, number, date,
  boolean (dates are stored as ISO text ``YYYY-MM-DD``, numbers as JSON numbers);
- consents: ``consent:email``, ``consent:sms``, ``consent:phone`` (ja/nee, granted/withdrawn, 1/0;
  empty means no change);
- events: ``event:type``, ``event:occurred_at``, ``event:value``, ``event:currency``,
  ``event:external_id``, ``event:property:<name>`` (optionally ``:<type>`` like attributes),
  plus identity columns that find the contact.

An empty target (or a column left out of the mapping) is ignored. Pure code, no database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils.translation import gettext

from audiences.identities import MAX_LENGTH, InvalidIdentity, normalise_email, normalise_phone
from audiences.imports.reading import MAX_DIGITS, parse_boolean, parse_date, parse_datetime, parse_decimal
from audiences.models import Channel, ConsentChange, Contact, Event, Identity

CONTACTS = "contacts"
EVENTS = "events"
CONTACT_FIELDS = ("first_name", "last_name", "locale", "timezone")
FIELD_LENGTHS = {"first_name": 150, "last_name": 150, "locale": 10, "timezone": 64}
VALUE_TYPES = ("text", "number", "date", "boolean")
EVENT_FIELDS = ("type", "occurred_at", "value", "currency", "external_id")
MAX_EVENT_VALUE = Decimal("1e10")  # numeric(12, 2)
_KEY = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,63}$")
GRANTED, WITHDRAWN = ConsentChange.Status.GRANTED.value, ConsentChange.Status.WITHDRAWN.value
_CONSENT_WORDS = {"granted": GRANTED, "withdrawn": WITHDRAWN, "gegeven": GRANTED, "ingetrokken": WITHDRAWN}
NO_IDENTITY = "no contact identity: map a column to e-mail, phone or customer number"


class MappingError(ValueError):
    """The mapping as a whole cannot be used; the message names the column and the target."""


# --- Targets and their labels --------------------------------------------------------------


def target_choices(kind: str) -> list[tuple[str, str]]:
    """(target, label) pairs for the mapping page's selects; attribute targets are free text too."""
    choices = [("", gettext("— ignore —"))]
    choices += [
        (f"identity:{value}", gettext("Identity: %(label)s") % {"label": label})
        for value, label in Identity.Kind.choices
    ]
    if kind == CONTACTS:
        choices += [
            (name, gettext("Contact: %(label)s") % {"label": Contact._meta.get_field(name).verbose_name})
            for name in CONTACT_FIELDS
        ]
        choices += [
            (f"consent:{value}", gettext("Consent: %(label)s") % {"label": label}) for value, label in Channel.choices
        ]
    else:
        choices += [
            (f"event:{name}", gettext("Event: %(label)s") % {"label": Event._meta.get_field(name).verbose_name})
            for name in EVENT_FIELDS
        ]
    return choices


# Header names as marketeers write them, Dutch and English, compared without case, accents,
# spaces, dashes and underscores.
_GUESSES = {
    "identity:email": ["email", "e-mail", "emailadres", "e-mailadres", "mail", "mailadres", "emailaddress"],
    "identity:phone": ["telefoon", "telefoonnummer", "tel", "mobiel", "mobielnummer", "mobile", "phone", "gsm"],
    "identity:customer_number": ["klantnummer", "klantnr", "customernumber", "customerno", "customerid", "klantid"],
    "identity:webshop_id": ["webshopid"],
    "identity:crm_id": ["crmid", "relatienummer"],
    "identity:device_id": ["deviceid", "apparaatid"],
    "first_name": ["voornaam", "firstname", "roepnaam", "givenname"],
    "last_name": ["achternaam", "lastname", "surname", "familienaam", "naam"],
    "locale": ["taal", "language", "locale"],
    "timezone": ["tijdzone", "timezone"],
    "consent:email": ["optinemail", "emailoptin", "toestemmingemail", "nieuwsbrief", "newsletter", "emailconsent"],
    "consent:sms": ["optinsms", "smsoptin", "toestemmingsms", "smsconsent"],
    "consent:phone": ["optintelefoon", "toestemmingtelefoon", "phoneconsent"],
    "attribute:birth_date:date": ["geboortedatum", "birthdate", "dateofbirth", "birthday", "verjaardag"],
    "attribute:city:text": ["woonplaats", "plaats", "city", "stad"],
    "attribute:postcode:text": ["postcode", "zipcode", "postalcode", "zip"],
    "attribute:gender:text": ["geslacht", "gender"],
    "event:type": ["type", "eventtype", "soort", "gebeurtenis", "event"],
    "event:occurred_at": ["datum", "date", "tijdstip", "occurredat", "timestamp", "datumtijd", "besteldatum"],
    "event:value": ["bedrag", "waarde", "value", "amount", "omzet", "totaal", "total"],
    "event:currency": ["valuta", "currency", "munt"],
    "event:external_id": ["externalid", "id", "eventid", "ordernummer", "ordernumber", "orderid", "bestelnummer"],
}
_GUESS_INDEX = {spelling: target for target, spellings in _GUESSES.items() for spelling in spellings}


def _squash(name: str) -> str:
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[\s_\-./()]+", "", plain)


def guess_mapping(columns: list[str], kind: str) -> dict[str, str]:
    """A default mapping from the header names; columns it does not recognise are ignored."""
    allowed_prefixes = ("identity:",) + (
        ("attribute:", "consent:", *CONTACT_FIELDS) if kind == CONTACTS else ("event:",)
    )
    mapping = {}
    for column in columns:
        target = _GUESS_INDEX.get(_squash(column), "")
        if target and not target.startswith(allowed_prefixes):
            target = ""
        mapping[column] = target
    return mapping


# --- The compiled mapping: one row in, normalised values or errors out -----------------------


@dataclass
class Plan:
    """A mapping checked against the file's columns, ready to parse rows quickly."""

    kind: str
    columns: list[str]
    identity_columns: list[tuple[int, str, str]] = field(default_factory=list)  # (index, column, kind)
    field_columns: list[tuple[int, str, str]] = field(default_factory=list)  # (index, column, field)
    attribute_columns: list[tuple[int, str, str, str]] = field(default_factory=list)  # (index, column, key, type)
    consent_columns: list[tuple[int, str, str]] = field(default_factory=list)  # (index, column, channel)
    event_columns: dict[str, tuple[int, str]] = field(default_factory=dict)  # field → (index, column)
    tzinfo: dt.tzinfo = dt.UTC

    @property
    def identity_kinds(self) -> list[str]:
        return [kind for _index, _column, kind in self.identity_columns]

    @property
    def channels(self) -> list[str]:
        return [value for value, _label in Channel.choices]


def build_plan(columns: list[str], mapping: dict[str, str], kind: str, time_zone: str = "Europe/Amsterdam") -> Plan:
    """Check the mapping against the columns; MappingError names what is wrong."""
    plan = Plan(kind=kind, columns=columns, tzinfo=ZoneInfo(time_zone))
    index_of = {column: index for index, column in enumerate(columns)}
    used_targets: dict[str, str] = {}
    for column, raw_target in mapping.items():
        target = (raw_target or "").strip()
        if not target:
            continue
        if column not in index_of:
            raise MappingError(f"the mapping names a column {column!r} that the file does not have")
        index = index_of[column]
        repeatable = target.startswith("identity:")
        if not repeatable and target in used_targets:
            raise MappingError(f"columns {used_targets[target]!r} and {column!r} are both mapped to {target}")
        used_targets[target] = column
        _add_target(plan, index, column, target)
    if not plan.identity_columns:
        raise MappingError(NO_IDENTITY)
    if kind == EVENTS:
        for required in ("type", "occurred_at"):
            if required not in plan.event_columns:
                raise MappingError(f"map a column to event:{required}: every event needs one")
    return plan


def _add_target(plan: Plan, index: int, column: str, target: str) -> None:
    prefix, _, rest = target.partition(":")
    if prefix == "identity":
        if rest not in Identity.Kind.values:
            raise MappingError(
                f"column {column!r}: unknown identity kind {rest!r}; known: {', '.join(Identity.Kind.values)}"
            )
        plan.identity_columns.append((index, column, rest))
        return
    if plan.kind == CONTACTS:
        if target in CONTACT_FIELDS:
            plan.field_columns.append((index, column, target))
            return
        if prefix == "attribute":
            key, value_type = _key_and_type(column, rest)
            plan.attribute_columns.append((index, column, key, value_type))
            return
        if prefix == "consent":
            if rest not in Channel.values:
                raise MappingError(f"column {column!r}: unknown channel {rest!r}; known: {', '.join(Channel.values)}")
            plan.consent_columns.append((index, column, rest))
            return
    elif prefix == "event":
        if rest in EVENT_FIELDS:
            plan.event_columns[rest] = (index, column)
            return
        if rest.startswith("property:"):
            key, value_type = _key_and_type(column, rest.removeprefix("property:"))
            plan.attribute_columns.append((index, column, key, value_type))
            return
    raise MappingError(f"column {column!r}: {target!r} is not something a {plan.kind} import can fill")


def _key_and_type(column: str, spec: str) -> tuple[str, str]:
    key, _, value_type = spec.partition(":")
    value_type = value_type or "text"
    if not _KEY.match(key):
        raise MappingError(f"column {column!r}: {key!r} is not a valid key (lower case letters, digits, _ . -)")
    if value_type not in VALUE_TYPES:
        raise MappingError(f"column {column!r}: unknown type {value_type!r}; known: {', '.join(VALUE_TYPES)}")
    return key, value_type


@dataclass
class ParsedRow:
    line: int
    identities: list[str | None]  # one per plan.identity_columns, normalised
    fields: dict[str, str]  # contact fields, or event fields (occurred_at as ISO text)
    attributes: dict  # attributes (contacts) or properties (events)
    consents: dict[str, str]  # channel → granted/withdrawn
    errors: list[str]
    # No backslash, tab, line break, quote or control character anywhere in the row: its values
    # (and their JSON) can be written to COPY without escaping.
    raw_is_plain: bool = False


def _typed(value_type: str, text: str):
    if value_type == "text":
        return text
    if value_type == "number":
        number = parse_decimal(text)
        return int(number) if number == number.to_integral_value() else float(number)
    if value_type == "date":
        return parse_date(text).isoformat()
    return parse_boolean(text)


def _consent(text: str) -> str:
    word = text.strip().lower()
    if word in _CONSENT_WORDS:
        return _CONSENT_WORDS[word]
    try:
        return GRANTED if parse_boolean(word) else WITHDRAWN
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a consent (ja/nee, granted/withdrawn, 1/0)") from None


def _normalise_id(text: str) -> str:
    value = text.strip()
    if len(value) > MAX_LENGTH:
        raise InvalidIdentity(f"longer than {MAX_LENGTH} characters")
    return value


def _checked(normalise):
    def checked(text: str) -> str:
        value = normalise(text)
        if len(value) > MAX_LENGTH:
            raise InvalidIdentity(f"longer than {MAX_LENGTH} characters")
        return value

    return checked


# What `identities.normalise_identity` does per kind, without its per-call checks of the kind
# (done once, in build_plan): the row loop's hottest call.
_NORMALISERS = {Identity.Kind.EMAIL.value: _checked(normalise_email), Identity.Kind.PHONE.value: normalise_phone}


def parse_row(plan: Plan, line: int, values: list[str]) -> ParsedRow:
    """Normalise one row by the plan. Errors are collected, each naming its column."""
    errors: list[str] = []
    width = len(plan.columns)
    if len(values) != width:
        extra = values[width:]
        if len(values) < width or any(value.strip() for value in extra):
            last_line = getattr(values, "last_line", line)
            hint = (
                f"lines {line}-{last_line} were read as one row: a quote on line {line} is not closed"
                if last_line > line
                else "check the delimiter and the quotes on this line"
            )
            errors.append(f"the row has {len(values)} fields where the header has {width} ({hint})")
            return ParsedRow(line, [], {}, {}, {}, errors)
    identities: list[str | None] = []
    for index, column, kind in plan.identity_columns:
        text = values[index]
        if not text or text.isspace():
            identities.append(None)
            continue
        try:
            identities.append(_NORMALISERS.get(kind, _normalise_id)(text))
        except InvalidIdentity as error:
            errors.append(f"{column}: {error}")
            identities.append(None)
    if not errors and not any(identities):
        errors.append(f"{NO_IDENTITY} (this row has none)")
    fields: dict[str, str] = {}
    for index, column, name in plan.field_columns:
        text = values[index].strip()
        if text:
            if len(text) > FIELD_LENGTHS[name]:
                errors.append(f"{column}: longer than {FIELD_LENGTHS[name]} characters")
            fields[name] = text
    attributes = {}
    for index, column, key, value_type in plan.attribute_columns:
        text = values[index].strip()
        if text:
            if value_type == "text":
                attributes[key] = text
                continue
            try:
                attributes[key] = _typed(value_type, text)
            except ValueError as error:
                errors.append(f"{column}: {error}")
    consents = {}
    for index, column, channel in plan.consent_columns:
        text = values[index]
        if text and not text.isspace():
            try:
                consents[channel] = _consent(text)
            except ValueError as error:
                errors.append(f"{column}: {error}")
    if plan.kind == EVENTS:
        _parse_event(plan, values, fields, errors)
    plain = not _SPECIAL.search("".join(values))
    return ParsedRow(line, identities, fields, attributes, consents, errors, plain)


_SPECIAL = re.compile(r'[\\"\x00-\x1f]')
_EVENT_TYPES = ", ".join(Event.Type.values)
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _parse_event(plan: Plan, values: list[str], fields: dict, errors: list[str]) -> None:
    columns = plan.event_columns
    index, column = columns["type"]
    event_type = values[index].strip().lower()
    if not event_type:
        errors.append(f"{column}: empty; every event needs a type")
    elif event_type not in Event.Type.values:
        errors.append(f"{column}: unknown event type {event_type!r}; known: {_EVENT_TYPES}")
    fields["type"] = event_type
    index, column = columns["occurred_at"]
    text = values[index].strip()
    if not text:
        errors.append(f"{column}: empty; every event needs the date it happened")
    else:
        try:
            fields["occurred_at"] = parse_datetime(text, plan.tzinfo).isoformat()
        except ValueError as error:
            errors.append(f"{column}: {error}")
    if "value" in columns:
        index, column = columns["value"]
        text = values[index].strip()
        if text:
            try:
                value = parse_decimal(text).quantize(Decimal("0.01"))
                if abs(value) >= MAX_EVENT_VALUE:
                    errors.append(f"{column}: {text!r} is too large for an event value")
                fields["value"] = str(value)
            except ValueError as error:
                errors.append(f"{column}: {error}")
    if "currency" in columns:
        index, column = columns["currency"]
        text = values[index].strip().upper()
        if text == "€":
            text = "EUR"
        if text and not _CURRENCY.match(text):
            errors.append(f"{column}: {text!r} is not a currency code like EUR")
        if text:
            fields["currency"] = text
    if "external_id" in columns:
        index, column = columns["external_id"]
        text = values[index].strip()
        if len(text) > 255:
            errors.append(f"{column}: longer than 255 characters")
        if text:
            fields["external_id"] = text


def derived_external_id(row: ParsedRow) -> str:
    """A stable id for an event row that has none, from its normalised content (not its line or
    file name): importing the same event again, in this file or another, stores it once. Two
    rows with identical content (same contact identities, type, time, value and properties) are
    therefore one event; give such events an external id column when they are really two."""
    payload = json.dumps(
        [row.identities, row.fields, row.attributes], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return "import:" + hashlib.sha256(payload.encode()).hexdigest()[:40]


# --- The fast path for contact rows: one COPY line per row, no objects per row -----------------


class NotFast(Exception):
    """The row needs `parse_row`: it has an error to report, or something the fast path leaves to it."""


def _date_json(text: str) -> str:
    """parse_date(text).isoformat() as JSON; 22-11-2026 (or with / or .) without the regular expression."""
    if len(text) == 10 and text[2] in "-/." and text[5] in "-/." and text.isascii():
        day, month, year = text[:2], text[3:5], text[6:]
        if day.isdigit() and month.isdigit() and year.isdigit():
            dt.date(int(year), int(month), int(day))  # ValueError for 31-02: parse_date then says why
            return f'"{year}-{month}-{day}"'
    return '"' + parse_date(text).isoformat() + '"'


def _number_json(text: str) -> str:
    """_typed("number", text) as JSON; 1234 and 1234,56 without Decimal. A whole number stays
    an int; otherwise float() rounds the same decimal value to the same float as Decimal did."""
    whole, comma, fraction = text.partition(",")
    if (
        len(whole) <= MAX_DIGITS
        and whole.isdigit()
        and whole.isascii()
        and (not comma or (fraction.isdigit() and fraction.isascii()))
    ):
        if not fraction.strip("0"):
            return str(int(whole))
        return repr(float(whole + "." + fraction))
    return repr(_typed("number", text))  # int or float: repr() is how json writes them


_FAST_CONSENT = dict.fromkeys(("ja", "Ja", "JA", "yes", "1", "granted", "true"), GRANTED) | dict.fromkeys(
    ("nee", "Nee", "NEE", "no", "0", "withdrawn", "false"), WITHDRAWN
)


def _fast_attribute(value_type: str):
    """The attribute's value as JSON, for text without quotes, backslashes or control characters."""
    if value_type == "text":
        return lambda text: '"' + text + '"'
    if value_type == "date":
        return _date_json
    if value_type == "boolean":
        return lambda text: "true" if parse_boolean(text) else "false"
    return _number_json


def contact_line_writer(plan: Plan, null: str):
    """A function `(line, values) -> str` giving the row's line for COPY into the staging table
    (columns as `pipeline._stage_columns`: line, grp, identities, contact fields, attrs, consents),
    exactly what `parse_row` and `pipeline._stage_line` give, or raising NotFast when the row
    needs them (any error, any quote, backslash, tab or control character, a row of another width).
    Everything that can be decided once per file is decided here, once: per row it is a loop over
    precomputed (index, function) pairs and one join."""
    width = len(plan.columns)
    identities = [(index, _NORMALISERS.get(kind, _normalise_id)) for index, _column, kind in plan.identity_columns]
    by_field = {name: (index, FIELD_LENGTHS[name]) for index, _column, name in plan.field_columns}
    fields = [by_field.get(name) for name in CONTACT_FIELDS]
    attributes = [
        (index, '"' + key + '":', _fast_attribute(value_type))  # keys match _KEY: nothing to escape
        for index, _column, key, value_type in plan.attribute_columns
    ]
    by_channel = {channel: index for index, _column, channel in plan.consent_columns}
    consents = [by_channel.get(channel) for channel in plan.channels]
    special = _SPECIAL.search

    def write(line: int, values: list[str]) -> str:
        if len(values) != width:
            raise NotFast
        if special("".join(values)):
            raise NotFast
        parts = [str(line)]
        parts.append(parts[0])
        found = False
        try:  # every parser and normaliser says what is wrong with ValueError (InvalidIdentity is one)
            for index, normalise in identities:
                text = values[index]
                if not text or text.isspace():
                    parts.append(null)
                else:
                    parts.append(normalise(text))
                    found = True
            if not found:
                raise NotFast
            for spec in fields:
                if spec is None:
                    parts.append(null)
                    continue
                text = values[spec[0]].strip()
                if not text:
                    parts.append(null)
                elif len(text) > spec[1]:
                    raise NotFast
                else:
                    parts.append(text)
            json_parts = []
            for index, key, encode in attributes:
                text = values[index].strip()
                if text:
                    json_parts.append(key + encode(text))
            parts.append("{" + ",".join(json_parts) + "}" if json_parts else null)
            for index in consents:
                text = None if index is None else values[index]
                if text in _FAST_CONSENT:
                    parts.append(_FAST_CONSENT[text])
                else:
                    parts.append(_consent(text) if text and not text.isspace() else null)
        except ValueError:
            raise NotFast from None
        return "\t".join(parts) + "\n"

    return write
