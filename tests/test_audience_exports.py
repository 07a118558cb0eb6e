"""Audience exports: segments as SHA-256 hashed customer lists for advertising platforms, written
by PostgreSQL, on a schedule (once per occurrence, DST included), downloadable in the admin and
through the API by those who may see them."""

import csv
import datetime as dt
import hashlib
import io
import threading
import time
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from audiences.models import Contact, Identity
from campaigns.models import AudienceExport
from campaigns.services.exports import audience_export_run, audience_exports_due
from campaigns.tasks import audience_exports_task
from tests.campaign_helpers import static_segment
from tests.factories import ContactFactory, SegmentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]

AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def identity(contact, kind, value):
    # Straight into the table, as any writer might have left it: the export normalises again.
    return Identity.objects.create(contact=contact, kind=kind, value=value)


def rows(export) -> list[dict]:
    export.refresh_from_db()
    return list(csv.DictReader(io.StringIO(bytes(export.content).decode("utf-8"))))


def export_of(segment, *, schedule=None, name=None, created_at=None) -> AudienceExport:
    export = AudienceExport.objects.create(
        name=name or f"Export {segment.pk}", segment=segment, schedule=schedule, enabled=True
    )
    if created_at is not None:
        AudienceExport.objects.filter(pk=export.pk).update(created_at=created_at)
        export.refresh_from_db()
    return export


def crontab(minute, hour, zone="Europe/Amsterdam"):
    return CrontabSchedule.objects.create(
        minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*", timezone=zone
    )


# --- The file ------------------------------------------------------------------------------------


def test_the_file_holds_the_sha256_of_each_contacts_first_normalised_email_and_phone_and_nothing_plain():
    both = ContactFactory()
    identity(both, Identity.Kind.EMAIL, "  Anna.de.Vries@Example.NL ")  # trimmed and lower-cased before hashing
    identity(both, Identity.Kind.EMAIL, "anna.later@example.nl")  # not the first: left out
    identity(both, Identity.Kind.PHONE, "+31612345678")
    identity(both, Identity.Kind.CUSTOMER_NUMBER, "K-1001")  # not an advertising identifier
    email_only = ContactFactory()
    identity(email_only, Identity.Kind.EMAIL, "bram@example.nl")
    phone_only = ContactFactory()
    identity(phone_only, Identity.Kind.PHONE, "+32470123456")
    nothing_to_match = ContactFactory()
    identity(nothing_to_match, Identity.Kind.CUSTOMER_NUMBER, "K-1002")
    erased = ContactFactory()
    identity(erased, Identity.Kind.EMAIL, "erased@example.nl")
    Contact.objects.filter(pk=erased.pk).update(erased_at=timezone.now())
    outsider = ContactFactory()
    identity(outsider, Identity.Kind.EMAIL, "outsider@example.nl")
    segment = static_segment([both, email_only, phone_only, nothing_to_match, erased])
    export = export_of(segment)

    exported = audience_export_run(export=export)

    content = bytes(AudienceExport.objects.get(pk=export.pk).content).decode("utf-8")
    assert content.splitlines()[0] == "email_sha256,phone_sha256"
    assert rows(export) == [
        {"email_sha256": sha256("anna.de.vries@example.nl"), "phone_sha256": sha256("31612345678")},
        {"email_sha256": sha256("bram@example.nl"), "phone_sha256": ""},
        {"email_sha256": "", "phone_sha256": sha256("32470123456")},
    ]
    assert exported.row_count == export.row_count == 3
    assert export.exported_at is not None
    for plain in ["@", "example", "anna", "bram", "31612345678", "32470123456", "K-100"]:
        assert plain not in content.lower()
    for absent in ["erased@example.nl", "outsider@example.nl"]:
        assert sha256(absent) not in content


def test_a_segment_whose_rules_cannot_be_used_is_refused_with_a_clear_message_and_the_file_is_kept():
    contact = ContactFactory()
    identity(contact, Identity.Kind.EMAIL, "kept@example.nl")
    good = static_segment([contact])
    export = export_of(good, name="Kopers")
    audience_export_run(export=export)
    broken = SegmentFactory(name="Kapot", rules={"version": 1, "root": {"segment": 987654321}})
    AudienceExport.objects.filter(pk=export.pk).update(segment=broken)
    export.refresh_from_db()

    with pytest.raises(ValidationError) as refused:
        audience_export_run(export=export)

    message = " ".join(refused.value.messages)
    assert "Kapot" in message and "cannot be exported" in message and "root.segment" in message
    assert rows(export) == [{"email_sha256": sha256("kept@example.nl"), "phone_sha256": ""}]


# --- The webshop: buyers out of retargeting, into lookalikes -----------------------------------------


def test_a_contact_who_buys_moves_from_the_retargeting_export_to_the_buyers_export(marketeer, api_client_for):
    visitor = ContactFactory()
    identity(visitor, Identity.Kind.EMAIL, "bezoeker@example.nl")
    earlier_buyer = ContactFactory()
    identity(earlier_buyer, Identity.Kind.EMAIL, "koper@example.nl")
    api = api_client_for(marketeer)
    now = timezone.now()

    def post(event_type, email, external_id):
        response = api.post(
            "/api/v1/events/",
            {
                "type": event_type,
                "occurred_at": (now - dt.timedelta(hours=1)).isoformat(),
                "identities": {"email": email},
                "external_id": external_id,
                **({"value": "49.95"} if event_type == "purchase" else {}),
            },
            format="json",
        )
        assert response.status_code == 201, response.json()

    post("page_view", "bezoeker@example.nl", "view-1")
    post("page_view", "koper@example.nl", "view-2")
    post("purchase", "koper@example.nl", "order-1")
    buyers = SegmentFactory(name="Kopers", rules={"version": 1, "root": {"event": "purchase"}})
    retargeting = SegmentFactory(
        name="Retargeting",
        rules={
            "version": 1,
            "root": {"all": [{"event": "page_view", "within_days": 30}, {"not": {"segment": buyers.pk}}]},
        },
    )
    buyers_export, retargeting_export = export_of(buyers), export_of(retargeting)

    def hashes(export):
        audience_export_run(export=export)
        return {row["email_sha256"] for row in rows(export)}

    assert hashes(buyers_export) == {sha256("koper@example.nl")}
    assert hashes(retargeting_export) == {sha256("bezoeker@example.nl")}

    post("purchase", "bezoeker@example.nl", "order-2")

    assert hashes(buyers_export) == {sha256("koper@example.nl"), sha256("bezoeker@example.nl")}
    assert hashes(retargeting_export) == set()


# --- On a schedule -----------------------------------------------------------------------------------


def test_a_scheduled_export_runs_once_per_occurrence_however_often_the_tick_comes():
    contact = ContactFactory()
    identity(contact, Identity.Kind.EMAIL, "dagelijks@example.nl")
    first_night = dt.datetime(2026, 6, 10, 3, 0, tzinfo=AMSTERDAM)
    export = export_of(
        static_segment([contact]), schedule=crontab("0", "3"), created_at=first_night - dt.timedelta(days=1)
    )

    assert audience_exports_due(now=first_night - dt.timedelta(minutes=1)).exported == []
    assert audience_exports_due(now=first_night + dt.timedelta(seconds=20)).exported == [export.pk]
    assert audience_exports_due(now=first_night + dt.timedelta(seconds=40)).exported == []
    assert audience_exports_due(now=first_night + dt.timedelta(hours=5)).exported == []
    export.refresh_from_db()
    assert export.exported_at == first_night + dt.timedelta(seconds=20)
    assert export.last_occurrence == "2026-06-10T03:00"

    # Beat was down for three nights: the latest occurrence exports, once.
    later = first_night + dt.timedelta(days=3, minutes=2)
    assert audience_exports_due(now=later).exported == [export.pk]
    assert audience_exports_due(now=later).exported == []
    export.refresh_from_db()
    assert export.last_occurrence == "2026-06-13T03:00"
    assert rows(export) == [{"email_sha256": sha256("dagelijks@example.nl"), "phone_sha256": ""}]


def test_disabled_and_unscheduled_exports_are_not_exported_by_the_tick():
    contact = ContactFactory()
    identity(contact, Identity.Kind.EMAIL, "handmatig@example.nl")
    segment = static_segment([contact])
    night = dt.datetime(2026, 6, 10, 3, 0, tzinfo=AMSTERDAM)
    by_hand = export_of(segment, name="Handmatig", created_at=night - dt.timedelta(days=1))
    disabled = export_of(segment, name="Uit", schedule=crontab("0", "3"), created_at=night - dt.timedelta(days=1))
    AudienceExport.objects.filter(pk=disabled.pk).update(enabled=False)

    assert audience_exports_due(now=night + dt.timedelta(minutes=1)).exported == []
    assert not AudienceExport.objects.filter(pk__in=[by_hand.pk, disabled.pk], exported_at__isnull=False).exists()


@pytest.mark.parametrize(
    ("ticks_utc", "expected_keys"),
    [
        # 25 October 2026: 02:30 happens twice in Amsterdam (00:30 UTC in summer time, 01:30 UTC in winter time).
        (
            [(2026, 10, 25, 0, 31), (2026, 10, 25, 1, 0), (2026, 10, 25, 1, 31), (2026, 10, 25, 2, 31)],
            ["2026-10-25T02:30"],
        ),
        # 29 March 2026: 02:30 does not happen (the clock jumps from 02:00 to 03:00, 01:00 UTC); it exports once.
        ([(2026, 3, 29, 0, 59), (2026, 3, 29, 1, 0), (2026, 3, 29, 1, 31), (2026, 3, 29, 5, 0)], ["2026-03-29T02:30"]),
    ],
    ids=["autumn-hour-twice", "spring-hour-skipped"],
)
def test_on_a_dst_day_the_schedule_exports_once(ticks_utc, expected_keys):
    contact = ContactFactory()
    identity(contact, Identity.Kind.PHONE, "+31687654321")
    first_tick = dt.datetime(*ticks_utc[0], tzinfo=dt.UTC)
    export = export_of(
        static_segment([contact]), schedule=crontab("30", "2"), created_at=first_tick - dt.timedelta(hours=12)
    )
    keys = []
    for tick in ticks_utc:
        for _ in range(2):  # every tick twice: a beat that fires twice changes nothing
            if audience_exports_due(now=dt.datetime(*tick, tzinfo=dt.UTC)).exported:
                export.refresh_from_db()
                keys.append(export.last_occurrence)
    assert keys == expected_keys


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_the_same_occurrence_export_once():
    """Worker A claims the occurrence and holds its transaction open; worker B read the export
    before A committed and waits on A's row. When A commits, B's conditional update finds the
    occurrence taken and B exports nothing."""
    contact = ContactFactory()
    identity(contact, Identity.Kind.EMAIL, "gelijktijdig@example.nl")
    night = dt.datetime(2026, 6, 10, 3, 0, tzinfo=AMSTERDAM)
    export = export_of(static_segment([contact]), schedule=crontab("0", "3"), created_at=night - dt.timedelta(days=1))
    tick = night + dt.timedelta(seconds=30)
    results: dict[str, list[int]] = {}
    a_claimed, release_a = threading.Event(), threading.Event()

    def worker_a():
        try:
            with transaction.atomic():
                results["a"] = audience_exports_due(now=tick).exported
                a_claimed.set()
                release_a.wait(20)
        finally:
            connections.close_all()

    def worker_b():
        try:
            results["b"] = audience_exports_due(now=tick).exported
        finally:
            connections.close_all()

    a = threading.Thread(target=worker_a)
    a.start()
    assert a_claimed.wait(20)
    b = threading.Thread(target=worker_b)
    b.start()
    deadline = time.monotonic() + 20
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:  # until B waits on A's lock of the export's row
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                break
            time.sleep(0.05)
        else:
            pytest.fail("worker B never waited for worker A")
    release_a.set()
    a.join(20)
    b.join(20)

    assert results == {"a": [export.pk], "b": []}
    export.refresh_from_db()
    assert export.exported_at == tick and export.row_count == 1


@time_machine.travel(dt.datetime(2026, 6, 10, 12, 0, 30, tzinfo=AMSTERDAM), tick=False)
def test_the_periodic_task_runs_every_minute_and_exports_what_is_due():
    task = PeriodicTask.objects.get(task="campaigns.tasks.audience_exports_task")
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (1, IntervalSchedule.MINUTES)

    contact = ContactFactory()
    identity(contact, Identity.Kind.EMAIL, "taak@example.nl")
    every_minute = CrontabSchedule.objects.create(
        minute="*", hour="*", day_of_week="*", day_of_month="*", month_of_year="*", timezone="Europe/Amsterdam"
    )
    export = export_of(
        static_segment([contact]), schedule=every_minute, created_at=timezone.now() - dt.timedelta(hours=1)
    )

    first = audience_exports_task.apply().get()
    second = audience_exports_task.apply().get()

    assert first["exported"] == [export.pk]
    assert second["exported"] == []
    assert rows(export) == [{"email_sha256": sha256("taak@example.nl"), "phone_sha256": ""}]


# --- The admin ---------------------------------------------------------------------------------------


@pytest.fixture
def exported():
    contact = ContactFactory()
    identity(contact, Identity.Kind.EMAIL, "download@example.nl")
    export = export_of(static_segment([contact]), name="Kopers voor Meta")
    return audience_export_run(export=export, now=dt.datetime(2026, 10, 25, 3, 0, tzinfo=AMSTERDAM))


def test_the_download_requires_permission_to_see_exports(client, agent, marketeer, exported):
    url = reverse("admin:campaigns_audienceexport_download", args=[exported.pk])

    anonymous = client.get(url)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    client.force_login(agent)
    assert client.get(url).status_code == 403
    assert client.get(reverse("admin:campaigns_audienceexport_changelist")).status_code == 403

    client.force_login(marketeer)
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="kopers-voor-meta-20261025-0300.csv"'
    assert response.content == b"email_sha256,phone_sha256\n" + sha256("download@example.nl").encode() + b",\n"


def test_the_admin_lists_exports_without_a_query_per_row(english_client, marketeer, django_assert_num_queries):
    segment = static_segment([ContactFactory()])
    export_of(segment, name="Eerste", schedule=crontab("0", "3"))
    client = english_client(marketeer)
    url = reverse("admin:campaigns_audienceexport_changelist")
    client.get(url)  # the session and the content types are cached from here on
    with CaptureQueriesContext(connection) as one_export:
        client.get(url)
    for number in range(3):
        audience_export_run(export=export_of(segment, name=f"Meer {number}", schedule=crontab("0", str(number))))

    with django_assert_num_queries(len(one_export.captured_queries)):
        response = client.get(url)

    assert response.status_code == 200
    assert b"Eerste" in response.content and b"Meer 2" in response.content
    assert b"Download CSV" in response.content


def test_export_now_in_the_admin_writes_the_file_and_says_how_many(english_client, marketeer):
    contacts = [ContactFactory() for _ in range(2)]
    for number, contact in enumerate(contacts):
        identity(contact, Identity.Kind.EMAIL, f"nu{number}@example.nl")
    export = export_of(static_segment(contacts), name="Lookalike")
    broken = export_of(
        SegmentFactory(name="Kapot", rules={"version": 1, "root": {"segment": 987654321}}), name="Kapotte export"
    )
    client = english_client(marketeer)

    response = client.post(
        reverse("admin:campaigns_audienceexport_changelist"),
        {"action": "export_now", "_selected_action": [export.pk, broken.pk]},
        follow=True,
    )

    texts = [str(message) for message in response.context["messages"]]
    assert "Lookalike exported: 2 contacts." in texts
    assert any("Kapot" in text and "cannot be exported" in text for text in texts)
    assert len(rows(export)) == 2
    broken.refresh_from_db()
    assert broken.exported_at is None
    change = client.get(reverse("admin:campaigns_audienceexport_change", args=[export.pk]))
    assert reverse("admin:campaigns_audienceexport_download", args=[export.pk]).encode() in change.content


# --- The API -----------------------------------------------------------------------------------------


def test_the_api_lists_exports_and_returns_the_file(api_client_for, marketeer, exported):
    never = export_of(static_segment([ContactFactory()]), name="Nog niet")
    api = api_client_for(marketeer)

    listed = api.get("/api/v1/audience-exports/")
    assert listed.status_code == 200
    by_name = {row["name"]: row for row in listed.json()["results"]}
    assert by_name["Kopers voor Meta"]["row_count"] == 1
    assert by_name["Kopers voor Meta"]["file_url"].endswith(f"/api/v1/audience-exports/{exported.pk}/file/")
    assert by_name["Nog niet"]["file_url"] is None

    response = api.get(f"/api/v1/audience-exports/{exported.pk}/file/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")
    assert response.content == bytes(AudienceExport.objects.get(pk=exported.pk).content)
    assert sha256("download@example.nl").encode() in response.content
    as_csv = api.get(f"/api/v1/audience-exports/{exported.pk}/file/", HTTP_ACCEPT="text/csv")
    assert as_csv.status_code == 200 and as_csv.content == response.content

    not_yet = api.get(f"/api/v1/audience-exports/{never.pk}/file/")
    assert not_yet.status_code == 404


def test_the_api_refuses_anonymous_users_and_agents(client, api_client_for, agent, exported):
    assert client.get("/api/v1/audience-exports/").status_code == 401
    assert client.get(f"/api/v1/audience-exports/{exported.pk}/file/").status_code == 401
    agent_api = api_client_for(agent)
    assert agent_api.get("/api/v1/audience-exports/").status_code == 403
    assert agent_api.get(f"/api/v1/audience-exports/{exported.pk}/file/").status_code == 403


def test_the_exports_are_in_the_openapi_schema(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    file_endpoint = schema["paths"]["/api/v1/audience-exports/{id}/file/"]["get"]
    assert "text/csv" in file_endpoint["responses"]["200"]["content"]
    assert {"401", "403", "404"} <= set(file_endpoint["responses"])
    assert "get" in schema["paths"]["/api/v1/audience-exports/"]
