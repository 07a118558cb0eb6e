"""Churn risk and lifetime value on the profile, trained on the demo shop's own data.

The demo generator plants signal (churners buy less and less before they stop; customers buy
at rates of their own), so the models have something real to learn. Every figure asserted here
is computed by the run; none is written down. The shop (8,000 demo contacts) is loaded once for
the module, in a transaction rolled back at its end; each test runs in a savepoint inside it.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from sklearn.metrics import roc_auc_score

from audiences.insights.features import FEATURE_NAMES, features_read, outcomes_read
from audiences.insights.predictions import (
    FeatureMismatch,
    NotEnoughData,
    WorseThanActive,
    prediction_model_activate,
    prediction_model_train,
    scores_refresh,
)
from audiences.insights.training import churn_fit, usable_features
from audiences.models import Contact, Event, PredictionModel, Score
from audiences.selectors.segments import segment_count
from audiences.tasks import prediction_models_train_task, scores_refresh_task
from campaigns.models import Offer
from campaigns.offers.decisions import offer_decide
from content.selectors import contact_context
from dialoog.demo import demo_load
from tests.offer_helpers import caller, offer

AS_OF = dt.date(2026, 11, 22)
NOW = timezone.make_aware(dt.datetime.combine(AS_OF + dt.timedelta(days=1), dt.time()))
Kind = PredictionModel.Kind


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            demo_load(contacts=8000, seed=4, as_of=AS_OF)
            yield
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def trained(shop, db):
    """Both kinds trained and activated as of NOW."""
    return {kind: prediction_model_activate(model=prediction_model_train(kind=kind, as_of=NOW)) for kind in Kind.values}


def _periods(horizon=180):
    """The churn training's two periods, read as the service reads them."""
    evaluate_until = NOW - dt.timedelta(days=horizon)
    train_until = evaluate_until - dt.timedelta(days=horizon)
    learn = features_read(as_of=train_until)
    learn = learn.subset(learn.has_events)
    check = features_read(as_of=evaluate_until)
    check = check.subset(check.has_events)
    churned = ~outcomes_read(ids=learn.ids, start=train_until, end=evaluate_until).bought
    churned_later = ~outcomes_read(ids=check.ids, start=evaluate_until, end=NOW).bought
    return learn, churned, check, churned_later


def test_the_churn_model_beats_recency_alone_on_a_later_held_out_period_and_is_calibrated(shop, db):
    model = prediction_model_train(kind=Kind.CHURN, as_of=NOW)

    figures = model.metrics
    assert model.status == PredictionModel.Status.TRAINED  # not used until someone activates it
    assert model.trained_until < model.evaluated_until < NOW
    assert model.evaluated_until - model.trained_until == dt.timedelta(days=180) == NOW - model.evaluated_until
    assert model.training_rows > 2000 and model.evaluation_rows > model.training_rows
    assert figures["auc"] > figures["baseline_auc"] + 0.01 > 0.6
    # Better than saying everyone's base rate (whose Brier score is p(1 - p)).
    rate = figures["churn_rate"]
    assert figures["brier"] < rate * (1 - rate)
    # Calibrated: in each tenth of predicted churn, the predicted and observed share are close.
    table = figures["calibration"]
    assert sum(row["contacts"] for row in table) == model.evaluation_rows
    error = sum(abs(row["predicted"] - row["observed"]) * row["contacts"] for row in table) / model.evaluation_rows
    assert error < 0.05
    # The demo's page views only go back half a year: at the learning moment nobody had any.
    assert "page_views_90" not in model.features
    assert any("page_views_90" in note and "missing for everyone" in note for note in model.notes)
    # Contacts without a single event get the churn of their like when it was learned: they seldom buy.
    assert figures["churn_rate"] < model.prior <= 1


def test_a_model_trained_on_shuffled_labels_scores_about_one_half(shop, db):
    learn, churned, check, churned_later = _periods()
    features, _notes = usable_features(learn)

    real = churn_fit(learn.columns(features), churned, features).predict(check)
    shuffled_labels = np.random.default_rng(7).permutation(churned)
    shuffled = churn_fit(learn.columns(features), shuffled_labels, features).predict(check)

    assert roc_auc_score(churned_later, real) > 0.7
    assert abs(roc_auc_score(churned_later, shuffled) - 0.5) < 0.06


def test_lifetime_value_keeps_the_model_with_the_smaller_held_out_error(shop, db):
    model = prediction_model_train(kind=Kind.LIFETIME_VALUE, as_of=NOW)

    figures = model.metrics
    assert set(figures["mae_by_model"]) == {"regression", "bg_nbd"}
    assert figures["mae"] == min(figures["mae_by_model"].values())
    assert figures["chosen"] == min(figures["mae_by_model"], key=figures["mae_by_model"].get)
    expected = "BG/NBD" if figures["chosen"] == "bg_nbd" else "regression"
    assert expected in model.algorithm
    assert figures["mae"] < figures["baseline_mae"]  # better than "the same as last year"
    assert 0.7 < figures["predicted_total"] / figures["actual_total"] < 1.3
    assert model.horizon_days == 365 and model.prior >= 0


def test_a_refund_larger_than_the_purchases_counts_as_nothing_spent(shop, db):
    buyer = Event.objects.filter(type="purchase").order_by("occurred_at").first().contact
    Event.objects.create(
        contact=buyer, type="purchase", occurred_at=NOW - dt.timedelta(days=200), value=-100000, currency="EUR"
    )

    model = prediction_model_train(kind=Kind.LIFETIME_VALUE, as_of=NOW)

    assert model.metrics["mae"] < model.metrics["baseline_mae"]
    prediction_model_activate(model=model)
    scores_refresh(now=NOW, kinds=[Kind.LIFETIME_VALUE])
    assert Score.objects.get(contact=buyer, name=Kind.LIFETIME_VALUE).value >= 0


def test_scoring_gives_every_contact_both_scores_with_the_model_and_marks_those_without_events(trained):
    done = scores_refresh(now=NOW)

    contacts = Contact.objects.filter(erased_at=None).count()
    assert {scored.model.kind: scored.contacts for scored in done} == {
        Kind.CHURN: contacts,
        Kind.LIFETIME_VALUE: contacts,
    }
    churn = trained[Kind.CHURN]
    scores = Score.objects.filter(name=Kind.CHURN)
    assert scores.count() == contacts
    assert set(scores.values_list("model", flat=True)) == {churn.pk}
    assert set(scores.values_list("computed_at", flat=True)) == {NOW}
    # Contacts without a single event are scored from the prior, and marked as such.
    without_events = Contact.objects.exclude(pk__in=Event.objects.values("contact_id"))
    assert without_events.exists()
    assert set(scores.filter(from_prior=True).values_list("contact_id", flat=True)) == set(
        without_events.values_list("pk", flat=True)
    )
    assert set(scores.filter(from_prior=True).values_list("value", flat=True)) == {churn.prior}
    assert 0 <= min(scores.values_list("value", flat=True)) < max(scores.values_list("value", flat=True)) <= 1
    churn.refresh_from_db()
    assert churn.scored_at == NOW and churn.scored_rows == contacts

    # Scoring again at the same moment rewrites the same scores: nothing is added or changed.
    before = dict(scores.values_list("contact_id", "value"))
    scores_refresh(now=NOW)
    assert dict(Score.objects.filter(name=Kind.CHURN).values_list("contact_id", "value")) == before


def test_scores_are_used_by_segments_templates_and_the_next_best_offer(trained, english):
    scores_refresh(now=NOW)
    risky = Score.objects.filter(name=Kind.CHURN, value__gte=0.7).count()
    assert 0 < risky < Contact.objects.count()
    assert segment_count(rules={"version": 1, "root": {"score": "churn", "op": "gte", "value": 0.7}}) == risky

    contact = Score.objects.filter(name=Kind.LIFETIME_VALUE, from_prior=False).first().contact
    context = contact_context(contact=contact)
    stored = {score.name: score.value for score in contact.scores.all()}
    assert {name: float(value) for name, value in context["contact"]["scores"].items()} == pytest.approx(stored)

    # An offer whose propensity is the churn score (a win-back call) reads what the model wrote.
    newcomer = caller(first_name="Noor")
    scores_refresh(now=NOW)  # a contact with no events yet: the prior
    offer(name="Terugwinactie", propensity_source=Offer.Propensity.SCORE, propensity_score="churn")
    decision = offer_decide(lookup="id", value=newcomer.pk)
    item = next(item for item in decision.offers if item.spec.name == "Terugwinactie")
    assert item.propensity == pytest.approx(trained[Kind.CHURN].prior)
    assert "“churn” score" in item.explanation


def test_activating_a_model_that_did_worse_than_the_active_one_needs_confirmation(shop, db):
    first = prediction_model_train(kind=Kind.CHURN, as_of=NOW)
    second = prediction_model_train(kind=Kind.CHURN, as_of=NOW, horizon_days=90)
    assert first.metrics["auc"] != second.metrics["auc"]
    better, worse = sorted([first, second], key=lambda model: -model.metrics["auc"])

    prediction_model_activate(model=better)
    with pytest.raises(WorseThanActive, match="did worse on its held-out period") as refused:
        prediction_model_activate(model=worse)
    assert str(better.metrics["auc"]) in str(refused.value)
    assert PredictionModel.objects.get(status="active") == better

    prediction_model_activate(model=worse, confirm_worse=True)
    assert PredictionModel.objects.get(status="active") == worse
    better.refresh_from_db()
    assert better.status == PredictionModel.Status.RETIRED


def test_too_little_data_says_how_much_is_needed_and_the_active_model_stays(trained):
    versions = PredictionModel.objects.count()
    # Five years back the shop had hardly started.
    with pytest.raises(NotEnoughData) as refused:
        prediction_model_train(kind=Kind.CHURN, as_of=NOW - dt.timedelta(days=4 * 365))

    message = str(refused.value)
    assert "Too little data to learn from before" in message
    assert "At least 500 contacts are needed, with at least 50 of each" in message
    assert f"The active model ({trained[Kind.CHURN]}) stays in use" in message
    assert PredictionModel.objects.count() == versions
    assert PredictionModel.objects.get(kind=Kind.CHURN, status="active") == trained[Kind.CHURN]


def test_a_model_that_no_longer_fits_the_features_is_refused_and_writes_nothing(trained):
    scores_refresh(now=NOW)
    churn = trained[Kind.CHURN]
    later = NOW + dt.timedelta(days=1)
    # Features this version no longer computes (a model from another release, say).
    PredictionModel.objects.filter(pk=churn.pk).update(features=[*churn.features, "loyalty_points"])
    with pytest.raises(FeatureMismatch, match="no longer computed: loyalty_points") as refused:
        scores_refresh(now=later)
    # The churn scores stay as they were; the lifetime value, whose model fits, is scored.
    assert set(Score.objects.filter(name=Kind.CHURN).values_list("computed_at", flat=True)) == {NOW}
    assert set(Score.objects.filter(name=Kind.LIFETIME_VALUE).values_list("computed_at", flat=True)) == {later}
    assert [scored.model.kind for scored in refused.value.scored] == [Kind.LIFETIME_VALUE]
    # A file that does not match its row's feature list.
    PredictionModel.objects.filter(pk=churn.pk).update(features=list(reversed(churn.features)))
    with pytest.raises(FeatureMismatch, match="its stored model reads"):
        scores_refresh(now=later, kinds=[Kind.CHURN])
    # A file not written by this site (its signature does not match), refused before it is unpickled.
    artifact = bytes(PredictionModel.objects.get(pk=churn.pk).artifact)
    PredictionModel.objects.filter(pk=churn.pk).update(features=churn.features, artifact=b"\0" * 32 + artifact[32:])
    with pytest.raises(FeatureMismatch, match="not signed by this site"):
        scores_refresh(now=later, kinds=[Kind.CHURN])
    assert set(Score.objects.filter(name=Kind.CHURN).values_list("computed_at", flat=True)) == {NOW}
    # Nor can such a model be put in use, and the command says why.
    with pytest.raises(FeatureMismatch):
        prediction_model_activate(model=PredictionModel.objects.get(pk=churn.pk))
    with pytest.raises(CommandError, match=r"Not scored: .*not signed by this site"):
        call_command("score_contacts", "--kind", "churn")


def test_features_are_those_before_the_moment_only(shop, db):
    contact = Event.objects.filter(type="purchase").order_by("-occurred_at").first().contact
    last = contact.events.filter(type="purchase").order_by("-occurred_at").first().occurred_at
    before = features_read(as_of=last, contact_ids=[contact.pk])
    after = features_read(as_of=last + dt.timedelta(seconds=1), contact_ids=[contact.pk])

    assert before.names == FEATURE_NAMES
    assert after.column("purchase_days_all")[0] >= before.column("purchase_days_all")[0]
    assert after.column("revenue_all")[0] > before.column("revenue_all")[0]
    assert after.column("recency_days")[0] < 1


def test_the_commands_train_activate_and_score(shop, db, capsys, english):
    call_command("train_models", "--activate", "--as-of", (AS_OF + dt.timedelta(days=1)).isoformat())
    out = capsys.readouterr().out
    assert "Churn risk v1" in out and "AUC" in out and "recency alone" in out
    assert "Lifetime value v1" in out and "MAE" in out and "same as last year" in out
    assert out.count("activated:") == 2

    call_command("score_contacts")
    out = capsys.readouterr().out
    contacts = Contact.objects.filter(erased_at=None).count()
    assert f"Churn risk v1: {contacts} contacts scored" in out
    assert "with no events, scored from the prior" in out

    with pytest.raises(CommandError, match="At least 500 contacts are needed"):
        call_command("train_models", "--kind", "churn", "--as-of", "2022-01-01")


def test_the_tasks_train_weekly_and_score_nightly_and_may_run_twice(shop, db):
    assert set(
        PeriodicTask.objects.filter(
            task__in=["audiences.tasks.prediction_models_train_task", "audiences.tasks.scores_refresh_task"]
        ).values_list("name", flat=True)
    ) == {"Train churn and lifetime-value models", "Score contacts"}

    assert scores_refresh_task() == {}  # nothing active yet: nothing written
    prediction_models_train_task([Kind.CHURN])
    prediction_models_train_task([Kind.CHURN])
    assert list(PredictionModel.objects.values_list("version", "status")) == [(2, "trained"), (1, "trained")]
    prediction_model_activate(model=PredictionModel.objects.get(version=2))
    first = scores_refresh_task()
    second = scores_refresh_task()
    assert first == second == {Kind.CHURN: Contact.objects.filter(erased_at=None).count()}


def test_the_model_card_shows_the_figures_and_an_analyst_activates_from_it(trained, english_client, analyst, marketeer):
    # Two versions: the better one in use, the card of the other.
    other = prediction_model_train(kind=Kind.CHURN, as_of=NOW, horizon_days=90)
    better, worse = sorted([trained[Kind.CHURN], other], key=lambda model: -model.metrics["auc"])
    prediction_model_activate(model=better, confirm_worse=True)
    page = reverse("admin:audiences_predictionmodel_change", args=[worse.pk])

    card = english_client(analyst).get(page)
    html = card.content.decode()
    assert card.status_code == 200
    assert f"AUC {worse.metrics['auc']:.4f} (recency alone {worse.metrics['baseline_auc']:.4f})" in html
    assert "Calibration: predicted against observed churn" in html and "<svg" in html
    assert "recency_days" in html and "Days since the last purchase" in html
    activate = reverse("admin:audiences_predictionmodel_activate", args=[worse.pk])
    assert activate in html
    # Marketeers read the card; activating is the analysts'.
    assert activate not in english_client(marketeer).get(page).content.decode()
    assert english_client(marketeer).post(activate).status_code == 403

    client = english_client(analyst)
    confirm = client.get(activate).content.decode()
    assert "Activate although it did worse" in confirm and f'name="against" value="{better.pk}"' in confirm
    refused = client.post(activate, follow=True)
    assert "did worse on its held-out period" in refused.content.decode()
    # A confirmation given against another model in use than the one now in use does not count.
    stale = client.post(activate, {"confirm_worse": "yes", "against": str(worse.pk)}, follow=True)
    assert "did worse on its held-out period" in stale.content.decode()
    assert PredictionModel.objects.get(kind=Kind.CHURN, status="active") == better

    done = client.post(activate, {"confirm_worse": "yes", "against": str(better.pk)}, follow=True)
    assert "is active" in done.content.decode()
    worse.refresh_from_db()
    assert worse.status == PredictionModel.Status.ACTIVE and worse.activated_by == analyst.username


def test_the_contact_page_shows_the_scores_with_their_model(trained, english_client, marketeer):
    scores_refresh(now=NOW)
    score = Score.objects.filter(name=Kind.CHURN, from_prior=True).select_related("contact").first()

    html = english_client(marketeer).get(reverse("admin:audiences_contact_change", args=[score.contact_id])).content
    html = html.decode()
    assert "Churn risk v1" in html and "Lifetime value v1" in html
    assert "no events: the average the model learned" in html


def test_web_processes_start_without_scikit_learn_or_scipy(subprocess_env):
    """The admin, the API and the task modules import the insights; only training and scoring need
    scikit-learn and scipy (a second and about 100 MB a process), so they are imported there."""
    script = (
        "import sys, django; django.setup(); "
        "from django.urls import reverse; reverse('admin:index'); "
        "import audiences.tasks, audiences.admin, audiences.api, dialoog.demo; "
        "print(sorted({name.split('.')[0] for name in sys.modules} & {'sklearn', 'scipy'}))"
    )
    started = subprocess.run(
        [sys.executable, "-c", script], env=subprocess_env, capture_output=True, text=True, timeout=60, check=True
    )
    assert started.stdout.strip() == "[]"
