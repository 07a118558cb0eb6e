import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from audiences.identities import InvalidIdentity, normalise_identity
from audiences.models import (
    Consent,
    ConsentChange,
    Contact,
    ContactMerge,
    Event,
    Identity,
    PrivacyRequest,
    Score,
    SegmentMember,
)
from audiences.services.consents import consent_record
from audiences.services.contacts import (
    contact_by_key,
    contact_erase,
    contact_export,
    contact_merge,
    contact_resolve,
    contact_unmerge,
)
from tests.factories import ContactFactory, EventFactory, IdentityFactory, SegmentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


@pytest.mark.parametrize(
    ("kind", "raw", "stored"),
    [
        ("email", "  Anna.de.Vries@Example.NL ", "anna.de.vries@example.nl"),
        ("phone", "06-12345678", "+31612345678"),
        ("phone", "+31 6 1234 5678", "+31612345678"),
        ("phone", "0031612345678", "+31612345678"),
        ("phone", "020 123 4567", "+31201234567"),
        ("phone", "+32 470 12 34 56", "+32470123456"),
        ("customer_number", " K0000042 ", "K0000042"),
    ],
)
def test_identities_are_normalised_the_same_way_everywhere(kind, raw, stored):
    assert normalise_identity(kind, raw) == stored


@pytest.mark.parametrize(
    ("kind", "raw", "reason"),
    [
        ("email", "anna@", "not an e-mail address"),
        ("email", "anna de vries@example.nl", "not an e-mail address"),
        ("phone", "bel me maar", "not a phone number"),
        ("phone", "123", "not a valid phone number"),
        ("phone", "06-1234", "not a valid phone number"),
        ("shoe_size", "43", "unknown identity kind"),
        ("customer_number", "   ", "is empty"),
        ("customer_number", "x" * 300, "longer than 255"),
    ],
)
def test_malformed_identities_say_what_is_wrong(kind, raw, reason):
    with pytest.raises(InvalidIdentity, match=reason):
        normalise_identity(kind, raw)


def test_resolve_creates_then_finds_the_contact_by_any_identity():
    first = contact_resolve(identities={"email": "Piet@Example.nl"}, fields={"first_name": "Piet"}, source="webshop")
    assert first.created
    again = contact_resolve(identities={"email": "piet@example.nl", "phone": "06 11112222"}, source="crm")
    assert not again.created
    assert again.contact.pk == first.contact.pk
    assert again.identities_added == 1
    by_phone = contact_resolve(identities={"phone": "+31611112222"})
    assert by_phone.contact.pk == first.contact.pk
    assert not by_phone.changed
    assert Identity.objects.get(kind="phone").source == "crm"


def test_resolve_refuses_an_input_without_identities_or_with_a_bad_one():
    with pytest.raises(ValidationError) as error:
        contact_resolve(identities={"email": "", "phone": None})
    assert "identities" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        contact_resolve(identities={"email": "ok@example.nl", "phone": "no number"})
    assert "identities.phone" in error.value.message_dict
    assert not Contact.objects.exists()


def _contact_with_history(email, phone=None, **fields):
    contact = ContactFactory(**fields)
    IdentityFactory(contact=contact, kind="email", value=email)
    if phone:
        IdentityFactory(contact=contact, kind="phone", value=normalise_identity("phone", phone))
    return contact


def _state(contact_pk):
    """Everything about a contact that a merge and unmerge must leave as it was."""
    contact = Contact.objects.get(pk=contact_pk)
    return {
        "fields": (contact.contact_key, contact.first_name, contact.last_name, contact.attributes, contact.created_at),
        "identities": sorted(contact.identities.values_list("pk", "kind", "value")),
        "events": sorted(contact.events.values_list("pk", flat=True)),
        "consent_changes": sorted(contact.consent_changes.values_list("pk", "channel", "status")),
        "consents": sorted(contact.consents.values_list("channel", "status")),
        "scores": sorted(contact.scores.values_list("name", "value")),
        "lists": sorted(contact.segment_memberships.values_list("segment_id", flat=True)),
    }


def test_identities_of_two_contacts_in_one_input_merge_them_and_unmerge_restores_both_exactly():
    older = _contact_with_history("anna@example.nl", first_name="Anna", last_name="", attributes={"city": "Delft"})
    newer = _contact_with_history("anna.work@example.nl", "0612345678", first_name="", last_name="Jansen")
    newer.attributes = {"city": "Leiden", "loyalty": True}
    newer.save()
    EventFactory.create_batch(3, contact=older)
    EventFactory.create_batch(2, contact=newer)
    consent_record(contact=older, channel="email", status="granted", source="webshop")
    consent_record(contact=newer, channel="email", status="withdrawn", source="preference centre")
    consent_record(contact=newer, channel="sms", status="granted", source="app")
    Score.objects.create(contact=older, name="churn", value=0.2)
    Score.objects.create(contact=newer, name="churn", value=0.9)
    Score.objects.create(contact=newer, name="clv", value=800)
    shared_list, own_list = SegmentFactory(kind="static"), SegmentFactory(kind="static")
    SegmentMember.objects.create(segment=shared_list, contact=older)
    SegmentMember.objects.create(segment=shared_list, contact=newer)
    SegmentMember.objects.create(segment=own_list, contact=newer)
    before_older, before_newer = _state(older.pk), _state(newer.pk)

    resolution = contact_resolve(identities={"email": "ANNA@example.nl", "phone": "06-12345678"}, source="callcenter")

    assert resolution.contact.pk == older.pk
    [merge] = resolution.merges
    assert not Contact.objects.filter(pk=newer.pk).exists()
    merged = _state(older.pk)
    assert len(merged["identities"]) == 3
    assert len(merged["events"]) == 5
    # The most restrictive consent wins; SMS consent comes along.
    assert dict(Consent.objects.filter(contact=older).values_list("channel", "status")) == {
        "email": "withdrawn",
        "sms": "granted",
    }
    survivor = Contact.objects.get(pk=older.pk)
    assert survivor.last_name == "Jansen"  # blank field filled
    assert survivor.attributes == {"city": "Delft", "loyalty": True}  # own value kept, missing one added
    assert dict(survivor.scores.values_list("name", "value")) == {"churn": 0.2, "clv": 800}
    assert sorted(merged["lists"]) == sorted([shared_list.pk, own_list.pk])
    # The absorbed key still finds the person.
    assert contact_by_key(contact_key=before_newer["fields"][0]).pk == older.pk

    restored = contact_unmerge(merge=merge)

    assert restored.pk == newer.pk
    assert _state(older.pk) == before_older
    assert _state(newer.pk) == before_newer
    assert ContactMerge.objects.get(pk=merge.pk).unmerged_at is not None
    with pytest.raises(ValidationError, match="already undone"):
        contact_unmerge(merge=merge)


def test_a_merge_records_the_restrictive_consent_as_a_change_with_source_merge():
    older = _contact_with_history("a@example.nl")
    newer = _contact_with_history("b@example.nl")
    consent_record(
        contact=newer,
        channel="email",
        status="withdrawn",
        source="form",
        recorded_at=timezone.now() - dt.timedelta(days=30),
    )
    consent_record(contact=older, channel="email", status="granted", source="webshop")
    contact_merge(survivor=older, absorbed=newer)
    newest = ConsentChange.objects.filter(contact=older).latest("recorded_at")
    assert (newest.status, newest.source) == ("withdrawn", "merge")
    assert Consent.objects.get(contact=older, channel="email").status == "withdrawn"


def test_merges_are_undone_newest_first():
    a, b, c = (_contact_with_history(f"{name}@example.nl") for name in "abc")
    first = contact_merge(survivor=b, absorbed=c)
    second = contact_merge(survivor=a, absorbed=b)
    assert contact_by_key(contact_key=c.contact_key).pk == a.pk  # through the chain
    with pytest.raises(ValidationError, match="undo that merge"):
        contact_unmerge(merge=first)
    contact_unmerge(merge=second)
    contact_unmerge(merge=first)
    assert set(Identity.objects.values_list("contact_id", "value")) == {
        (a.pk, "a@example.nl"),
        (b.pk, "b@example.nl"),
        (c.pk, "c@example.nl"),
    }


def test_what_arrived_after_the_merge_stays_with_the_survivor_on_unmerge():
    older, newer = _contact_with_history("a@example.nl"), _contact_with_history("b@example.nl")
    merge = contact_merge(survivor=older, absorbed=newer)
    later = EventFactory(contact=older)
    contact_unmerge(merge=merge)
    assert Event.objects.get(pk=later.pk).contact_id == older.pk


def test_consent_history_keeps_every_change_and_the_current_state_in_one_row():
    contact = ContactFactory()
    change, current = consent_record(
        contact=contact, channel="email", status="granted", source="form", proof="Nieuwsbrief"
    )
    assert change is not None
    assert current.status == "granted"
    repeat, _current = consent_record(contact=contact, channel="email", status="granted", source="form")
    assert repeat is None  # the same status again is not a change
    consent_record(contact=contact, channel="email", status="withdrawn", source="unsubscribe link")
    old = timezone.now() - dt.timedelta(days=400)
    consent_record(contact=contact, channel="email", status="granted", source="old import", recorded_at=old)
    assert ConsentChange.objects.filter(contact=contact).count() == 3
    assert Consent.objects.get(contact=contact, channel="email").status == "withdrawn"  # the late old one did not win
    with pytest.raises(ValidationError):
        consent_record(contact=contact, channel="pigeon", status="granted", source="x")


def test_export_holds_everything_and_is_logged(marketeer):
    contact = _contact_with_history("klant@example.nl", "0612345678", first_name="Kees")
    EventFactory(contact=contact, properties={"category": "Keuken"})
    consent_record(contact=contact, channel="sms", status="granted", source="app")
    data = contact_export(contact=contact, user=marketeer)
    assert data["contact"]["first_name"] == "Kees"
    assert {i["value"] for i in data["identities"]} == {"klant@example.nl", "+31612345678"}
    assert data["events"][0]["properties"] == {"category": "Keuken"}
    assert data["consents"][0]["status"] == "granted"
    log = PrivacyRequest.objects.get()
    assert (log.kind, log.contact_key, log.requested_by) == ("export", contact.contact_key, marketeer)


def test_erase_removes_personal_data_and_keeps_events_anonymised(marketeer):
    contact = _contact_with_history("weg@example.nl", "0612345678", first_name="Wim", attributes={"city": "Ede"})
    other = _contact_with_history("blijft@example.nl")
    contact_merge(survivor=contact, absorbed=other)
    event = EventFactory(
        contact=contact,
        value=100,
        currency="EUR",
        properties={"category": "Keuken", "delivery_address": "Dorpsstraat 1"},
    )
    consent_record(contact=contact, channel="email", status="granted", source="form")
    old_key = contact.contact_key

    contact_erase(contact=contact, user=marketeer)

    erased = Contact.objects.get(pk=contact.pk)
    assert erased.erased_at is not None
    assert erased.contact_key != old_key
    assert (erased.first_name, erased.attributes) == ("", {})
    assert not Identity.objects.filter(contact=erased).exists()
    assert not ConsentChange.objects.filter(contact=erased).exists()
    assert not ContactMerge.objects.exists()  # merge records hold personal data too
    event.refresh_from_db()
    assert event.properties == {"category": "Keuken"}
    assert event.external_id is None
    assert event.value == 100
    assert contact_by_key(contact_key=old_key) is None
    assert PrivacyRequest.objects.get(kind="erasure").contact_key == old_key
    with pytest.raises(ValidationError, match="already erased"):
        contact_erase(contact=erased)


def test_erasure_removes_the_merge_records_of_the_whole_chain():
    a = _contact_with_history("alice@example.nl", first_name="Alice", last_name="Geheim")
    b = _contact_with_history("b@example.nl")
    c = _contact_with_history("c@example.nl")
    contact_merge(survivor=b, absorbed=a)
    contact_merge(survivor=c, absorbed=b)
    contact_erase(contact=c)
    assert not ContactMerge.objects.exists()


def test_an_identity_whose_contact_is_gone_is_taken_by_the_new_contact():
    ghost = _contact_with_history("spook@example.nl")
    with connection.cursor() as cursor:  # as if an import had raced a merge
        cursor.execute("DELETE FROM audiences_contact WHERE id = %s", [ghost.pk])
    resolution = contact_resolve(identities={"email": "spook@example.nl"})
    assert resolution.created
    assert Identity.objects.get(value="spook@example.nl").contact_id == resolution.contact.pk
