"""How goals and campaign measurements read in the admin: status badges, values, uplift tables.

Shared by the goal page, the campaign measurement page and the campaign page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.template.loader import render_to_string
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from goals.metrics import CATALOGUE
from goals.models import Goal
from goals.selectors import UpliftResult, goal_total_effect
from goals.services import format_value
from goals.statistics import Comparison

NONE = "\u2013"  # an en dash: no figure
MINUS = "\u2212"  # a minus sign, as wide as the plus


def status_badge(goal: Goal) -> SafeString:
    return format_html('<span class="goal-status goal-status-{}">{}</span>', goal.status, goal.get_status_display())


def days_left_text(goal: Goal, today: dt.date) -> str:
    left = goal.days_left(today)
    if left is None:
        return _("ended")
    if goal.starts_on > today:
        return ngettext("%(days)s day (starts in %(start)s)", "%(days)s days (starts in %(start)s)", left) % {
            "days": left,
            "start": ngettext("%(n)s day", "%(n)s days", (goal.starts_on - today).days)
            % {"n": (goal.starts_on - today).days},
        }
    return ngettext("%(days)s day", "%(days)s days", left) % {"days": left}


# --- campaign measurements -----------------------------------------------------------------


def _percent(fraction: float | Decimal | None, places: int = 1, signed: bool = False) -> str:
    if fraction is None:
        return NONE
    value = float(fraction) * 100
    return f"{value:+.{places}f}%" if signed else f"{value:.{places}f}%"


def _points(fraction: float) -> str:
    return _("%(points)s pp") % {"points": f"{fraction * 100:+.2f}"}


def _euro(amount: float | Decimal | None, signed: bool = False) -> str:
    if amount is None:
        return NONE
    sign = ("+" if amount > 0 else MINUS if amount < 0 else "") if signed else (MINUS if amount < 0 else "")
    return f"{sign}€ {number_format(abs(Decimal(str(amount))), 2, force_grouping=True)}"


def _p_value(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


@dataclass(frozen=True)
class ComparisonText:
    treatment: str
    holdout: str
    absolute: str
    relative: str
    interval: str
    p_value: str
    significant: bool
    problem: str


def conversion_text(comparison: Comparison) -> ComparisonText:
    return ComparisonText(
        treatment=_percent(comparison.treatment, 2),
        holdout=_percent(comparison.control, 2),
        absolute=_points(comparison.absolute),
        relative=_percent(comparison.relative, 0, signed=True),
        interval=_("%(low)s to %(high)s") % {"low": _points(comparison.low), "high": _points(comparison.high)},
        p_value=_p_value(comparison.p_value),
        significant=comparison.significant,
        problem=comparison.reason if comparison.too_small else "",
    )


def revenue_text(comparison: Comparison) -> ComparisonText:
    return ComparisonText(
        treatment=_euro(comparison.treatment),
        holdout=_euro(comparison.control),
        absolute=_euro(comparison.absolute, signed=True),
        relative=_percent(comparison.relative, 0, signed=True),
        interval=_("%(low)s to %(high)s")
        % {"low": _euro(comparison.low, signed=True), "high": _euro(comparison.high, signed=True)},
        p_value=_p_value(comparison.p_value),
        significant=comparison.significant,
        problem=comparison.reason if comparison.too_small else "",
    )


@dataclass(frozen=True)
class UpliftText:
    """One campaign measurement as the admin shows it: the figures, or why there are none."""

    result: UpliftResult
    holdout: str
    measured_on: dt.date | None
    sizes: str
    comparisons: list[tuple[str, ComparisonText]]
    incremental_conversions: str
    incremental_revenue: str
    cost: str
    roi: str
    target_share: str
    problem: str


def uplift_text(result: UpliftResult) -> UpliftText:
    experiment, uplift = result.experiment, result.uplift
    if experiment.holdout_percent:
        holdout = _("%(percent)s%% held out") % {"percent": f"{experiment.holdout_percent:g}"}
    else:
        holdout = _("no holdout: %(reason)s") % {"reason": experiment.holdout_off_reason}
    sizes = (
        _("%(treatment)s in the treatment, %(holdout)s in the holdout")
        % {
            "treatment": number_format(uplift.treatment_size, force_grouping=True),
            "holdout": number_format(uplift.holdout_size, force_grouping=True),
        }
        if uplift is not None
        else ""
    )
    comparisons = []
    if result.conversion is not None:
        comparisons.append((_("Conversion rate"), conversion_text(result.conversion)))
    if result.revenue is not None:
        comparisons.append((_("Revenue per contact"), revenue_text(result.revenue)))
    incremental = result.incremental_conversions
    return UpliftText(
        result=result,
        holdout=holdout,
        measured_on=uplift.measured_on if uplift is not None else None,
        sizes=sizes,
        comparisons=comparisons,
        incremental_conversions=f"{incremental:+,.0f}" if incremental is not None else NONE,
        incremental_revenue=_euro(result.incremental_revenue, signed=True),
        cost=_euro(result.cost),
        roi=_percent(result.roi, 0, signed=True),
        # Already in % of the goal's required change.
        target_share=f"{result.target_share:.0f}%" if result.target_share is not None else NONE,
        problem=result.problem,
    )


def uplifts_html(results: list[UpliftResult], *, show_goal: bool = False) -> str:
    """A table of campaign measurements with their uplift; a measurement whose figures cannot be
    trusted shows why instead of its figures."""
    return render_to_string(
        "admin/goals/includes/uplifts.html", {"uplifts": [uplift_text(r) for r in results], "show_goal": show_goal}
    )


# --- the total effect (global control group) ---------------------------------------------------


def total_effect_text(goal: Goal) -> dict[str, Any] | None:
    """The goal's total effect as the goal page shows it; None when the global control group has
    not been measured for it."""
    effect = goal_total_effect(goal=goal)
    if effect is None:
        return None
    difference = ""
    if effect.difference is not None:
        percent = CATALOGUE[goal.metric].unit == "percent"
        difference = _points(float(effect.difference) / 100) if percent else f"{effect.difference:+.2f}"
    compared = conversion_text(effect.comparison) if effect.comparison and not effect.problem else None
    return {
        "day": effect.day,
        "control": format_value(effect.control, goal.metric),
        "everyone_else": format_value(effect.everyone_else, goal.metric),
        "difference": difference,
        "control_size": effect.control_size,
        "problem": effect.problem,
        "interval": compared.interval if compared else "",
        "p_value": compared.p_value if compared else "",
    }
