"""Fitting and checking the prediction models on arrays: no database here.

- **Churn**: the probability that a contact makes no purchase in the horizon, from a gradient
  boosting classifier calibrated with isotonic regression (cross-validated), so that "0.7"
  means that about 7 in 10 such contacts do not buy. Checked by AUC, Brier score and a
  calibration table on a later, held-out period, beside the AUC of recency alone.
- **Lifetime value**: the revenue expected over the horizon, from BG/NBD with Gamma-Gamma
  (`lifetime.py`) or from a gradient boosting regression on the same features; the one with
  the smaller mean absolute error on the held-out period is kept, beside the error of "the
  same as last year".

What each fit returns is a `Scorer`: it knows its feature names and predicts from a
`FeatureTable` in batches, and it is what a `PredictionModel` row keeps.

scikit-learn is imported where a model is fitted or checked (unpickling a stored model imports it
too), not with this module: the admin and every web process import the insights, and scikit-learn
with scipy costs each of them a second and about 100 MB at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import numpy as np

from audiences.insights.features import FeatureTable
from audiences.insights.lifetime import BetaGeometricNBD, FitFailed, GammaGamma, LifetimeValueModel

BATCH = 200_000  # contacts predicted at a time: a million contacts' features fit easily, their trees' work less so
MAX_TRAINING_ROWS = 300_000  # a sample of this many learns as well as a million, in a fraction of the time
CALIBRATION_BINS = 10


def library_version() -> str:
    """The installed scikit-learn's version, read without importing it."""
    return version("scikit-learn")


class NotEnoughData(Exception):
    """Too few contacts, or too few of one outcome, to learn from or to check on."""


class Scorer:
    """A fitted model with the names of the features it reads, predicting in batches."""

    algorithm: str = ""
    features: tuple[str, ...] = ()
    library_version: str = ""  # the scikit-learn it was fitted with: another one may predict differently

    def predict_values(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, table: FeatureTable) -> np.ndarray:
        values = table.columns(self.features)
        out = np.empty(len(values), dtype=np.float64)
        for start in range(0, len(values), BATCH):
            out[start : start + BATCH] = self.predict_values(values[start : start + BATCH])
        return out

    def feature_count(self) -> int:
        return len(self.features)


class EstimatorScorer(Scorer):
    """A fitted scikit-learn estimator: the probability of class 1 for a classifier (churn: "did not
    buy in the horizon"), the prediction, never below zero, for a regressor (revenue)."""

    def __init__(self, estimator: Any, features: tuple[str, ...], algorithm: str):
        self.estimator = estimator
        self.features = features
        self.algorithm = algorithm
        self.library_version = library_version()

    def predict_values(self, values: np.ndarray) -> np.ndarray:
        if hasattr(self.estimator, "predict_proba"):
            return self.estimator.predict_proba(values)[:, 1]
        return np.maximum(self.estimator.predict(values), 0.0)

    def feature_count(self) -> int:
        return int(self.estimator.n_features_in_)


class LifetimeScorer(Scorer):
    algorithm = "BG/NBD with Gamma-Gamma"
    features = ("purchase_days_all", "first_purchase_days", "recency_days", "revenue_all")

    def __init__(self, model: LifetimeValueModel, horizon_days: int):
        self.model = model
        self.horizon_days = horizon_days
        self.library_version = library_version()

    def predict_values(self, values: np.ndarray) -> np.ndarray:
        days, first_days, recency, revenue = values.T
        return self.model.predict(
            horizon_days=self.horizon_days, days=days, first_days=first_days, last_days=recency, revenue=revenue
        )


def _sample(rows: int, seed: int) -> np.ndarray:
    if rows <= MAX_TRAINING_ROWS:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, MAX_TRAINING_ROWS, replace=False))


def usable_features(table: FeatureTable) -> tuple[tuple[str, ...], list[str]]:
    """The features that tell the training contacts apart, and a note for each one left out
    because it has one value for everyone (missing for everyone, say: no e-mail was ever opened)."""
    values = table.values
    constant = np.all(values == values[:1], axis=0) if len(values) else np.ones(len(table.names), dtype=bool)
    notes = [
        f"Feature “{name}” left out: it is {values[0, i]:g} for every contact learned from "
        "(missing for everyone, or the same for all)."
        for i, name in enumerate(table.names)
        if constant[i] and len(values)
    ]
    return tuple(name for i, name in enumerate(table.names) if not constant[i]), notes


def require(*, what: str, rows: int, positives: int, minimum: int, per_outcome: int, outcome: str, other: str) -> None:
    if rows < minimum or positives < per_outcome or rows - positives < per_outcome:
        raise NotEnoughData(
            f"Too little data {what}: {rows} contacts with events, {positives} who {outcome} and "
            f"{rows - positives} who {other}. At least {minimum} contacts are needed, with at least "
            f"{per_outcome} of each."
        )


def churn_fit(values: np.ndarray, churned: np.ndarray, features: tuple[str, ...], *, seed: int = 0) -> EstimatorScorer:
    """A calibrated classifier of "no purchase in the horizon" on these rows (columns: `features`)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier

    sample = _sample(len(values), seed)
    # Small trees, many contacts per leaf: the outcome is noisy, and a larger model learned the noise
    # (held-out AUC 0.751 against 0.757 on 30,000 demo contacts).
    booster = HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.05, max_leaf_nodes=8, min_samples_leaf=100, random_state=seed
    )
    # One booster fitted on all rows, calibrated on cross-validated predictions (ensemble=False):
    # scoring a million contacts runs one model, not three.
    classifier = CalibratedClassifierCV(booster, method="isotonic", cv=3, ensemble=False)
    classifier.fit(values[sample], churned[sample].astype(int))
    algorithm = "Gradient boosting (scikit-learn HistGradientBoostingClassifier), isotonic calibration"
    return EstimatorScorer(classifier, features, algorithm)


def calibration_table(predicted: np.ndarray, observed: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Per tenth of predicted probability: how many contacts, their mean prediction, and how many
    of them the outcome really happened to. A calibrated model has the two close in every row."""
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(predicted, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        if count:
            table.append(
                {
                    "from": round(float(edges[b]), 2),
                    "to": round(float(edges[b + 1]), 2),
                    "contacts": count,
                    "predicted": round(float(predicted[members].mean()), 4),
                    "observed": round(float(observed[members].mean()), 4),
                }
            )
    return table


def churn_metrics(predicted: np.ndarray, churned: np.ndarray, recency: np.ndarray) -> dict[str, Any]:
    """The figures on the held-out period, with the AUC of recency alone as the bar to clear."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    return {
        "auc": round(float(roc_auc_score(churned, predicted)), 4),
        "brier": round(float(brier_score_loss(churned, predicted)), 4),
        "baseline_auc": round(float(roc_auc_score(churned, recency)), 4),
        "baseline": "recency alone (days since the last purchase)",
        "churn_rate": round(float(churned.mean()), 4),
        "calibration": calibration_table(predicted, churned.astype(float)),
    }


@dataclass
class LifetimeCandidates:
    """Both lifetime-value models fitted, each with its error on the held-out period."""

    scorers: dict[str, Scorer] = field(default_factory=dict)
    mae: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def best(self) -> tuple[str, Scorer]:
        name = min(self.mae, key=self.mae.__getitem__)
        return name, self.scorers[name]


def lifetime_regression_fit(
    values: np.ndarray, revenue: np.ndarray, features: tuple[str, ...], *, seed: int = 0
) -> EstimatorScorer:
    from sklearn.ensemble import HistGradientBoostingRegressor

    sample = _sample(len(values), seed)
    revenue = np.maximum(revenue, 0.0)  # refunds beyond purchases: nothing spent, not less (Poisson needs it)
    regressor = HistGradientBoostingRegressor(
        loss="poisson", max_iter=150, learning_rate=0.08, max_leaf_nodes=15, min_samples_leaf=40, random_state=seed
    )
    regressor.fit(values[sample], revenue[sample])
    algorithm = "Gradient boosting regression (scikit-learn HistGradientBoostingRegressor, Poisson loss)"
    return EstimatorScorer(regressor, features, algorithm)


def lifetime_bgnbd_fit(table: FeatureTable, *, horizon_days: int, prior: float) -> LifetimeScorer:
    """BG/NBD and Gamma-Gamma fitted on the table's purchase histories, up to its moment."""
    days = table.column("purchase_days_all")
    first = table.column("first_purchase_days")
    recency = table.column("recency_days")
    revenue = table.column("revenue_all")
    buyers = days > 0
    x = days[buyers] - 1
    purchases = BetaGeometricNBD.fit(x, np.maximum(first - recency, 0)[buyers] / 7.0, first[buyers] / 7.0)
    repeat = (days >= 2) & (revenue > 0)
    if repeat.sum() < 20:
        raise FitFailed("Gamma-Gamma: fewer than 20 customers with two purchases or more")
    spend = GammaGamma.fit(days[repeat], revenue[repeat] / days[repeat])
    return LifetimeScorer(LifetimeValueModel(purchases=purchases, spend=spend, prior=prior), horizon_days)


def mean_absolute_error(predicted: np.ndarray, actual: np.ndarray) -> float:
    return round(float(np.mean(np.abs(predicted - actual))), 2)
