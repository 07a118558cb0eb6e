import datetime as dt
import re
import time
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from audiences.models import Consent, ConsentChange, Contact, Event, Identity, ProductAffinity
from dialoog.demo import CATEGORIES, DEMO_PASSWORD, demo_contact_key, demo_load, demo_truth, demo_twin_of
from dialoog.roles import ANALYST
from tests.factories import UserFactory

AS_OF = dt.date(2026, 11, 22)


def snapshot():
    contacts = sorted(
        (str(c.contact_key), c.first_name, c.last_name, tuple(sorted(c.attributes.items())))
        for c in Contact.objects.all()
    )
    identities = sorted(Identity.objects.values_list("contact__contact_key", "kind", "value", "source"))
    events = sorted(
        (str(key), type_, occurred.isoformat(), str(value), ext, repr(sorted(properties.items())))
        for key, type_, occurred, value, ext, properties in Event.objects.values_list(
            "contact__contact_key", "type", "occurred_at", "value", "external_id", "properties"
        )
    )
    consents = sorted(
        (str(key), channel, status, at.isoformat())
        for key, channel, status, at in ConsentChange.objects.values_list(
            "contact__contact_key", "channel", "status", "recorded_at"
        )
    )
    current = sorted(
        (str(key), channel, status, at.isoformat())
        for key, channel, status, at in Consent.objects.values_list(
            "contact__contact_key", "channel", "status", "changed_at"
        )
    )
    return contacts, identities, events, consents, current


def checksum() -> str:
    """An md5 of every demo row, computed by PostgreSQL, independent of row ids."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT md5(string_agg(line, '|' ORDER BY line)) FROM (
                SELECT concat_ws(',', c.contact_key, c.first_name, c.last_name, c.attributes::text, c.created_at)
                    AS line
                FROM audiences_contact c
                UNION ALL
                SELECT concat_ws(',', c.contact_key, e.type, e.occurred_at, e.properties::text, e.value, e.external_id)
                FROM audiences_event e JOIN audiences_contact c ON c.id = e.contact_id
                UNION ALL
                SELECT concat_ws(',', c.contact_key, s.channel, s.status, s.changed_at, h.source, h.proof)
                FROM audiences_consent s JOIN audiences_contact c ON c.id = s.contact_id
                JOIN audiences_consentchange h ON h.id = s.change_id
            ) AS rows
            """
        )
        return cursor.fetchone()[0]


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


def test_a_large_load_in_chunks_gives_the_same_rows_as_one_chunk(db):
    demo_load(contacts=1200, seed=5, as_of=AS_OF)
    whole = checksum()
    Contact.objects.all().delete()

    demo_load(contacts=1200, seed=5, as_of=AS_OF, chunk=170)

    assert checksum() == whole


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


def test_five_hundred_contacts_load_in_seconds(db):
    started = time.monotonic()
    result = demo_load(contacts=500, seed=6, as_of=AS_OF)
    elapsed = time.monotonic() - started

    assert result.contacts_created == 500
    assert elapsed < 5, f"{elapsed:.1f} s"


def test_every_contact_with_a_consent_history_has_its_newest_change_as_current_consent(db):
    result = demo_load(contacts=600, seed=1, as_of=AS_OF)

    newest = {}
    for change in ConsentChange.objects.order_by("recorded_at", "id"):
        newest[change.contact_id, change.channel] = change
    current = {(c.contact_id, c.channel): c for c in Consent.objects.all()}
    assert current.keys() == newest.keys()
    assert result.current_consents_created == len(current)
    for key, consent in current.items():
        assert consent.change_id == newest[key].id
        assert (consent.status, consent.changed_at) == (newest[key].status, newest[key].recorded_at)
    histories = Counter(
        tuple(
            status
            for status in ConsentChange.objects.filter(contact_id=contact, channel=channel)
            .order_by("recorded_at")
            .values_list("status", flat=True)
        )
        for contact, channel in newest
    )
    assert (
        histories[("granted",)]
        > histories[("granted", "withdrawn")]
        > histories[("granted", "withdrawn", "granted")]
        > 0
    )
    assert histories[("withdrawn",)] > 0  # said no when asked
    assert all(c.recorded_at.date() <= AS_OF for c in ConsentChange.objects.all())


def test_some_persons_are_known_twice_to_different_systems_without_a_shared_identity(db):
    demo_load(contacts=2000, seed=1, as_of=AS_OF)

    assert set(Identity.objects.values_list("source", flat=True)) == {"webshop", "crm", "callcenter", "app"}
    contacts = {c.contact_key: c for c in Contact.objects.prefetch_related("identities")}
    pairs = [(i, i + 1) for i in range(0, 2000, 2) if demo_twin_of(1, i) == i + 1]
    persons = 2000 - len(pairs)
    assert 0.015 < len(pairs) / persons < 0.05
    for first_index, second_index in pairs:
        first, second = contacts[demo_contact_key(1, first_index)], contacts[demo_contact_key(1, second_index)]
        assert (first.first_name, first.last_name, first.attributes["postcode"], first.attributes["birth_date"]) == (
            second.first_name,
            second.last_name,
            second.attributes["postcode"],
            second.attributes["birth_date"],
        )
        first_ids = {(i.kind, i.value) for i in first.identities.all()}
        second_ids = {(i.kind, i.value) for i in second.identities.all()}
        assert not first_ids & second_ids
        assert {"email", "webshop_id"} <= {kind for kind, _ in first_ids}
        assert {"phone", "crm_id"} <= {kind for kind, _ in second_ids}
        assert {i.source for i in first.identities.all()} == {"webshop"}
        assert {i.source for i in second.identities.all()} <= {"crm", "callcenter"}


def _purchases_by_month(purchases):
    by_month = defaultdict(Counter)
    for occurred, properties in purchases:
        by_month[timezone.localtime(occurred).month][properties["category"]] += 1
    return by_month


def test_purchases_follow_the_seasons_and_the_customers_favourite_categories(db):
    demo_load(contacts=2500, seed=2, as_of=AS_OF)
    purchases = list(Event.objects.filter(type="purchase").values_list("occurred_at", "properties"))
    by_month = _purchases_by_month(purchases)

    def share(categories, months):
        total = sum(sum(by_month[m].values()) for m in months)
        return sum(by_month[m][c] for m in months for c in categories) / total

    summer, winter = (4, 5, 6, 7, 8), (11, 12, 1, 2)
    assert share(["Tuinmeubelen", "Barbecues"], summer) > 3 * share(["Tuinmeubelen", "Barbecues"], winter)
    assert share(["Verlichting"], winter) > 2 * share(["Verlichting"], summer)
    totals = {month: sum(counts.values()) for month, counts in by_month.items()}
    assert max(totals, key=totals.get) == 12

    # Each customer leans to a favourite category or two.
    per_contact = defaultdict(Counter)
    for contact_key, properties in Event.objects.filter(type="purchase").values_list(
        "contact__contact_key", "properties"
    ):
        per_contact[contact_key][properties["category"]] += 1
    index_of = {demo_contact_key(2, i): i for i in range(2500)}
    in_favourites = everything = 0
    for key, counts in per_contact.items():
        favourites = demo_truth(seed=2, index=index_of[key], as_of=AS_OF)["favourite_categories"]
        in_favourites += sum(counts[c] for c in favourites)
        everything += sum(counts.values())
    assert in_favourites / everything > 0.45  # by the shop's own weights alone, one or two categories of eight


def test_customers_who_churn_buy_less_and_less_and_then_stop(db):
    demo_load(contacts=2500, seed=3, as_of=AS_OF)
    truths = {demo_contact_key(3, i): demo_truth(seed=3, index=i, as_of=AS_OF) for i in range(2500)}
    churned = {key: truth for key, truth in truths.items() if truth["churned"]}
    assert 0.1 < len(churned) / len(truths) < 0.35

    fading = before = fading_days = before_days = 0
    for key, occurred in Event.objects.filter(type="purchase", contact__contact_key__in=churned).values_list(
        "contact__contact_key", "occurred_at"
    ):
        truth = churned[key]
        days_back = (AS_OF - timezone.localtime(occurred).date()).days
        assert days_back >= truth["stopped_days_ago"]  # nothing bought after leaving
        if days_back < truth["stopped_days_ago"] + truth["fade_days"]:
            fading += 1
        else:
            before += 1
    signed_up = {
        key: dt.date.fromisoformat(attributes["signed_up_on"])
        for key, attributes in Contact.objects.filter(contact_key__in=churned).values_list("contact_key", "attributes")
    }
    for key, truth in churned.items():
        history = min((AS_OF - signed_up[key]).days, 3 * 365)
        fading_days += truth["fade_days"]
        before_days += max(history - truth["stopped_days_ago"] - truth["fade_days"], 0)
    # Per day, the months before leaving see far fewer purchases than the time before them.
    assert fading / fading_days < 0.75 * before / before_days


def test_products_are_bought_together_in_one_order(db):
    demo_load(contacts=3000, seed=1, as_of=AS_OF)
    orders = defaultdict(list)
    for contact_id, occurred, properties, value in Event.objects.filter(type="purchase").values_list(
        "contact_id", "occurred_at", "properties", "value"
    ):
        assert set(properties) == {"category", "product", "order_id", "items"}
        assert value > 0
        orders[properties["order_id"]].append((contact_id, occurred, properties["product"]))
    for lines in orders.values():
        assert len({(contact, occurred) for contact, occurred, _ in lines}) == 1  # one customer, one moment
    barbecue_orders = [lines for lines in orders.values() if any(p == "Gasbarbecue" for *_, p in lines)]
    with_cover = [lines for lines in barbecue_orders if any(p == "Barbecuehoes" for *_, p in lines)]
    assert len(barbecue_orders) > 20
    assert len(with_cover) / len(barbecue_orders) > 0.4
    assert sum(len(lines) > 1 for lines in orders.values()) / len(orders) > 0.15
    # The demo's recommendations know it: a barbecue's first related product is its cover.
    affinities = ProductAffinity.objects.filter(product__name="Gasbarbecue").order_by("-confidence")
    assert affinities.values_list("related__name", flat=True).first() == "Barbecuehoes"


def test_events_of_every_kind_about_ten_per_contact_in_shop_hours(db):
    demo_load(contacts=1500, seed=4, as_of=AS_OF)
    events = list(Event.objects.values_list("type", "occurred_at", "properties", "value", "currency"))

    assert 8 <= len(events) / 1500 <= 12
    types = Counter(type_ for type_, *_ in events)
    # Every kind but the provider's delivery reports, which only real sends bring back, and the
    # answers to next-best offers, which only agents' decisions bring.
    reports = {
        Event.Type.EMAIL_DELIVERED,
        Event.Type.EMAIL_BOUNCED,
        Event.Type.EMAIL_COMPLAINED,
        Event.Type.OFFER_RESPONSE,
    }
    assert set(types) == set(Event.Type.values) - reports
    assert types["page_view"] > types["purchase"] > types["email_opened"] > types["email_clicked"]
    earliest = timezone.make_aware(dt.datetime.combine(AS_OF - dt.timedelta(days=3 * 365 + 1), dt.time()))
    for type_, occurred, properties, value, currency in events:
        local = timezone.localtime(occurred)
        assert earliest <= occurred and local.date() <= AS_OF
        assert 7 <= local.hour < 24
        if type_ == "purchase":
            assert currency == "EUR" and value == Decimal(value).quantize(Decimal("0.01"))
        elif type_ == "call_outcome":
            assert properties["outcome"] in {"accepted", "declined", "no_answer"}
        elif type_ == "nps_response":
            assert 0 <= properties["score"] <= 10
        elif type_ == "satisfaction_response":
            assert 1 <= properties["score"] <= 5
        elif type_ in ("email_opened", "email_clicked"):
            assert properties["campaign"].startswith("Nieuwsbrief ")
        else:
            assert value is None
    # Newsletters reach only those who had e-mail consent.
    readers = set(Event.objects.filter(type="email_opened").values_list("contact_id", flat=True))
    asked = set(ConsentChange.objects.filter(channel="email", status="granted").values_list("contact_id", flat=True))
    assert readers and readers <= asked


def test_growing_keeps_the_current_consent_of_every_new_contact(db):
    demo_load(contacts=301, seed=1, as_of=AS_OF)
    demo_load(contacts=700, seed=1, as_of=AS_OF)
    with_history = set(ConsentChange.objects.values_list("contact_id", "channel").distinct())
    assert set(Consent.objects.values_list("contact_id", "channel")) == with_history
    assert Contact.objects.count() == 700


def test_the_demo_agent_has_offers_to_make(db):
    """After `make run` an agent finds customers with offers: the demo's offers, their segments,
    script and campaign (triggered by an accepted offer: it sends nothing by itself)."""
    from campaigns.models import CallListItem, Offer
    from campaigns.offers.decisions import offer_decide

    demo_load(contacts=300, seed=1, as_of=AS_OF)
    offers = Offer.objects.select_related("campaign")
    assert offers.count() == 4
    assert {offer.campaign.status for offer in offers} == {"running"}
    callers = Consent.objects.filter(channel="phone", status="granted").values_list("contact_id", flat=True)
    made = [offer_decide(lookup="id", value=contact_id) for contact_id in callers[:40]]
    presented = {item.spec.name for decision in made for item in decision.offers}
    assert "Nieuwsbrief met welkomstkorting" in presented  # everyone may get it
    assert presented & {"Loungeset Lente", "Barbecuehoes met gratis bezorging", "Vaste klant: 10% korting"}
    assert all(item.script["offer_pitch"] for decision in made for item in decision.offers)
    assert not CallListItem.objects.exists()
