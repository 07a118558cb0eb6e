"""Building blocks for the next-best-offer tests: contacts an agent may call, and live offers."""

from __future__ import annotations

import itertools
from decimal import Decimal

from campaigns.models import Offer
from campaigns.offers.catalogue import catalogue_forget
from campaigns.offers.services import offer_save
from content.models import Template
from content.services import template_version_create
from tests.campaign_helpers import activated, campaign_for, customer
from tests.factories import MessageFactory, TemplateFactory

_numbers = itertools.count(1)


def caller(**fields):
    """A contact with a phone number and consent to be called (and emailed)."""
    fields.setdefault("consent", ("phone", "email"))
    return customer(phone=True, **fields)


def script(text="Goedemiddag {{ contact.first_name }}, {{ offer.name }}!", pitch="Nu {{ offer.price | currency }}"):
    template = TemplateFactory(message=MessageFactory(), channel=Template.Channel.SCRIPT)
    template_version_create(
        template=template, language="nl", text=text, talking_points="Vraag naar de tuin", offer_pitch=pitch
    )
    return template


def live_campaign():
    """A running campaign with a goal, for offers to belong to."""
    return activated(campaign_for([caller()], channels=("email",)))


def offer(*, name=None, value=100, campaign=None, segment=None, holdout=0, **fields):
    """A live offer, saved through the service (with its measurement). No holdout unless asked for,
    so that tests see the offer they expect; its reason is recorded."""
    fields.setdefault("propensity_source", Offer.Propensity.FIXED)
    fields.setdefault("propensity_default", 0.2)
    saved = offer_save(
        offer=Offer(
            name=name or f"Aanbod {next(_numbers)}",
            campaign=campaign or live_campaign(),
            script=fields.pop("script", None) or script(),
            segment=segment,
            value=Decimal(value),
            holdout_percent=Decimal(holdout),
            holdout_off_reason="" if holdout else "Test zonder holdout",
            **fields,
        )
    )
    catalogue_forget()
    return saved
