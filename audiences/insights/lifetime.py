"""The BG/NBD and Gamma-Gamma models of customer lifetime value, fitted with scipy.

BG/NBD (Fader, Hardie and Lee, "Counting your customers the easy way", 2005): while "alive",
a customer buys at a rate drawn from a gamma distribution (r, alpha); after each purchase they
may drop out with a probability drawn from a beta distribution (a, b). From a customer's
repeat purchases `x`, the age of their last one `t_x` and their own age `T` it gives the
purchases expected in the next `t`. Gamma-Gamma (Fader, Hardie and Lee, "RFM and CLV", 2005)
gives the expected value of a purchase from the customer's mean (p, q, v). Lifetime value over
a horizon is the product of the two.

Written here (60 lines of numpy) rather than taken from `lifetimes`, whose last release is of
2020 and which no longer installs cleanly beside current numpy and pandas. Time is in weeks.

scipy is imported where a model is fitted or predicts, not with this module: the admin and every
web process import the insights, and only training and scoring need scipy (0.45 s and tens of MB).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


class FitFailed(Exception):
    """The optimiser found no parameters (too few repeat buyers, or data the model cannot describe)."""


@dataclass(frozen=True)
class BetaGeometricNBD:
    r: float
    alpha: float
    a: float
    b: float

    @classmethod
    def fit(cls, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BetaGeometricNBD:
        from scipy.optimize import minimize
        from scipy.special import gammaln

        def negative_log_likelihood(log_params: np.ndarray) -> float:
            r, alpha, a, b = np.exp(log_params)
            a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
            a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
            a3 = -(r + x) * np.log(alpha + T)
            with np.errstate(divide="ignore", invalid="ignore"):
                a4 = np.where(
                    x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x), -np.inf
                )
            return -float(np.sum(a1 + a2 + np.logaddexp(a3, a4)))

        found = minimize(negative_log_likelihood, np.zeros(4), method="L-BFGS-B", bounds=[(-10, 10)] * 4)
        r, alpha, a, b = np.exp(found.x)
        if not np.isfinite(found.fun) or abs(a - 1) < 1e-6:
            raise FitFailed(f"BG/NBD: no usable parameters ({found.message})")
        return cls(r=float(r), alpha=float(alpha), a=float(a), b=float(b))

    def expected_purchases(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Purchases expected in the next `t` weeks, per customer."""
        from scipy.special import hyp2f1

        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        first = (a + b + x - 1) / (a - 1)
        second = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(
            r + x, b + x, a + b + x - 1, t / (alpha + T + t)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            alive_odds = np.where(x > 0, (a / (b + x - 1)) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
        return np.nan_to_num(first * second / (1 + alive_odds), nan=0.0, posinf=0.0, neginf=0.0)


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    v: float

    @classmethod
    def fit(cls, purchases: np.ndarray, mean_value: np.ndarray) -> GammaGamma:
        """Fitted on customers with two or more purchases and a positive mean value. Here a customer's
        purchases are all their days with a purchase, the first included, and the mean is over all of
        them (Fader, Hardie and Lee use the repeat purchases alone); fitting and prediction count alike."""
        from scipy.optimize import minimize
        from scipy.special import gammaln

        n, m = purchases, mean_value

        def negative_log_likelihood(log_params: np.ndarray) -> float:
            p, q, v = np.exp(log_params)
            ll = (
                gammaln(p * n + q)
                - gammaln(p * n)
                - gammaln(q)
                + q * np.log(v)
                + (p * n - 1) * np.log(m)
                + (p * n) * np.log(n)
                - (p * n + q) * np.log(n * m + v)
            )
            return -float(np.sum(ll))

        start = np.log([1.0, 2.0, float(np.mean(m))])
        found = minimize(negative_log_likelihood, start, method="L-BFGS-B", bounds=[(-10, 10), (-10, 10), (-10, 15)])
        p, q, v = np.exp(found.x)
        if not np.isfinite(found.fun) or q <= 1:
            raise FitFailed("Gamma-Gamma: no usable parameters (q must exceed 1)")
        return cls(p=float(p), q=float(q), v=float(v))

    def expected_value(self, purchases: np.ndarray, mean_value: np.ndarray) -> np.ndarray:
        """The expected value of a customer's next purchase, shrunk from their mean towards everyone's."""
        p, q, v = self.p, self.q, self.v
        return (p * (v + purchases * mean_value)) / (p * purchases + q - 1)


@dataclass(frozen=True)
class LifetimeValueModel:
    """BG/NBD for how often, Gamma-Gamma for how much; customers who never bought get `prior`."""

    purchases: BetaGeometricNBD
    spend: GammaGamma
    prior: float

    def predict(
        self, *, horizon_days: int, days: np.ndarray, first_days: np.ndarray, last_days: np.ndarray, revenue: np.ndarray
    ) -> np.ndarray:
        """Expected revenue over the horizon from each contact's purchase days (count), the days since
        their first and last purchase day, and their revenue so far."""
        bought = days > 0
        x = np.maximum(days - 1, 0)
        T = first_days / 7.0
        t_x = np.maximum(first_days - last_days, 0) / 7.0
        mean_value = np.where(bought, revenue / np.maximum(days, 1), 0.0)
        expected = self.purchases.expected_purchases(horizon_days / 7.0, x, t_x, T)
        value = self.spend.expected_value(np.maximum(days, 1), mean_value)
        # A customer whose refunds exceed their purchases has a negative mean: worth nothing, not less.
        return np.maximum(np.where(bought, expected * value, self.prior), 0.0)

    def describe(self) -> dict:
        return {"bg_nbd": asdict(self.purchases), "gamma_gamma": asdict(self.spend), "prior": self.prior}
