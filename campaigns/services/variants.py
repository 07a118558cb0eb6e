"""A/B/n variants: splitting an audience over a campaign's variants, and the test that picks a winner.

A campaign with variants gives each contact one of them, by weight, from a hash of the campaign
and the contact's key (`variant_sql`): the same contact gets the same variant in every run, with
no state kept. That is all a recurring or triggered campaign does, and all a one-off does whose
test share is 0: the whole audience is split.

A one-off campaign with a test share sends in two runs:

1. the variant test (its first run, purpose test): only the test share of the audience, again
   from a hash of the contact's key (`variant_run_audience`), split over the variants by weight.
   The holdout applies to it as to any run. Planning it schedules the winner run, the test
   period later;
2. the winner run (purpose winner, occurrence "winner"): once it is due and the test has been
   sent, `variant_winners_pick` (from the dispatcher's tick) picks the variant whose treated
   contacts converted best (as the campaign's funnel counts a conversion), marks it the winner,
   and the run sends it to the rest of the audience: everyone who was not planned in the test.

The hash of the test share is of its own (independent of the variants' and the holdout's), so
the test share is a fair sample of the audience and each variant a fair sample of the test.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from django.db import transaction
from django.db.models import BigIntegerField, Exists, F, Func, OuterRef, QuerySet, TextField, Value
from django.db.models.functions import Cast
from django.utils.translation import gettext as _

from audiences.models import Contact
from campaigns.models import Campaign, CampaignRun, CampaignVariant, Delivery
from campaigns.selectors import VariantResult, campaign_variant_results

logger = logging.getLogger(__name__)

WINNER_OCCURRENCE = "winner"
# The test share is a whole percentage: a contact is in it when its bucket is below it.
TEST_BUCKETS = 100
# The runs of a test that are not over yet.
OPEN_RUN_STATUSES = (CampaignRun.Status.SCHEDULED, CampaignRun.Status.PLANNING, CampaignRun.Status.SENDING)

PickedOn = Literal["conversion_rate", "click_rate", "first_variant"]


# --- Which campaigns test ------------------------------------------------------------------------


def variant_test_applies(*, campaign: Campaign) -> bool:
    """Whether the campaign sends a variant test first and its winner to the rest: a one-off with
    variants and a test share."""
    return (
        campaign.kind == Campaign.Kind.ONE_OFF
        and campaign.variant_test_percent > 0
        and CampaignVariant.objects.filter(campaign_id=campaign.pk).exists()
    )


def variant_test_problems(*, campaign: Campaign) -> dict[str, list[str]]:
    """Why the campaign's test share cannot be used, by field (for its activation); empty when it can."""
    if not campaign.variant_test_percent:
        return {}
    problems: dict[str, list[str]] = {}
    if campaign.kind != Campaign.Kind.ONE_OFF:
        problems["variant_test_percent"] = [
            _(
                "A test share with a winner is for one-off campaigns: a %(kind)s campaign splits its whole "
                "audience over its variants every time. Set the test share to 0."
            )
            % {"kind": campaign.get_kind_display().lower()}
        ]
    elif CampaignVariant.objects.filter(campaign_id=campaign.pk).count() < 2:
        problems["variant_test_percent"] = [
            _("A test needs at least two variants to pick a winner from; add them, or set the test share to 0.")
        ]
    if campaign.variant_test_hours < 1:
        problems["variant_test_hours"] = [
            _("The test needs a test period of at least one hour, to see which variant does best.")
        ]
    return problems


# --- Planning --------------------------------------------------------------------------------------


class _TestBucket(Func):
    """A contact's bucket (0..99) for a campaign's test share, from its contact key: stable, and
    independent of its variant's bucket (another salt) and of its holdout bucket (another hash)."""

    template = f"abs(mod(hashtextextended(%(expressions)s, 0), {TEST_BUCKETS}))"
    arg_joiner = " || ':' || "

    def __init__(self, *, campaign_id: int) -> None:
        super().__init__(
            Cast(F("contact_key"), TextField()),
            Value("test"),
            Cast(Value(campaign_id), TextField()),
            output_field=BigIntegerField(),
        )


def variant_run_audience(*, run: CampaignRun, audience: QuerySet[Contact]) -> QuerySet[Contact]:
    """The part of the campaign's audience a run is for: a variant test's test share; for the
    winner run, everyone not planned in the test (also who joined the audience since, and who is
    in the test share's buckets but was not planned then); every other run, all of it."""
    campaign = run.campaign
    if run.purpose == CampaignRun.Purpose.TEST:
        return audience.alias(test_bucket=_TestBucket(campaign_id=campaign.pk)).filter(
            test_bucket__lt=campaign.variant_test_percent
        )
    if run.purpose == CampaignRun.Purpose.WINNER:
        # Explicitly: the deliveries' unique key is per run, so it would not stop a second message.
        tested = Delivery.objects.filter(
            run__campaign_id=campaign.pk, run__purpose=CampaignRun.Purpose.TEST, contact_id=OuterRef("pk")
        )
        return audience.exclude(Exists(tested))
    return audience


def variant_sql(*, run: CampaignRun, contact_id: str) -> tuple[str, list]:
    """SQL for each planned contact's variant (the contact whose id is in the column `contact_id`),
    with its parameters: the winner in the winner run; otherwise weighted, from a hash of the
    campaign and the contact's key (read only here: a campaign without variants reads no contact),
    so the same contact gets the same variant in every run. NULL for a campaign without variants."""
    campaign = run.campaign
    if run.purpose == CampaignRun.Purpose.WINNER:
        winner = variant_winner_id(campaign=campaign)
        if winner is not None:
            return "%s::bigint", [winner]
    variants = list(CampaignVariant.objects.filter(campaign=campaign).order_by("pk").values_list("pk", "weight"))
    if not variants:
        return "NULL::bigint", []
    total = sum(weight for _pk, weight in variants)
    cases, params, upper = [], [], 0
    for pk, weight in variants:
        upper += weight
        cases.append("WHEN v.bucket < %s THEN %s::bigint")
        params += [upper, pk]
    # abs() of the remainder, not of the hash: the same bucket, and the smallest bigint has no absolute value.
    key = f"(SELECT c.contact_key FROM audiences_contact c WHERE c.id = {contact_id})"  # noqa: S608 - a column name
    bucket = f"abs(mod(hashtextextended({key}::text || ':' || %s::text, 0), %s))"
    sql = f"(SELECT CASE {' '.join(cases)} END FROM (SELECT {bucket} AS bucket) v)"  # noqa: S608 - placeholders only
    return sql, [*params, campaign.pk, total]


def variant_winner_id(*, campaign: Campaign) -> int | None:
    """The id of the campaign's winning variant; None before its test picked one (or without a test)."""
    return CampaignVariant.objects.filter(campaign_id=campaign.pk, is_winner=True).values_list("pk", flat=True).first()


def variant_winner_waits(*, run: CampaignRun) -> bool:
    """Whether a winner run must wait for its winner (the test is not over, or not picked yet)."""
    return (
        run.purpose == CampaignRun.Purpose.WINNER
        and CampaignVariant.objects.filter(campaign_id=run.campaign_id).exists()
        and variant_winner_id(campaign=run.campaign) is None
    )


def variant_winner_run_schedule(*, run: CampaignRun, now: dt.datetime) -> None:
    """On planning a variant test: its winner run, the test period from now. Once: a second call
    finds it made (unique per campaign and occurrence)."""
    campaign = run.campaign
    CampaignRun.objects.bulk_create(
        [
            CampaignRun(
                campaign=campaign,
                occurrence=WINNER_OCCURRENCE,
                purpose=CampaignRun.Purpose.WINNER,
                scheduled_for=now + dt.timedelta(hours=campaign.variant_test_hours),
            )
        ],
        ignore_conflicts=True,
    )


# --- The winner --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WinnerPick:
    """A winner picked: the variant, on what (its conversion rate; its click rate when conversion
    rates tied or nobody converted; the first variant when those tied too), and every variant's figures."""

    campaign_id: int
    variant: CampaignVariant
    picked_on: PickedOn
    results: list[VariantResult]


def _no_data_lowest(rate: Fraction | None) -> Fraction:
    return Fraction(-1) if rate is None else rate


def variant_best(results: list[VariantResult]) -> tuple[VariantResult, PickedOn]:
    """The best variant of a test: the highest conversion rate of its treated contacts. When the
    best rate is shared, or nobody converted, the highest click rate among those; when that is
    shared too, or nobody clicked, the first of them (the order the variants were added in). A
    variant nobody received (every message held back) loses to one that was received."""
    if not results:
        raise ValueError("A test without variants has no winner.")
    candidates = results
    rates: list[tuple[PickedOn, Callable[[VariantResult], Fraction | None]]] = [
        ("conversion_rate", lambda result: result.conversion_rate),
        ("click_rate", lambda result: result.click_rate),
    ]
    for picked_on, rate in rates:
        best = max(_no_data_lowest(rate(result)) for result in candidates)
        leaders = [result for result in candidates if _no_data_lowest(rate(result)) == best]
        if best > 0 and len(leaders) == 1:
            return leaders[0], picked_on
        candidates = leaders
    return candidates[0], "first_variant"


def _due_winner_runs(now: dt.datetime) -> QuerySet[CampaignRun]:
    """Winner runs that came due, of running campaigns with no winner yet, whose test is over."""
    return CampaignRun.objects.filter(
        purpose=CampaignRun.Purpose.WINNER,
        status=CampaignRun.Status.SCHEDULED,
        scheduled_for__lte=now,
        campaign__status=Campaign.Status.RUNNING,
    ).filter(
        ~Exists(CampaignVariant.objects.filter(campaign_id=OuterRef("campaign_id"), is_winner=True)),
        ~Exists(
            CampaignRun.objects.filter(
                campaign_id=OuterRef("campaign_id"), purpose=CampaignRun.Purpose.TEST, status__in=OPEN_RUN_STATUSES
            )
        ),
    )


def variant_winners_pick(*, now: dt.datetime) -> list[WinnerPick]:
    """For every variant test whose test period is over (its winner run came due) and that has been
    sent: pick the winner on the test's figures (`variant_best`) and mark it, so that the winner run
    sends it to the rest. Safe to run twice and from two workers at once: the winner run is claimed
    with FOR UPDATE SKIP LOCKED, the mark is a conditional update, and a campaign has one winner at
    most (a constraint)."""
    picks = []
    for run_id in _due_winner_runs(now).order_by("scheduled_for").values_list("pk", flat=True):
        with transaction.atomic():
            run = (
                _due_winner_runs(now)
                .select_for_update(skip_locked=True, of=("self",))
                .select_related("campaign")
                .filter(pk=run_id)
                .first()
            )
            if run is None:  # another worker has it, or picked it in between
                continue
            campaign = run.campaign
            results = campaign_variant_results(campaign=campaign, purpose=CampaignRun.Purpose.TEST)
            if not results:  # its variants were removed: the run sends the campaign's message
                continue
            best, picked_on = variant_best(results)
            marked = (
                CampaignVariant.objects.filter(pk=best.variant.pk)
                .filter(~Exists(CampaignVariant.objects.filter(campaign_id=campaign.pk, is_winner=True)))
                .update(is_winner=True, updated_at=now)
            )
            if not marked:
                continue
        best.variant.is_winner = True
        picks.append(WinnerPick(campaign_id=campaign.pk, variant=best.variant, picked_on=picked_on, results=results))
        logger.info(
            "Campaign %s: variant %s won its test on %s (%s)",
            campaign.pk,
            best.variant.pk,
            picked_on,
            ", ".join(
                f"{result.variant.pk}: {result.converted}/{result.treated} converted, {result.clicked} clicked"
                for result in results
            ),
        )
    return picks
