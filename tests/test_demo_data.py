import datetime as dt
import re

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command

from audiences.models import ConsentChange, Contact, Event, Identity
from dialoog.demo import CATEGORIES, DEMO_PASSWORD, demo_load
from dialoog.roles import ANALYST
from tests.factories import UserFactory

AS_OF = dt.date(2026, 11, 22)


def snapshot():
    contacts = sorted(
        (str(c.contact_key), c.first_name, c.last_name, tuple(sorted(c.attributes.items())))
        for c in Contact.objects.all()
    )
    identities = sorted(Identity.objects.values_list("contact__contact_key", "kind", "value"))
    events = sorted(
        (str(key), type_, occurred.isoformat(), str(value), ext)
        for key, type_, occurred, value, ext in Event.objects.values_list(
            "contact__contact_key", "type", "occurred_at", "value", "external_id"
        )
    )
    consents = sorted(
        (str(key), channel, status, at.isoformat())
        for key, channel, status, at in ConsentChange.objects.values_list(
            "contact__contact_key", "channel", "status", "recorded_at"
        )
    )
    return contacts, identities, events, consents


@pytest.mark.smoke
def test_demo_data_is_a_believable_dutch_webshop(db):
    result = demo_load(contacts=200, seed=3, as_of=AS_OF)

    assert result.contacts_created == Contact.objects.count() == 200
    attributes = [c.attributes for c in Contact.objects.all()]
    assert all(re.fullmatch(r"\d{4} ?[A-Z]{2}", a["postcode"]) for a in attributes)
    phones = Identity.objects.filter(kind=Identity.Kind.PHONE).values_list("value", flat=True)
    assert len(phones) > 100
    assert all(re.fullmatch(r"\+316\d{8}", phone) for phone in phones)
    purchases = Event.objects.filter(type=Event.Type.PURCHASE)
    assert purchases.count() > 200
    assert {p["category"] for p in purchases.values_list("properties", flat=True)} == set(CATEGORIES)
    assert all(event.currency == "EUR" and event.value > 0 for event in purchases)
    assert max(purchases.values_list("occurred_at", flat=True)).date() <= AS_OF
    channels = set(ConsentChange.objects.values_list("channel", "status"))
    assert ("email", "granted") in channels and ("sms", "granted") in channels
    assert ("email", "withdrawn") in channels
    # Some customers were never asked: unknown consent, which is not consent.
    assert Contact.objects.exclude(consent_changes__channel="email").exists()


def test_demo_data_is_deterministic_for_a_seed(db):
    demo_load(contacts=40, seed=2, as_of=AS_OF)
    first = snapshot()
    Contact.objects.all().delete()

    demo_load(contacts=40, seed=2, as_of=AS_OF)

    assert snapshot() == first


def test_another_seed_gives_other_customers(db):
    demo_load(contacts=20, seed=1, as_of=AS_OF)
    first_names = snapshot()[0]
    Contact.objects.all().delete()
    demo_load(contacts=20, seed=2, as_of=AS_OF)
    assert snapshot()[0] != first_names


def test_demo_data_is_idempotent_and_grows_with_the_same_customers(db):
    demo_load(contacts=30, seed=1, as_of=AS_OF)
    small = snapshot()

    again = demo_load(contacts=30, seed=1, as_of=AS_OF)
    assert again.contacts_created == again.events_created == 0
    assert snapshot() == small

    grown = demo_load(contacts=50, seed=1, as_of=AS_OF)
    assert grown.contacts_created == 20
    bigger = snapshot()
    assert set(small[0]) <= set(bigger[0])
    assert set(small[2]) <= set(bigger[2])


def test_two_seeds_live_side_by_side(db):
    demo_load(contacts=50, seed=1, as_of=AS_OF)
    demo_load(contacts=50, seed=2, as_of=AS_OF)
    assert Contact.objects.count() == 100


def test_the_command_creates_demo_users_who_can_log_in(db, capsys):
    call_command("demo_data", "--contacts", "5", "--seed", "1", "--as-of", "2026-11-22", "--force")
    out = capsys.readouterr().out
    assert "5 contacts" in out
    assert "Created demo user 'marketeer'" in out
    user = authenticate(username="marketeer", password=DEMO_PASSWORD)
    assert user is not None
    assert user.has_perm("campaigns.change_campaign")
    assert not authenticate(username="agent", password=DEMO_PASSWORD).has_perm("campaigns.change_campaign")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "12", "--force"], "--seed"),
        (["--contacts", "-1", "--force"], "--contacts"),
        (["--contacts", "5"], "only loaded with DEBUG on"),
    ],
)
def test_the_command_refuses_bad_arguments_and_production(db, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("demo_data", *args)
    assert not Contact.objects.exists()
    assert not get_user_model().objects.exists()


def test_existing_users_keep_their_password_and_groups(db):
    existing = UserFactory(username="admin", role=ANALYST)

    result = demo_load(contacts=0, seed=1, as_of=AS_OF)

    assert "admin" not in result.users_created
    existing.refresh_from_db()
    assert existing.check_password("secret-pass-123")
    assert [group.name for group in existing.groups.all()] == [ANALYST]
