"""The agent console at /agent/: a callcenter agent finds the customer on the line, sees a compact
profile beside the ranked offers with their scripts and reasons, records the customer's answer,
and works through the call list, with the keyboard alone if they like (campaigns/agent.js).

Server-rendered forms: every answer is a POST with its CSRF token that redirects back to the
customer, where a new decision is made. Each answer form carries a request id generated when the
page was rendered, so a double-clicked accept records one response. The views only parse the
request and call the decision, the response service, the call list's outcome service or the
console's selectors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from audiences.models import Channel, ConsentChange
from campaigns.channels.callcenter import call_outcome_record
from campaigns.models import OfferChannel, OfferResponse
from campaigns.offers.api import USE_PERMISSION
from campaigns.offers.decisions import ContactNotFound, contact_lookup, offer_decide
from campaigns.offers.selectors import (
    agent_contact_key,
    agent_profile,
    call_list_entry,
    call_list_item,
    call_list_next,
    call_list_open_count,
)
from campaigns.offers.services import ResponseConflict, offer_response_record

OFFERS_SHOWN = 3  # as the API's default: the agent talks about a few, not a catalogue
REASON_MAX_LENGTH = OfferResponse._meta.get_field("reason").max_length or 500
OUTCOMES = (OfferResponse.Outcome.ACCEPTED, OfferResponse.Outcome.REJECTED, OfferResponse.Outcome.LATER)

# How a call from the call list went, in the agent's words; the code goes into the customer's history.
CALL_OUTCOMES = (
    ("interested", gettext_lazy("Interested")),
    ("not_interested", gettext_lazy("Not interested")),
    ("call_back", gettext_lazy("Call back later")),
    ("no_answer", gettext_lazy("No answer")),
    ("wrong_number", gettext_lazy("Wrong number")),
)

# Reasons agents often hear, offered as suggestions beside a free text.
REJECT_REASONS = (
    gettext_lazy("Too expensive"),
    gettext_lazy("No need"),
    gettext_lazy("Already has it"),
    gettext_lazy("No time now"),
)


def agents_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous visitors log in at the admin's login page first; users without the next-best-offer
    permission (the Callcenter agent role and administrators have it) get a 403."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not request.user.has_perm(USE_PERMISSION):
            raise PermissionDenied(_("Only callcenter agents may use the agent console."))
        return view(request, *args, **kwargs)

    return checked


def _search_lookup(query: str) -> tuple[str, Any]:
    """What the agent typed, as a lookup: a contact key, an e-mail address (it has an @), or else a
    phone number. Raises ValueError saying what is wrong with it."""
    try:
        return contact_lookup(contact_key=uuid.UUID(query))
    except ValueError:
        pass
    if "@" in query:
        return contact_lookup(email=query)
    return contact_lookup(phone=query)


def _customer_url(contact_key: Any, item_id: int | None = None) -> str:
    url = reverse("agent:customer", kwargs={"contact_key": contact_key})
    return f"{url}?{urlencode({'item': item_id})}" if item_id else url


def _item_id(value: str | None) -> int | None:
    """A positive id from the form or the query string, or None for anything else."""
    return int(value) if value and value.isascii() and value.isdigit() and len(value) <= 18 else None


def _error_messages(error: ValidationError) -> list[str]:
    return [str(message) for message in error.messages]


@never_cache
@require_safe
@agents_only
def console(request: HttpRequest) -> HttpResponse:
    """The start page and the search: a customer found goes to their page; otherwise the search is
    shown again with what went wrong."""
    query = (request.GET.get("q") or "").strip()
    problem = None
    if query:
        try:
            lookup, value = _search_lookup(query)
        except ValueError as error:
            problem = str(error)
        else:
            contact_key = agent_contact_key(lookup=lookup, value=value)
            if contact_key is not None:
                return redirect(_customer_url(contact_key))
            problem = {
                "contact_key": _("No customer is known by the contact key %(value)s."),
                "email": _("No customer is known by the e-mail address %(value)s."),
                "phone": _("No customer is known by the phone number %(value)s."),
            }[lookup] % {"value": value}
    return render(
        request,
        "campaigns/agent/console.html",
        {"query": query, "problem": problem, "open_calls": call_list_open_count()},
    )


def _consents(stored: dict[str, tuple[str, Any]]) -> list[dict[str, Any]]:
    consents = []
    for channel in Channel:
        status, changed_at = stored.get(channel.value, ("unknown", None))
        label = ConsentChange.Status(status).label if status in ConsentChange.Status.values else _("Unknown")
        consents.append(
            {
                "channel": channel.value,
                "label": channel.label,
                "status": status,
                "status_label": label,
                "at": changed_at,
            }
        )
    return consents


@never_cache
@require_safe
@agents_only
def customer(request: HttpRequest, contact_key: uuid.UUID) -> HttpResponse:
    """The customer on the line: a new decision (its ranked offers, scripts and reasons), the
    profile, and the call-list item being worked on (`?item=`)."""
    try:
        decision = offer_decide(
            lookup="contact_key",
            value=contact_key,
            channel=OfferChannel.CALLCENTER,
            limit=OFFERS_SHOWN,
            agent=request.user,
        )
    except ContactNotFound:
        problem = _("No customer is known by the contact key %(value)s.") % {"value": contact_key}
        context = {"query": "", "problem": problem, "open_calls": call_list_open_count()}
        return render(request, "campaigns/agent/console.html", context, status=404)
    contact_id = decision.contact["id"]
    profile = agent_profile(contact_id=contact_id, exclude_decision_id=decision.id)
    item_id = _item_id(request.GET.get("item"))
    item = call_list_entry(item_id=item_id, contact_id=contact_id) if item_id else None
    offers = [
        {
            "number": number,
            "ranked": ranked,
            "request_ids": {outcome.value: uuid.uuid4() for outcome in OUTCOMES},
        }
        for number, ranked in enumerate(decision.offers, start=1)
    ]
    outcome_labels = dict(OfferResponse.Outcome.choices)
    name = f"{decision.contact['first_name'] or ''} {decision.contact['last_name'] or ''}".strip()
    return render(
        request,
        "campaigns/agent/customer.html",
        {
            "query": "",
            "decision": decision,
            "contact": decision.contact,
            "name": name,
            "profile": profile,
            "consents": _consents(profile.consents),
            "offers": offers,
            "item": item,
            "call_outcomes": CALL_OUTCOMES,
            "reject_reasons": REJECT_REASONS,
            "reason_max_length": REASON_MAX_LENGTH,
            "earlier_offers": [
                {"offer": earlier, "outcome_label": outcome_labels.get(earlier.outcome or "", "")}
                for earlier in profile.earlier_offers
            ],
        },
    )


@require_POST
@agents_only
def respond(request: HttpRequest, contact_key: uuid.UUID) -> HttpResponse:
    """The customer's answer to an offer on the page (accepted, rejected with a reason, or later);
    back to the customer, where a new decision shows what changed."""
    data = request.POST
    back = redirect(_customer_url(contact_key, _item_id(data.get("item"))))
    outcome = data.get("outcome", "")
    reason = data.get("reason", "").strip()
    request_id = data.get("client_request_id", "").strip()
    decision_id, offer_id = _item_id(data.get("decision")), _item_id(data.get("offer"))
    if decision_id is None or offer_id is None or not request_id or len(request_id) > 100:
        messages.error(request, _("The answer was not recorded: the form was incomplete. Please try again."))
        return back
    if outcome == OfferResponse.Outcome.REJECTED and not reason:
        messages.error(request, _("Say why the customer rejected the offer."))
        return back
    if len(reason) > REASON_MAX_LENGTH:
        messages.error(
            request, _("A reason has at most %(max)d characters: please shorten it.") % {"max": REASON_MAX_LENGTH}
        )
        return back
    try:
        recorded = offer_response_record(
            decision_id=decision_id,
            offer_id=offer_id,
            outcome=outcome,
            agent=request.user,
            client_request_id=request_id,
            reason=reason,
        )
    except ValidationError as error:
        for message in _error_messages(error):
            messages.error(request, message)
        return back
    except ResponseConflict as error:
        messages.error(request, str(error))
        return back
    response = recorded.response
    offer = response.offer
    if not recorded.created:
        messages.info(request, _("The answer to “%(offer)s” was recorded already.") % {"offer": offer.name})
    elif response.outcome == OfferResponse.Outcome.ACCEPTED:
        accepted = _("“%(offer)s” accepted.") % {"offer": offer.name}
        if offer.code:
            accepted = _("“%(offer)s” accepted: the customer's code is %(code)s.") % {
                "offer": offer.name,
                "code": offer.code,
            }
        messages.success(request, accepted)
    elif response.outcome == OfferResponse.Outcome.REJECTED:
        messages.success(
            request, _("“%(offer)s” rejected: %(reason)s.") % {"offer": offer.name, "reason": response.reason}
        )
    else:
        messages.success(request, _("“%(offer)s” for later: it may be offered again.") % {"offer": offer.name})
    return back


@require_POST
@agents_only
def next_call(request: HttpRequest) -> HttpResponse:
    """The oldest open item on the call list: its customer, with the item's campaign and script."""
    found = call_list_next()
    if found is None:
        messages.info(request, _("The call list is empty: there is no one left to call."))
        return redirect("agent:console")
    item_id, contact_key = found
    return redirect(_customer_url(contact_key, item_id))


@require_POST
@agents_only
def call_outcome(request: HttpRequest, item_id: int) -> HttpResponse:
    """Close a call-list item with how the call went; back to the customer."""
    item = call_list_item(item_id=item_id)
    if item is None:
        messages.error(request, _("This call is no longer on the call list."))
        return redirect("agent:console")
    outcome = request.POST.get("outcome", "")
    known = dict(CALL_OUTCOMES)
    if outcome not in known:
        messages.error(request, _("Choose how the call went."))
        return redirect(_customer_url(item.contact.contact_key, item.pk))
    try:
        call_outcome_record(item=item, outcome=outcome, agent=request.user)
    except ValidationError as error:
        for message in _error_messages(error):
            messages.error(request, message)
        return redirect(_customer_url(item.contact.contact_key, item.pk))
    messages.success(
        request,
        _("Call recorded: %(outcome)s. Press n for the next call.") % {"outcome": known[outcome]},
    )
    return redirect(_customer_url(item.contact.contact_key))
