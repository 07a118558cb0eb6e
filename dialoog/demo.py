"""Demo data: a believable Dutch webshop selling home and garden goods.

Contact number i of seed S is always the same person (name, postcode, phone, purchases,
consents), whatever the number of contacts asked for, so loading is idempotent and can
grow: `--contacts 500` then `--contacts 1000` adds the 500 missing ones. Dates are relative
to `as_of` (today by default), so "bought in the last 90 days" finds someone on any day.

The shop has patterns that later work can learn from and measure:

- customers come from four systems (`Identity.source`: webshop, crm, callcenter, app), and
  about 3% of persons exist twice: a webshop record (e-mail, webshop id) and a CRM or
  callcenter record (phone, CRM id) of the same person, with no identity in common, so that
  an import or an event carrying both identities merges them;
- consent has a history (granted, refused, withdrawn, granted again), and `Consent` holds
  the newest change per channel, as the consent service keeps it;
- purchases follow the seasons (garden furniture and barbecues in spring and summer,
  lighting in autumn and winter, a December peak), each customer prefers a category or two,
  about a quarter of the customers buy less and less and then stop (churn), and some products
  are bought together (a barbecue with its cover, in one order);
- page views, newsletters opened and clicked, callcenter outcomes, NPS and satisfaction
  answers, about ten events per contact in all.

`demo_truth()` returns the hidden traits of a contact (churned, on which day, favourite
categories), to measure a model against what the generator meant.

One million contacts take minutes, not hours: names, streets and cities are drawn from pools
that Faker fills once per seed, every draw comes from one seeded `random.Random` per contact,
and rows go to PostgreSQL with `COPY`, a chunk of contacts per transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import unicodedata
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone
from faker import Faker

from audiences.insights.predictions import (
    NotEnoughData,
    prediction_model_activate,
    prediction_model_train,
    scores_refresh,
)
from audiences.insights.products import products_refresh
from audiences.models import ConsentChange, Contact, Event, Identity, PredictionModel
from audiences.services.consents import consent_current_rebuild
from campaigns.models import Campaign
from dialoog.roles import ADMINISTRATOR, ANALYST, CALLCENTER_AGENT, MARKETEER
from goals.models import Domain, Goal, Metric
from goals.services import baseline_window, goal_create, goals_measure, kpi_measure, start_of

DEMO_NAMESPACE = uuid.UUID("5b0c2a4e-6f7d-4c1e-9a57-0d1a10c0de01")
DEMO_PASSWORD = "dialoog-demo"  # noqa: S105 - printed by `make run`; demo accounts only
DEMO_USERS = [
    ("admin", ADMINISTRATOR),
    ("marketeer", MARKETEER),
    ("analyst", ANALYST),
    ("agent", CALLCENTER_AGENT),
]
# Category: (weight, lowest price, highest price) in euros.
CATEGORIES = {
    "Tuinmeubelen": (12, 49, 1299),
    "Barbecues": (5, 39, 899),
    "Verlichting": (14, 9, 249),
    "Keuken": (18, 5, 399),
    "Badkamer": (10, 7, 299),
    "Woontextiel": (16, 8, 149),
    "Speelgoed": (9, 6, 89),
    "Slapen": (8, 19, 999),
}
# Category: products as (name, weight, lowest price, highest price); the first ones are what
# people come for, the accessories are mostly bought with them (BOUGHT_TOGETHER).
PRODUCTS = {
    "Tuinmeubelen": [
        ("Loungeset", 3, 399, 1299),
        ("Tuinset", 3, 249, 999),
        ("Tuinstoel", 5, 49, 189),
        ("Parasol", 3, 59, 349),
        ("Tuinmeubelhoes", 1, 19, 69),
    ],
    "Barbecues": [
        ("Gasbarbecue", 3, 249, 899),
        ("Houtskoolbarbecue", 4, 39, 299),
        ("Kamado", 1, 499, 899),
        ("Barbecuehoes", 1, 19, 59),
        ("Grillborstel", 1, 9, 29),
        ("Barbecuegereedschapset", 1, 19, 79),
    ],
    "Verlichting": [
        ("Hanglamp", 4, 39, 249),
        ("Vloerlamp", 3, 49, 229),
        ("Tafellamp", 4, 19, 129),
        ("LED-lamp", 3, 4, 19),
        ("Lichtsnoer", 2, 9, 39),
    ],
    "Keuken": [
        ("Pannenset", 3, 59, 399),
        ("Koffiezetapparaat", 2, 39, 349),
        ("Messenset", 2, 29, 199),
        ("Servies", 3, 29, 249),
        ("Theedoeken", 3, 5, 19),
    ],
    "Badkamer": [
        ("Handdoekenset", 4, 19, 79),
        ("Badmat", 3, 7, 39),
        ("Spiegelkast", 1, 79, 299),
        ("Douchekop", 2, 19, 99),
    ],
    "Woontextiel": [
        ("Plaid", 4, 15, 89),
        ("Kussenhoes", 4, 8, 35),
        ("Buitenkussens", 2, 19, 99),
        ("Hoeslaken", 3, 12, 49),
        ("Gordijnen", 2, 29, 149),
    ],
    "Speelgoed": [
        ("Bouwset", 3, 15, 89),
        ("Bordspel", 3, 12, 49),
        ("Knuffel", 3, 6, 29),
        ("Buitenspeelgoed", 2, 19, 89),
    ],
    "Slapen": [
        ("Matras", 2, 149, 999),
        ("Dekbed", 3, 49, 299),
        ("Hoofdkussen", 4, 19, 89),
        ("Boxspring", 1, 499, 999),
    ],
}
# Product: [(category, accessory, chance)]: what goes into the same order with it.
BOUGHT_TOGETHER = {
    "Gasbarbecue": [("Barbecues", "Barbecuehoes", 0.6), ("Barbecues", "Barbecuegereedschapset", 0.35)],
    "Houtskoolbarbecue": [("Barbecues", "Barbecuehoes", 0.45), ("Barbecues", "Grillborstel", 0.4)],
    "Kamado": [("Barbecues", "Barbecuehoes", 0.7), ("Barbecues", "Barbecuegereedschapset", 0.4)],
    "Loungeset": [("Woontextiel", "Buitenkussens", 0.55), ("Tuinmeubelen", "Tuinmeubelhoes", 0.5)],
    "Tuinset": [("Tuinmeubelen", "Parasol", 0.35), ("Tuinmeubelen", "Tuinmeubelhoes", 0.4)],
    "Matras": [("Slapen", "Hoofdkussen", 0.45), ("Woontextiel", "Hoeslaken", 0.6)],
    "Boxspring": [("Woontextiel", "Hoeslaken", 0.6), ("Slapen", "Dekbed", 0.3)],
    "Hanglamp": [("Verlichting", "LED-lamp", 0.55)],
    "Vloerlamp": [("Verlichting", "LED-lamp", 0.5)],
    "Pannenset": [("Keuken", "Theedoeken", 0.3)],
    "Spiegelkast": [("Badkamer", "Badmat", 0.3)],
}
# How busy the shop is per month (January first), and how each category moves with the seasons.
SEASON = (0.8, 0.75, 0.9, 1.05, 1.15, 1.1, 1.0, 0.95, 0.85, 0.9, 1.25, 1.6)
CATEGORY_SEASON = {
    "Tuinmeubelen": (0.25, 0.35, 1.2, 2.6, 3.0, 2.8, 2.0, 1.3, 0.6, 0.3, 0.2, 0.2),
    "Barbecues": (0.15, 0.15, 0.5, 1.8, 3.2, 3.5, 3.2, 2.2, 0.7, 0.2, 0.15, 0.25),
    "Verlichting": (1.6, 1.4, 1.0, 0.7, 0.5, 0.45, 0.45, 0.55, 1.0, 1.7, 2.0, 2.2),
    "Keuken": (1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 1.0, 1.0, 1.2, 1.6),
    "Badkamer": (1.2, 1.0, 1.0, 1.0, 0.9, 0.9, 0.9, 0.9, 1.0, 1.0, 1.0, 1.1),
    "Woontextiel": (1.3, 1.1, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 1.0, 1.3, 1.4, 1.5),
    "Speelgoed": (0.6, 0.6, 0.7, 0.8, 0.8, 0.9, 0.9, 0.8, 0.8, 0.9, 1.8, 3.2),
    "Slapen": (1.4, 1.1, 1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 1.0, 1.0, 1.0, 1.0),
}
SOURCES = ("webshop", "crm", "callcenter", "app")
TWIN_PER_MILLE = 60  # of each even index: that contact and the next are one person (about 3% of persons)
HISTORY_DAYS = 3 * 365  # events go back at most this far; customers signed up up to five years ago
CHUNK = 5000
MAX_SEED = 9  # seeds and indexes are spelled into unique identities (phone numbers)
MAX_CONTACTS = 10**7

_CATEGORY_NAMES = tuple(CATEGORIES)
_POSTCODE_LETTERS = "ABCDEGHJKLMNPRSTVWXZ"  # the letters Dutch postcodes use
_NPS_WEIGHTS = {
    "loyal": (1, 1, 1, 1, 2, 3, 4, 6, 10, 9, 7),
    "fading": (4, 4, 5, 6, 7, 8, 7, 6, 3, 2, 1),
}
_SATISFACTION_WEIGHTS = (4, 6, 15, 40, 35)
_CALL_OUTCOMES = ("accepted", "declined", "no_answer")
_CALL_CAMPAIGNS = ("Winback bellen", "Upsell tuin", "Loyaliteitsprogramma", "Slaapadvies")

_CONTACT_COLUMNS = (
    "id",
    "contact_key",
    "first_name",
    "last_name",
    "locale",
    "timezone",
    "attributes",
    "created_at",
    "updated_at",
)
_IDENTITY_COLUMNS = ("contact_id", "kind", "value", "source", "created_at")
_CONSENT_CHANGE_COLUMNS = ("contact_id", "channel", "status", "source", "proof", "recorded_at")
_EVENT_COLUMNS = ("contact_id", "type", "occurred_at", "properties", "value", "currency", "external_id", "created_at")


@dataclass
class DemoResult:
    contacts_created: int = 0
    identities_created: int = 0
    consents_created: int = 0
    events_created: int = 0
    users_created: list[str] = field(default_factory=list)
    current_consents_created: int = 0


@dataclass
class _Built:
    """One contact as rows for COPY, without the contact id (given when the chunk is written)."""

    contact: tuple
    identities: list[tuple] = field(default_factory=list)
    consent_changes: list[tuple] = field(default_factory=list)
    events: list[tuple] = field(default_factory=list)
    truth: dict = field(default_factory=dict)


def _ascii_slug(text: str) -> str:
    normalised = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in normalised.lower() if ch.isalnum())


def demo_contact_key(seed: int, index: int) -> uuid.UUID:
    return uuid.uuid5(DEMO_NAMESPACE, f"contact:{seed}:{index}")


def demo_twin_of(seed: int, index: int) -> int | None:
    """The index of the other record of the same person, or None: pairs (2k, 2k+1) chosen by a hash."""
    first = index - index % 2
    if zlib.crc32(f"{seed}:twin:{first}".encode()) % 1000 >= TWIN_PER_MILLE:
        return None
    return first + 1 if index == first else first


@lru_cache(maxsize=4)
def _pools(seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[str], list[str]]:
    """First names, last names (each with its e-mail spelling), streets and cities: Faker once per seed."""
    fake = Faker("nl_NL")
    fake.seed_instance(f"pools:{seed}")
    first_names = sorted({fake.first_name() for _ in range(3000)})
    last_names = sorted({fake.last_name() for _ in range(6000)})
    streets = sorted({fake.street_name() for _ in range(3000)})
    cities = sorted({fake.city() for _ in range(2000)})
    return (
        [(name, _ascii_slug(name) or "klant") for name in first_names],
        [(name, _ascii_slug(name) or "klant") for name in last_names],
        streets,
        cities,
    )


class _Calendar:
    """Days back from `as_of` as text PostgreSQL reads, with the local offset of that day (the shop
    is open from 8 to 22, never in the hour that clocks change), and the month of each day."""

    def __init__(self, as_of: dt.date, tz):
        self.as_of = as_of
        self.days: list[tuple[str, str]] = []
        self.month: list[int] = []
        for back in range(5 * 365 + 2):
            day = as_of - dt.timedelta(days=back)
            offset = dt.datetime.combine(day, dt.time(12), tzinfo=tz).utcoffset() or dt.timedelta()
            minutes = int(offset.total_seconds()) // 60
            sign = "+" if minutes >= 0 else "-"
            self.days.append((f"{day.isoformat()} ", f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"))
            self.month.append(day.month - 1)

    def moment(self, back: int, second: int) -> str:
        prefix, offset = self.days[back]
        hours, rest = divmod(second, 3600)
        return f"{prefix}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}{offset}"


@lru_cache(maxsize=4)
def _calendar(as_of: dt.date) -> _Calendar:
    return _Calendar(as_of, timezone.get_default_timezone())


def _person(rng: random.Random, pools, as_of: dt.date) -> dict:
    first_names, last_names, streets, cities = pools
    first, first_slug = first_names[int(rng.random() * len(first_names))]
    last, last_slug = last_names[int(rng.random() * len(last_names))]
    letters = _POSTCODE_LETTERS
    postcode = (
        f"{1000 + int(rng.random() * 9000)} "
        f"{letters[int(rng.random() * len(letters))]}{letters[int(rng.random() * len(letters))]}"
    )
    street = f"{streets[int(rng.random() * len(streets))]} {1 + int(rng.expovariate(1 / 40))}"
    age_days = int((18 + rng.random() * 67) * 365.25)
    return {
        "first": first,
        "last": last,
        "slug": f"{first_slug}.{last_slug}",
        "postcode": postcode,
        "street": street,
        "city": cities[int(rng.random() * len(cities))],
        "birth_date": (as_of - dt.timedelta(days=age_days)).isoformat(),
        "locale": "en" if rng.random() < 0.08 else "nl",
    }


def _pick(rng: random.Random, names, weights) -> str:
    point = rng.random() * sum(weights)
    for name, weight in zip(names, weights, strict=True):
        point -= weight
        if point < 0:
            return name
    return names[-1]


def _product(rng: random.Random, category: str, main: bool = True) -> tuple[str, str]:
    """A product of the category (name, price): mostly a main product, accessories seldom alone."""
    products = PRODUCTS[category]
    if main:
        weights = [weight if name not in _ACCESSORIES else weight * 0.3 for name, weight, _lo, _hi in products]
    else:
        weights = [weight for _name, weight, _lo, _hi in products]
    name = _pick(rng, [p[0] for p in products], weights)
    return name, _price(rng, category, name)


def _price(rng: random.Random, category: str, product: str) -> str:
    _name, _weight, low, high = _PRODUCT_INDEX[category, product]
    # Cheaper variants sell more: the price leans towards the low end.
    return f"{low + (high - low) * rng.random() ** 1.7:.2f}"


_PRODUCT_INDEX = {(category, p[0]): p for category, products in PRODUCTS.items() for p in products}
_ACCESSORIES = {accessory for pairs in BOUGHT_TOGETHER.values() for _c, accessory, _chance in pairs}


def _build_contact(seed: int, index: int, calendar: _Calendar, pools) -> _Built:
    """One contact with its identities, consent history and events, as rows for COPY."""
    twin = demo_twin_of(seed, index)
    second_record = twin is not None and twin < index
    if second_record:
        # The same person as the contact before, known to another system under other identities.
        person = _person(random.Random(f"{seed}:{twin}"), pools, calendar.as_of)  # noqa: S311 - demo data
        rng = random.Random(f"{seed}:{index}")  # noqa: S311 - demo data, not security
    else:
        rng = random.Random(f"{seed}:{index}")  # noqa: S311 - demo data, not security
        person = _person(rng, pools, calendar.as_of)
    moment = calendar.moment

    signed_up_back = int(rng.random() * 5 * 365)
    signed_up = moment(signed_up_back, 28800 + int(rng.random() * 50400))
    if twin is None:
        source = _pick(rng, SOURCES, (55, 20, 10, 15))
    else:
        source = ("crm" if rng.random() < 0.6 else "callcenter") if second_record else "webshop"
    loyalty = rng.random() < 0.3
    attributes = {
        "postcode": person["postcode"],
        "street": person["street"],
        "city": person["city"],
        "birth_date": person["birth_date"],
        "signed_up_on": (calendar.as_of - dt.timedelta(days=signed_up_back)).isoformat(),
        "loyalty_member": loyalty,
    }
    contact = (
        str(demo_contact_key(seed, index)),
        person["first"],
        person["last"],
        person["locale"],
        "Europe/Amsterdam",
        json.dumps(attributes, ensure_ascii=False),
        signed_up,
        signed_up,
    )
    built = _Built(contact)

    # Identities, each with the system that first knew it.
    identities = built.identities
    email = f"{person['slug']}.{index}@demo{seed}.example.nl"
    phone = f"+316{seed}{index * 7919 % 10**7:07d}"  # 7919 is coprime to 10**7: one number per (seed, index)
    if second_record:
        identities.append(("phone", phone, source, signed_up))
        identities.append(("crm_id", f"CRM-{seed}-{index:07d}", "crm", signed_up))
        has_email, has_phone = False, True
    elif twin is not None:
        identities.append(("email", email, "webshop", signed_up))
        identities.append(("webshop_id", f"ws-{seed}-{index}", "webshop", signed_up))
        identities.append(("customer_number", f"K{seed}{index:07d}", "webshop", signed_up))
        has_email, has_phone = True, False
    else:
        has_email = source != "callcenter" or rng.random() < 0.6
        has_phone = rng.random() < (0.95 if source in ("crm", "callcenter") else 0.65)
        if has_email:
            identities.append(("email", email, source, signed_up))
        identities.append(("customer_number", f"K{seed}{index:07d}", "crm", signed_up))
        if has_phone:
            identities.append(("phone", phone, source if source != "app" else "webshop", signed_up))
        if source == "webshop" or rng.random() < 0.35:
            identities.append(("webshop_id", f"ws-{seed}-{index}", "webshop", signed_up))
        if source == "crm" or rng.random() < 0.25:
            identities.append(("crm_id", f"CRM-{seed}-{index:07d}", "crm", signed_up))
        if source == "app" or rng.random() < 0.08:
            identities.append(
                ("device_id", str(uuid.uuid5(DEMO_NAMESPACE, f"device:{seed}:{index}")), "app", signed_up)
            )

    # Lifecycle: when events can start, whether (and when) the customer fades out and stops.
    start = min(signed_up_back, HISTORY_DAYS)
    churned = start > 300 and rng.random() < 0.3
    stop = int(rng.random() * (start - 240)) + 60 if churned else 0
    fade_days = 120 + int(rng.random() * 240) if churned else 0
    buyer = rng.random() < 0.78
    orders_per_year = rng.lognormvariate(0.1, 0.75) if buyer else 0.0
    favourites = []
    for _ in range(1 if rng.random() < 0.55 else 2):
        favourite = _pick(rng, _CATEGORY_NAMES, [CATEGORIES[c][0] for c in _CATEGORY_NAMES])
        if favourite not in favourites:
            favourites.append(favourite)
    affinity = [CATEGORIES[c][0] * (6 if c in favourites else 1) for c in _CATEGORY_NAMES]
    built.truth = {
        "churned": churned,
        "stopped_days_ago": stop if churned else None,
        "fade_days": fade_days or None,
        "orders_per_year": round(orders_per_year, 3),
        "favourite_categories": favourites,
        "source": source,
        "twin_of": twin,
    }

    # Consent history per channel: asked at sign-up (or not: unknown), sometimes withdrawn, sometimes again.
    changes = built.consent_changes
    consented: dict[str, tuple[int, int] | None] = {}  # channel: (granted from, to) in days back
    asks = {
        "email": 0.85 if has_email else 0,
        "sms": 0.5 if has_phone else 0,
        "phone": (0.9 if source in ("crm", "callcenter") else 0.3) if has_phone else 0,
    }
    for channel, chance in asks.items():
        consented[channel] = None
        if rng.random() >= chance:
            continue  # never asked: unknown, which is not consent
        via_phone = source == "callcenter" or (channel == "phone" and source == "crm")
        asked_source = "callcenter" if via_phone else ("app" if source == "app" else "webshop")
        proof = "Mondeling akkoord, gesprek opgenomen" if via_phone else "Checkbox bij registratie"
        at = signed_up_back
        second = 28800 + int(rng.random() * 50400)
        if rng.random() < 0.12:
            changes.append((channel, "withdrawn", asked_source, f"{proof}: nee", moment(at, second)))
            continue
        changes.append((channel, "granted", asked_source, proof, moment(at, second)))
        granted_from, granted_to = at, 0
        if rng.random() < (0.3 if churned else 0.1) and at > 2:
            withdrawn = int(rng.random() * at)
            how = "Afgemeld via link in nieuwsbrief" if channel == "email" else "Afgemeld bij het callcenter"
            changes.append((channel, "withdrawn", "preference centre", how, moment(withdrawn, 28800 + second % 3600)))
            granted_to = withdrawn
            if rng.random() < 0.3 and withdrawn > 2:
                again = int(rng.random() * withdrawn)
                changes.append(
                    (
                        channel,
                        "granted",
                        "webshop",
                        "Opnieuw aangemeld in account",
                        moment(again, 30000 + second % 3600),
                    )
                )
                granted_to = 0  # the newest change wins; the gap is not worth tracking for events
        consented[channel] = (granted_from, granted_to)

    events = built.events
    serial = 0
    ext = f"demo:{seed}:{index:07d}:"
    month = calendar.month

    # Purchases: a Poisson process thinned by the season and, for churners, by a fading rate.
    if orders_per_year > 0 and start > stop:
        peak = orders_per_year / 365 * max(SEASON)
        back = float(start)
        order = 0
        while True:
            back -= rng.expovariate(peak)
            if back <= stop:
                break
            day = int(back)
            keep = SEASON[month[day]] / 1.6
            if churned and back - stop < fade_days:
                keep *= (back - stop) / fade_days
            if rng.random() >= keep:
                continue
            m = month[day]
            weights = [affinity[i] * CATEGORY_SEASON[c][m] for i, c in enumerate(_CATEGORY_NAMES)]
            category = _pick(rng, _CATEGORY_NAMES, weights)
            product, price = _product(rng, category)
            lines = [(category, product, price)]
            for with_category, accessory, chance in BOUGHT_TOGETHER.get(product, ()):
                if rng.random() < chance:
                    lines.append((with_category, accessory, _price(rng, with_category, accessory)))
            if rng.random() < 0.15:
                extra_category = _pick(rng, _CATEGORY_NAMES, affinity)
                lines.append((extra_category, *_product(rng, extra_category, main=False)))
            at = moment(day, 28800 + int(rng.random() * 50400))
            order_id = f"W{seed}-{index}-{order}"
            order += 1
            for line_category, line_product, unit in lines:
                items = 1 if rng.random() < 0.8 or float(unit) > 200 else 2 + int(rng.random() * 3)
                value = f"{float(unit) * items:.2f}"
                properties = (
                    f'{{"category": "{line_category}", "product": "{line_product}", '
                    f'"order_id": "{order_id}", "items": {items}}}'
                )
                events.append(("purchase", at, properties, value, "EUR", f"{ext}{serial}", at))
                serial += 1
            if rng.random() < 0.12 and day > 3:
                asked = day - 1 - int(rng.random() * 3)
                weights = _SATISFACTION_WEIGHTS if not churned else (12, 14, 25, 30, 19)
                score = _pick(rng, _SATISFACTION_SCORES, weights)
                at = moment(asked, 28800 + int(rng.random() * 50400))
                events.append(
                    (
                        "satisfaction_response",
                        at,
                        f'{{"score": {score}, "order_id": "{order_id}"}}',
                        None,
                        "",
                        f"{ext}{serial}",
                        at,
                    )
                )
                serial += 1

    # Page views in the last half year while the customer is still around, mostly in favourite categories.
    window = min(start, 180)
    if window > stop:
        views = int(rng.expovariate(1 / 8) * (window - stop) / 180)
        for _ in range(views):
            day = stop + int(rng.random() * (window - stop))
            category = favourites[0] if rng.random() < 0.5 else _pick(rng, _CATEGORY_NAMES, affinity)
            product = _product(rng, category, main=rng.random() < 0.8)[0]
            at = moment(day, 25200 + int(rng.random() * 61200))
            events.append(
                (
                    "page_view",
                    at,
                    f'{{"category": "{category}", "product": "{product}"}}',
                    None,
                    "",
                    f"{ext}{serial}",
                    at,
                )
            )
            serial += 1

    # Newsletters (two a month, the last year) opened and clicked while e-mail consent lasted.
    granted = consented.get("email")
    if granted is not None:
        opens = rng.random() ** 2.5 * (0.35 if not churned else 0.2)
        latest = max(granted[1], stop)
        for issue in range(24):
            day = 365 - issue * 15 - 1
            if not latest <= day <= granted[0] or rng.random() >= opens:
                continue
            letter = _NEWSLETTERS[calendar.as_of.toordinal() - day]
            at = moment(max(day - int(rng.random() * 3), 0), 25200 + int(rng.random() * 57600))
            events.append(("email_opened", at, letter[0], None, "", f"{ext}{serial}", at))
            serial += 1
            if rng.random() < 0.3:
                events.append(("email_clicked", at, letter[1], None, "", f"{ext}{serial}", at))
                serial += 1

    # Callcenter campaigns reach customers with phone consent.
    granted = consented.get("phone")
    if granted is not None and rng.random() < 0.45:
        first, last = min(granted[0], 365), max(granted[1], stop)
        for _ in range(1 + int(rng.random() * 2.5) if first > last else 0):
            day = last + int(rng.random() * (first - last))
            outcome = _pick(rng, _CALL_OUTCOMES, (20, 45, 35) if not churned else (8, 55, 37))
            campaign = _CALL_CAMPAIGNS[int(rng.random() * len(_CALL_CAMPAIGNS))]
            at = moment(day, 32400 + int(rng.random() * 39600))
            properties = f'{{"outcome": "{outcome}", "campaign": "{campaign}"}}'
            events.append(("call_outcome", at, properties, None, "", f"{ext}{serial}", at))
            serial += 1

    # NPS: one survey a year, answered by some; customers who fade out answer lower.
    if rng.random() < 0.17 and start > stop:
        day = stop + int(rng.random() * (start - stop))
        if churned and day - stop < fade_days + 90:
            score = _pick(rng, _NPS_SCORES, _NPS_WEIGHTS["fading"])
        else:
            score = _pick(rng, _NPS_SCORES, _NPS_WEIGHTS["loyal"])
        at = moment(day, 28800 + int(rng.random() * 50400))
        events.append(("nps_response", at, f'{{"score": {score}}}', None, "", f"{ext}{serial}", at))
        serial += 1
    return built


_NPS_SCORES = tuple(str(score) for score in range(11))
_SATISFACTION_SCORES = tuple(str(score) for score in range(1, 6))


class _NewsletterNames(dict):
    """Properties of the newsletter sent on a day (by ordinal): its name and its season's theme."""

    def __missing__(self, ordinal: int) -> tuple[str, str]:
        day = dt.date.fromordinal(ordinal)
        weights = [CATEGORIES[c][0] * CATEGORY_SEASON[c][day.month - 1] for c in _CATEGORY_NAMES]
        theme = max(zip(weights, _CATEGORY_NAMES, strict=True))[1]
        campaign = f"Nieuwsbrief {day.isoformat()}"
        value = (
            f'{{"campaign": "{campaign}", "theme": "{theme}"}}',
            f'{{"campaign": "{campaign}", "category": "{theme}"}}',
        )
        self[ordinal] = value
        return value


_NEWSLETTERS = _NewsletterNames()


def demo_truth(*, seed: int, index: int, as_of: dt.date | None = None) -> dict:
    """What the generator meant for contact `index`: churned or not (and when it stopped), its favourite
    categories, its purchase rate, its source and twin. For measuring models against the truth."""
    as_of = as_of or timezone.localdate()
    return _build_contact(seed, index, _calendar(as_of), _pools(seed)).truth


def _demo_users() -> list[str]:
    """One user per role, made only where no user of that name exists: an existing account
    keeps its password and its groups."""
    created = []
    user_model = get_user_model()
    for username, role in DEMO_USERS:
        user, is_new = user_model.objects.get_or_create(
            username=username, defaults={"is_staff": True, "email": f"{username}@example.nl"}
        )
        if is_new:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
            user.groups.add(Group.objects.get(name=role))
            created.append(username)
    return created


def _demo_goals_and_campaigns(as_of: dt.date, *, history_days: int = 14) -> None:
    """Two goals with their baselines and the last `history_days` days of snapshots, and a campaign."""
    if Goal.objects.exists():
        return
    owner = get_user_model().objects.get(username="marketeer")
    now = start_of(as_of)
    year_end = dt.date(as_of.year, 12, 31)
    starts_on = as_of - dt.timedelta(days=history_days)
    specs = [
        # (fields, the target as a share of the baseline, the target when there is no baseline)
        (
            {
                "name": "Minder churn bij vaste klanten",
                "description": "Klanten die in de 90 dagen ervoor kochten, blijven kopen: churn -15%.",
                "domain": Domain.CHURN_PREVENTION,
                "metric": Metric.CHURN_RATE,
                "period_days": 90,
                "deadline": max(as_of + dt.timedelta(days=365), year_end),
            },
            Decimal("0.85"),
            Decimal(50),
        ),
        (
            {
                "name": "Meer conversie in het voorjaar",
                "description": "Conversie over 30 dagen +20%.",
                "domain": Domain.CONVERSIONS,
                "metric": Metric.CONVERSION_RATE,
                "period_days": 30,
                "deadline": max(as_of + dt.timedelta(days=120), year_end),
            },
            Decimal("1.2"),
            Decimal(5),
        ),
    ]
    created = []
    for fields, factor, fallback in specs:
        goal = Goal(starts_on=starts_on, **fields)
        baseline = kpi_measure(goal, baseline_window(goal, today=as_of)).value
        target = (baseline * factor).quantize(Decimal("0.01")) if baseline else fallback
        created.append(goal_create(owner=owner, now=now, starts_on=starts_on, target=target, **fields))
    churn = created[0]
    goals = Goal.objects.filter(pk__in=[goal.pk for goal in created])
    for back in range(history_days, 0, -1):
        goals_measure(day=as_of - dt.timedelta(days=back), goals=goals, now=now)
    Campaign.objects.get_or_create(
        name="Winback: we missen je",
        defaults={"description": "Klanten zonder aankoop in 180 dagen een persoonlijk aanbod.", "goal": churn},
    )
    _demo_offers(goal=created[1], owner=owner, now=now)


# The next-best offers agents make on the phone: (name, code, segment or None, value, propensity
# source, default propensity, lever, limits).
DEMO_OFFERS = [
    ("Loungeset Lente", "LOUNGE25", "Tuinliefhebbers", 899, "learned", 0.08, 1.0, {"max_presentations": 3}),
    ("Barbecuehoes met gratis bezorging", "HOES", "Barbecueliefhebbers", 39, "fixed", 0.35, 1.0, {}),
    ("Vaste klant: 10% korting", "VAST10", "Vaste klanten", 50, "fixed", 0.2, 1.0, {"daily_capacity": 50}),
    ("Nieuwsbrief met welkomstkorting", "WELKOM", None, 5, "fixed", 0.5, 0.5, {}),
]
DEMO_SEGMENTS = {
    "Tuinliefhebbers": {"event": "purchase", "where": [{"property": "category", "op": "eq", "value": "Tuinmeubelen"}]},
    "Barbecueliefhebbers": {"event": "purchase", "where": [{"property": "category", "op": "eq", "value": "Barbecues"}]},
    "Vaste klanten": {"event": "purchase", "within_days": 365, "aggregate": "count", "op": "gte", "value": 3},
}


def _demo_offers(*, goal: Goal, owner, now: dt.datetime) -> None:
    """Offers for the agent console, in a triggered campaign that puts a follow-up call on the call
    list two days after a customer accepted one (it sends nothing until an agent records an accept)."""
    from audiences.services.segments import segment_create
    from campaigns.models import Offer
    from campaigns.offers.services import offer_save
    from campaigns.services import campaign_activate, campaign_create
    from content.models import Message, Template
    from content.services import template_version_create

    segments = {
        name: segment_create(name=name, rules={"version": 1, "root": root}, user=owner)
        for name, root in DEMO_SEGMENTS.items()
    }
    script = Template.objects.create(
        message=Message.objects.create(name="Belscript: aanbod"), channel=Template.Channel.SCRIPT
    )
    template_version_create(
        template=script,
        language="nl",
        text="Goedendag {{ contact.first_name | default('meneer/mevrouw') }}, fijn dat je belt.",
        talking_points="Vraag waar de klant voor belt en help eerst daarmee\nNoem het aanbod als het past",
        offer_pitch="{{ offer.name }}: voor {{ offer.price | currency }} met code {{ offer.code }}.",
        user=owner,
    )
    follow_up = Message.objects.create(name="Nabellen na een aanbod")
    template_version_create(
        template=Template.objects.create(message=follow_up, channel=Template.Channel.SCRIPT),
        language="nl",
        text="Goedendag {{ contact.first_name }}, je nam laatst een aanbod van ons. Is alles goed aangekomen?",
        user=owner,
    )
    campaign = campaign_create(
        name="Aanbiedingen aan de telefoon",
        description="Wat agents aanbieden; wie een aanbod neemt, wordt twee dagen later nagebeld.",
        goal=goal,
        message=follow_up,
        channels=["callcenter"],
        kind=Campaign.Kind.TRIGGERED,
        trigger_event_type=Event.Type.OFFER_RESPONSE,
        trigger_filters={"outcome": "accepted"},
        trigger_delay=dt.timedelta(days=2),
    )
    campaign = campaign_activate(campaign=campaign, user=owner, now=now)
    for name, code, segment, value, source, propensity, lever, limits in DEMO_OFFERS:
        offer_save(
            offer=Offer(
                name=name,
                code=code,
                campaign=campaign,
                script=script,
                segment=segments[segment] if segment else None,
                value=Decimal(value),
                propensity_source=source,
                propensity_default=propensity,
                lever=lever,
                **limits,
            ),
            user=owner,
        )


def _copy(cursor, table: str, columns: tuple[str, ...], rows) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        write = copy.write_row
        for row in rows:
            write(row)


def _write_chunk(built: list[_Built]) -> tuple[int, int, int, int]:
    """Write the contacts of one chunk, and everything of theirs, in one transaction."""
    if not built:
        return 0, 0, 0, 0
    contact_table = Contact._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [contact_table, len(built)]
        )
        ids = [row[0] for row in cursor.fetchall()]
        _copy(cursor, contact_table, _CONTACT_COLUMNS, ((i, *b.contact) for i, b in zip(ids, built, strict=True)))
        _copy(
            cursor,
            Identity._meta.db_table,
            _IDENTITY_COLUMNS,
            ((i, *row) for i, b in zip(ids, built, strict=True) for row in b.identities),
        )
        _copy(
            cursor,
            ConsentChange._meta.db_table,
            _CONSENT_CHANGE_COLUMNS,
            ((i, *row) for i, b in zip(ids, built, strict=True) for row in b.consent_changes),
        )
        # The current consent: the newest change per channel, as the consent service keeps it.
        current = consent_current_rebuild(contact_ids=ids)
        _copy(
            cursor,
            Event._meta.db_table,
            _EVENT_COLUMNS,
            ((i, *row) for i, b in zip(ids, built, strict=True) for row in b.events),
        )
    return (
        sum(len(b.identities) for b in built),
        sum(len(b.consent_changes) for b in built),
        current,
        sum(len(b.events) for b in built),
    )


def demo_load(
    *,
    contacts: int,
    seed: int,
    as_of: dt.date | None = None,
    chunk: int = CHUNK,
    progress: Callable[[int, int], None] | None = None,
) -> DemoResult:
    """Load the demo webshop: users for each role, goals, a campaign and `contacts` customers.

    Contacts that are there already are skipped, so a second run adds nothing and a larger
    `contacts` adds the missing ones. `progress(done, contacts)` is called after each chunk.
    """
    as_of = as_of or timezone.localdate()
    result = DemoResult()
    with transaction.atomic():
        result.users_created = _demo_users()

    calendar = _calendar(as_of)
    pools = _pools(seed)

    def build(indexes: list[int]) -> list[_Built]:
        return [_build_contact(seed, i, calendar, pools) for i in indexes]

    def write(built: list[_Built]) -> None:
        identities, changes, current, events = _write_chunk(built)
        result.contacts_created += len(built)
        result.identities_created += identities
        result.consents_created += changes
        result.current_consents_created += current
        result.events_created += events

    # The next chunk is built in a thread while PostgreSQL takes the previous one: psycopg lets the
    # interpreter go while it waits for the server, so the two cores both work.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-build") as builder:
        pending: tuple[Future, int] | None = None
        for start in range(0, contacts, chunk):
            indexes = range(start, min(start + chunk, contacts))
            keys = [demo_contact_key(seed, i) for i in indexes]
            existing = set(Contact.objects.filter(contact_key__in=keys).values_list("contact_key", flat=True))
            missing = [i for key, i in zip(keys, indexes, strict=True) if key not in existing]
            future = builder.submit(build, missing)
            if pending:
                write(pending[0].result())
                if progress:
                    progress(pending[1], contacts)
            pending = (future, indexes.stop)
        if pending:
            write(pending[0].result())
            if progress:
                progress(pending[1], contacts)
    _demo_goals_and_campaigns(as_of)
    # What is bought together, as the nightly refresh would find it at the end of the history.
    products_refresh(now=min(timezone.now(), start_of(as_of + dt.timedelta(days=1))))
    return result


def demo_insights(*, as_of: dt.date | None = None) -> list[str]:
    """Churn risk and lifetime value for the demo shop, as the weekly training and the nightly
    scoring would make them, the models activated (a person's decision on a real site). Lines to
    print: what each model scored on its held-out period, or why there was too little data."""
    moment = start_of((as_of or timezone.localdate()) + dt.timedelta(days=1))
    moment = min(timezone.now(), moment)
    lines = []
    for kind in PredictionModel.Kind.values:
        if PredictionModel.objects.filter(kind=kind, status=PredictionModel.Status.ACTIVE).exists():
            continue
        try:
            model = prediction_model_activate(model=prediction_model_train(kind=kind, as_of=moment))
        except NotEnoughData as error:
            lines.append(f"No {kind} model: {error}")
            continue
        lines.append(f"{model} trained and activated ({model.algorithm}).")
    for scored in scores_refresh(now=moment):
        lines.append(f"{scored.model}: {scored.contacts} contacts scored.")
    return lines
