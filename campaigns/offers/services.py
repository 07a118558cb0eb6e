"""Writing offers and what customers answered to them.

- `offer_save`: an offer checked and saved with its measurement (a goals experiment against its
  campaign's goal, with the offer's holdout), like a campaign's;
- `offer_response_record`: an agent's accept, reject or "later" for an offer presented in a
  decision; once per request id, once per accept or reject; it counts for the offer's learned
  propensity and its daily capacity and goes into the customer's history as an event;
- `offer_assignments_record`: the contacts each offer was the top offer for, recorded in its
  measurement (treatment: presented; holdout: "would have presented"), so that its uplift on the
  goal is measured as a campaign's is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from audiences.models import Contact, Event
from audiences.services.events import EventIn, event_record
from campaigns.models import Offer, OfferDay, OfferDecision, OfferDecisionItem, OfferResponse
from campaigns.offers.catalogue import catalogue_forget, live_offers
from campaigns.offers.journal import journal_flush
from goals.experiments import experiment_assign, experiment_create, experiment_holdout_off, experiment_holdout_set

# A decision older than this cannot be answered: ask for a new one.
DECISION_VALID_FOR = dt.timedelta(hours=24)
# Decisions younger than this may still be on their way to the table (written behind the answer);
# a tick reads this far back before where the last one stopped, for one that came in late.
ASSIGN_SETTLE = dt.timedelta(minutes=1)
ASSIGN_OVERLAP = dt.timedelta(minutes=10)
REASON_MAX = OfferResponse._meta.get_field("reason").max_length or 500
REQUEST_ID_MAX = OfferResponse._meta.get_field("client_request_id").max_length or 100


class ResponseConflict(Exception):
    """The response cannot be recorded as it stands (already answered, offer ended, capacity used);
    the message says why. Nothing was written."""


def offer_problems(*, offer: Offer) -> dict[str, list[str]]:
    """What is wrong with the offer, by field: the script must be a callcenter script, the follow-up
    an email or SMS, its campaign must serve a goal, a score source needs the score's name."""
    problems: dict[str, list[str]] = {}
    if offer.script_id and offer.script.channel != "script":
        problems.setdefault("script", []).append(_("Choose a callcenter script."))
    if offer.follow_up is not None and offer.follow_up.channel not in ("email", "sms"):
        problems.setdefault("follow_up", []).append(_("A follow-up is an email or an SMS."))
    if offer.campaign_id and offer.campaign.goal_id is None:
        problems.setdefault("campaign", []).append(
            _("This campaign serves no goal yet: an offer is measured against its campaign's goal.")
        )
    if offer.propensity_source == Offer.Propensity.SCORE and not offer.propensity_score:
        problems.setdefault("propensity_score", []).append(_("Name the score the propensity comes from."))
    experiment = offer.experiment if offer.experiment_id else None
    if (
        experiment is not None
        and experiment.holdout_percent != offer.holdout_percent
        and (experiment.split_fixed_at is not None or experiment.assignments.exists())
    ):
        problems.setdefault("holdout_percent", []).append(
            _(
                "Agents have been deciding with this holdout (%(percent)s%%), so it can no longer change: "
                "groups picked with different shares cannot be compared. Make a new offer instead."
            )
            % {"percent": experiment.holdout_percent}
        )
    if offer.holdout_percent == 0 and not offer.holdout_off_reason.strip():
        problems.setdefault("holdout_off_reason", []).append(
            _("Say why this offer has no holdout: without one, its effect cannot be measured.")
        )
    return problems


def offer_save(*, offer: Offer, user: Any = None) -> Offer:
    """Check and save the offer; a new offer gets its measurement, a changed holdout changes it
    (refused once contacts were assigned: a new share is a new measurement)."""
    offer.full_clean()
    problems = offer_problems(offer=offer)
    if problems:
        raise ValidationError(problems)
    with transaction.atomic():
        experiment = offer.experiment
        if experiment is None:
            assert offer.campaign.goal is not None  # noqa: S101 - checked by offer_problems
            experiment = experiment_create(
                goal=offer.campaign.goal,
                name=_("Offer: %(name)s") % {"name": offer.name},
                holdout_percent=offer.holdout_percent or Decimal(10),
            )
            if offer.holdout_percent == 0:
                experiment = experiment_holdout_off(experiment=experiment, reason=offer.holdout_off_reason, user=user)
            offer.experiment = experiment
        elif experiment.holdout_percent != offer.holdout_percent:
            if offer.holdout_percent == 0:
                experiment_holdout_off(experiment=experiment, reason=offer.holdout_off_reason, user=user)
            else:
                experiment_holdout_set(experiment=experiment, percent=offer.holdout_percent)
        offer.save()
    # Now, for this request's next decision, and again once saved: a decision made in between would
    # have built the catalogue from the offer as it was.
    catalogue_forget()
    transaction.on_commit(catalogue_forget)
    return offer


@dataclass(frozen=True)
class Recorded:
    response: OfferResponse
    created: bool  # False: a retried request, answered with what the first one recorded


def _when(moment: dt.datetime) -> str:
    return formats.date_format(timezone.localtime(moment), "j F H:i")


def offer_response_record(
    *,
    decision_id: int,
    offer_id: int,
    outcome: str,
    agent: Any,
    client_request_id: str,
    reason: str = "",
    now: dt.datetime | None = None,
) -> Recorded:
    """Record the customer's answer to an offer presented in a decision.

    A request id seen before returns what it recorded (a retried POST records one response).
    Refused with a ValidationError (naming the field) when the decision is unknown or too old, or
    the offer was not presented in it; with a ResponseConflict when the offer ended, was already
    accepted or rejected in this decision, or (an accept) its capacity for today is used.
    """
    now = now or timezone.now()
    if outcome not in OfferResponse.Outcome.values:
        raise ValidationError({"outcome": _("Choose accepted, rejected or later.")})
    reason = reason.strip()
    for field_name, text in (("reason", reason), ("client_request_id", client_request_id)):
        if "\x00" in (text or ""):
            raise ValidationError({field_name: _("It contains a NUL character.")})
    if len(reason) > REASON_MAX:
        raise ValidationError({"reason": _("A reason has at most %(max)d characters.") % {"max": REASON_MAX}})
    if not client_request_id or len(client_request_id) > REQUEST_ID_MAX:
        raise ValidationError(
            {"client_request_id": _("Give a request id of 1 to %(max)d characters.") % {"max": REQUEST_ID_MAX}}
        )
    earlier = OfferResponse.objects.filter(client_request_id=client_request_id).first()
    if earlier is not None:
        return _same_request(earlier, decision_id=decision_id, offer_id=offer_id, outcome=outcome)
    decision = OfferDecision.objects.filter(pk=decision_id).first()
    if decision is None:
        journal_flush()  # it may be this process's, queued a moment ago
        decision = OfferDecision.objects.filter(pk=decision_id).first()
    if decision is None:
        raise ValidationError({"decision": _("There is no decision %(id)s.") % {"id": decision_id}})
    if decision.created_at < now - DECISION_VALID_FOR:
        raise ValidationError(
            {
                "decision": _("Decision %(id)s is from %(when)s: ask for a new one.")
                % {"id": decision_id, "when": _when(decision.created_at)}
            }
        )
    item = OfferDecisionItem.objects.filter(decision=decision, offer_id=offer_id, presented=True).first()
    if item is None:
        raise ValidationError(
            {
                "offer": _("Offer %(offer)s was not presented in decision %(id)s.")
                % {"offer": offer_id, "id": decision_id}
            }
        )
    offer = live_offers(now).filter(pk=offer_id).first()  # live_offers leaves out the ended ones
    if offer is None:
        offer = Offer.objects.get(pk=offer_id)
        ended = (
            _("ended on %(when)s") % {"when": _when(offer.ends_at)}
            if offer.ends_at and offer.ends_at <= now
            else _("is no longer live")
        )
        raise ResponseConflict(
            _("Offer “%(offer)s” %(ended)s: it cannot be answered any more.") % {"offer": offer.name, "ended": ended}
        )
    try:
        with transaction.atomic():
            final = OfferResponse.objects.filter(
                decision=decision,
                offer=offer,
                outcome__in=[OfferResponse.Outcome.ACCEPTED, OfferResponse.Outcome.REJECTED],
            ).first()
            if final is not None:
                raise ResponseConflict(
                    _("Offer “%(offer)s” was already %(outcome)s in this decision, at %(when)s.")
                    % {
                        "offer": offer.name,
                        "outcome": final.get_outcome_display().lower(),
                        "when": _when(final.created_at),
                    }
                )
            if outcome == OfferResponse.Outcome.ACCEPTED and offer.daily_capacity is not None:
                _take_capacity(offer=offer, now=now)
            response = OfferResponse.objects.create(
                decision=decision,
                offer=offer,
                contact_id=decision.contact_id,
                outcome=outcome,
                reason=reason,
                agent=agent if getattr(agent, "is_authenticated", False) else None,
                client_request_id=client_request_id,
                created_at=now,
            )
            if outcome != OfferResponse.Outcome.LATER:
                Offer.objects.filter(pk=offer.pk).update(
                    responses=F("responses") + 1,
                    accepts=F("accepts") + (1 if outcome == OfferResponse.Outcome.ACCEPTED else 0),
                )
            response.event_id = _event(response=response, offer=offer, agent=agent, now=now)
            response.save(update_fields=["event_id"])
    except IntegrityError:
        # The same request, or a second accept of the same offer, committed just before ours.
        earlier = OfferResponse.objects.filter(client_request_id=client_request_id).first()
        if earlier is not None:
            return _same_request(earlier, decision_id=decision_id, offer_id=offer_id, outcome=outcome)
        raise ResponseConflict(
            _("Offer “%(offer)s” was already answered in this decision.") % {"offer": offer.name}
        ) from None
    return Recorded(response=response, created=True)


def _same_request(earlier: OfferResponse, *, decision_id: int, offer_id: int, outcome: str) -> Recorded:
    if (earlier.decision_id, earlier.offer_id, earlier.outcome) != (decision_id, offer_id, outcome):
        raise ValidationError(
            {"client_request_id": _("This request id was used for another response: use a new one for each response.")}
        )
    return Recorded(response=earlier, created=False)


def _take_capacity(*, offer: Offer, now: dt.datetime) -> None:
    """One of today's accepts, or a ResponseConflict when they are all taken: a conditional
    increment, so that two agents cannot both take the last one."""
    day = timezone.localdate(now)
    OfferDay.objects.get_or_create(offer=offer, day=day)
    taken = OfferDay.objects.filter(offer=offer, day=day, accepts__lt=offer.daily_capacity).update(
        accepts=F("accepts") + 1
    )
    if not taken:
        raise ResponseConflict(
            _(
                "Offer “%(offer)s” has been accepted %(max)d times today, its capacity: "
                "it cannot be accepted again today."
            )
            % {"offer": offer.name, "max": offer.daily_capacity}
        )


def _event(*, response: OfferResponse, offer: Offer, agent: Any, now: dt.datetime) -> int:
    accepted = response.outcome == OfferResponse.Outcome.ACCEPTED
    return event_record(
        item=EventIn(
            type=Event.Type.OFFER_RESPONSE,
            occurred_at=now,
            contact_key=Contact.objects.filter(pk=response.contact_id).values_list("contact_key", flat=True).first(),
            properties={
                "offer": offer.name,
                "offer_id": offer.pk,
                "outcome": response.outcome,
                "reason": response.reason,
                "decision_id": response.decision_id,
                "campaign_id": offer.campaign_id,
            },
            value=offer.value if accepted else None,
            currency="EUR" if accepted else "",
            external_id=f"offer-response-{response.pk}",
        ),
        source="callcenter",
        user=agent,
    )


def offer_assignments_record(*, now: dt.datetime | None = None) -> int:
    """Record, in each offer's measurement, the contacts it was the top offer for: presented
    (treatment) or held out. The group follows from the same bucket the decision used, so it is
    the one the decision acted on.

    Decisions are written behind the answer, by several processes, so they do not arrive in the
    order of their ids or times: each tick takes the decisions older than ASSIGN_SETTLE, and reads
    again the ASSIGN_OVERLAP before where the last tick stopped, for one that came in late. Safe to
    run twice: assigned contacts keep their group. Returns the contacts added."""
    now = now or timezone.now()
    until = now - ASSIGN_SETTLE
    added = 0
    for offer in Offer.objects.filter(experiment__isnull=False).select_related("experiment"):
        experiment = offer.experiment
        assert experiment is not None  # noqa: S101 - filtered above
        with transaction.atomic():
            locked = Offer.objects.select_for_update(skip_locked=True).filter(pk=offer.pk).first()
            if locked is None:
                continue  # another tick is recording this offer
            tops = OfferDecisionItem.objects.filter(offer=offer, rank=1, created_at__lt=until)
            if locked.assigned_until is not None:
                tops = tops.filter(created_at__gte=locked.assigned_until - ASSIGN_OVERLAP)
            contacts = Contact.objects.filter(pk__in=tops.values("contact_id"))
            result = experiment_assign(experiment=experiment, contacts=contacts, now=now)
            added += result.treatment + result.holdout
            Offer.objects.filter(pk=offer.pk).update(assigned_until=until)
    return added
