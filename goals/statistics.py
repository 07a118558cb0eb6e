"""The statistics of uplift: a treatment group against its holdout, with a 95% interval and a p-value.

    compare_rates(treatment=Rate(conversions=460, size=4_000), control=Rate(conversions=38, size=400))
    compare_means(treatment=Sample(size=4_000, mean=31.2, variance=2_310.0), control=Sample(...))

Rates (conversion, opt-in, acceptance) use the two-proportion z-test: the p-value from the pooled
standard error (under "no difference" both groups share one rate), the interval from the unpooled
(Wald) one. Amounts (revenue per contact, order value) use Welch's t-test, which does not assume
equal variances: holdouts are small and their spread differs from the treatment's.

Too small a sample makes a misleading number, so each comparison says whether it can be trusted:
a rate needs at least `MIN_GROUP_SIZE` contacts per group and `MIN_EVENTS` conversions and as many
non-conversions in each; an amount needs `MIN_GROUP_SIZE` per group. When it cannot, `too_small`
is set with the reason, and callers show that instead of the figures.

Pure functions of their numbers, on the standard library only (the normal distribution from
`statistics.NormalDist`, Student's t through the regularised incomplete beta function); the
tests check them against scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from django.utils.translation import gettext as _

CONFIDENCE = 0.95
MIN_GROUP_SIZE = 30
MIN_EVENTS = 5
STANDARD_NORMAL = NormalDist()


@dataclass(frozen=True)
class Rate:
    """How many of a group converted."""

    conversions: int
    size: int

    @property
    def value(self) -> float:
        return self.conversions / self.size if self.size else 0.0


@dataclass(frozen=True)
class Sample:
    """An amount per contact in a group: its size, mean and (sample, n - 1) variance."""

    size: int
    mean: float
    variance: float

    @classmethod
    def of(cls, values: list[float]) -> Sample:
        size = len(values)
        mean = math.fsum(values) / size if size else 0.0
        variance = math.fsum((value - mean) ** 2 for value in values) / (size - 1) if size > 1 else 0.0
        return cls(size, mean, variance)


@dataclass(frozen=True)
class Comparison:
    """Treatment against control: the difference, its interval, and whether it can be trusted."""

    treatment: float
    control: float
    low: float  # the interval of the absolute difference
    high: float
    p_value: float
    confidence: float
    too_small: bool = False
    reason: str = ""

    @property
    def absolute(self) -> float:
        return self.treatment - self.control

    @property
    def relative(self) -> float | None:
        """The difference as a share of the control; None when the control is 0."""
        return self.absolute / self.control if self.control else None

    @property
    def significant(self) -> bool:
        return not self.too_small and self.p_value < 1 - self.confidence


def too_small_reason(sizes: tuple[int, int], events: tuple[int, ...] = ()) -> str:
    if min(sizes) < MIN_GROUP_SIZE:
        return _(
            "Too few contacts to measure: %(treatment)s in the treatment, %(control)s in the holdout; "
            "each needs at least %(minimum)s."
        ) % {
            "treatment": f"{sizes[0]:,}",
            "control": f"{sizes[1]:,}",
            "minimum": MIN_GROUP_SIZE,
        }
    if events and min(events) < MIN_EVENTS:
        return _(
            "Too few conversions to measure: each group needs at least %(minimum)s contacts who converted "
            "and %(minimum)s who did not."
        ) % {"minimum": MIN_EVENTS}
    return ""


def compare_rates(*, treatment: Rate, control: Rate, confidence: float = CONFIDENCE) -> Comparison:
    """The two-proportion z-test of treatment against control."""
    if treatment.size <= 0 or control.size <= 0:
        raise ValueError("Both groups need at least one contact.")
    for group in (treatment, control):
        if not 0 <= group.conversions <= group.size:
            raise ValueError("Conversions must be between 0 and the group's size.")
    p1, p2 = treatment.value, control.value
    absolute = p1 - p2
    pooled = (treatment.conversions + control.conversions) / (treatment.size + control.size)
    pooled_error = math.sqrt(pooled * (1 - pooled) * (1 / treatment.size + 1 / control.size))
    # Everyone or no one converted in both groups: no difference to test.
    p_value = 1.0 if pooled_error == 0 else 2 * STANDARD_NORMAL.cdf(-abs(absolute) / pooled_error)
    error = math.sqrt(p1 * (1 - p1) / treatment.size + p2 * (1 - p2) / control.size)
    margin = STANDARD_NORMAL.inv_cdf(1 - (1 - confidence) / 2) * error
    events = (
        treatment.conversions,
        treatment.size - treatment.conversions,
        control.conversions,
        control.size - control.conversions,
    )
    return compared(p1, p2, margin, p_value, confidence, too_small_reason((treatment.size, control.size), events))


def compare_means(*, treatment: Sample, control: Sample, confidence: float = CONFIDENCE) -> Comparison:
    """Welch's t-test of treatment against control (unequal variances)."""
    if treatment.size < 2 or control.size < 2:
        raise ValueError("Both groups need at least two contacts.")
    if treatment.variance < 0 or control.variance < 0:
        raise ValueError("A variance cannot be negative.")
    absolute = treatment.mean - control.mean
    share_t, share_c = treatment.variance / treatment.size, control.variance / control.size
    error = math.sqrt(share_t + share_c)
    if error == 0:
        p_value, margin = (1.0 if absolute == 0 else 0.0), 0.0
    else:
        freedom = (share_t + share_c) ** 2 / (share_t**2 / (treatment.size - 1) + share_c**2 / (control.size - 1))
        p_value = 2 * student_t_sf(abs(absolute) / error, freedom)
        margin = student_t_quantile(1 - (1 - confidence) / 2, freedom) * error
    return compared(
        treatment.mean, control.mean, margin, p_value, confidence, too_small_reason((treatment.size, control.size))
    )


def compared(
    treatment: float, control: float, margin: float, p_value: float, confidence: float, reason: str
) -> Comparison:
    difference = treatment - control
    return Comparison(
        treatment=treatment,
        control=control,
        low=difference - margin,
        high=difference + margin,
        p_value=min(p_value, 1.0),
        confidence=confidence,
        too_small=bool(reason),
        reason=reason,
    )


# --- Student's t -------------------------------------------------------------------------------


def student_t_sf(t: float, freedom: float) -> float:
    """P(T > t) for Student's t with `freedom` degrees of freedom (t >= 0)."""
    if t < 0:
        return 1 - student_t_sf(-t, freedom)
    return 0.5 * incomplete_beta(freedom / 2, 0.5, freedom / (freedom + t * t))


def student_t_quantile(probability: float, freedom: float) -> float:
    """The t with P(T <= t) = probability (0.5 < probability < 1), by bisection on the tail."""
    tail = 1 - probability
    low, high = 0.0, 1.0
    while student_t_sf(high, freedom) > tail:
        high *= 2
    for _step in range(200):
        middle = (low + high) / 2
        if student_t_sf(middle, freedom) > tail:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), by its continued fraction (Lentz)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * beta_fraction(a, b, x) / a
    return 1 - front * beta_fraction(b, a, 1 - x) / b


def beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return result
