"""Churn risk and lifetime value on every profile: training, activating and scoring.

- `prediction_model_train` learns a new version of a kind on a time split of the project's own
  data: features before a moment, the outcome in the horizon after it; checked on the next,
  held-out period. It writes a `PredictionModel` row with its figures, not in use yet.
- `prediction_model_activate` puts a version in use, a person's decision: one that does worse
  on its held-out period than the active one needs `confirm_worse`.
- `scores_refresh` scores every contact with each active model: the features of a million
  contacts in one query, predictions in batches, written with `COPY` and one upsert. A contact
  with no events gets the model's prior and is marked as such. The scores are the profile's
  `Score` rows (`churn`, `lifetime_value`): segments, templates (`contact.scores.churn`) and the
  next-best offer's propensity read them there.
"""

from __future__ import annotations

import datetime as dt
import io
import pickle
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from audiences.insights.features import COPY_SIGNATURE, FEATURE_NAMES, FeatureTable, features_read, outcomes_read
from audiences.insights.lifetime import FitFailed
from audiences.insights.training import (
    LifetimeScorer,
    NotEnoughData,
    Scorer,
    churn_fit,
    churn_metrics,
    library_version,
    lifetime_bgnbd_fit,
    lifetime_regression_fit,
    mean_absolute_error,
    require,
    usable_features,
)
from audiences.models import Contact, PredictionModel, Score

Kind = PredictionModel.Kind

HORIZON_DAYS = {Kind.CHURN: 180, Kind.LIFETIME_VALUE: 365}
MIN_CONTACTS = 500  # with events, to learn from and again to check on
MIN_PER_OUTCOME = 50  # of each outcome (bought again or not; bought at all in the horizon or not)

__all__ = [
    "FeatureMismatch",
    "NotEnoughData",
    "WorseThanActive",
    "prediction_model_activate",
    "prediction_model_train",
    "scores_refresh",
]


class FeatureMismatch(Exception):
    """A stored model reads features this version of Dialoog no longer computes, or its file does
    not match the feature list on its row (or this site's signature, or this scikit-learn).
    `scored`: what the other kinds' models scored meanwhile."""

    def __init__(self, message: str, scored: list[Scored] | None = None):
        super().__init__(message)
        self.scored = scored or []


class WorseThanActive(Exception):
    """Activating this model would replace a better one; pass `confirm_worse=True` to do it anyway."""


def _not_enough(kind: str, error: NotEnoughData) -> NotEnoughData:
    active = PredictionModel.objects.filter(kind=kind, status=PredictionModel.Status.ACTIVE).first()
    keeps = f" The active model ({active}) stays in use." if active else " No model is active for it yet."
    return NotEnoughData(f"{error}{keeps}")


def _next_version(kind: str) -> int:
    return (PredictionModel.objects.filter(kind=kind).aggregate(last=Max("version"))["last"] or 0) + 1


@dataclass
class _Outcomes:
    bought: np.ndarray
    revenue: np.ndarray  # refunds beyond purchases count as nothing spent


@dataclass
class _Periods:
    """The two periods of a training: learned from (features before `train_until`, the outcome up to
    `evaluate_until`) and checked on (features before `evaluate_until`, the outcome up to now)."""

    kind: str
    horizon_days: int
    train_until: dt.datetime
    evaluate_until: dt.datetime
    learn: FeatureTable  # the contacts with events before train_until
    learn_bought: np.ndarray
    learn_revenue: np.ndarray
    check: FeatureTable  # the contacts with events before evaluate_until
    check_bought: np.ndarray
    check_revenue: np.ndarray
    # Contacts known before train_until without a single event: what they did in the horizon after
    # is what a contact with no events is scored with (the prior).
    newcomers_bought: np.ndarray
    newcomers_revenue: np.ndarray
    notes: list[str] = field(default_factory=list)  # what the training left out, for the model card

    @classmethod
    def read(cls, *, kind: str, as_of: dt.datetime, horizon_days: int) -> _Periods:
        evaluate_until = as_of - dt.timedelta(days=horizon_days)
        train_until = evaluate_until - dt.timedelta(days=horizon_days)
        tables = []
        for since, until in ((train_until, evaluate_until), (evaluate_until, as_of)):
            table = features_read(as_of=since)
            outcomes = outcomes_read(ids=table.ids, start=since, end=until)
            tables.append((table, outcomes))
        (every, everyone), (later, laters) = tables
        known, known_later = every.has_events, later.has_events
        newcomers = ~known & (every.column("tenure_days") > 0)
        learn, check = every.subset(known), later.subset(known_later)
        learned = _Outcomes(bought=everyone.bought[known], revenue=np.maximum(everyone.revenue[known], 0.0))
        checked = _Outcomes(bought=laters.bought[known_later], revenue=np.maximum(laters.revenue[known_later], 0.0))
        return cls(
            kind=kind,
            horizon_days=horizon_days,
            train_until=train_until,
            evaluate_until=evaluate_until,
            learn=learn,
            learn_bought=learned.bought,
            learn_revenue=learned.revenue,
            check=check,
            check_bought=checked.bought,
            check_revenue=checked.revenue,
            newcomers_bought=everyone.bought[newcomers],
            newcomers_revenue=np.maximum(everyone.revenue[newcomers], 0.0),
        )

    def prior(self, outcome: np.ndarray, overall: np.ndarray) -> float:
        """The mean outcome of the contacts without events; of everyone learned from when there are
        too few of them to tell (fewer than MIN_PER_OUTCOME)."""
        return float(outcome.mean() if len(outcome) >= MIN_PER_OUTCOME else overall.mean())

    def require(self, *, learn_positives: int, check_positives: int, outcome: str, other: str) -> tuple[str, ...]:
        """The usable features, or NotEnoughData (saying that the active model stays in use)."""
        try:
            for what, rows, positives in (
                (f"to learn from before {self.train_until:%Y-%m-%d}", len(self.learn), learn_positives),
                (f"to check on before {self.evaluate_until:%Y-%m-%d}", len(self.check), check_positives),
            ):
                require(
                    what=what,
                    rows=rows,
                    positives=positives,
                    minimum=MIN_CONTACTS,
                    per_outcome=MIN_PER_OUTCOME,
                    outcome=outcome,
                    other=other,
                )
            features, self.notes = usable_features(self.learn)
            if not features:
                raise NotEnoughData("Too little data: every feature has the same value for every contact.")
        except NotEnoughData as error:
            history = NotEnoughData(
                f"{error} Training needs events from before {self.train_until:%Y-%m-%d}: it learns from two "
                f"horizons of {self.horizon_days} days back."
            )
            raise _not_enough(self.kind, history) from error
        return features

    def save(self, *, scorer: Scorer, metrics: dict, prior: float, user: Any) -> PredictionModel:
        with transaction.atomic():
            return PredictionModel.objects.create(
                kind=self.kind,
                version=_next_version(self.kind),
                algorithm=scorer.algorithm,
                features=list(scorer.features),
                horizon_days=self.horizon_days,
                trained_until=self.train_until,
                evaluated_until=self.evaluate_until,
                training_rows=len(self.learn),
                evaluation_rows=len(self.check),
                metrics=metrics,
                prior=float(prior),
                artifact=_sign(pickle.dumps(scorer, protocol=pickle.HIGHEST_PROTOCOL)),
                notes=self.notes,
                trained_by=getattr(user, "username", "") or "",
            )


def prediction_model_train(
    *, kind: str, as_of: dt.datetime | None = None, horizon_days: int | None = None, user: Any = None, seed: int = 0
) -> PredictionModel:
    """Train and check a new version of `kind` as of `as_of` (now): learned from the period two
    horizons back, checked on the last horizon. Raises NotEnoughData, and writes nothing, when
    either period has too few contacts; the active model stays in use."""
    horizon_days = horizon_days or HORIZON_DAYS[Kind(kind)]
    periods = _Periods.read(kind=kind, as_of=as_of or timezone.now(), horizon_days=horizon_days)
    if kind == Kind.CHURN:
        return _train_churn(periods, user=user, seed=seed)
    return _train_lifetime(periods, user=user, seed=seed)


def _train_churn(periods: _Periods, *, user: Any, seed: int) -> PredictionModel:
    churned, churned_later = ~periods.learn_bought, ~periods.check_bought
    features = periods.require(
        learn_positives=int(churned.sum()),
        check_positives=int(churned_later.sum()),
        outcome=f"bought nothing in the {periods.horizon_days} days after",
        other="bought in them",
    )
    scorer = churn_fit(periods.learn.columns(features), churned, features, seed=seed)
    check = periods.check
    metrics = churn_metrics(scorer.predict(check), churned_later, check.column("recency_days"))
    prior = periods.prior(~periods.newcomers_bought, churned)
    return periods.save(scorer=scorer, metrics=metrics, prior=prior, user=user)


def _train_lifetime(periods: _Periods, *, user: Any, seed: int) -> PredictionModel:
    spent, spent_later = periods.learn_revenue, periods.check_revenue
    features = periods.require(
        learn_positives=int((spent > 0).sum()),
        check_positives=int((spent_later > 0).sum()),
        outcome=f"bought in the {periods.horizon_days} days after",
        other="did not",
    )
    learn, check = periods.learn, periods.check
    # Contacts with events but no purchase yet: BG/NBD has nothing to go on for them.
    never_bought = learn.column("purchase_days_all") == 0
    non_buyers = float(spent[never_bought].mean()) if never_bought.any() else float(spent.mean())
    prior = periods.prior(periods.newcomers_revenue, spent)
    candidates: dict[str, Scorer] = {
        "regression": lifetime_regression_fit(learn.columns(features), spent, features, seed=seed)
    }
    try:
        # Fitted on the histories up to the start of the held-out period: nothing of it is seen.
        candidates["bg_nbd"] = lifetime_bgnbd_fit(check, horizon_days=periods.horizon_days, prior=non_buyers)
    except FitFailed as error:
        periods.notes.append(f"BG/NBD with Gamma-Gamma not used: {error}.")
    # The features left out concern the regression; BG/NBD reads purchase counts, days and revenue only.
    periods.notes = [f"Regression: {note}" if note.startswith("Feature") else note for note in periods.notes]
    predicted = {name: scorer.predict(check) for name, scorer in candidates.items()}
    errors = {name: mean_absolute_error(values, spent_later) for name, values in predicted.items()}
    chosen = min(errors, key=errors.__getitem__)
    metrics: dict[str, Any] = {
        "mae": errors[chosen],
        "chosen": chosen,
        "mae_by_model": errors,
        "baseline_mae": mean_absolute_error(check.column("revenue_365") * periods.horizon_days / 365, spent_later),
        "baseline": "the same revenue as in the year before",
        "predicted_total": round(float(predicted[chosen].sum()), 2),
        "actual_total": round(float(spent_later.sum()), 2),
        "buyers_share": round(float((spent_later > 0).mean()), 4),
    }
    scorer = candidates[chosen]
    if isinstance(scorer, LifetimeScorer):
        metrics["parameters"] = scorer.model.describe()
    return periods.save(scorer=scorer, metrics=metrics, prior=prior, user=user)


# --- The stored model ---------------------------------------------------------------------------

_SIGNATURE = 32  # bytes of HMAC-SHA256 before the pickle


def _sign(data: bytes) -> bytes:
    """The pickle with an HMAC of the project's secret key before it: a model row written by anyone
    but this module (a fixture loaded, the table edited) is refused before it is unpickled."""
    return salted_hmac("dialoog.prediction-model", data, algorithm="sha256").digest() + data


def _unsigned(model: PredictionModel) -> bytes:
    artifact = bytes(model.artifact)
    signature, data = artifact[:_SIGNATURE], artifact[_SIGNATURE:]
    if not constant_time_compare(signature, salted_hmac("dialoog.prediction-model", data, algorithm="sha256").digest()):
        raise FeatureMismatch(
            f"{model}: its stored model is not signed by this site (written elsewhere, or the secret key "
            "changed). Train a new version."
        )
    return data


# --- Activation ---------------------------------------------------------------------------------


def better_than(model: PredictionModel, than: PredictionModel) -> bool:
    """Whether `model` did at least as well on its held-out period as `than`."""
    if model.kind == Kind.CHURN:
        return model.metrics.get("auc", 0) >= than.metrics.get("auc", 0)
    return model.metrics.get("mae", float("inf")) <= than.metrics.get("mae", float("inf"))


def prediction_model_scorer(model: PredictionModel) -> Scorer:
    """The model's fitted scorer, checked against the features this version computes and against
    the scikit-learn it was trained with."""
    unknown = [name for name in model.features if name not in FEATURE_NAMES]
    if unknown:
        raise FeatureMismatch(
            f"{model} reads features that are no longer computed: {', '.join(unknown)}. Train a new version."
        )
    data = _unsigned(model)
    try:
        scorer = pickle.loads(data)  # noqa: S301 - signed above by this site's secret key
    except Exception as error:  # a damaged file: whatever unpickling raises
        raise FeatureMismatch(f"{model}: its stored model cannot be read ({error}). Train a new version.") from error
    if (
        not isinstance(scorer, Scorer)
        or tuple(scorer.features) != tuple(model.features)
        or (scorer.feature_count() != len(model.features))
    ):
        found = list(getattr(scorer, "features", []))
        raise FeatureMismatch(
            f"{model}: its stored model reads {found}, its row lists {list(model.features)}. Train a new version."
        )
    if scorer.library_version != library_version():
        raise FeatureMismatch(
            f"{model} was trained with scikit-learn {scorer.library_version}, this is {library_version()}: "
            "its predictions could differ. Train a new version."
        )
    return scorer


def _lock(cursor: Any, kind: str) -> None:
    """Activating a model of a kind and writing its scores take turns: a model retired while a run
    scores is not written, and two activations do not both find no active model."""
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext('dialoog.scores.' || %s))", [kind])


def prediction_model_activate(
    *, model: PredictionModel, user: Any = None, confirm_worse: bool = False
) -> PredictionModel:
    """Put `model` in use for its kind, retiring the one before. A model that did worse on its
    held-out period than the active one needs `confirm_worse`."""
    prediction_model_scorer(model)  # a model that cannot score is never put in use
    with transaction.atomic(), connection.cursor() as cursor:
        _lock(cursor, model.kind)
        active = (
            PredictionModel.objects.select_for_update()
            .filter(kind=model.kind, status=PredictionModel.Status.ACTIVE)
            .exclude(pk=model.pk)
            .first()
        )
        if active and not confirm_worse and not better_than(model, active):
            figure = "AUC" if model.kind == Kind.CHURN else "MAE"
            key = "auc" if model.kind == Kind.CHURN else "mae"
            raise WorseThanActive(
                f"{model} did worse on its held-out period than {active}, which is in use: {figure} "
                f"{model.metrics.get(key)} against {active.metrics.get(key)}. Confirm to activate it anyway."
            )
        if active:
            PredictionModel.objects.filter(pk=active.pk).update(status=PredictionModel.Status.RETIRED)
        PredictionModel.objects.filter(pk=model.pk).update(
            status=PredictionModel.Status.ACTIVE,
            activated_at=timezone.now(),
            activated_by=getattr(user, "username", "") or "",
        )
    model.refresh_from_db()
    return model


# --- Scoring ------------------------------------------------------------------------------------


@dataclass
class Scored:
    model: PredictionModel
    contacts: int
    from_prior: int
    features_seconds: float  # the features of every contact, read once for all kinds
    predict_seconds: float
    write_seconds: float

    @property
    def seconds(self) -> float:
        return self.predict_seconds + self.write_seconds


_SCORE_ROW = np.dtype(
    [
        ("count", ">i2"),
        ("id_length", ">i4"),
        ("id", ">i8"),
        ("value_length", ">i4"),
        ("value", ">f8"),
        ("prior_length", ">i4"),
        ("prior", "u1"),
    ]
)


def _binary_copy(ids: np.ndarray, values: np.ndarray, prior: np.ndarray) -> bytes:
    """(contact id, value, from prior) rows in PostgreSQL's binary COPY format, built by numpy."""
    rows = np.empty(len(ids), dtype=_SCORE_ROW)
    rows["count"], rows["id_length"], rows["value_length"], rows["prior_length"] = 3, 8, 8, 1
    rows["id"], rows["value"], rows["prior"] = ids, values, prior
    header = COPY_SIGNATURE + b"\x00" * 8  # no flags, no header extension
    return header + rows.tobytes() + b"\xff\xff"


# The scores of a kind are rewritten in one transaction: readers see yesterday's or today's. An
# upsert that changes no indexed column, on a table with room on its pages (fillfactor 50), so
# that each row is updated in place (a heap-only update): 3 s for a million contacts, against 11
# to 17 s for a delete and insert or an upsert with the value indexed. Contacts erased or merged
# away since the features were read are left out by the join (erasure removes their scores); the
# lock keeps two runs (a beat started twice) from interleaving.
UPSERT_SQL = """
    INSERT INTO {score} (contact_id, name, value, computed_at, model_id, from_prior)
    SELECT s.contact_id, %(name)s, s.value, %(now)s, %(model)s, s.from_prior
    FROM pg_temp.scored s JOIN {contact} c ON c.id = s.contact_id AND c.erased_at IS NULL
    ON CONFLICT (contact_id, name) DO UPDATE SET
        value = EXCLUDED.value, computed_at = EXCLUDED.computed_at,
        model_id = EXCLUDED.model_id, from_prior = EXCLUDED.from_prior
"""


def _write(model: PredictionModel, ids: np.ndarray, values: np.ndarray, prior: np.ndarray, now: dt.datetime) -> int:
    """Every contact's score of this kind, in one transaction; how many were written (none when the
    model was retired since the run began)."""
    tables = {"score": Score._meta.db_table, "contact": Contact._meta.db_table}
    with transaction.atomic(), connection.cursor() as cursor:
        _lock(cursor, model.kind)
        if not PredictionModel.objects.filter(pk=model.pk, status=PredictionModel.Status.ACTIVE).exists():
            return 0
        # Dropped at commit; inside an outer transaction (a test's) an earlier run's may still be there.
        cursor.execute("DROP TABLE IF EXISTS pg_temp.scored")
        cursor.execute("CREATE TEMP TABLE scored (contact_id int8, value float8, from_prior bool) ON COMMIT DROP")
        with cursor.copy("COPY pg_temp.scored (contact_id, value, from_prior) FROM STDIN (FORMAT BINARY)") as copy:
            payload = io.BytesIO(_binary_copy(ids, values, prior))
            while block := payload.read(1 << 20):
                copy.write(block)
        cursor.execute(UPSERT_SQL.format(**tables), {"name": model.kind, "now": now, "model": model.pk})
        written = cursor.rowcount
        PredictionModel.objects.filter(pk=model.pk).update(scored_at=now, scored_rows=written)
    return written


def scores_refresh(*, kinds: list[str] | None = None, now: dt.datetime | None = None) -> list[Scored]:
    """Score every contact with the active model of each kind (or of `kinds`). The features are read
    once for all kinds, and every prediction is made before anything is written. A model that does
    not fit the features (FeatureMismatch) writes nothing; the other kinds are scored, and the
    mismatch is raised afterwards, so that it is seen."""
    now = now or timezone.now()
    models = list(PredictionModel.objects.filter(status=PredictionModel.Status.ACTIVE, kind__in=kinds or Kind.values))
    scorers, refused = [], []
    for model in models:
        try:
            scorers.append((model, prediction_model_scorer(model)))
        except FeatureMismatch as error:
            refused.append(str(error))
    done = _score(scorers, now) if scorers else []
    if refused:
        raise FeatureMismatch(" ".join(refused), done)
    return done


def _score(scorers: list[tuple[PredictionModel, Scorer]], now: dt.datetime) -> list[Scored]:
    started = time.perf_counter()
    table = features_read(as_of=now)
    reading = time.perf_counter() - started
    known = table.has_events
    planned, predicting = [], []
    for model, scorer in scorers:
        started = time.perf_counter()
        values = np.full(len(table), model.prior, dtype=np.float64)
        values[known] = scorer.predict(table.subset(known))
        planned.append((model, values))
        predicting.append(time.perf_counter() - started)
    # One kind after the other: written side by side on two connections, each took 31 s instead of
    # 11 to 16 (a million contacts on two cores; the writes contend for the disk and the WAL).
    done = []
    for (model, values), predicted in zip(planned, predicting, strict=True):
        started = time.perf_counter()
        written = _write(model, table.ids, values, ~known, now)
        if written:
            done.append(
                Scored(
                    model=model,
                    contacts=written,
                    from_prior=int((~known).sum()),
                    features_seconds=reading,
                    predict_seconds=predicted,
                    write_seconds=time.perf_counter() - started,
                )
            )
    return done
