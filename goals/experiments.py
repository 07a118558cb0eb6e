"""Measuring campaigns: holdouts, the global control group, assignments, uplift and cost.

A campaign's planned audience is split once into a treatment, which receives the campaign, and
a holdout, which does not; what each group did afterwards is the campaign's effect. The split
follows from a hash of the experiment's key and each contact's key (`holdout_bucket`, and the
same in SQL as `Bucket`), so it needs no random state, gives the same answer on every run and
on every machine, and a larger share keeps everyone a smaller share held out.

The organisation-wide global control group is the same idea across all campaigns: a small share
of all contacts that receives no marketing at all, to measure marketing as a whole. Its hash uses
its own key, so it is independent of every campaign's holdout.

Campaigns (a later app) call these services; goals never import campaigns.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import EmptyResultSet, ValidationError
from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    BooleanField,
    DateField,
    Exists,
    ExpressionWrapper,
    F,
    Func,
    OuterRef,
    Q,
    QuerySet,
    TextField,
    Value,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.db.models.lookups import LessThan
from django.utils import timezone
from django.utils.translation import gettext as _

from audiences.models import Channel, Contact, Event
from goals.metrics import FOUR_PLACES
from goals.models import Assignment, ChannelCost, Experiment, GlobalControlGroup, Goal, Uplift
from goals.services import NotMeasurable, goal_scope, start_of

BUCKETS = 10_000  # a bucket is a hundredth of a percent: a share in % with two decimals is a whole number of them
HOLDOUT_MAX = Decimal(50)
GLOBAL_CONTROL_MIN, GLOBAL_CONTROL_MAX = Decimal("0.1"), Decimal(10)
CENTS = Decimal("0.01")

# What a send in each channel adds to, for the experiment's cost.
SENT_FIELDS = {Channel.EMAIL: "emails_sent", Channel.SMS: "sms_sent", Channel.PHONE: "calls_made"}


# --- The bucket --------------------------------------------------------------------------------


def holdout_bucket(*, key: uuid.UUID, contact_key: uuid.UUID) -> int:
    """The contact's bucket (0..9999) for a key: in the group when it is below 100 times the share (in %).

    The first 32 bits of md5("key:contact_key"): spread evenly, the same in PostgreSQL (`Bucket`),
    and not a secret (md5 is used as a hash, not for security).
    """
    digest = hashlib.md5(f"{key}:{contact_key}".encode(), usedforsecurity=False).hexdigest()
    return int(digest[:8], 16) % BUCKETS


class Bucket(Func):
    """`holdout_bucket` in SQL, for a contact key column (`contact_key` of the contacts by default).

    The key is a parameter; the contact key is read from the row, so a set of contacts is split
    in one query without reading them into Python.
    """

    template = "mod(('x' || substr(md5(%(expressions)s), 1, 8))::bit(32)::bigint, 10000)"
    arg_joiner = " || ':' || "

    def __init__(self, *, key: uuid.UUID, contact_key: str = "contact_key") -> None:
        super().__init__(
            Cast(Value(str(key)), TextField()),
            Cast(F(contact_key), TextField()),
            output_field=BigIntegerField(),
        )


def buckets_below(percent: Decimal) -> int:
    """How many buckets a share (in %, two decimals) takes: the contacts below it are in the group."""
    return int(Decimal(percent) * BUCKETS / 100)


# --- The global control group ------------------------------------------------------------------


def global_control() -> GlobalControlGroup:
    """The global control group's settings: its single row, created (switched off) when first asked for."""
    control, _created = GlobalControlGroup.objects.get_or_create(pk=1)
    return control


def global_control_update(*, enabled: bool, percent: Decimal, user: User | None) -> GlobalControlGroup:
    """Switches the global control group on or off and sets its share, recording who did.

    The members follow from their keys, so raising the share keeps everyone who was in it (and
    lowering it lets some go); switching it off and on again brings the same contacts back.
    """
    percent = Decimal(percent)
    if not GLOBAL_CONTROL_MIN <= percent <= GLOBAL_CONTROL_MAX:
        raise ValidationError(
            {
                "percent": _("The global control group must be between %(low)s%% and %(high)s%% of all contacts.")
                % {"low": GLOBAL_CONTROL_MIN, "high": GLOBAL_CONTROL_MAX}
            }
        )
    control = global_control()
    control.enabled, control.percent, control.changed_by = enabled, percent, user
    control.full_clean()
    control.save()
    return control


def _global_control_member(control: GlobalControlGroup) -> Q | None:
    """The condition on contacts for membership, or None when the group is switched off."""
    if not control.enabled:
        return None
    return Q(LessThan(Bucket(key=control.key), buckets_below(control.percent)))


def global_control_condition() -> Q:
    """The condition on contacts that matches the global control group's members (nobody when it is off).

    Reads the group's settings now (one query), so a change applies to the next query built.
    """
    return _global_control_member(global_control()) or Q(pk__in=[])


def contacts_without_global_control(contacts: QuerySet[Contact]) -> QuerySet[Contact]:
    """The contacts, less the members of the global control group: what any marketing may reach."""
    member = _global_control_member(global_control())
    return contacts if member is None else contacts.exclude(member)


# --- Experiments -------------------------------------------------------------------------------


def _check_holdout_percent(percent: Decimal) -> Decimal:
    percent = Decimal(percent)
    if percent <= 0:
        raise ValidationError(
            {
                "holdout_percent": _(
                    "A holdout of 0% means the campaign cannot be measured: turn the holdout off instead, and say why."
                )
            }
        )
    if percent > HOLDOUT_MAX:
        raise ValidationError(
            {"holdout_percent": _("The holdout can be at most %(max)s%% of the audience.") % {"max": HOLDOUT_MAX}}
        )
    return percent


def experiment_create(
    *,
    goal: Goal,
    name: str,
    holdout_percent: Decimal = Decimal(10),
    conversion_event: str = Event.Type.PURCHASE,
    attribution_days: int = 30,
) -> Experiment:
    """A campaign's measurement against its goal, with a holdout.

    Every campaign starts with a holdout: no holdout is a decision that needs a reason, taken
    afterwards with `experiment_holdout_off`.
    """
    experiment = Experiment(
        goal=goal,
        name=name,
        holdout_percent=_check_holdout_percent(holdout_percent),
        conversion_event=conversion_event,
        attribution_days=attribution_days,
    )
    experiment.full_clean()
    experiment.save()
    return experiment


def _refuse_once_assigned(experiment: Experiment) -> None:
    """The holdout's share is fixed once contacts are assigned, or a campaign started planning with
    it (`experiment_split_fix`). Contacts keep their first group, so a new share would apply to
    later contacts only: they had less time to convert and would sit in the groups in other
    proportions, which makes an effect out of nothing. A new share is a new measurement.

    Called in the change's transaction: the experiment's row is locked, so a planner fixing the split
    at the same moment either waits for the change or is seen here."""
    if experiment.pk is None:
        return
    fixed = Experiment.objects.select_for_update().filter(pk=experiment.pk).values_list("split_fixed_at", flat=True)
    if next(iter(fixed), None) is not None or experiment.assignments.exists():
        raise ValidationError(
            {
                "holdout_percent": _(
                    "Contacts have been assigned already, so the holdout can no longer change: groups "
                    "picked at different times and shares cannot be compared. Start a new measurement instead."
                )
            }
        )


def experiment_holdout_off(
    *, experiment: Experiment, reason: str, user: User | None, now: dt.datetime | None = None
) -> Experiment:
    """Turns the holdout off, which needs a reason: without a holdout the campaign's effect cannot
    be shown, so whoever decides that says why, and it is recorded with their name and the time.

    Only before contacts are assigned: see `_refuse_once_assigned`.
    """
    with transaction.atomic():
        _refuse_once_assigned(experiment)
        reason = (reason or "").strip()
        if not reason:
            raise ValidationError(
                {
                    "holdout_off_reason": _(
                        "Say why this campaign has no holdout: without one, its effect on the goal cannot be measured."
                    )
                }
            )
        experiment.holdout_percent = Decimal(0)
        experiment.holdout_off_reason = reason
        experiment.holdout_off_by = user
        experiment.holdout_off_at = now or timezone.now()
        experiment.full_clean()
        experiment.save(
            update_fields=["holdout_percent", "holdout_off_reason", "holdout_off_by", "holdout_off_at", "updated_at"]
        )
    return experiment


def experiment_holdout_set(*, experiment: Experiment, percent: Decimal) -> Experiment:
    """Sets the holdout's share (above 0; no holdout goes through `experiment_holdout_off`), turning
    it back on if it was off.

    Only before contacts are assigned: see `_refuse_once_assigned`.
    """
    with transaction.atomic():
        _refuse_once_assigned(experiment)
        experiment.holdout_percent = _check_holdout_percent(percent)
        experiment.holdout_off_reason, experiment.holdout_off_by, experiment.holdout_off_at = "", None, None
        experiment.full_clean()
        experiment.save(
            update_fields=["holdout_percent", "holdout_off_reason", "holdout_off_by", "holdout_off_at", "updated_at"]
        )
    return experiment


def experiment_split_fix(*, experiment: Experiment, now: dt.datetime) -> Experiment:
    """Fix the experiment's split before a campaign plans with it: from now on its holdout's share
    cannot change (`_refuse_once_assigned`), so every run and every attempt at a run splits alike.
    Call it in the planner's transaction; returns the experiment with the share it is fixed at."""
    Experiment.objects.filter(pk=experiment.pk, split_fixed_at__isnull=True).update(split_fixed_at=now)
    experiment.refresh_from_db(fields=["holdout_percent", "split_fixed_at"])
    return experiment


@dataclass(frozen=True)
class AssignResult:
    """What one `experiment_assign` did: the contacts it assigned to each group (those assigned
    before are not counted again), and the audience's members of the global control group, left out."""

    treatment: int
    holdout: int
    excluded: int


def experiment_split(
    *, experiment: Experiment, contacts: QuerySet[Contact]
) -> QuerySet[Contact, tuple[int, bool, bool]]:
    """Where each of the contacts stands in the experiment: rows of (id, held_out, excluded), lazy.

    Held out when its bucket is below the holdout's share; excluded when the global control group
    keeps it out of all marketing (as the group stands now). Erased contacts are left out. A
    contact's group follows from the experiment's key and its own key alone, and the share is fixed
    once a campaign plans with it (`experiment_split_fix`), so the split gives every contact the
    group it was assigned, or will be: a campaign plans its deliveries from it without reading the
    assignments back, while `experiment_assign` records them.
    """
    member = _global_control_member(global_control())
    excluded = Value(False) if member is None else ExpressionWrapper(member, output_field=BooleanField())
    share = buckets_below(experiment.holdout_percent)
    held_out = (
        ExpressionWrapper(Q(LessThan(Bucket(key=experiment.key), share)), output_field=BooleanField())
        if share
        else Value(False)
    )
    if contacts.query.is_sliced or contacts.query.distinct or contacts.query.combinator:
        # Read through its ids: a slice, DISTINCT or a UNION cannot take the columns below.
        contacts = Contact.objects.filter(pk__in=contacts.values("pk"))
    return (
        contacts.filter(erased_at__isnull=True)
        .annotate(held_out=held_out, excluded=excluded)
        .order_by()
        .values_list("pk", "held_out", "excluded")
    )


def experiment_assign(
    *,
    experiment: Experiment,
    contacts: QuerySet[Contact] | None = None,
    split: tuple[str, Sequence[Any]] | None = None,
    now: dt.datetime | None = None,
) -> AssignResult:
    """Splits the campaign's planned audience into treatment and holdout, in one statement.

    The audience is `contacts`, or `split`: the SQL (and its parameters) of rows as
    `experiment_split` gives them, such as a campaign's plan that holds them already. The group
    comes from each contact's bucket, computed by PostgreSQL. Erased contacts are never assigned,
    nor are members of the global control group (counted as excluded). Contacts assigned before
    keep their group and their assignment time, so planning again, or a recurring campaign's next
    run, only adds the audience's newcomers.

    Those are found with NOT EXISTS, not ON CONFLICT: a speculative insertion per row costs about
    2 s per million here. Two assignments to one experiment at once take turns on an advisory lock,
    so the second sees what the first wrote and no row is written twice.
    """
    if split is None:
        if contacts is None:
            raise TypeError("experiment_assign needs the contacts or their split.")
        try:
            split = experiment_split(experiment=experiment, contacts=contacts).query.sql_with_params()
        except EmptyResultSet:  # an audience that is empty by construction (pk__in=[]): nothing to do
            return AssignResult(treatment=0, holdout=0, excluded=0)
    split_sql, split_params = split
    table = Assignment._meta.db_table
    sql = f"""
        WITH candidates (id, held_out, excluded) AS MATERIALIZED ({split_sql}),
        inserted AS (
            INSERT INTO {table} (experiment_id, contact_id, "group", assigned_at)
            SELECT %s, c.id, CASE WHEN c.held_out THEN %s ELSE %s END, %s
            FROM candidates c
            WHERE NOT c.excluded
              AND NOT EXISTS (SELECT 1 FROM {table} a WHERE a.experiment_id = %s AND a.contact_id = c.id)
            ORDER BY c.id  -- in the indexes' order: each row goes to their right-hand edge
            RETURNING "group"
        )
        SELECT
            (SELECT count(*) FROM inserted WHERE "group" = %s),
            (SELECT count(*) FROM inserted WHERE "group" = %s),
            (SELECT count(*) FROM candidates WHERE excluded)
    """  # noqa: S608 - the SQL is the ORM's own or the caller's split, and a table name; every value is a parameter
    params = [
        *split_params,
        experiment.pk,
        Experiment.Group.HOLDOUT,
        Experiment.Group.TREATMENT,
        now or timezone.now(),
        experiment.pk,
        Experiment.Group.TREATMENT,
        Experiment.Group.HOLDOUT,
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"experiment_assign:{experiment.pk}"])
        cursor.execute(sql, params)
        treatment, holdout, excluded = cursor.fetchone()
    return AssignResult(treatment=treatment, holdout=holdout, excluded=excluded)


def experiment_recipients(*, experiment: Experiment) -> QuerySet[Contact]:
    """Who the campaign sends to: its treatment, less contacts erased since, and less the global
    control group's members as it stands now (it promises them no marketing at all, also when it
    was switched on after they were assigned; they stay in the treatment's figures, a small dilution).

    Reads the global control group's settings now (one query); the contacts are a lazy queryset.
    """
    treated = Contact.objects.filter(
        Exists(
            Assignment.objects.filter(experiment=experiment, contact=OuterRef("pk"), group=Experiment.Group.TREATMENT)
        ),
        erased_at__isnull=True,
    )
    return contacts_without_global_control(treated)


def experiment_record_sends(*, experiment: Experiment, channel: str, count: int) -> None:
    """Adds what a send of the campaign sent in a channel to its counts, for its cost. An increment
    in the database (F()), so that workers sending batches at the same time lose none."""
    if channel not in SENT_FIELDS:
        raise ValueError(f"Unknown channel {channel!r}: expected one of {', '.join(SENT_FIELDS)}")
    if count < 0:
        raise ValueError("A number of messages sent cannot be negative.")
    field = SENT_FIELDS[Channel(channel)]
    Experiment.objects.filter(pk=experiment.pk).update(**{field: F(field) + count, "updated_at": timezone.now()})
    experiment.refresh_from_db(fields=[field, "updated_at"])


# --- Measuring ---------------------------------------------------------------------------------

MEASURE_SQL = """
    SELECT a."group",
           count(*),
           count(*) FILTER (WHERE converted.events > 0),
           coalesce(sum(converted.revenue), 0),
           coalesce(sum(converted.revenue * converted.revenue), 0)
    FROM goals_assignment a
    CROSS JOIN LATERAL (
        -- event_contact_type_time_idx (contact, type, -occurred_at): one range per contact
        SELECT count(*) AS events, coalesce(sum(e.value), 0) AS revenue
        FROM audiences_event e
        WHERE e.contact_id = a.contact_id
          AND e.type = %(event)s
          AND e.occurred_at >= a.assigned_at
          AND e.occurred_at < LEAST(a.assigned_at + make_interval(days => %(days)s), %(end)s)
    ) converted
    WHERE a.experiment_id = %(experiment)s AND a.assigned_at < %(end)s
    GROUP BY a."group"
"""


def _cost(experiment_id: int) -> Decimal:
    """What the campaign's sends cost at today's channel costs; a channel without a cost costs nothing."""
    emails, sms, calls = (
        Experiment.objects.filter(pk=experiment_id).values_list("emails_sent", "sms_sent", "calls_made").get()
    )
    prices: dict[str, Decimal] = dict(ChannelCost.objects.values_list("channel", "cost_per_message"))
    cost = (
        emails * prices.get(Channel.EMAIL, Decimal(0))
        + sms * prices.get(Channel.SMS, Decimal(0))
        + calls * prices.get(Channel.PHONE, Decimal(0))
    )
    return Decimal(cost).quantize(CENTS)


def experiment_measure(*, experiment: Experiment, day: dt.date, now: dt.datetime | None = None) -> Uplift:
    """The experiment's outcome up to the end of `day`, per group, written as that day's Uplift
    (again, not twice, when measured again the same day).

    In one query over its assignments: a contact converted when they had at least one event of
    the conversion type from their assignment until the attribution window closed or the day
    ended, whichever is first; their revenue is the sum of those events' values (no value counts
    0). Contacts assigned after the day are not yet part of it. The sum of squares of each
    contact's revenue is kept beside the sum, for the variance of revenue per contact.
    """
    params: dict[str, Any] = {
        "event": experiment.conversion_event,
        "days": experiment.attribution_days,
        "end": start_of(day + dt.timedelta(days=1)),
        "experiment": experiment.pk,
    }
    groups = {group: (0, 0, Decimal(0), Decimal(0)) for group in Experiment.Group.values}
    with connection.cursor() as cursor:
        cursor.execute(MEASURE_SQL, params)
        for group, size, conversions, revenue, squares in cursor.fetchall():
            groups[group] = (size, conversions, Decimal(revenue), Decimal(squares))
    treatment, holdout = groups[Experiment.Group.TREATMENT], groups[Experiment.Group.HOLDOUT]
    fields = {
        "measured_at": now or timezone.now(),
        "treatment_size": treatment[0],
        "treatment_conversions": treatment[1],
        "treatment_revenue": treatment[2].quantize(CENTS),
        "treatment_revenue_squares": treatment[3].quantize(FOUR_PLACES),
        "holdout_size": holdout[0],
        "holdout_conversions": holdout[1],
        "holdout_revenue": holdout[2].quantize(CENTS),
        "holdout_revenue_squares": holdout[3].quantize(FOUR_PLACES),
        "cost": _cost(experiment.pk),
    }
    (uplift,) = Uplift.objects.bulk_create(
        [Uplift(experiment=experiment, measured_on=day, **fields)],
        update_conflicts=True,
        unique_fields=["experiment", "measured_on"],
        update_fields=list(fields),
    )
    return uplift


def experiments_measure(*, day: dt.date, now: dt.datetime | None = None) -> list[Uplift]:
    """The day's Uplift of every experiment that has assignments, from its goal's start until its
    attribution window has closed after the goal's deadline (conversions of contacts reached just
    before the deadline still count); safe to run again for the same day."""
    now = now or timezone.now()
    experiments = (
        Experiment.objects.filter(goal__starts_on__lte=day)
        .alias(
            measured_until=ExpressionWrapper(
                F("goal__deadline") + F("attribution_days") * dt.timedelta(days=1), output_field=DateField()
            )
        )
        .filter(measured_until__gte=day)
        .filter(Exists(Assignment.objects.filter(experiment=OuterRef("pk"))))
        .order_by("pk")
    )
    return [experiment_measure(experiment=experiment, day=day, now=now) for experiment in experiments]


# --- No goal, no campaign ----------------------------------------------------------------------


def goal_measurable_problems(
    *, goal: Goal | None, audience: QuerySet[Contact] | None = None, today: dt.date | None = None
) -> list[str]:
    """Why a campaign for this goal cannot be activated; an empty list when it can be measured.

    A campaign serves a goal that is still running, whose KPI can be measured, and reaches at
    least some of the contacts the KPI is measured on: otherwise nothing it does can show in the
    goal's figures. The overlap is one EXISTS query of the audience within the goal's scope.
    """
    if goal is None:
        return [_("Choose the goal this campaign serves.")]
    now = timezone.now()
    today = today or timezone.localdate(now)
    problems = []
    if goal.deadline < today:
        problems.append(
            _("The goal “%(goal)s” passed its deadline on %(deadline)s: choose a goal that is still running.")
            % {"goal": goal, "deadline": goal.deadline.isoformat()}
        )
    try:
        scope = goal_scope(goal, now=now)
    except NotMeasurable as error:
        problems.append(str(error))
        return problems
    # The scope's SQL is the ORM's own (goal_scope), its values parameters.
    in_scope = RawSQL(scope.sql, tuple(scope.params))  # noqa: S611
    if audience is not None and not audience.filter(pk__in=in_scope).exists():
        if goal.scope_segment_id is None:
            problems.append(
                _("None of the campaign's audience is among the contacts the goal measures, so it cannot move its KPI.")
            )
        else:
            problems.append(
                _(
                    "None of the campaign's audience is in the goal's scope segment “%(segment)s”, "
                    "so the campaign cannot move its KPI."
                )
                % {"segment": goal.scope_segment}
            )
    return problems
