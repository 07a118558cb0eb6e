"""The next-best offer: which offers to make a contact now, ranked, each with its reason.

`offer_decide` answers in one read and one write:

1. **One query** (`catalogue`) reads the contact's profile, consent, scores, recent messages and
   offer history, and whether the contact is in each live offer's segment.
2. **Contact policies**, in Python on that row: erased contacts are not found; members of the
   global control group get no offers; the channel needs the contact's consent (phone for the
   callcenter); the frequency cap across campaigns counts the messages sent within its days,
   plus one per earlier day on which offers were presented.
3. **The offers' limits**: not after an accept; a cool-down after a reject; at most so many
   presentations per period; at most so many accepts a day (capacity).
4. **Arbitration**, one formula: score = propensity x context weight x value x lever (P x C x V x L).
   - propensity: the contact's score (by name), a rate learned from the offer's own accepts and
     rejects, `(accepts + 20 x default) / (responses + 20)` (the default counts as 20 responses,
     so the first few answers move it a little, many answers a lot), or the fixed default;
   - context weight: the product of the offer's weights that match the channel and the hour
     (1 when none does);
   - value: what an accept is worth, in euro; lever: the marketeer's weight.
   Ranked by score, highest first.
5. **Holdout**: when the contact is in the top offer's holdout (a stable share per offer, its
   measurement's), the top offer is recorded as "would have presented" and the next ones are
   presented instead.
6. The presented offers' scripts are rendered for the contact, and **one statement** records the
   decision with its offers and the reasons the others were left out.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.utils import formats, timezone
from django.utils.translation import get_language, gettext, ngettext

from audiences.identities import InvalidIdentity, normalise_email, normalise_phone
from audiences.models import Channel
from campaigns.models import OfferChannel
from campaigns.offers.catalogue import Catalogue, OfferSpec, offer_catalogue
from campaigns.offers.journal import DecisionRecord, decision_id_take, journal_record
from content.rendering.errors import RenderError, TemplateSourceError
from content.rendering.filters import currency
from content.selectors import Recommendations, context_from_profile, version_for_language
from content.services import template_render
from goals.experiments import holdout_bucket

logger = logging.getLogger(__name__)

LEARNED_PRIOR = 20  # how many responses the default propensity counts as
MAX_LIMIT = 10
CONSENT_FOR = {OfferChannel.CALLCENTER: Channel.PHONE, OfferChannel.EMAIL: Channel.EMAIL, OfferChannel.SMS: Channel.SMS}
DAY = 86_400


@functools.lru_cache(maxsize=2048)
def _translated(language: str | None, message: str) -> str:
    return gettext(message)


class _Language(threading.local):
    code: str | None = None


_deciding = _Language()  # the language of the decision this thread is making


def _(message: str) -> str:
    """gettext, remembered per language: a decision words a reason for each of 50-odd offers, and
    Django's gettext costs about 20 µs a call (asking for the active language alone 5)."""
    return _translated(_deciding.code or get_language(), message)


@functools.lru_cache(maxsize=16)
def _decimal_separator(language: str | None) -> str:
    return str(formats.get_format("DECIMAL_SEPARATOR"))


class ContactNotFound(Exception):
    """No contact for the key, e-mail address or phone number; the message says which."""


@dataclass
class Ranked:
    """An offer that passed the policies, with its score parts and the reason in words."""

    spec: OfferSpec
    propensity: float
    propensity_basis: str
    context_weight: float
    score: float
    explanation: str
    rank: int = 0
    presented: bool = True
    held_out: bool = False
    script: dict[str, Any] = field(default_factory=dict)


@dataclass
class LeftOut:
    offer_id: int
    name: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"offer_id": self.offer_id, "name": self.name, "reason": self.reason}


@dataclass
class Decision:
    id: int
    contact: dict[str, Any]
    channel: str
    decided_at: dt.datetime
    offers: list[Ranked]
    left_out: list[LeftOut]


def contact_lookup(*, contact_key: Any = None, email: str | None = None, phone: str | None = None) -> tuple[str, Any]:
    """Which way the contact is looked up, and the normalised value: exactly one must be given.
    Raises ValueError naming the parameter and what is wrong with it."""
    given = {name: value for name, value in (("contact_key", contact_key), ("email", email), ("phone", phone)) if value}
    if len(given) != 1:
        raise ValueError(_("Give one of the contact key, an e-mail address or a phone number."))
    [(name, value)] = given.items()
    if "\x00" in str(value):
        raise ValueError(_("“%(value)s” contains a NUL character.") % {"value": str(value).replace("\x00", "")})
    try:
        if name == "contact_key":
            return name, value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        if name == "email":
            return name, normalise_email(str(value))
        return name, normalise_phone(str(value))
    except (InvalidIdentity, ValueError) as error:
        label = {"contact_key": _("contact key"), "email": _("e-mail address"), "phone": _("phone number")}[name]
        raise ValueError(_("“%(value)s” is not a valid %(what)s.") % {"value": value, "what": label}) from error


def _day(moment: dt.datetime) -> str:
    return formats.date_format(timezone.localtime(moment), "j F")


def _ago(moment: dt.datetime, now: dt.datetime) -> str:
    days = (timezone.localdate(now) - timezone.localdate(moment)).days
    if days <= 0:
        return _("today")
    return ngettext("%(days)d day ago", "%(days)d days ago", days) % {"days": days}


def _number(value: float) -> str:
    """Two decimals, with the language's decimal separator (0,31 in Dutch, 0.31 in English)."""
    return f"{value:.2f}".replace(".", _decimal_separator(_deciding.code or get_language()))


def _propensity(spec: OfferSpec, scores: dict[str, float]) -> tuple[float, str]:
    if spec.propensity_source == "score":
        found = scores.get(spec.propensity_score)
        if found is None:
            return spec.propensity_default, _("no “%(score)s” score: default propensity %(p)s") % {
                "score": spec.propensity_score,
                "p": _number(spec.propensity_default),
            }
        value = min(max(float(found), 0.0), 1.0)
        return value, _("propensity %(p)s from the “%(score)s” score") % {
            "p": _number(value),
            "score": spec.propensity_score,
        }
    if spec.propensity_source == "learned":
        if spec.responses == 0:
            return spec.propensity_default, _("propensity %(p)s (no responses yet: the default)") % {
                "p": _number(spec.propensity_default)
            }
        value = (spec.accepts + LEARNED_PRIOR * spec.propensity_default) / (spec.responses + LEARNED_PRIOR)
        return value, ngettext(
            "propensity %(p)s from %(n)d past response",
            "propensity %(p)s from %(n)d past responses",
            spec.responses,
        ) % {"p": _number(value), "n": spec.responses}
    return spec.propensity_default, _("propensity %(p)s (fixed)") % {"p": _number(spec.propensity_default)}


def _context_weight(spec: OfferSpec, *, channel: str, hour: int) -> float:
    weight = 1.0
    for rule in spec.weights:
        if rule.applies(channel=channel, hour=hour):
            weight *= rule.weight
    return weight


def _contact_level_reason(row: dict[str, Any], history: History, catalogue: Catalogue, channel: str) -> str | None:
    """Why this contact gets no offer at all on this channel now, or None."""
    contact_key = row["contact_key"]
    if catalogue.control_key is not None and (
        holdout_bucket(key=catalogue.control_key, contact_key=contact_key) < catalogue.control_buckets
    ):
        return _("in the global control group: receives no marketing")
    consent_channel = CONSENT_FOR[OfferChannel(channel)]
    if (row["consent_states"] or {}).get(consent_channel) != "granted":
        return _("no consent for %(channel)s") % {"channel": Channel(consent_channel).label}
    sent = row["sent"] or {}
    # Offers presented on earlier days count as one message a day (today's call is this one).
    since = history.now.timestamp() - catalogue.cap_days * DAY
    earlier_days = {day for shown in history.shown.values() for at, day in shown if at >= since} - {history.today}
    total = sum(sent.values()) + len(earlier_days)
    on_channel = sent.get(channel, 0) + (len(earlier_days) if channel == OfferChannel.CALLCENTER else 0)
    if total >= catalogue.cap_total or on_channel >= catalogue.cap_per_channel:
        return _(
            "frequency cap reached: %(total)d messages in the last %(days)d days (at most %(cap)d, %(per)d per channel)"
        ) % {"total": total, "days": catalogue.cap_days, "cap": catalogue.cap_total, "per": catalogue.cap_per_channel}
    return None


def _offer_reason(spec: OfferSpec, row: dict[str, Any], history: History) -> str | None:
    """Why this offer is not made to this contact now, or None."""
    now = history.now
    if spec.starts_at is not None and spec.starts_at > now:
        return _("valid from %(day)s") % {"day": _day(spec.starts_at)}
    if spec.ends_at is not None and spec.ends_at <= now:
        return _("ended on %(day)s") % {"day": _day(spec.ends_at)}
    if spec.segment_problem:
        return _("its segment cannot be used: %(problem)s") % {"problem": spec.segment_problem}
    if spec.segment_name is not None and not row.get(spec.column):
        return _("not in segment %(segment)s") % {"segment": spec.segment_name}
    accepted = history.accepted.get(spec.id)
    if accepted is not None:
        return _("accepted on %(day)s: not offered again") % {"day": _day(accepted)}
    rejected = history.rejected.get(spec.id)
    if rejected is not None and spec.cooldown_days:
        until = rejected + dt.timedelta(days=spec.cooldown_days)
        if until > now:
            return _("rejected %(ago)s: cool-down until %(day)s") % {"ago": _ago(rejected, now), "day": _day(until)}
    if spec.max_presentations is not None:
        # Counted in days: the decisions of one call (the console asks again after each answer) and
        # of one day count once, and an offer shown earlier today stays for the rest of the day.
        since = now.timestamp() - spec.presentation_days * DAY
        days = {day for at, day in history.shown.get(spec.id, ()) if at >= since}
        if history.today not in days and len(days) >= spec.max_presentations:
            return ngettext(
                "presented on %(n)d day in the last %(days)d days (at most %(max)d)",
                "presented on %(n)d days in the last %(days)d days (at most %(max)d)",
                len(days),
            ) % {"n": len(days), "days": spec.presentation_days, "max": spec.max_presentations}
    if spec.daily_capacity is not None:
        taken = (row["accepted_today"] or {}).get(str(spec.id), 0)
        if taken >= spec.daily_capacity:
            return _("today's capacity is used: %(n)d accepts (at most %(max)d a day)") % {
                "n": taken,
                "max": spec.daily_capacity,
            }
    return None


@dataclass
class History:
    """The contact's answers and presentations, read once per decision for all offers."""

    now: dt.datetime
    today: dt.date  # in the project's time zone, as the days below
    accepted: dict[int, dt.datetime]  # the latest accept per offer
    rejected: dict[int, dt.datetime]  # the latest reject per offer
    shown: dict[int, list[tuple[float, dt.date]]]  # per offer: when presented (epoch seconds) and that day


def _history(row: dict[str, Any], now: dt.datetime) -> History:
    zone = timezone.get_current_timezone()
    accepted: dict[int, dt.datetime] = {}
    rejected: dict[int, dt.datetime] = {}
    for offer_id, outcome, at in row["answered"] or ():
        moment = dt.datetime.fromtimestamp(at, tz=dt.UTC)
        into = accepted if outcome == "accepted" else rejected
        if offer_id not in into or into[offer_id] < moment:
            into[offer_id] = moment
    shown: dict[int, list[tuple[float, dt.date]]] = {}
    for offer_id, at in row["shown"] or ():
        shown.setdefault(offer_id, []).append((at, dt.datetime.fromtimestamp(at, tz=zone).date()))
    return History(now=now, today=now.astimezone(zone).date(), accepted=accepted, rejected=rejected, shown=shown)


def _explain(spec: OfferSpec, propensity_basis: str, context_weight: float, channel: str) -> str:
    parts = []
    if spec.segment_name is not None:
        parts.append(_("in segment %(segment)s") % {"segment": spec.segment_name})
    parts.append(propensity_basis)
    if context_weight != 1:
        parts.append(
            _("context weight %(w)s (%(channel)s)")
            % {"w": _number(context_weight), "channel": OfferChannel(channel).label}
        )
    parts.append(_("value %(value)s") % {"value": currency(spec.value)})
    parts.append(_("lever %(lever)s") % {"lever": _number(spec.lever)})
    return "; ".join(parts)


def _render_script(
    spec: OfferSpec, profile: dict[str, Any], personal: dict[str, Any], catalogue: Catalogue
) -> dict[str, Any]:
    """`personal`: the contact's part of the context (`context_from_profile`), made once per decision."""
    version = version_for_language(
        spec.script_versions, language=profile["locale"], default_language=spec.script_default_language
    )
    if version is None:
        raise TemplateSourceError([])
    offer = {
        "name": spec.name,
        "description": spec.description,
        "price": spec.value,
        "code": spec.code,
        "valid_until": timezone.localdate(spec.ends_at) if spec.ends_at else None,
    }
    context = {**personal, "offer": offer, "campaign": {"name": spec.campaign_name}}
    rendered = template_render(version=version, context=context, blocks=catalogue.blocks)
    return {
        "language": rendered.language,
        "text": rendered.text,
        "talking_points": rendered.talking_points,
        "offer_pitch": rendered.offer_pitch,
    }


def _execute_prepared(name: str, sql: str, types: str, params: list[Any]) -> tuple[list[str], tuple | None]:
    """Run `sql` (with $1, $2... placeholders) as the connection's prepared statement `name`: PostgreSQL
    plans it once per connection instead of on every call. The decision's read has 50-odd
    subqueries: planning them took about 10 ms, running them 2. A changed `sql` (a new catalogue)
    replaces the statement. Django prepares nothing itself, so the names are ours."""
    connection.ensure_connection()
    raw = connection.connection
    prepared: dict[str, str] = raw.__dict__.setdefault("_dialoog_prepared", {})
    columns: dict[str, list[str]] = raw.__dict__.setdefault("_dialoog_prepared_columns", {})
    with connection.cursor() as cursor:
        if not prepared:
            # A generic plan: PostgreSQL would otherwise plan each call again when it estimates a
            # custom plan cheaper (it did, on a million contacts: 14 ms a read instead of 1.4). The
            # statements look a row up by its key, which a generic plan does as well as any.
            # The setting concerns prepared statements only, and Django prepares none.
            cursor.execute("SET plan_cache_mode = force_generic_plan")
        if prepared.get(name) != sql:
            columns.pop(name, None)
            if prepared.pop(name, None) is not None:
                cursor.execute(f"DEALLOCATE {name}")
            cursor.execute(f"PREPARE {name} ({types}) AS {sql}")
            prepared[name] = sql
        placeholders = ", ".join(["%s"] * len(params))
        cursor.execute(f"EXECUTE {name} ({placeholders})", params)
        if name not in columns:  # the statement's column names, read once (66 of them for the read)
            columns[name] = [column.name for column in cursor.description]
        return columns[name], cursor.fetchone()


def _read_contact(catalogue: Catalogue, lookup: str, value: Any) -> dict[str, Any] | None:
    query = catalogue.queries[lookup]
    names, found = _execute_prepared(f"offers_read_{lookup}", query.sql, query.parameter_type, [value])
    if found is None:
        return None
    row = dict(zip(names, found, strict=True))
    if isinstance(row["attributes"], str):  # jsonb comes as text to Django's own decoder
        row["attributes"] = json.loads(row["attributes"])
    return row


def offer_decide(
    *,
    lookup: str,
    value: Any,
    channel: str = OfferChannel.CALLCENTER,
    limit: int = 3,
    agent: Any = None,
    now: dt.datetime | None = None,
) -> Decision:
    """Decide the next-best offers for the contact found by `lookup` ("contact_key", "email",
    "phone" or "id", its value normalised by `contact_lookup`), and record the decision.
    Raises ContactNotFound when no (unerased) contact matches."""
    _deciding.code = get_language()
    try:
        return _decide(lookup=lookup, value=value, channel=channel, limit=limit, agent=agent, now=now)
    finally:
        _deciding.code = None


def _decide(*, lookup: str, value: Any, channel: str, limit: int, agent: Any, now: dt.datetime | None) -> Decision:
    now = now or timezone.now()
    catalogue = offer_catalogue()
    row = _read_contact(catalogue, lookup, value)
    if row is None or row["erased_at"] is not None:
        raise ContactNotFound(_("No contact is known by %(value)s.") % {"value": value})
    scores = row["score_values"] or {}
    profile = {name: row[name] for name in ("id", "contact_key", "first_name", "last_name", "locale", "timezone")}
    profile.update(created_at=row["created_at"], attributes=row["attributes"] or {}, scores=scores)

    ranked: list[Ranked] = []
    left_out: list[LeftOut] = []
    history = _history(row, now)
    everyone = _contact_level_reason(row, history, catalogue, channel)
    hour = timezone.localtime(now).hour
    for spec in catalogue.offers:
        reason = everyone or _offer_reason(spec, row, history)
        weight = _context_weight(spec, channel=channel, hour=hour) if reason is None else 0.0
        if reason is None and weight <= 0:
            reason = _("context weight 0 on %(channel)s at this hour") % {"channel": OfferChannel(channel).label}
        if reason is not None:
            left_out.append(LeftOut(spec.id, spec.name, reason))
            continue
        propensity, basis = _propensity(spec, scores)
        score = propensity * weight * float(spec.value) * spec.lever
        ranked.append(Ranked(spec, propensity, basis, weight, score, ""))
    ranked.sort(key=lambda item: (-item.score, item.spec.id))

    chosen: list[Ranked] = []
    personal = context_from_profile(profile, products=Recommendations([profile["id"]]).of(profile["id"]))
    for position, item in enumerate(ranked, start=1):
        item.rank = position
        spec = item.spec
        if (
            position == 1
            and spec.holdout_key is not None
            and holdout_bucket(key=spec.holdout_key, contact_key=profile["contact_key"]) < spec.holdout_buckets
        ):
            item.presented, item.held_out = False, True
            item.explanation = _explain(spec, item.propensity_basis, item.context_weight, channel)
            chosen.append(item)
            left_out.append(
                LeftOut(spec.id, spec.name, _("held out to measure this offer: recorded as “would have presented”"))
            )
            continue
        if sum(1 for done in chosen if done.presented) >= limit:
            left_out.append(
                LeftOut(
                    spec.id,
                    spec.name,
                    _("ranked %(rank)d with score %(score)s: below the %(limit)d asked for")
                    % {"rank": position, "score": _number(item.score), "limit": limit},
                )
            )
            continue
        try:
            item.script = _render_script(spec, profile, personal, catalogue)
        except (RenderError, TemplateSourceError) as error:
            logger.warning("The script of offer %s could not be rendered for contact %s: %s", spec.id, row["id"], error)
            left_out.append(LeftOut(spec.id, spec.name, _("its script could not be rendered for this contact")))
            continue
        item.explanation = _explain(spec, item.propensity_basis, item.context_weight, channel)
        chosen.append(item)

    decision_id = _record(contact_id=row["id"], channel=channel, agent=agent, items=chosen, left_out=left_out, now=now)
    return Decision(
        id=decision_id,
        contact=profile,
        channel=channel,
        decided_at=now,
        offers=[item for item in chosen if item.presented],
        left_out=left_out,
    )


def _record(
    *, contact_id: int, channel: str, agent: Any, items: list[Ranked], left_out: list[LeftOut], now: dt.datetime
) -> int:
    """The decision's id, and the decision with its offers in the journal (`campaigns.offers.journal`)."""
    record = DecisionRecord(
        id=decision_id_take(),
        contact_id=contact_id,
        channel=channel,
        agent_id=agent.pk if agent is not None and getattr(agent, "is_authenticated", False) else None,
        left_out=json.dumps([reason.as_dict() for reason in left_out]),
        created_at=now,
        items=[
            (
                item.spec.id,
                item.rank,
                item.presented,
                item.held_out,
                item.propensity,
                item.context_weight,
                item.spec.value,
                item.spec.lever,
                item.score,
                item.explanation,
            )
            for item in items
        ],
    )
    journal_record(record)
    return record.id
