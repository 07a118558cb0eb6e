"""Imports racing the contact services (merge, erase, an identity added through the API), and
an external id repeated within one events file. The races run the service in a second thread,
with its own database connection, at a chosen step of the import."""

import datetime as dt
import threading

import pytest
from celery.exceptions import Retry
from django.core.exceptions import ValidationError
from django.db import connection, connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audiences.imports import pipeline
from audiences.models import Consent, Contact, Event, Identity, Import, ImportRejectedRow
from audiences.services import imports as import_services
from audiences.services.contacts import contact_erase, contact_merge
from audiences.services.imports import ImportRunning, import_create, import_queue, import_run
from audiences.tasks import import_run_task
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


# --- A worker that dies -------------------------------------------------------------------


def running_import(*, minutes_ago: int):
    created = import_create(kind="contacts", file_name="k.csv", content=FILE.encode())
    then = timezone.now() - dt.timedelta(minutes=minutes_ago)
    Import.objects.filter(pk=created.pk).update(status="running", started_at=then, updated_at=then)
    return created


@pytest.mark.django_db
def test_a_stale_running_import_can_be_queued_again_and_runs(marketeer, django_capture_on_commit_callbacks):
    created = running_import(minutes_ago=60)
    client = Client(headers={"accept-language": "en"})
    client.force_login(marketeer)
    mapping_url = reverse("admin:audiences_import_mapping", args=[created.pk])
    assert client.get(reverse("admin:audiences_import_change", args=[created.pk])).context["is_stale"]
    page = client.get(mapping_url)
    assert page.status_code == 200
    fields = {field.html_name: field.initial for field in page.context["form"].visible_fields()}

    with django_capture_on_commit_callbacks() as callbacks:
        queued = client.post(mapping_url, {**fields, "_import": "1"})
    assert queued.status_code == 302
    assert Import.objects.get(pk=created.pk).status == "queued"
    assert len(callbacks) == 1

    import_run_task(created.pk)
    done = Import.objects.get(pk=created.pk)
    assert (done.status, done.created_count) == ("done", 1)


@pytest.mark.django_db
def test_a_fresh_running_import_is_not_run_twice_and_the_task_comes_back_later(monkeypatch):
    created = running_import(minutes_ago=1)
    with pytest.raises(ValidationError):
        import_queue(import_run=created, mapping=created.mapping)
    retries = []

    def retry(**kwargs):
        retries.append(kwargs)
        return Retry()

    monkeypatch.setattr(import_run_task, "retry", retry)
    with pytest.raises(Retry):
        import_run_task(created.pk)

    assert retries and retries[0]["countdown"] > 0
    assert isinstance(retries[0]["exc"], ImportRunning)
    assert (Import.objects.get(pk=created.pk).status, Contact.objects.count()) == ("running", 0)


@pytest.mark.django_db
def test_a_run_that_was_taken_over_writes_nothing(monkeypatch):
    created = import_create(kind="contacts", file_name="k.csv", content=FILE.encode())
    original = pipeline.merge
    other_start = timezone.now() + dt.timedelta(seconds=5)

    def merge(**kwargs):  # another worker claimed the import while this one was staging
        Import.objects.filter(pk=created.pk).update(started_at=other_start)
        return original(**kwargs)

    monkeypatch.setattr(import_services, "merge", merge)
    after = import_run(import_run=created)

    assert (after.status, after.started_at, Contact.objects.count()) == ("running", other_start, 0)
