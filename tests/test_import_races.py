"""Imports racing the contact services (merge, erase, an identity added through the API), and
an external id repeated within one events file. The races run the service in a second thread,
with its own database connection, at a chosen step of the import."""

import threading

import pytest
from django.db import connection, connections

from audiences.imports import pipeline
from audiences.models import Consent, Contact, Event, Identity, ImportRejectedRow
from audiences.services.contacts import contact_erase, contact_merge
from tests.factories import ContactFactory, IdentityFactory
from tests.test_imports import run_file

FILE = "E-mailadres;Voornaam;Nieuwsbrief\nb@example.nl;Bea;ja\n"


def in_thread(work):
    """Run `work` in a thread with its own connection; (thread, result dict)."""
    result: dict = {}

    def target():
        try:
            result["value"] = work()
        except Exception as error:  # noqa: BLE001 - reported to the test
            result["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def orphans() -> tuple[int, int, int]:
    """Identities, consent changes and consents of a contact that does not exist."""
    missing = "NOT EXISTS (SELECT 1 FROM audiences_contact c WHERE c.id = x.contact_id)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT count(*) FROM audiences_identity x WHERE {missing}),"  # noqa: S608 - constant text
            f" (SELECT count(*) FROM audiences_consentchange x WHERE {missing}),"
            f" (SELECT count(*) FROM audiences_consent x WHERE {missing})"
        )
        return cursor.fetchone()


def two_contacts():
    survivor = IdentityFactory(kind="email", value="a@example.nl").contact
    absorbed = IdentityFactory(kind="email", value="b@example.nl").contact
    assert survivor.pk < absorbed.pk
    return survivor, absorbed


def merge_of(survivor, absorbed):
    return lambda: contact_merge(
        survivor=Contact.objects.get(pk=survivor.pk), absorbed=Contact.objects.get(pk=absorbed.pk)
    )


@pytest.mark.django_db(transaction=True)
def test_a_merge_started_during_the_import_waits_for_it(monkeypatch):
    survivor, absorbed = two_contacts()
    original = pipeline._group_rows
    state: dict = {}

    def group_rows(cursor):  # after the owners were read (and, now, locked)
        state["thread"], state["result"] = in_thread(merge_of(survivor, absorbed))
        state["thread"].join(1.0)
        state["waited"] = state["thread"].is_alive()
        original(cursor)

    monkeypatch.setattr(pipeline, "_group_rows", group_rows)
    run = run_file(FILE)

    state["thread"].join(20)
    assert state["waited"], "the merge did not wait for the import's lock on the contact"
    assert not state["thread"].is_alive()
    assert "error" not in state["result"]
    assert run.status == "done"
    assert orphans() == (0, 0, 0)
    assert list(Contact.objects.values_list("pk", flat=True)) == [survivor.pk]
    assert Identity.objects.get(value="b@example.nl").contact_id == survivor.pk
    assert Consent.objects.get(contact_id=survivor.pk, channel="email").status == "granted"


@pytest.mark.django_db(transaction=True)
def test_a_merge_committed_before_the_owners_are_locked_is_seen(monkeypatch):
    survivor, absorbed = two_contacts()
    original = pipeline._resolve_identities
    calls = []

    def resolve(cursor, plan):
        original(cursor, plan)
        if not calls:
            thread, result = in_thread(merge_of(survivor, absorbed))
            thread.join(20)
            assert not thread.is_alive() and "error" not in result
        calls.append(1)

    monkeypatch.setattr(pipeline, "_resolve_identities", resolve)
    run = run_file(FILE)

    assert run.status == "done"
    assert orphans() == (0, 0, 0)
    assert Identity.objects.get(value="b@example.nl").contact_id == survivor.pk
    assert Consent.objects.get(contact_id=survivor.pk, channel="email").status == "granted"
    assert Contact.objects.get(pk=survivor.pk).first_name  # the file's or its own: on the survivor


@pytest.mark.django_db(transaction=True)
def test_an_erasure_before_the_owners_are_locked_gets_no_data_back(monkeypatch):
    erased = IdentityFactory(kind="email", value="b@example.nl").contact
    original = pipeline._resolve_identities
    calls = []

    def resolve(cursor, plan):
        original(cursor, plan)
        if not calls:
            thread, result = in_thread(lambda: contact_erase(contact=Contact.objects.get(pk=erased.pk)))
            thread.join(20)
            assert not thread.is_alive() and "error" not in result
        calls.append(1)

    monkeypatch.setattr(pipeline, "_resolve_identities", resolve)
    run = run_file(FILE)

    assert run.status == "done"
    assert orphans() == (0, 0, 0)
    erased.refresh_from_db()
    assert (erased.first_name, erased.erased_at is not None) == ("", True)
    assert not Identity.objects.filter(contact_id=erased.pk).exists()
    assert not Consent.objects.filter(contact_id=erased.pk).exists()
    # As if the file came after the erasure: a new contact.
    new = Identity.objects.get(value="b@example.nl").contact
    assert (new.pk != erased.pk, new.first_name) == (True, "Bea")


@pytest.mark.django_db
def test_an_identity_the_api_adds_during_the_import_merges_its_owner_and_the_person(monkeypatch):
    other = ContactFactory(first_name="")
    original = pipeline._insert_identities

    def insert(cursor, *args, **kwargs):  # the API gives the new address to another contact first
        Identity.objects.create(contact=other, kind="email", value="b@example.nl", source="api")
        return original(cursor, *args, **kwargs)

    monkeypatch.setattr(pipeline, "_insert_identities", insert)
    run = run_file(FILE)

    assert (run.status, run.merged_count) == ("done", 1)
    assert list(Contact.objects.values_list("pk", flat=True)) == [other.pk]
    other.refresh_from_db()
    assert other.first_name == "Bea"
    assert Identity.objects.get(value="b@example.nl").contact_id == other.pk
    assert Consent.objects.get(contact_id=other.pk, channel="email").status == "granted"
    assert orphans() == (0, 0, 0)


@pytest.mark.django_db
def test_an_external_id_repeated_with_other_content_rejects_the_later_row():
    IdentityFactory(kind="customer_number", value="K1")
    content = (
        "klantnummer;type;datum;bedrag;ordernummer\n"
        "K1;purchase;22-11-2026;10,00;1001\n"
        "K1;purchase;22-11-2026;99,00;1001\n"
        "K1;purchase;23-11-2026;5,00;1002\n"
        "K1;purchase;23-11-2026;5,00;1002\n"
    )
    run = run_file(content, kind="events", file_name="orders.csv")

    assert (run.status, run.created_count, run.unchanged_count, run.rejected_count) == ("done", 2, 1, 1)
    rejected = ImportRejectedRow.objects.get()
    assert (rejected.line_number, rejected.reason) == (3, "external id 1001 is also on line 2")
    assert rejected.row["ordernummer"] == "1001"
    assert Event.objects.get(external_id="1001").value == 10
