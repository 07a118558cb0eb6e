"""The live offers, ready to decide with: read and compiled once, kept for a few seconds.

A decision must answer in milliseconds while a customer is on the line, so it cannot read 50
offers, compile 50 segments and look up their templates on every request. The catalogue does
that once per process and keeps it for `settings.OFFER_CATALOGUE_SECONDS` (10 s by default): an
offer or segment changed in the admin reaches the agents within that time (the process that saved
it at once). It holds:

- each live offer's settings, its script's newest versions per language, its context weights and
  its measurement's holdout;
- the decision's one query, per way of finding the contact (contact key, e-mail address, phone
  number, id): the contact's profile, consent, scores, recent messages and offer history, and for
  each offer whether the contact is in its segment, as one row. The segments' relative windows
  ("in the last 90 days") are computed when the catalogue is compiled: again when anything it is
  built from changed, when the day changed (at midnight), and at least every fifteen minutes
  (REBUILD_SECONDS). A build runs beside the decisions and gives way to them between offers: it
  is a fifth of a second of Python, which would otherwise hold up every request of its process;
- the contact policy (frequency cap), the global control group and the published content blocks.

"Live" means: switched on, not ended, and its campaign activated and not paused or cancelled (a
completed campaign's offer stays live: the offer mailed last week is what the callcenter offers
now). An offer that starts later is kept, and left out by the decision until it starts.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, connections
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet, Value
from django.db.models.expressions import RawSQL
from django.utils import timezone

from audiences.models import Consent, Contact, Identity, Score, Segment
from audiences.segments import RuleError
from audiences.selectors.contacts import PROFILE_FIELDS
from audiences.selectors.segments import segment_condition
from campaigns.models import (
    Campaign,
    ContactPolicy,
    Delivery,
    Offer,
    OfferContextWeight,
    OfferDay,
    OfferDecisionItem,
    OfferResponse,
)
from campaigns.services.policies import CAPPED_CHANNELS, contact_policy
from content.models import ContentBlock, Template, TemplateVersion
from content.selectors import BlockSources, published_blocks, template_newest_versions
from goals.experiments import buckets_below, experiment_split_fix, global_control
from goals.models import GlobalControlGroup

logger = logging.getLogger(__name__)

# Even when nothing changed, the catalogue is compiled again after this long (its segments'
# windows count back from when it was compiled), and when the day changed ("today").
REBUILD_SECONDS = 900
# A build in the background sleeps this long between offers, so that the requests of its process
# get the interpreter (a build of 50 offers is about 0.2 s of Python).
YIELD_SECONDS = 0.001

_PARAMETER_TYPES = {"contact_key": "uuid", "email": "text", "phone": "text", "id": "bigint"}
LIVE_CAMPAIGN_STATUSES = (Campaign.Status.SCHEDULED, Campaign.Status.RUNNING, Campaign.Status.COMPLETED)
LOOKUPS = ("contact_key", "email", "phone", "id")

# A stand-in for the contact's id while the query is compiled; replaced by the lookup.
_ID_STAND_IN = -4_242_424_242


@dataclass(frozen=True)
class Weight:
    channel: str
    hour_from: int | None
    hour_until: int | None
    weight: float

    def applies(self, *, channel: str, hour: int) -> bool:
        if self.channel and self.channel != channel:
            return False
        if self.hour_from is None or self.hour_until is None:
            return True
        return self.hour_from <= hour < self.hour_until


@dataclass(frozen=True)
class OfferSpec:
    id: int
    name: str
    description: str
    code: str
    campaign_id: int
    campaign_name: str
    value: Decimal
    lever: float
    propensity_source: str
    propensity_score: str
    propensity_default: float
    responses: int
    accepts: int
    max_presentations: int | None
    presentation_days: int
    cooldown_days: int
    daily_capacity: int | None
    starts_at: Any
    ends_at: Any
    segment_name: str | None
    segment_problem: str | None
    holdout_key: uuid.UUID | None
    holdout_buckets: int
    weights: tuple[Weight, ...]
    script_versions: dict[str, Any]
    script_default_language: str
    follow_up_channel: str | None

    @property
    def column(self) -> str:
        return f"in_offer_{self.id}"


@dataclass(frozen=True)
class LookupQuery:
    """The decision's read for one way of finding the contact: SQL whose one parameter ($1) is the
    looked-up value, every other value inlined as a literal when the catalogue was built."""

    sql: str
    parameter_type: str


@dataclass
class Catalogue:
    built_at: float  # when it was built, or last found unchanged (time.monotonic())
    offers: tuple[OfferSpec, ...]
    queries: dict[str, LookupQuery]
    cap_total: int
    cap_per_channel: int
    cap_days: int
    history_days: int
    control_key: uuid.UUID | None
    control_buckets: int
    blocks: BlockSources = field(repr=False)
    fingerprint: tuple[Any, ...] = ()
    compiled_at: float = 0.0  # when it was built
    compiled_on: dt.date | None = None  # the day it was built on, in the project's time zone


_lock = threading.Lock()
_current: Catalogue | None = None
_generation = 0  # moved on by catalogue_forget: a refresh started before it is thrown away
_refreshing = False


def catalogue_forget() -> None:
    """Build the catalogue afresh at the next decision (after an offer was saved in this process)."""
    global _current, _generation
    with _lock:
        _current = None
        _generation += 1


def offer_catalogue() -> Catalogue:
    """The catalogue. Built at once when there is none; once older than settings.OFFER_CATALOGUE_SECONDS
    it is built again in a thread of this process while decisions go on with the one there is
    (a build reads every live offer and compiles their segments: a quarter of a second, which an
    agent's request should not wait for). With OFFER_CATALOGUE_BACKGROUND off (the tests), or a
    keep time of 0, the decision waits for the new one."""
    global _current
    keep = getattr(settings, "OFFER_CATALOGUE_SECONDS", 10)
    current = _current
    if current is not None and time.monotonic() - current.built_at < keep:
        return current
    if current is not None and keep > 0 and getattr(settings, "OFFER_CATALOGUE_BACKGROUND", True):
        _refresh_in_background()
        return current
    with _lock:
        if _current is not None and time.monotonic() - _current.built_at < keep:
            return _current
        _current = _build()
        return _current


def _refresh_in_background() -> None:
    global _refreshing
    with _lock:
        if _refreshing:
            return
        _refreshing = True
        generation = _generation
    threading.Thread(target=_refresh, args=(generation,), name="offer-catalogue", daemon=True).start()


def _refresh(generation: int) -> None:
    """Build the catalogue again if anything it was built from changed, or it was compiled more than
    REBUILD_SECONDS ago or on another day (its segments' windows, "the last 90 days", count back
    from then); else keep it, marked as checked now. The check is one query; a build a fifth of a
    second, giving way to the requests between offers."""
    global _current, _refreshing
    try:
        current = _current
        if (
            current is not None
            and time.monotonic() - current.compiled_at < REBUILD_SECONDS
            and current.compiled_on == timezone.localdate()
            and _fingerprint() == current.fingerprint
        ):
            built = replace(current, built_at=time.monotonic())
        else:
            built = _build(yield_seconds=YIELD_SECONDS)
        with _lock:
            if generation == _generation:
                _current = built
    except Exception:  # a failed refresh leaves the catalogue there is; the next decision tries again
        logger.exception("The offer catalogue could not be refreshed")
    finally:
        _refreshing = False
        connections.close_all()  # this thread's own connection


def live_offers(now: dt.datetime | None = None) -> QuerySet[Offer]:
    """The offers that are switched on, not ended, and whose campaign is active or completed."""
    now = now or timezone.now()
    return Offer.objects.filter(
        Q(ends_at__isnull=True) | Q(ends_at__gt=now), active=True, campaign__status__in=LIVE_CAMPAIGN_STATUSES
    )


def _build(*, yield_seconds: float = 0) -> Catalogue:
    """The catalogue, compiled now. `yield_seconds`: sleep that long between offers (a build beside
    the decisions)."""
    now = timezone.now()
    offers = list(
        live_offers(now)
        .select_related("campaign", "segment", "script", "follow_up", "experiment")
        .prefetch_related("context_weights")
        .order_by("pk")
    )
    specs = []
    conditions: dict[str, Any] = {}
    for offer in offers:
        if yield_seconds:
            time.sleep(yield_seconds)
        problem = None
        if offer.segment is not None:
            try:
                conditions[f"in_offer_{offer.pk}"] = ExpressionWrapper(
                    segment_condition(segment=offer.segment, now=now, per_contact=True), output_field=BooleanField()
                )
            except RuleError as error:
                problem = str(error)
                conditions[f"in_offer_{offer.pk}"] = Value(False)
        experiment = offer.experiment
        if experiment is not None and experiment.split_fixed_at is None:
            experiment = experiment_split_fix(experiment=experiment, now=now)
        newest = template_newest_versions(template=offer.script)
        for version in newest.values():
            version.template = offer.script  # the renderer reads its channel
        specs.append(
            OfferSpec(
                id=offer.pk,
                name=offer.name,
                description=offer.description,
                code=offer.code,
                campaign_id=offer.campaign_id,
                campaign_name=offer.campaign.name,
                value=offer.value,
                lever=offer.lever,
                propensity_source=offer.propensity_source,
                propensity_score=offer.propensity_score,
                propensity_default=offer.propensity_default,
                responses=offer.responses,
                accepts=offer.accepts,
                max_presentations=offer.max_presentations,
                presentation_days=offer.presentation_days,
                cooldown_days=offer.cooldown_days,
                daily_capacity=offer.daily_capacity,
                starts_at=offer.starts_at,
                ends_at=offer.ends_at,
                segment_name=offer.segment.name if offer.segment else None,
                segment_problem=problem,
                holdout_key=experiment.key if experiment is not None else None,
                holdout_buckets=buckets_below(experiment.holdout_percent) if experiment is not None else 0,
                weights=tuple(
                    Weight(w.channel, w.hour_from, w.hour_until, w.weight) for w in offer.context_weights.all()
                ),
                script_versions=newest,
                script_default_language=offer.script.default_language,
                follow_up_channel=offer.follow_up.channel if offer.follow_up else None,
            )
        )
    policy = contact_policy()
    control = global_control()
    history_days = max([policy.cap_days, *(spec.presentation_days for spec in specs)])
    facts = _facts(cap_days=policy.cap_days, history_days=history_days)
    queries = _lookup_queries(facts, conditions)
    fingerprint = _fingerprint()
    built_at = time.monotonic()
    return Catalogue(
        built_at=built_at,
        compiled_at=built_at,
        compiled_on=timezone.localdate(now),
        fingerprint=fingerprint,
        offers=tuple(specs),
        queries=queries,
        cap_total=policy.cap_total,
        cap_per_channel=policy.cap_per_channel,
        cap_days=policy.cap_days,
        history_days=history_days,
        control_key=control.key if control.enabled else None,
        control_buckets=buckets_below(control.percent) if control.enabled else 0,
        blocks=published_blocks(),
    )


def _fingerprint() -> tuple[Any, ...]:
    """What the catalogue is built from, in one query: a change to an offer, its weights, a segment,
    a campaign's status, a script, a published block, the contact policy or the global control
    group changes it. Read before a build, so a change made during one is seen by the next check."""
    tables = {
        "offers": Offer._meta.db_table,
        "weights": OfferContextWeight._meta.db_table,
        "segments": Segment._meta.db_table,
        "campaigns": Campaign._meta.db_table,
        "versions": TemplateVersion._meta.db_table,
        "templates": Template._meta.db_table,
        "blocks": ContentBlock._meta.db_table,
        "policy": ContactPolicy._meta.db_table,
        "control": GlobalControlGroup._meta.db_table,
    }
    sql = """
        SELECT (SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') FROM {offers}),
               (SELECT md5(coalesce(string_agg(concat_ws(':', id, offer_id, channel, hour_from, hour_until, weight),
                                               ',' ORDER BY id), '')) FROM {weights}),
               (SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') FROM {segments}),
               (SELECT coalesce(max(updated_at)::text, '') FROM {campaigns}),
               (SELECT coalesce(max(id), 0) FROM {versions}),
               (SELECT coalesce(max(updated_at)::text, '') FROM {templates}),
               (SELECT coalesce(sum(published_version_id), 0) || ':' || coalesce(max(updated_at)::text, '')
                FROM {blocks}),
               (SELECT coalesce(max(updated_at)::text, '') FROM {policy}),
               (SELECT coalesce(max(updated_at)::text, '') FROM {control})
    """.format(**tables)  # noqa: S608 - table names of ours
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return tuple(cursor.fetchone())


def _subquery(sql: str, params: tuple[Any, ...] = ()) -> RawSQL:
    """A subquery on the contact's row. `{contact}` is the contact's id; the other names in braces
    are the tables of the models they name; every value is a parameter."""
    tables = {
        "contact": f'"{Contact._meta.db_table}"."id"',
        "consents": Consent._meta.db_table,
        "scores": Score._meta.db_table,
        "deliveries": Delivery._meta.db_table,
        "decision_items": OfferDecisionItem._meta.db_table,
        "responses": OfferResponse._meta.db_table,
        "offer_days": OfferDay._meta.db_table,
        "capped": ", ".join(f"'{channel}'" for channel in CAPPED_CHANNELS),
    }
    return RawSQL(sql.format(**tables), params)  # noqa: S611 - table and channel names of ours, values as parameters


def _facts(*, cap_days: int, history_days: int) -> dict[str, RawSQL]:
    """What the decision needs to know of the contact besides its profile, each a subquery on the
    contact's row; every one is an index lookup by contact."""
    return {
        "consent_states": _subquery(
            "SELECT json_object_agg(channel, status) FROM {consents} WHERE contact_id = {contact}"
        ),
        "score_values": _subquery("SELECT json_object_agg(name, value) FROM {scores} WHERE contact_id = {contact}"),
        # Messages sent within the frequency cap's days, by channel (delivery_sent_idx).
        "sent": _subquery(
            """SELECT json_object_agg(channel, n) FROM (
                   SELECT channel, count(*) AS n FROM {deliveries}
                   WHERE contact_id = {contact} AND status = 'sent' AND channel IN ({capped})
                     AND sent_at >= now() - make_interval(days => %s)
                   GROUP BY channel) AS sent""",
            (cap_days,),
        ),
        # Offers presented within the longest period any limit looks back (decision_item_contact_idx).
        "shown": _subquery(
            """SELECT json_agg(json_build_array(offer_id, extract(epoch FROM created_at)))
               FROM {decision_items}
               WHERE contact_id = {contact} AND presented AND created_at >= now() - make_interval(days => %s)""",
            (history_days,),
        ),
        # Every accept and reject (never again after an accept; a cool-down after a reject).
        "answered": _subquery(
            """SELECT json_agg(json_build_array(offer_id, outcome, extract(epoch FROM created_at)))
               FROM {responses} WHERE contact_id = {contact} AND outcome IN ('accepted', 'rejected')"""
        ),
        # Each offer's accepts today, for its daily capacity.
        "accepted_today": _subquery(
            "SELECT json_object_agg(offer_id, accepts) FROM {offer_days} WHERE day = (now() AT TIME ZONE %s)::date",
            (settings.TIME_ZONE,),
        ),
    }


def _lookup_queries(facts: dict[str, RawSQL], conditions: dict[str, Any]) -> dict[str, LookupQuery]:
    """The decision's read for each way of finding the contact. Compiled once, by id (Django's
    compiler takes about 50 ms for 50 offers' segments), then the id is found from the lookup's
    value by a subquery (an index lookup, planned once with the statement)."""
    sentinel = _ID_STAND_IN
    queryset = (
        Contact.objects.filter(pk=sentinel)
        .annotate(**facts, **conditions)
        .values(*PROFILE_FIELDS, "erased_at", *facts, *conditions)
    )
    sql, params = queryset.query.sql_with_params()
    if sum(1 for param in params if param == sentinel) != 1:  # pragma: no cover - Django compiles it otherwise
        raise RuntimeError("The contact's id is not one parameter of the decision query.")
    connection.ensure_connection()
    # Every value inlined by psycopg's own quoting (as Django's client-side binding sends them);
    # the stand-in's literal then becomes the contact's id, found from the statement's parameter.
    literals = psycopg.ClientCursor(connection.connection)
    inlined = literals.mogrify(sql, params)
    stand_in = literals.mogrify("%s", [sentinel])
    if inlined.count(stand_in) != 1:  # pragma: no cover - the stand-ins are unlike any real value
        raise RuntimeError("The contact id's stand-in is not found once in the decision query.")
    contacts, identities = Contact._meta.db_table, Identity._meta.db_table
    found_by: dict[str, str] = {
        "id": "$1",
        "contact_key": f'(SELECT "id" FROM "{contacts}" WHERE "contact_key" = $1)',  # noqa: S608 - our table
        **{
            kind: f"""(SELECT "contact_id" FROM "{identities}" WHERE "kind" = '{kind}' AND "value" = $1 LIMIT 1)"""  # noqa: S608 - our table and kinds
            for kind in (Identity.Kind.EMAIL.value, Identity.Kind.PHONE.value)
        },
    }
    return {
        lookup: LookupQuery(
            sql=inlined.replace(stand_in, f" {found_by[lookup]}"), parameter_type=_PARAMETER_TYPES[lookup]
        )
        for lookup in LOOKUPS
    }
