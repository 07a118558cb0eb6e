"""Demo data: a believable Dutch webshop selling home and garden goods.

Contact number i of seed S is always the same person (name, postcode, phone, purchases,
consents), whatever the number of contacts asked for, so loading is idempotent and can
grow: `--contacts 500` then `--contacts 1000` adds the 500 missing ones. Dates are relative
to `as_of` (today by default), so "bought in the last 90 days" finds someone on any day.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone
from faker import Faker

from audiences.models import Channel, ConsentChange, Contact, Event, Identity
from campaigns.models import Campaign
from dialoog.roles import ADMINISTRATOR, ANALYST, CALLCENTER_AGENT, MARKETEER
from goals.models import Goal

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
BATCH = 2000
MAX_SEED = 9  # seeds and indexes are spelled into unique identities (phone numbers)
MAX_CONTACTS = 10**7


@dataclass
class DemoResult:
    contacts_created: int
    identities_created: int
    consents_created: int
    events_created: int
    users_created: list[str]


def _ascii_slug(text: str) -> str:
    normalised = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in normalised.lower() if ch.isalnum())


def demo_contact_key(seed: int, index: int) -> uuid.UUID:
    return uuid.uuid5(DEMO_NAMESPACE, f"contact:{seed}:{index}")


def _moment(rng: random.Random, as_of: dt.date, days_back: int) -> dt.datetime:
    day = as_of - dt.timedelta(days=rng.randrange(days_back))
    seconds = rng.randrange(8 * 3600, 22 * 3600)  # shops and phones are busy by day
    naive = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=seconds)
    return timezone.make_aware(naive)


def _build_contact(fake: Faker, seed: int, index: int, as_of: dt.date):
    """One contact with its identities, consents and events, all unsaved."""
    rng = random.Random(f"{seed}:{index}")  # noqa: S311 - demo data, not security
    fake.seed_instance(f"{seed}:{index}")
    first, last = fake.first_name(), fake.last_name()
    signed_up = _moment(rng, as_of, 5 * 365)
    contact = Contact(
        contact_key=demo_contact_key(seed, index),
        first_name=first,
        last_name=last,
        locale="en" if rng.random() < 0.08 else "nl",
        timezone="Europe/Amsterdam",
        attributes={
            "postcode": fake.postcode(),
            "city": fake.city(),
            "birth_date": fake.date_of_birth(minimum_age=18, maximum_age=85).isoformat(),
            "signed_up_on": signed_up.date().isoformat(),
            "loyalty_member": rng.random() < 0.3,
        },
    )
    identities = [
        Identity(
            kind=Identity.Kind.EMAIL, value=f"{_ascii_slug(first)}.{_ascii_slug(last)}.{index}@demo{seed}.example.nl"
        ),
        Identity(kind=Identity.Kind.CUSTOMER_NUMBER, value=f"K{seed}{index:07d}"),
    ]
    has_phone = rng.random() < 0.7
    if has_phone:
        # 7919 is coprime to 10**7: every (seed, index) gets its own mobile number.
        identities.append(Identity(kind=Identity.Kind.PHONE, value=f"+316{seed}{index * 7919 % 10**7:07d}"))
    if rng.random() < 0.6:
        identities.append(Identity(kind=Identity.Kind.WEBSHOP_ID, value=f"ws-{seed}-{index}"))

    consents = []
    chances = {Channel.EMAIL: 0.75, Channel.SMS: 0.45 if has_phone else 0, Channel.PHONE: 0.3 if has_phone else 0}
    for channel, chance in chances.items():
        if rng.random() >= chance:
            continue  # never asked: unknown, which is not consent
        granted_at = signed_up + dt.timedelta(minutes=rng.randrange(5))
        consents.append(
            ConsentChange(
                channel=channel,
                status=ConsentChange.Status.GRANTED,
                source="webshop",
                proof="Checkbox bij registratie in de webshop",
                recorded_at=granted_at,
            )
        )
        if rng.random() < 0.08:
            consents.append(
                ConsentChange(
                    channel=channel,
                    status=ConsentChange.Status.WITHDRAWN,
                    source="preference centre" if channel == Channel.EMAIL else "callcenter",
                    proof="Afgemeld via voorkeurencentrum",
                    recorded_at=granted_at + dt.timedelta(days=rng.randrange(1, 400)),
                )
            )

    events = []
    categories, weights = list(CATEGORIES), [spec[0] for spec in CATEGORIES.values()]
    purchases = min(int(rng.expovariate(1 / 3)), 25)
    for number in range(purchases):
        category = rng.choices(categories, weights)[0]
        _weight, low, high = CATEGORIES[category]
        amount = Decimal(round(rng.uniform(low, high), 2)).quantize(Decimal("0.01"))
        events.append(
            Event(
                type=Event.Type.PURCHASE,
                occurred_at=_moment(rng, as_of, 730),
                properties={"category": category, "order_id": f"W{seed}-{index}-{number}", "items": rng.randint(1, 4)},
                value=amount,
                currency="EUR",
                external_id=f"demo:{seed}:{index}:purchase:{number}",
            )
        )
    for number in range(rng.randrange(6)):
        events.append(
            Event(
                type=Event.Type.PAGE_VIEW,
                occurred_at=_moment(rng, as_of, 120),
                properties={"category": rng.choices(categories, weights)[0]},
                external_id=f"demo:{seed}:{index}:view:{number}",
            )
        )
    if rng.random() < 0.15:
        events.append(
            Event(
                type=Event.Type.NPS_RESPONSE,
                occurred_at=_moment(rng, as_of, 365),
                properties={"score": rng.choices(range(11), [1, 1, 1, 1, 2, 3, 4, 6, 10, 9, 7])[0]},
                external_id=f"demo:{seed}:{index}:nps",
            )
        )
    return contact, identities, consents, events


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


def _demo_goals_and_campaigns(as_of: dt.date) -> None:
    owner = get_user_model().objects.get(username="marketeer")
    year_end = dt.date(as_of.year, 12, 31)
    goals = [
        ("Minder churn bij vaste klanten", "Klanten met 3+ aankopen blijven kopen: churn -15%.", 365),
        ("Meer tuinverkoop in het voorjaar", "Conversie in het segment tuinbezitters +20%.", 120),
    ]
    for name, description, days in goals:
        Goal.objects.get_or_create(
            name=name,
            defaults={
                "description": description,
                "owner": owner,
                "starts_on": as_of - dt.timedelta(days=30),
                "deadline": max(as_of + dt.timedelta(days=days), year_end),
            },
        )
    churn_goal = Goal.objects.get(name=goals[0][0])
    Campaign.objects.get_or_create(
        name="Winback: we missen je",
        defaults={"description": "Klanten zonder aankoop in 180 dagen een persoonlijk aanbod.", "goal": churn_goal},
    )


def demo_load(*, contacts: int, seed: int, as_of: dt.date | None = None) -> DemoResult:
    """Load the demo webshop: users for each role, goals, a campaign and `contacts` customers."""
    as_of = as_of or timezone.localdate()
    fake = Faker("nl_NL")
    result = DemoResult(0, 0, 0, 0, [])
    with transaction.atomic():
        result.users_created = _demo_users()
        _demo_goals_and_campaigns(as_of)

    for start in range(0, contacts, BATCH):
        indexes = range(start, min(start + BATCH, contacts))
        keys = {demo_contact_key(seed, i): i for i in indexes}
        existing = set(Contact.objects.filter(contact_key__in=keys).values_list("contact_key", flat=True))
        built = [_build_contact(fake, seed, i, as_of) for key, i in keys.items() if key not in existing]
        if not built:
            continue
        with transaction.atomic():
            saved = Contact.objects.bulk_create([contact for contact, *_ in built])
            identities, consents, events = [], [], []
            for contact, (_c, contact_identities, contact_consents, contact_events) in zip(saved, built, strict=True):
                for row in (*contact_identities, *contact_consents, *contact_events):
                    row.contact = contact
                identities += contact_identities
                consents += contact_consents
                events += contact_events
            Identity.objects.bulk_create(identities)
            ConsentChange.objects.bulk_create(consents)
            Event.objects.bulk_create(events)
        result.contacts_created += len(saved)
        result.identities_created += len(identities)
        result.consents_created += len(consents)
        result.events_created += len(events)
    return result
