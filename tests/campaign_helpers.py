"""Building blocks for the delivery-layer tests: contacts that may be mailed, a message with its
templates, a campaign ready to activate, and running the dispatcher the way beat and the workers do."""

from __future__ import annotations

import itertools

from django.test import TestCase

from audiences.models import Identity, Segment, SegmentMember
from audiences.services.consents import consent_record
from campaigns.channels import locmem
from campaigns.services import campaign_activate, campaign_create
from campaigns.services.runs import dispatch_tick
from campaigns.services.sending import batch_send
from content.models import Template
from content.services import template_version_create
from tests.factories import ContactFactory, GoalFactory, MessageFactory, SegmentFactory, TemplateFactory

_numbers = itertools.count(1)

EMAIL_HTML = (
    "<html><body><p>Hallo {{ contact.first_name }},</p>"
    '<p><a href="https://shop.example.nl/najaar">Bekijk de actie</a></p>'
    '<p><a href="{{ links.unsubscribe }}">Afmelden</a></p></body></html>'
)


def customer(*, email=True, phone=False, consent=("email",), **fields):
    """A contact with an email address (and phone number), and consent for the channels named."""
    contact = ContactFactory(**fields)
    number = next(_numbers)
    if email:
        Identity.objects.create(contact=contact, kind=Identity.Kind.EMAIL, value=f"klant{number}@example.nl")
    if phone:
        Identity.objects.create(contact=contact, kind=Identity.Kind.PHONE, value=f"+3161{number:07d}")
    for channel in consent:
        consent_record(contact=contact, channel=channel, status="granted", source="test")
    return contact


def static_segment(contacts, name=None):
    segment = SegmentFactory(name=name or f"Lijst {next(_numbers)}", kind=Segment.Kind.STATIC, rules={})
    SegmentMember.objects.bulk_create([SegmentMember(segment=segment, contact=contact) for contact in contacts])
    return segment


def message_with(*, email=True, sms=False, script=False, html=EMAIL_HTML, name=None):
    message = MessageFactory(**({"name": name} if name else {}))
    if email:
        template = TemplateFactory(message=message, channel=Template.Channel.EMAIL)
        template_version_create(
            template=template,
            language="nl",
            subject="Najaarsactie voor {{ contact.first_name }}",
            html=html,
        )
    if sms:
        template = TemplateFactory(message=message, channel=Template.Channel.SMS)
        template_version_create(template=template, language="nl", text="Hoi {{ contact.first_name }}, 20% korting!")
    if script:
        template = TemplateFactory(message=message, channel=Template.Channel.SCRIPT)
        template_version_create(
            template=template,
            language="nl",
            text="Goedemiddag {{ contact.first_name }}.",
            talking_points="Najaarsactie\nGratis bezorging",
            offer_pitch="20% korting",
        )
    return message


def campaign_for(contacts, *, channels=("email",), message=None, goal=None, **fields):
    """A draft campaign for these contacts, with a goal that measures everyone."""
    segment = static_segment(contacts)
    return campaign_create(
        name=fields.pop("name", f"Campagne {next(_numbers)}"),
        goal=goal or GoalFactory(),
        message=message
        or message_with(email="email" in channels, sms="sms" in channels, script="callcenter" in channels),
        channels=list(channels),
        include_segments=[segment],
        **fields,
    )


def send_everything(*, now=None, worker="test-worker", rounds=5):
    """Tick, then send every batch the tick enqueued, as beat and the workers would; again until quiet."""
    sent_batches = []
    for _round in range(rounds):
        enqueued = []
        # The batches are enqueued once the tick commits; inside a test's transaction, at its end.
        with TestCase.captureOnCommitCallbacks(execute=True):
            dispatch_tick(enqueue=enqueued.extend, now=now)
        if not enqueued:
            break
        for batch_id in enqueued:
            sent_batches.append(batch_send(batch_id=batch_id, worker=worker))
    with TestCase.captureOnCommitCallbacks(execute=True):
        dispatch_tick(enqueue=lambda ids: None, now=now)
    return sent_batches


def tick(*, now=None):
    """One dispatcher tick; the batch ids it enqueued."""
    enqueued = []
    with TestCase.captureOnCommitCallbacks(execute=True):
        dispatch_tick(enqueue=enqueued.extend, now=now)
    return enqueued


def activated(campaign, user=None, now=None):
    return campaign_activate(campaign=campaign, user=user, now=now)


def outbox():
    return locmem.outbox


def campaign_form_data(campaign, **changes):
    """What the campaign page posts for `campaign` as it is, with `changes` (the variants inline empty)."""
    data = {
        "name": campaign.name,
        "description": campaign.description,
        "goal": campaign.goal_id or "",
        "experiment": campaign.experiment_id or "",
        "kind": campaign.kind,
        "message": campaign.message_id or "",
        "channels": ",".join(campaign.channels),
        "include_segments": [segment.pk for segment in campaign.include_segments.all()] if campaign.pk else [],
        "exclude_segments": [segment.pk for segment in campaign.exclude_segments.all()] if campaign.pk else [],
        "trigger_filters": "{}",
        "trigger_delay": "0",
        "stop_event_types": "",
        "holdout_percent": str(campaign.holdout_percent),
        "holdout_off_reason": campaign.holdout_off_reason,
        "variant_test_percent": str(campaign.variant_test_percent),
        "variant_test_hours": str(campaign.variant_test_hours),
        "variants-TOTAL_FORMS": "0",
        "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "0",
        "variants-MAX_NUM_FORMS": "1000",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}
