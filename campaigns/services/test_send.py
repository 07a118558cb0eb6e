"""Test-send: a campaign's messages, rendered exactly as a real send renders them (the same
Composer, the same template version for the contact's language, tracked links and headers), sent
through the configured channel backend to a few addresses the marketeer gives.

A test is no delivery: nothing is written to the delivery table, so it counts for no frequency
cap, no goal and no funnel; its tracked links point at no delivery (id 0), so a click on one is
redirected but recorded nowhere. It is logged with who sent it. What differs from the real
message, on purpose:

- the subject (an SMS: its text) starts with "[TEST]", and an A/B/n variant's name follows it;
- the email has no `List-Unsubscribe-Post` header: a mailbox provider's one-click unsubscribe
  button would otherwise withdraw the consent of the contact the test is personalised as (the
  unsubscribe link itself stays, and its page asks before it withdraws anything);
- it goes to the addresses given, never to the contact's own.

Email addresses get the campaign's email, phone numbers its SMS. The callcenter (the agents' call
list), direct mail (the print file) and webhooks (another system) take no test: a test there would
land in the agents' queue, the mailing house's file or another company's CRM.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from audiences.identities import InvalidIdentity, normalise_email, normalise_phone
from audiences.models import Contact
from audiences.segments import RuleError
from campaigns.channels import channel_backend, channel_configured
from campaigns.channels.base import OutboundMessage, Result
from campaigns.models import Campaign, DeliveryChannel
from campaigns.selectors import campaign_audience
from campaigns.services.lifecycle import TEMPLATE_CHANNEL
from campaigns.services.sending import Composer
from content.models import Template
from content.rendering.context import sample_context
from content.rendering.errors import RenderError, TemplateSourceError
from content.services import template_problems

logger = logging.getLogger(__name__)

MAX_ADDRESSES = 20
TESTABLE_CHANNELS = (DeliveryChannel.EMAIL, DeliveryChannel.SMS)
TEST_PREFIX = "[TEST]"
# The delivery id a test's tracked links carry: no delivery has it, so nothing is recorded.
NO_DELIVERY = 0
# The placeholder profile's key: its personal links lead to the "not found" page.
PLACEHOLDER_KEY = uuid.UUID(int=0)


@dataclass(frozen=True)
class AddressLine:
    line: int
    address: str
    channel: str


@dataclass(frozen=True)
class SendOutcome:
    address: str
    channel: str
    variant: str  # the variant's name; empty without variants
    sent: bool
    detail: str = ""  # why it failed
    subject: str = ""


def _channel_label(channel: str) -> str:
    return str(DeliveryChannel(channel).label)


def campaign_test_addresses(*, campaign: Campaign, addresses: Iterable[str]) -> list[AddressLine]:
    """The addresses, one a line: an email address gets the campaign's email, a phone number its
    SMS. Raises ValidationError on `addresses` naming each line that cannot be used and why."""
    lines = list(addresses)
    channels = set(campaign.channels)
    problems: list[str] = []
    found: dict[tuple[str, str], AddressLine] = {}
    for number, raw in enumerate(lines, start=1):
        value = raw.strip()
        if not value:
            continue
        if "@" in value:
            try:
                address, channel = normalise_email(value), DeliveryChannel.EMAIL
            except InvalidIdentity:
                problems.append(
                    _("Line %(line)s: “%(value)s” is not an email address.") % {"line": number, "value": value}
                )
                continue
        else:
            try:
                address, channel = normalise_phone(value), DeliveryChannel.SMS
            except InvalidIdentity:
                problems.append(
                    _("Line %(line)s: “%(value)s” is neither an email address nor a phone number.")
                    % {"line": number, "value": value}
                )
                continue
        if channel not in channels:
            problems.append(
                (
                    _("Line %(line)s: “%(value)s” is an email address, but this campaign sends no email.")
                    if channel == DeliveryChannel.EMAIL
                    else _("Line %(line)s: “%(value)s” is a phone number, but this campaign sends no SMS.")
                )
                % {"line": number, "value": value}
            )
            continue
        found.setdefault((channel, address), AddressLine(number, address, channel))
    if problems:
        raise ValidationError({"addresses": problems})
    if not found:
        raise ValidationError({"addresses": [_("Give at least one email address or phone number, one a line.")]})
    if len(found) > MAX_ADDRESSES:
        raise ValidationError(
            {
                "addresses": [
                    _("A test goes to at most %(max)s addresses at a time; these are %(count)s.")
                    % {"max": MAX_ADDRESSES, "count": len(found)}
                ]
            }
        )
    return list(found.values())


def campaign_test_contact(*, campaign: Campaign) -> Contact | None:
    """Whom a test is personalised as when nobody is chosen: the first contact of the audience;
    None when it has nobody (or cannot be read), and the sample profile is used instead."""
    if not campaign.include_segments.exists():
        return None
    try:
        return campaign_audience(campaign=campaign).order_by("pk").first()
    except RuleError:
        return None


def _placeholder_profile() -> dict[str, Any]:
    contact = sample_context()["contact"]
    return {
        "id": NO_DELIVERY,
        "contact_key": PLACEHOLDER_KEY,
        "first_name": contact["first_name"],
        "last_name": contact["last_name"],
        "locale": settings.LANGUAGE_CODE,
        "timezone": contact["timezone"],
        "created_at": contact["created_at"],
        "attributes": contact["attributes"],
        "scores": contact["scores"],
    }


def _messages(campaign: Campaign) -> list[tuple[str, int]]:
    """What the campaign sends, as (variant name, message id): its variants', or its one message."""
    variants = list(campaign.variants.order_by("pk").values_list("name", "message_id"))
    if variants:
        return variants
    if campaign.message_id is None:
        return []
    return [("", campaign.message_id)]


def _check(campaign: Campaign, channels: set[str], messages: list[tuple[str, int]]) -> None:
    """The checks a real send needs: a backend per channel, a message, and a template per channel
    that passes its checks. Raises ValidationError with the checks' own messages."""
    problems: list[str] = []
    for channel in sorted(channels):
        if not channel_configured(channel):
            problems.append(
                _("No backend is configured for the %(channel)s channel: ask an administrator to set one up.")
                % {"channel": _channel_label(channel)}
            )
    if not messages:
        problems.append(_("Choose the message the campaign sends."))
    templates = {
        (template.message_id, template.channel): template
        for template in Template.objects.filter(message_id__in=[message_id for _name, message_id in messages])
        .select_related("message")
        .order_by("pk")
    }
    for _name, message_id in messages:
        for channel in sorted(channels):
            needed = TEMPLATE_CHANNEL[DeliveryChannel(channel)]
            template = templates.get((message_id, needed))
            if template is None:
                problems.append(
                    _("The message has no %(channel)s template.") % {"channel": Template.Channel(needed).label.lower()}
                )
                continue
            problems.extend(f"{template}: {problem}" for problem in template_problems(template=template))
    if problems:
        raise ValidationError(problems)


def _as_test(message: OutboundMessage, *, to: str, variant: str) -> OutboundMessage:
    prefix = f"{TEST_PREFIX} [{variant}]" if variant else TEST_PREFIX
    headers = {
        name: value
        for name, value in message.headers.items()
        if name not in ("List-Unsubscribe-Post", "X-Dialoog-Delivery")
    }
    headers["X-Dialoog-Test"] = "1"
    return dataclasses.replace(
        message,
        to=to,
        idempotency_key=f"dialoog-test-{uuid.uuid4().hex}",
        subject=f"{prefix} {message.subject}" if message.subject else "",
        text=f"{prefix} {message.text}" if message.channel == DeliveryChannel.SMS else message.text,
        headers=headers,
    )


def campaign_test_send(
    *, campaign: Campaign, addresses: Iterable[str], contact: Contact | None = None, user: Any
) -> list[SendOutcome]:
    """Send the campaign's message(s) as a test: each address (one a line: email addresses get the
    email, phone numbers the SMS) gets every variant, personalised as `contact` (default: a contact
    of the audience, else the sample profile). Nothing is recorded as a delivery. Raises
    ValidationError, before anything is sent, for an address that cannot be used (naming its
    line), a channel without a backend, or a template that fails its checks or cannot be rendered
    for the contact. Returns each message's outcome: a backend's refusal is an outcome, not an
    error."""
    if contact is not None and contact.erased_at is not None:
        raise ValidationError({"contact": _("This contact was erased: choose another.")})
    parsed = campaign_test_addresses(campaign=campaign, addresses=addresses)
    channels = {address.channel for address in parsed}
    messages = _messages(campaign)
    _check(campaign, channels, messages)

    contact = contact if contact is not None else campaign_test_contact(campaign=campaign)
    contact_id = contact.pk if contact is not None else NO_DELIVERY
    composer = Composer(campaign, [contact_id] if contact is not None else [], channels)
    if contact is None:
        composer.profiles[NO_DELIVERY] = _placeholder_profile()
    elif contact_id not in composer.profiles:
        raise ValidationError({"contact": _("This contact was erased or merged away: choose another.")})

    rendered: dict[tuple[str, str], OutboundMessage] = {}
    for variant, message_id in messages:
        for channel in sorted(channels):
            delivery = {"id": NO_DELIVERY, "channel": channel, "contact_id": contact_id, "run_id": None}
            try:
                rendered[(variant, channel)] = composer.compose(delivery, message_id)
            except (RenderError, TemplateSourceError) as error:
                raise ValidationError(
                    str(error) or _("The template has no version for this contact's language.")
                ) from error

    outcomes: list[SendOutcome] = []
    for channel in sorted(channels):
        lines = [address for address in parsed if address.channel == channel]
        try:
            backend = channel_backend(channel)
            backend.open()
        except Exception as error:  # no backend, or the server is down: each address says why
            logger.warning("Test-send of campaign %s: the %s backend did not open", campaign.pk, channel, exc_info=True)
            outcomes.extend(
                SendOutcome(line.address, channel, variant, sent=False, detail=f"{type(error).__name__}: {error}")
                for line in lines
                for variant, _message_id in messages
            )
            continue
        try:
            for line in lines:
                for variant, _message_id in messages:
                    message = _as_test(rendered[(variant, channel)], to=line.address, variant=variant)
                    outcomes.append(_hand_over(backend, message, line, variant))
        finally:
            try:
                backend.close()
            except Exception:  # the messages were handed over; closing is tidying up
                logger.info("Closing the %s backend after a test failed", channel, exc_info=True)
    logger.info(
        "Test of campaign %s (%s) sent by %s at %s, personalised as %s: %s",
        campaign.pk,
        campaign.name,
        getattr(user, "get_username", lambda: str(user))(),
        timezone.now().isoformat(),
        contact.contact_key if contact is not None else "the sample profile",
        "; ".join(
            f"{outcome.channel} {outcome.address}{f' [{outcome.variant}]' if outcome.variant else ''}: "
            f"{'sent' if outcome.sent else outcome.detail}"
            for outcome in outcomes
        ),
    )
    return outcomes


def _hand_over(backend: Any, message: OutboundMessage, line: AddressLine, variant: str) -> SendOutcome:
    def outcome(sent: bool, detail: str = "") -> SendOutcome:
        return SendOutcome(line.address, line.channel, variant, sent=sent, detail=detail, subject=message.subject)

    try:
        results = backend.send_batch([message])
    except Exception as error:  # noqa: BLE001 - a backend raises only when it could not try: the test says why
        return outcome(False, f"{type(error).__name__}: {error}")
    result = next(iter(results), None)
    if result is None:
        return outcome(False, _("The channel reported no outcome."))
    return outcome(True) if result.result == Result.SENT else outcome(False, result.error)
