"""Sending an email campaign to a million contacts through two Celery workers, beside a naive pipeline.

    .venv/bin/python benchmarks/send.py --contacts 1000000 \\
        --database-url postgres://postgres@127.0.0.1:5432/dialoog_sendbench

Builds its own data in the database given (created when missing, then migrated), with bulk SQL,
unless it is there: `--contacts` contacts with a first name (one in twelve without), an email
address each and a granted email consent (history and current state), a static segment of them
all, a goal (conversion rate, everyone), a header and a footer block and a ~2 KB HTML email with
its subject and preheader, saved through the services (checked, cleaned, CSS inlined). Then it
creates and activates a one-off campaign for the segment (10% held out) through the services,
starts two real Celery workers (`--pool=solo`, Redis broker) with the file channel backend
writing to `--outbox` (tmpfs), and prints one JSON line per figure, with the load average:

- `send_plan`: `run_plan` for the run, timed: the audience split by the goal's measurement into the
  run's plan, one delivery row per contact inserted beside the measurement's assignments (two
  connections), the batches made; with each step's seconds. Target: at most 10 s for 1,000,000
  contacts. Its baseline, `send_plan_one_connection`: the same planning of a second campaign for
  the same segment with the two writes one after the other (`CAMPAIGN_PLAN_APART_FROM=0`), on the
  same empty tables, measured first and then removed.
- `send_pipeline`: from the first batch enqueued (`batches_enqueue` with the Celery fan-out) to
  the last batch done (its `done_at`): messages rendered, handed to the file backend and
  recorded per second. Target: at least 5,000 a second. Every planned delivery must be sent and
  its file be there.
- `send_worker_memory`: the peak resident memory (VmHWM) of each worker. Target: at most 300 MB.
- `send_naive`: the baseline, on a slice of `--naive-slice` treated contacts, through the same
  workers and backend: one Celery task per recipient that reads the contact, its address and
  consent through the ORM, creates its Delivery with `Delivery.objects.create`, compiles the
  template again (the caches cleared), renders, tracks the links, writes through the channel and
  records the outcome. Target: ours at least 20 times as fast.

Benchmarks are run by hand, not by the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from celery import shared_task

sys.path.insert(0, str(Path(__file__).resolve().parent))

from render import create_database, emit, load, log, publish_blocks, setup_django

ROOT = Path(__file__).resolve().parent.parent
MARK = "send"  # contacts of this benchmark carry attributes.benchmark = "send"
FIRST_NAMES = ["Sanne", "Daan", "Emma", "Lucas", "Julia", "Sem", "Tess", "Milan", "", "Zoë", "Bram", "Fenna"]
CITIES = ["Utrecht", "Amsterdam", "Rotterdam", "Zwolle", "Groningen", "Eindhoven", "Leiden"]
SUBJECT = "{{ contact.first_name | default('Beste klant') }}, uw najaarsvoordeel bij De Linde"
PREHEADER = "Speciaal voor u in {{ contact.attributes.city | default('uw regio') }}: 20% op tuinmeubelen"
BODY = """<!doctype html>
<html lang="nl"><head><meta charset="utf-8"><title>Uw voordeel bij De Linde</title></head>
<body style="margin:0;padding:0;background:#ffffff">
{% include "block:header" %}
<table role="presentation" width="100%" cellpadding="0" cellspacing="0">
  <tr><td style="padding:32px;font-family:Arial,sans-serif;font-size:16px;line-height:24px;color:#333">
    <p>Beste {{ contact.first_name | default("klant") }} {{ contact.last_name }},</p>
    <p>De dagen worden korter, maar in de tuin is er nog genoeg te doen. Daarom hebben we voor de klanten
    van onze winkel in {{ contact.attributes.city | default("uw regio") }} een aanbieding samengesteld:
    <strong>20% korting op alle tuinmeubelen</strong>, alleen deze maand, met de actie
    &ldquo;{{ campaign.name }}&rdquo;.</p>
    <p>Kom langs in de winkel of bestel online. Onze medewerkers helpen u graag bij het kiezen
    van de juiste meubels, kussens en parasols, en bezorgen alles gratis bij u thuis binnen de regio.</p>
    <p style="text-align:center;padding:16px 0">
      <a href="https://shop.example.nl/aanbiedingen" style="background:#2f4f2f;color:#fff;padding:12px 24px;
      border-radius:4px;text-decoration:none;font-weight:bold">Bekijk de aanbieding</a>
    </p>
    <p>Liever eerst rondkijken? Bekijk <a href="https://shop.example.nl/tuinmeubelen">de tuinmeubelen</a>
    of <a href="https://shop.example.nl/winkels">de winkel bij u in de buurt</a>.</p>
    <p>Met groene groet,<br>Het team van Tuincentrum De Linde</p>
    <p style="font-size:12px;color:#6b6b6b">Wordt deze e-mail niet goed getoond?
    <a href="{{ links.view_in_browser }}">Bekijk hem in uw browser</a>.</p>
  </td></tr>
</table>
{% include "block:footer" %}
</body></html>
"""


# --- The data ------------------------------------------------------------------------------------


def build_contacts(contacts: int) -> list[int]:
    """`contacts` contacts, each with an email address and a granted email consent (with its history)."""
    from django.db import connection, transaction

    from audiences.models import Contact

    ids = list(Contact.objects.filter(attributes__benchmark=MARK).order_by("pk").values_list("pk", flat=True))
    if len(ids) >= contacts:
        log(f"data: {len(ids):,} benchmark contacts are there already")
        return ids[:contacts]
    log(f"data: building {contacts - len(ids):,} contacts with an address and consent")
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE TEMP TABLE new_contact ON COMMIT DROP AS
            WITH made AS (
                INSERT INTO audiences_contact (contact_key, first_name, last_name, locale, timezone, attributes,
                                               created_at, updated_at)
                SELECT gen_random_uuid(), (%(names)s::text[])[1 + (n %% cardinality(%(names)s::text[]))],
                       'de Vries', 'nl', 'Europe/Amsterdam',
                       jsonb_build_object('benchmark', %(mark)s, 'number', n,
                                          'city', (%(cities)s::text[])[1 + (n %% cardinality(%(cities)s::text[]))]),
                       now(), now()
                FROM generate_series(%(start)s, %(stop)s) AS n
                RETURNING id, (attributes ->> 'number')::int AS number
            )
            SELECT * FROM made
            """,
            {"names": FIRST_NAMES, "cities": CITIES, "mark": MARK, "start": len(ids), "stop": contacts - 1},
        )
        cursor.execute(
            """
            INSERT INTO audiences_identity (contact_id, kind, value, source, created_at)
            SELECT id, 'email', 'klant' || number || '@send.example.nl', 'benchmark', now() FROM new_contact
            """
        )
        cursor.execute(
            """
            WITH change AS (
                INSERT INTO audiences_consentchange (contact_id, channel, status, source, proof, recorded_at)
                SELECT id, 'email', 'granted', 'benchmark', '', now() - interval '30 days' FROM new_contact
                RETURNING id, contact_id, recorded_at
            )
            INSERT INTO audiences_consent (contact_id, channel, status, changed_at, change_id)
            SELECT contact_id, 'email', 'granted', recorded_at, id FROM change
            """
        )
    log(f"data: built in {time.perf_counter() - started:.1f} s")
    with connection.cursor() as cursor:
        for table in ("audiences_contact", "audiences_identity", "audiences_consentchange", "audiences_consent"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
    ids = list(Contact.objects.filter(attributes__benchmark=MARK).order_by("pk").values_list("pk", flat=True))
    return ids[:contacts]


def audience_segment(ids: list[int]):
    """A static segment of exactly these contacts (its members written again when the size changed)."""
    from django.db import connection

    from audiences.models import Segment

    segment, _created = Segment.objects.get_or_create(
        name=f"Benchmark send: {len(ids):,} contacts", defaults={"kind": Segment.Kind.STATIC, "rules": {}}
    )
    if segment.members.count() != len(ids):
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM audiences_segmentmember WHERE segment_id = %s", [segment.pk])
            cursor.execute(
                "INSERT INTO audiences_segmentmember (segment_id, contact_id, added_at)"
                " SELECT %s, id, now() FROM unnest(%s::bigint[]) AS id",
                [segment.pk, ids],
            )
            cursor.execute("VACUUM (ANALYZE) audiences_segmentmember")
    return segment


def save_content():
    """The blocks and the email, saved and published as a marketeer would."""
    from content.models import Message, Template
    from content.services import template_version_create

    publish_blocks()
    message, _created = Message.objects.get_or_create(name="Benchmark send: najaarsactie")
    template, _created = Template.objects.get_or_create(message=message, channel=Template.Channel.EMAIL)
    version = template.versions.order_by("-number").first()
    if version is None or version.html != BODY or version.subject != SUBJECT:
        version = template_version_create(
            template=template, language="nl", subject=SUBJECT, preheader=PREHEADER, html=BODY
        )
    if version.problems:
        raise SystemExit(f"benchmark stopped: the template has problems: {version.problems}")
    return message, version


def goal():
    from django.utils import timezone

    from goals.models import Goal

    today = timezone.localdate()
    found, _created = Goal.objects.update_or_create(
        name="Benchmark send: conversie",
        defaults={
            "domain": "conversions",
            "metric": "conversion_rate",
            "target": 10,
            "starts_on": today - dt.timedelta(days=10),
            "deadline": today + dt.timedelta(days=80),
        },
    )
    return found


class StepTimer:
    """The seconds of each step of `run_plan` (its module's step functions, wrapped while timing)."""

    STEPS = ("_plan_split", "_plan_deliveries", "_plan_assignments_and_batches", "_plan_finish")

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __enter__(self):
        from campaigns.services import runs

        self.originals = {name: getattr(runs, name) for name in self.STEPS}
        for name, function in self.originals.items():
            setattr(runs, name, self.timed(name.removeprefix("_plan_"), function))
        return self

    def __exit__(self, *exc):
        from campaigns.services import runs

        for name, function in self.originals.items():
            setattr(runs, name, function)

    def timed(self, name, function):
        def step(**arguments):
            started = time.perf_counter()
            try:
                return function(**arguments)
            finally:
                self.seconds[name] = round(time.perf_counter() - started, 2)

        return step


def plan_timed(run_id: int):
    """`run_plan` for the run: its result, its seconds and each step's."""
    from campaigns.services.runs import run_plan

    with StepTimer() as steps:
        started = time.perf_counter()
        planned = run_plan(run_id=run_id)
        seconds = time.perf_counter() - started
    if planned is None:
        raise SystemExit("benchmark stopped: the run was not planned")
    return planned, seconds, steps.seconds


def one_off_email(*, name: str, segment, message):
    """A one-off email campaign for the segment, created and activated through the services; its run."""
    from campaigns.models import CampaignRun
    from campaigns.services import campaign_activate, campaign_create

    campaign = campaign_create(name=name, goal=goal(), message=message, channels=["email"], include_segments=[segment])
    campaign = campaign_activate(campaign=campaign)
    return campaign, CampaignRun.objects.get(campaign=campaign, occurrence="once")


def plan_on_one_connection(segment, message) -> tuple[float, dict]:
    """The baseline: a second campaign for the segment, planned with its two writes one after the
    other; then its rows are removed, so that the measured plan starts from the same empty tables."""
    from django.test import override_settings

    _campaign, run = one_off_email(name="Benchmark send: one connection", segment=segment, message=message)
    with override_settings(CAMPAIGN_PLAN_APART_FROM=0):
        _planned, seconds, steps = plan_timed(run.pk)
    forget_earlier_runs()
    return seconds, steps


def forget_earlier_runs() -> None:
    """Earlier runs of this benchmark: their deliveries would count against the frequency cap."""
    from django.db import connection

    from campaigns.models import Campaign
    from goals.models import Experiment

    with connection.cursor() as cursor:
        # The benchmark's own database: the send tables hold nothing but earlier runs.
        cursor.execute("TRUNCATE campaigns_calllistitem, campaigns_delivery, campaigns_deliverybatch, goals_assignment")
    campaigns = Campaign.objects.filter(name__startswith="Benchmark send")
    experiments = list(campaigns.values_list("experiment_id", flat=True))
    campaigns.delete()
    Experiment.objects.filter(pk__in=[pk for pk in experiments if pk]).delete()


# --- The workers ---------------------------------------------------------------------------------


def worker_environment(arguments) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": arguments.database_url,
        "CELERY_BROKER_URL": arguments.broker_url,
        "DJANGO_SETTINGS_MODULE": "dialoog.settings.base",
        "DEBUG": "false",
        "CAMPAIGN_EMAIL_BACKEND": "campaigns.channels.filebased.FileChannel",
        "CAMPAIGN_FILE_PATH": arguments.outbox,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]),
        "LOG_LEVEL": "WARNING",
    }


def start_workers(arguments, count: int = 2) -> list[subprocess.Popen]:
    from dialoog.celery import app

    app.control.purge()
    workers = []
    for number in range(1, count + 1):
        log_file = open(Path(arguments.log_dir) / f"sendbench-worker-{number}.log", "w")  # noqa: SIM115
        workers.append(
            subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "dialoog",
                    "worker",
                    "--pool=solo",
                    "--loglevel=WARNING",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--include=send",
                    f"--hostname=sendbench{number}@%h",
                ],
                cwd=ROOT,
                env=worker_environment(arguments),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0)
        if len([r for r in replies if any(name.startswith("sendbench") for name in r)]) >= count:
            return workers
        if any(worker.poll() is not None for worker in workers):
            break
    stop_workers(workers)
    raise SystemExit(f"benchmark stopped: the workers did not start (see {arguments.log_dir}/sendbench-worker-*.log)")


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


def peak_memory_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def wait_for(done, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark stopped: {what} did not finish within {timeout:.0f} s")
        time.sleep(0.2)


# --- The naive pipeline: one task per recipient --------------------------------------------------


@shared_task(name="benchmarks.send.naive_send_one", ignore_result=True)
def naive_send_one(run_id: int, contact_id: int, version_id: int) -> None:
    """One recipient, the way a first version would: ORM reads and writes, the template compiled anew."""
    from django.utils import timezone

    from audiences.models import Consent, Identity
    from campaigns.channels import channel_backend
    from campaigns.channels.base import OutboundMessage
    from campaigns.models import CampaignRun, Delivery
    from campaigns.tracking.links import tracked_html
    from content.models import TemplateVersion
    from content.rendering.render import clear_cache
    from content.selectors import contact_contexts, published_blocks
    from content.services import template_render

    run = CampaignRun.objects.select_related("campaign").get(pk=run_id)
    campaign = run.campaign
    if not Consent.objects.filter(contact_id=contact_id, channel="email", status="granted").exists():
        return
    address = (
        Identity.objects.filter(contact_id=contact_id, kind="email").order_by("pk").values_list("value", flat=True)
    ).first()
    delivery = Delivery.objects.create(
        run=run, campaign=campaign, contact_id=contact_id, channel="email", status="sending", attempts=1, to=address
    )
    version = TemplateVersion.objects.select_related("template__sender_profile").get(pk=version_id)
    clear_cache()  # compiled per message
    context = contact_contexts(contact_ids=[contact_id], campaign={"id": campaign.pk, "name": campaign.name})[
        contact_id
    ]
    rendered = template_render(version=version, context=context, blocks=published_blocks())
    links = context["links"]
    message = OutboundMessage(
        delivery_id=delivery.pk,
        idempotency_key=f"dialoog-delivery-{delivery.pk}",
        channel="email",
        to=address,
        contact_key="",
        campaign={"id": campaign.pk, "name": campaign.name},
        subject=rendered.subject,
        html=tracked_html(rendered.html, delivery.pk, skip=tuple(links.values())),
        text=rendered.text,
        from_email="Dialoog <noreply@localhost>",
        headers={"List-Unsubscribe": f"<{links['unsubscribe']}?channel=email>"},
    )
    backend = channel_backend("email")
    with backend:
        (outcome,) = backend.send_batch([message])
    Delivery.objects.filter(pk=delivery.pk).update(
        status="sent", provider_id=outcome.provider_id, sent_at=timezone.now()
    )


# --- Measuring -----------------------------------------------------------------------------------


class MemorySampler(threading.Thread):
    """The workers' resident memory every half second, while the send runs."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self.stopping = threading.Event()

    def run(self) -> None:
        import psutil

        processes = [psutil.Process(pid) for pid in self.pids]
        while not self.stopping.wait(0.5):
            for process in processes:
                self.peak[process.pid] = max(self.peak[process.pid], process.memory_info().rss / 2**20)


def files_in(folder: Path) -> int:
    if not folder.exists():
        return 0
    with os.scandir(folder) as entries:
        return sum(1 for _entry in entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--naive-slice", type=int, default=2_000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCHMARK_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dialoog_sendbench"),
    )
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument(
        "--outbox",
        default="/dev/shm/dialoog-sendbench",  # noqa: S108 - a folder of our own on tmpfs
        help="The file backend's folder (tmpfs).",
    )
    parser.add_argument("--log-dir", default="/tmp", help="Where the workers' logs go.")  # noqa: S108
    arguments = parser.parse_args()

    os.environ.update(
        {
            key: value
            for key, value in worker_environment(arguments).items()
            if key in ("CELERY_BROKER_URL", "CAMPAIGN_EMAIL_BACKEND", "CAMPAIGN_FILE_PATH", "DEBUG")
        }
    )
    create_database(arguments.database_url)
    setup_django(arguments.database_url)
    from django.core.management import call_command
    from django.db.models import Max
    from django.utils import timezone

    from campaigns.models import CampaignRun, Delivery, DeliveryBatch
    from campaigns.services.runs import batches_enqueue, runs_complete
    from campaigns.tasks import enqueue_batches

    call_command("migrate", verbosity=0)
    ids = build_contacts(arguments.contacts)
    segment = audience_segment(ids)
    message, version = save_content()
    log(f"template: {len(version.prepared_html):,} characters prepared")
    forget_earlier_runs()
    load_before = load()
    one_connection_seconds, one_connection_steps = plan_on_one_connection(segment, message)
    emit(
        figure="send_plan_one_connection",
        seconds=round(one_connection_seconds, 2),
        steps=one_connection_steps,
        load_before=load_before,
        load_after=load(),
    )
    outbox = Path(arguments.outbox)
    shutil.rmtree(outbox, ignore_errors=True)

    campaign, run = one_off_email(name=f"Benchmark send: {len(ids):,}", segment=segment, message=message)

    workers = start_workers(arguments)
    try:
        load_before = load()
        planned, plan_seconds, plan_steps = plan_timed(run.pk)
        emit(
            figure="send_plan",
            seconds=round(plan_seconds, 2),
            target_seconds=10,
            met=plan_seconds <= 10,
            one_connection_seconds=round(one_connection_seconds, 2),
            steps=plan_steps,
            audience=len(ids),
            planned=planned.planned,
            held_out=planned.held_out,
            excluded=planned.excluded,
            batches=planned.batches,
            load_before=load_before,
            load_after=load(),
        )

        sampler = MemorySampler([worker.pid for worker in workers])
        sampler.start()
        load_before = load()
        first_enqueued = timezone.now()
        started = time.perf_counter()
        enqueued = batches_enqueue(enqueue=enqueue_batches)
        enqueue_seconds = time.perf_counter() - started
        batches = DeliveryBatch.objects.filter(run=run)
        wait_for(
            lambda: not batches.exclude(status=DeliveryBatch.Status.DONE).exists(),
            timeout=max(600, len(ids) / 200),
            what="the send",
        )
        last_done = batches.aggregate(last=Max("done_at"))["last"]
        sampler.stopping.set()
        sampler.join()
        load_after = load()
        runs_complete()
        seconds = (last_done - first_enqueued).total_seconds()
        sent = Delivery.objects.filter(run=run, status=Delivery.Status.SENT).count()
        files = files_in(outbox / "email")
        if sent != planned.planned or files != sent:
            raise SystemExit(f"benchmark stopped: {planned.planned} planned, {sent} sent, {files} files written")
        rate = sent / seconds
        emit(
            figure="send_pipeline",
            messages_per_second=round(rate),
            seconds=round(seconds, 2),
            sent=sent,
            batches=enqueued,
            enqueue_seconds=round(enqueue_seconds, 2),
            target_messages_per_second=5000,
            met=rate >= 5000,
            workers=len(workers),
            load_before=load_before,
            load_after=load_after,
        )
        peaks = [peak_memory_mb(worker.pid) for worker in workers]
        emit(
            figure="send_worker_memory",
            peak_mb=max(peaks),
            vm_hwm_mb=peaks,
            sampled_rss_mb=[round(value, 1) for value in sampler.peak.values()],
            target_mb=300,
            met=max(peaks) <= 300,
        )

        # The baseline: the first treated contacts of the slice, once more, one task each.
        naive_run = CampaignRun.objects.create(
            campaign=campaign,
            occurrence="naive",
            scheduled_for=timezone.now(),
            status=CampaignRun.Status.SENDING,
        )
        slice_ids = list(
            Delivery.objects.filter(run=run, status=Delivery.Status.SENT)
            .order_by("contact_id")
            .values_list("contact_id", flat=True)[: arguments.naive_slice]
        )
        load_before = load()
        started = time.perf_counter()
        for contact_id in slice_ids:
            naive_send_one.delay(naive_run.pk, contact_id, version.pk)
        naive_deliveries = Delivery.objects.filter(run=naive_run, status=Delivery.Status.SENT)
        wait_for(
            lambda: naive_deliveries.count() >= len(slice_ids), timeout=max(600, len(slice_ids)), what="the naive send"
        )
        naive_seconds = time.perf_counter() - started
        load_after = load()
        naive_rate = len(slice_ids) / naive_seconds
        emit(
            figure="send_naive",
            messages_per_second=round(naive_rate, 1),
            seconds=round(naive_seconds, 2),
            sent=len(slice_ids),
            ours_messages_per_second=round(rate),
            ratio=round(rate / naive_rate, 1),
            target_ratio=20,
            met=rate / naive_rate >= 20,
            load_before=load_before,
            load_after=load_after,
        )
        CampaignRun.objects.filter(pk=naive_run.pk).update(status=CampaignRun.Status.COMPLETED)
    finally:
        stop_workers(workers)
    shutil.rmtree(outbox, ignore_errors=True)


if __name__ == "__main__":
    main()
