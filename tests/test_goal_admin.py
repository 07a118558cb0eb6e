"""The goal page in the admin: SMART fields saved through the services, progress, the chart, the
campaign measurements; the chart's geometry; campaign measurements, channel costs and the global
control group."""

import datetime as dt
import re
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from goals.charts import goal_chart_svg, nice_ticks
from goals.experiments import experiment_create, global_control
from goals.metrics import CATALOGUE
from goals.models import ChannelCost, Experiment, GlobalControlGroup, Goal, Snapshot, Uplift
from goals.progress import progress
from goals.services import goal_create, goal_refresh_status
from tests.campaign_helpers import campaign_form_data
from tests.factories import CampaignFactory, ContactFactory, EventFactory, GoalFactory

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def as_marketeer(english_client, marketeer):
    return english_client(marketeer)


def today():
    return timezone.localdate()


def snapshot(goal, day, value, numerator=1, denominator=4):
    return Snapshot.objects.create(
        goal=goal,
        day=day,
        value=None if value is None else Decimal(value),
        numerator=numerator,
        denominator=denominator,
        measured_at=timezone.now(),
    )


def contacts_with_a_quarter_buying():
    """Four contacts, one of whom bought in the 30 days before today: a conversion baseline of 25.0%."""
    buyer, *_others = ContactFactory.create_batch(4)
    EventFactory(contact=buyer, occurred_at=timezone.now() - dt.timedelta(days=5))


def goal_form(**overrides):
    data = {
        "name": "Meer kopers",
        "description": "",
        "owner": "",
        "parent": "",
        "domain": "conversions",
        "metric": "conversion_rate",
        "channel": "",
        "scope_segment": "",
        "period": "rolling",
        "period_days": "30",
        "target": "30",
        "starts_on": today().isoformat(),
        "deadline": (today() + dt.timedelta(days=90)).isoformat(),
    }
    return {**data, **overrides}


def errors_of(response, field):
    return response.context["adminform"].form.errors.get(field, [])


# --- saving through the services ---------------------------------------------------------------


def test_the_add_page_creates_a_goal_with_its_measured_baseline_and_the_user_as_owner(as_marketeer, marketeer):
    contacts_with_a_quarter_buying()

    response = as_marketeer.post(reverse("admin:goals_goal_add"), goal_form())

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    goal = Goal.objects.get()
    assert goal.baseline == Decimal("25.0000")
    assert goal.baseline_measured_at is not None
    assert goal.owner == marketeer
    assert goal.target == Decimal(30)


def test_a_target_equal_to_the_baseline_is_an_error_on_the_target_and_nothing_is_saved(as_marketeer):
    contacts_with_a_quarter_buying()

    response = as_marketeer.post(reverse("admin:goals_goal_add"), goal_form(target="25"))

    assert response.status_code == 200
    assert any("The target equals the baseline (25.0%)" in error for error in errors_of(response, "target"))
    assert not Goal.objects.exists()


def test_changing_the_target_to_the_baseline_is_refused_on_the_target_and_the_goal_stays(as_marketeer, marketeer):
    contacts_with_a_quarter_buying()
    goal = goal_create(owner=marketeer, **goal_form_values())

    response = as_marketeer.post(
        reverse("admin:goals_goal_change", args=[goal.pk]),
        goal_form(target="25", owner=str(marketeer.pk), starts_on=goal.starts_on.isoformat()),
    )

    assert response.status_code == 200
    assert errors_of(response, "target")
    goal.refresh_from_db()
    assert goal.target == Decimal(30)


def goal_form_values():
    return {
        "name": "Meer kopers",
        "domain": "conversions",
        "metric": "conversion_rate",
        "target": Decimal(30),
        "starts_on": today(),
        "deadline": today() + dt.timedelta(days=90),
    }


def test_a_rule_of_the_model_lands_on_its_field_too(as_marketeer):
    response = as_marketeer.post(
        reverse("admin:goals_goal_add"), goal_form(metric="opt_in_rate", domain="opt_in", channel="")
    )

    assert errors_of(response, "channel") == ["Choose the channel whose opt-in rate this goal measures."]
    assert not Goal.objects.exists()


def test_the_change_page_saves_through_the_service(as_marketeer, marketeer):
    contacts_with_a_quarter_buying()
    goal = goal_create(owner=marketeer, **goal_form_values())

    response = as_marketeer.post(
        reverse("admin:goals_goal_change", args=[goal.pk]),
        goal_form(target="40", name="Veel meer kopers", owner=str(marketeer.pk), starts_on=goal.starts_on.isoformat()),
    )

    assert response.status_code == 302
    goal.refresh_from_db()
    assert (goal.name, goal.target, goal.baseline) == ("Veel meer kopers", Decimal(40), Decimal("25.0000"))


def test_the_add_page_speaks_smart_and_explains_the_kpis(as_marketeer):
    html = as_marketeer.get(reverse("admin:goals_goal_add")).content.decode()

    for heading in ["Specific", "Measurable", "Achievable", "Time-bound"]:
        assert heading in html
    assert str(CATALOGUE["churn_rate"].definition)[:40] in html
    assert "Measured when you save" in html


# --- the goal page ------------------------------------------------------------------------------


def running_goal_with_snapshots(**fields):
    start = today() - dt.timedelta(days=20)
    goal = GoalFactory(
        name="Conversie omhoog",
        starts_on=start,
        deadline=start + dt.timedelta(days=100),
        baseline=Decimal(5),
        target=Decimal(10),
        **fields,
    )
    snapshot(goal, start + dt.timedelta(days=1), "5.5")
    snapshot(goal, start + dt.timedelta(days=2), None, 0, 0)
    snapshot(goal, start + dt.timedelta(days=3), "5.3")  # falling: at risk
    goal_refresh_status(goal=goal, today=today())
    return goal


def test_the_goal_page_shows_progress_the_chart_and_the_snapshots(as_marketeer):
    goal = running_goal_with_snapshots()

    response = as_marketeer.get(reverse("admin:goals_goal_change", args=[goal.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="goal-chart"' in html
    assert html.count('class="kpi-point"') == 2
    assert html.count('class="kpi-line"') == 2  # the day without data breaks the line
    assert 'class="goal-status goal-status-at_risk"' in html
    figures = html[html.index('class="goal-figures"') :]
    assert "5.3%" in figures[: figures.index("</dl>")]  # the current value, formatted
    snapshots_table = html[html.index('class="module goal-snapshots"') :]
    assert snapshots_table.index("5.3%") < snapshots_table.index("no data") < snapshots_table.index("5.5%")
    assert "Required change:" in html
    assert "+100%" in html  # 5.0% → 10.0%


def test_the_goal_page_shows_the_team_goals_under_it(as_marketeer):
    objective = GoalFactory(name="Minder churn")
    GoalFactory(name="Team winback", parent=objective, status=Goal.Status.AT_RISK)
    GoalFactory(name="Ander doel")

    html = as_marketeer.get(reverse("admin:goals_goal_change", args=[objective.pk])).content.decode()

    under = html[html.index("Goals under it") :]
    assert "Team winback</a>" in under[:2000]
    assert "goal-status-at_risk" in under[:2000]
    assert "Ander doel" not in html


def test_the_goal_page_caps_the_snapshot_table(as_marketeer):
    goal = GoalFactory(starts_on=today() - dt.timedelta(days=80), deadline=today() + dt.timedelta(days=10))
    for offset in range(70):
        snapshot(goal, goal.starts_on + dt.timedelta(days=offset), "3")

    html = as_marketeer.get(reverse("admin:goals_goal_change", args=[goal.pk])).content.decode()

    table = html[html.index('class="module goal-snapshots"') :]
    assert table.count("<tr>") - 1 == 60  # the header row, then the latest 60
    assert "The latest 60 of 70 measurements" in html
    assert html.count('class="kpi-point"') == 70


def test_the_goal_page_of_a_goal_without_measurements_says_when_they_come(as_marketeer):
    goal = GoalFactory()

    html = as_marketeer.get(reverse("admin:goals_goal_change", args=[goal.pk])).content.decode()

    assert '<p class="goal-chart-empty">No measurements yet: the first comes with the daily measurement.</p>' in html
    assert 'class="goal-chart"' not in html


def test_an_analyst_sees_the_goal_page_read_only(english_client, analyst):
    goal = running_goal_with_snapshots()

    response = english_client(analyst).get(reverse("admin:goals_goal_change", args=[goal.pk]))

    assert response.status_code == 200
    assert 'class="goal-chart"' in response.content.decode()
    assert not response.context["has_change_permission"]


def uplift(experiment, *, treated, held_out, treated_conversions, held_out_conversions, cost="100.00"):
    """An uplift where each converter spent 50."""
    return Uplift.objects.create(
        experiment=experiment,
        measured_on=today(),
        measured_at=timezone.now(),
        treatment_size=treated,
        treatment_conversions=treated_conversions,
        treatment_revenue=Decimal(50 * treated_conversions),
        treatment_revenue_squares=Decimal(2500 * treated_conversions),
        holdout_size=held_out,
        holdout_conversions=held_out_conversions,
        holdout_revenue=Decimal(50 * held_out_conversions),
        holdout_revenue_squares=Decimal(2500 * held_out_conversions),
        cost=Decimal(cost),
    )


def test_the_goal_page_shows_each_campaigns_uplift_or_why_it_cannot_be_trusted(as_marketeer):
    goal = running_goal_with_snapshots()
    measured = experiment_create(goal=goal, name="Voorjaarsmail")
    uplift(measured, treated=4000, held_out=400, treated_conversions=460, held_out_conversions=38)
    tiny = experiment_create(goal=goal, name="Proefje")
    uplift(tiny, treated=100, held_out=5, treated_conversions=10, held_out_conversions=1)
    experiment_create(goal=goal, name="Nog niet gemeten")

    html = as_marketeer.get(reverse("admin:goals_goal_change", args=[goal.pk])).content.decode()

    section = html[html.index('class="module goal-measurements"') : html.index('class="module goal-snapshots"')]
    blocks = {block.split("</h3>")[0].strip(): block for block in section.split("<h3>")[1:]}
    assert list(blocks) == ["Nog niet gemeten", "Proefje", "Voorjaarsmail"]  # newest first
    spring, trial = blocks["Voorjaarsmail"], blocks["Proefje"]
    assert "11.50%" in spring and "9.50%" in spring  # treatment and holdout conversion
    assert "+2.00 pp" in spring  # the absolute difference
    assert "+21%" in spring  # relative: 2.0 / 9.5
    assert "p-value" in spring
    assert "+80" in spring  # incremental conversions: 2 points of 4,000
    assert "€ 100.00" in spring  # the cost
    assert "goal-uplift-figures" in spring
    # No figures where the figures cannot be trusted: why instead.
    assert "Too few contacts to measure: 100 in the treatment, 5 in the holdout" in trial
    assert "goal-uplift-figures" not in trial
    assert "Not measured yet." in blocks["Nog niet gemeten"]
    assert "goal-uplift-figures" not in blocks["Nog niet gemeten"]


def test_the_goal_page_query_count_does_not_grow_with_snapshots_or_measurements(
    as_marketeer, django_assert_max_num_queries
):
    goal = running_goal_with_snapshots()
    url = reverse("admin:goals_goal_change", args=[goal.pk])
    with django_assert_max_num_queries(40) as few:
        as_marketeer.get(url)
    for offset in range(4, 40):
        snapshot(goal, goal.starts_on + dt.timedelta(days=offset), "6")
    for n in range(5):
        experiment = experiment_create(goal=goal, name=f"Campagne {n}")
        uplift(experiment, treated=1000, held_out=100, treated_conversions=100, held_out_conversions=8)
    with django_assert_max_num_queries(len(few.captured_queries) + 3):  # the experiments, uplifts, snapshot
        as_marketeer.get(url)


# --- the list -----------------------------------------------------------------------------------


def test_the_goal_list_shows_status_values_and_days_left(as_marketeer):
    goal = running_goal_with_snapshots()

    html = as_marketeer.get(reverse("admin:goals_goal_changelist")).content.decode()

    row = html[html.index("Conversie omhoog") :]
    row = row[: row.index("</tr>")]
    assert "goal-status-at_risk" in row
    assert "10.0%" in row  # the target, formatted
    assert f">{(goal.deadline - today()).days}<" in row
    assert "all contacts" in row


def test_the_goal_list_query_count_does_not_grow_with_its_rows(as_marketeer, django_assert_max_num_queries):
    GoalFactory()
    url = reverse("admin:goals_goal_changelist")
    with django_assert_max_num_queries(30) as few:
        as_marketeer.get(url)
    for _ in range(20):
        running_goal_with_snapshots()
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = as_marketeer.get(url)
    assert response.content.decode().count("goal-status-at_risk") == 20


@pytest.mark.parametrize("status", ["at_risk", "achieved"])
def test_the_goal_list_filters_on_status(as_marketeer, status):
    GoalFactory(name="Risico", status="at_risk")
    GoalFactory(name="Gehaald", status="achieved")

    response = as_marketeer.get(reverse("admin:goals_goal_changelist"), {"status__exact": status})

    assert [goal.status for goal in response.context["cl"].result_list] == [status]


# --- the chart ----------------------------------------------------------------------------------


def chart_goal(**fields):
    defaults = {
        "pk": 7,
        "name": "Conversie",
        "domain": "conversions",
        "metric": "conversion_rate",
        "starts_on": dt.date(2026, 1, 1),
        "deadline": dt.date(2026, 4, 11),  # 100 days
        "baseline": Decimal(5),
        "target": Decimal(10),
    }
    return Goal(**(defaults | fields))


def chart(goal, snapshots, today=dt.date(2026, 2, 1)):
    found = progress(
        values=[(s.day, s.value) for s in snapshots],
        baseline=goal.baseline,
        target=goal.target,
        starts_on=goal.starts_on,
        deadline=goal.deadline,
        today=today,
        higher_is_better=True,
    )
    svg = goal_chart_svg(goal=goal, snapshots=snapshots, progress=found, today=today)
    return svg, ET.fromstring(svg)  # noqa: S314 - our own SVG; well-formed XML, or this raises


def points(goal, *values):
    return [
        Snapshot(goal=goal, day=goal.starts_on + dt.timedelta(days=offset), value=value and Decimal(value))
        for offset, value in values
    ]


def line_y_at(line, x):
    x1, y1, x2, y2 = (float(line.get(name)) for name in ("x1", "y1", "x2", "y2"))
    return y1 + (y2 - y1) * (x - x1) / (x2 - x1)


def test_a_snapshot_on_the_path_to_the_target_lies_on_the_target_line():
    goal = chart_goal()
    # Half-way (day 50 of 100) the path from 5 to 10 is at 7.5.
    _svg, root = chart(goal, points(goal, (10, "6"), (50, "7.5")))

    target = root.find(f"{SVG}line[@class='target-line']")
    on_path = root.findall(f"{SVG}circle[@class='kpi-point']")[1]
    cx, cy = float(on_path.get("cx")), float(on_path.get("cy"))
    assert cy == pytest.approx(line_y_at(target, cx), abs=0.05)
    baseline = root.find(f"{SVG}line[@class='baseline-line']")
    assert float(baseline.get("y1")) == pytest.approx(float(target.get("y1")))  # the path starts at the baseline


def test_without_a_baseline_the_target_line_is_level_and_a_snapshot_at_the_target_lies_on_it():
    goal = chart_goal(baseline=None)
    _svg, root = chart(goal, points(goal, (10, "6"), (20, "10")))

    target = root.find(f"{SVG}line[@class='target-line']")
    assert target.get("y1") == target.get("y2")
    at_target = root.findall(f"{SVG}circle[@class='kpi-point']")[1]
    assert float(at_target.get("cy")) == pytest.approx(float(target.get("y1")))
    assert root.find(f"{SVG}line[@class='baseline-line']") is None


def test_every_point_and_line_is_inside_the_view_box():
    goal = chart_goal()
    _svg, root = chart(goal, points(goal, (0, "1"), (5, "30"), (31, "12")))

    _x, _y, width, height = (float(n) for n in root.get("viewBox").split())
    for element in root.iter():
        for name in ("cx", "x1", "x2"):
            if element.get(name) is not None:
                assert 0 <= float(element.get(name)) <= width
        for name in ("cy", "y1", "y2"):
            if element.get(name) is not None:
                assert 0 <= float(element.get(name)) <= height
    for polyline in root.findall(f"{SVG}polyline"):
        for pair in polyline.get("points").split():
            x, y = (float(n) for n in pair.split(","))
            assert 0 <= x <= width and 0 <= y <= height


def test_the_chart_has_the_lines_ticks_legend_and_an_accessible_description(english):
    goal = chart_goal()
    _svg, root = chart(goal, points(goal, (5, "5.5"), (10, None), (20, "6"), (30, "6.5")))

    assert len(root.findall(f"{SVG}polyline[@class='kpi-line']")) == 2  # the gap where there was no data
    assert root.find(f"{SVG}line[@class='trend-line']") is not None
    today_marker = root.find(f"{SVG}g[@class='today-marker']")
    assert today_marker is not None
    y_labels = [text.text for text in root.findall(f"{SVG}g[@class='y-tick']/{SVG}text")]
    assert 4 <= len(y_labels) <= 6
    assert all(label.endswith("%") for label in y_labels)
    assert len(root.findall(f"{SVG}g[@class='x-tick']")) == 5
    assert "Path to the target" in "".join(root.find(f"{SVG}g[@class='legend']").itertext())
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title").text == "Conversie: progress"
    assert "target 10.0%" in root.find(f"{SVG}desc").text
    # The trend runs to the deadline, the right end of the x axis.
    trend = root.find(f"{SVG}line[@class='trend-line']")
    assert float(trend.get("x2")) == pytest.approx(float(root.find(f"{SVG}line[@class='x-axis']").get("x2")))


def test_the_chart_escapes_the_goals_name(english):
    goal = chart_goal(name='<script>alert("x")</script> & co')
    svg, root = chart(goal, points(goal, (5, "6")))

    assert "<script" not in svg
    assert root.find(f"{SVG}title").text == '<script>alert("x")</script> & co: progress'


def test_no_data_at_all_is_a_friendly_empty_state(english):
    goal = chart_goal()
    assert "No measurements yet" in chart_goal_svg_text(goal, [])
    assert "no data in the scope yet" in chart_goal_svg_text(goal, points(goal, (1, None), (2, None)))


def chart_goal_svg_text(goal, snapshots):
    found = progress(
        values=[],
        baseline=goal.baseline,
        target=goal.target,
        starts_on=goal.starts_on,
        deadline=goal.deadline,
        today=goal.starts_on,
        higher_is_better=True,
    )
    html = goal_chart_svg(goal=goal, snapshots=snapshots, progress=found)
    assert "<svg" not in html
    return html


@pytest.mark.parametrize(
    ("low", "high", "ticks"),
    [
        (4.8, 7.2, [4, 5, 6, 7, 8]),
        (0, 100, [0, 25, 50, 75, 100]),
        (-20, 35, [-20, 0, 20, 40]),
        (3.4, 3.4, [3.0, 3.2, 3.4, 3.6, 3.8]),  # one value: a band around it
    ],
)
def test_y_ticks_are_round_numbers_covering_the_values(low, high, ticks):
    found = nice_ticks(low, high)
    assert found == pytest.approx(ticks)


# --- campaign measurements, costs, the global control group --------------------------------------


def experiment_form(goal, **overrides):
    data = {
        "goal": str(goal.pk),
        "name": "Najaarsmail",
        "holdout_percent": "10",
        "holdout_off_reason": "",
        "conversion_event": "purchase",
        "attribution_days": "30",
    }
    return {**data, **overrides}


def test_turning_a_holdout_off_needs_a_reason_on_the_reason_field(as_marketeer, marketeer):
    experiment = experiment_create(goal=GoalFactory(), name="Najaarsmail")
    url = reverse("admin:goals_experiment_change", args=[experiment.pk])

    refused = as_marketeer.post(url, {"holdout_percent": "0", "holdout_off_reason": "  "})

    assert refused.status_code == 200
    assert errors_of(refused, "holdout_off_reason"), refused.context["adminform"].form.errors
    experiment.refresh_from_db()
    assert experiment.holdout_percent == Decimal(10)

    accepted = as_marketeer.post(url, {"holdout_percent": "0", "holdout_off_reason": "Wettelijke mededeling"})

    assert accepted.status_code == 302
    experiment.refresh_from_db()
    assert (experiment.holdout_percent, experiment.holdout_off_reason) == (0, "Wettelijke mededeling")
    assert experiment.holdout_off_by == marketeer


def test_setting_a_holdout_share_goes_through_the_service(as_marketeer):
    experiment = experiment_create(goal=GoalFactory(), name="Najaarsmail")
    url = reverse("admin:goals_experiment_change", args=[experiment.pk])

    too_big = as_marketeer.post(url, {"holdout_percent": "60", "holdout_off_reason": ""})
    assert errors_of(too_big, "holdout_percent")

    as_marketeer.post(url, {"holdout_percent": "0", "holdout_off_reason": "Eenmalig"})
    back_on = as_marketeer.post(url, {"holdout_percent": "15", "holdout_off_reason": "Eenmalig"})

    assert back_on.status_code == 302
    experiment.refresh_from_db()
    assert (experiment.holdout_percent, experiment.holdout_off_reason) == (15, "")


def test_adding_a_measurement_without_holdout_records_why(as_marketeer, marketeer):
    goal = GoalFactory()

    refused = as_marketeer.post(reverse("admin:goals_experiment_add"), experiment_form(goal, holdout_percent="0"))
    assert errors_of(refused, "holdout_off_reason")
    assert not Experiment.objects.exists()  # the savepoint took the created experiment back

    as_marketeer.post(
        reverse("admin:goals_experiment_add"),
        experiment_form(goal, holdout_percent="0", holdout_off_reason="Servicebericht"),
    )

    experiment = Experiment.objects.get()
    assert (experiment.holdout_percent, experiment.holdout_off_by) == (0, marketeer)


def test_the_measurement_page_shows_its_assignments_and_uplift(as_marketeer):
    experiment = experiment_create(goal=GoalFactory(), name="Najaarsmail")
    uplift(experiment, treated=4000, held_out=400, treated_conversions=460, held_out_conversions=38)

    html = as_marketeer.get(reverse("admin:goals_experiment_change", args=[experiment.pk])).content.decode()

    assert "0 contacts: 0 in the treatment, 0 in the holdout" in html
    assert "+2.00 pp" in html


def test_channel_costs_are_edited_in_the_list(as_marketeer):
    ChannelCost.objects.create(channel="email", cost_per_message=Decimal("0.0010"))

    html = as_marketeer.get(reverse("admin:goals_channelcost_changelist")).content.decode()

    assert 'name="form-0-cost_per_message"' in html


def test_the_global_control_group_is_one_row_saved_through_its_service(as_marketeer, marketeer):
    opened = as_marketeer.get(reverse("admin:goals_globalcontrolgroup_changelist"))
    control = global_control()
    assert opened.status_code == 302
    assert opened.url == reverse("admin:goals_globalcontrolgroup_change", args=[control.pk])

    page = as_marketeer.get(opened.url)
    assert not page.context["has_add_permission"]
    assert not page.context["has_delete_permission"]
    assert as_marketeer.get(reverse("admin:goals_globalcontrolgroup_add")).status_code == 403

    refused = as_marketeer.post(opened.url, {"enabled": "on", "percent": "20"})
    assert errors_of(refused, "percent")
    saved = as_marketeer.post(opened.url, {"enabled": "on", "percent": "3"})
    assert saved.status_code == 302
    control = GlobalControlGroup.objects.get()
    assert (control.enabled, control.percent, control.changed_by) == (True, Decimal(3), marketeer)


# --- the campaign page --------------------------------------------------------------------------


def test_the_campaign_page_shows_its_measured_uplift(as_marketeer):
    goal = GoalFactory()
    experiment = experiment_create(goal=goal, name="Najaarsmail")
    uplift(experiment, treated=4000, held_out=400, treated_conversions=460, held_out_conversions=38)
    measured = CampaignFactory(goal=goal, experiment=experiment)
    unmeasured = CampaignFactory(goal=goal)

    measured_html = as_marketeer.get(reverse("admin:campaigns_campaign_change", args=[measured.pk])).content
    unmeasured_html = as_marketeer.get(reverse("admin:campaigns_campaign_change", args=[unmeasured.pk])).content

    assert "+2.00 pp" in measured_html.decode()
    assert re.search(r"not measured", unmeasured_html.decode())


def test_a_campaign_cannot_be_measured_against_another_goals_measurement(as_marketeer):
    goal, other = GoalFactory(), GoalFactory()
    foreign = experiment_create(goal=other, name="Van een ander doel")
    campaign = CampaignFactory(goal=goal)

    response = as_marketeer.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        campaign_form_data(campaign, experiment=foreign.pk),
    )

    assert response.status_code == 200
    assert "belongs to another goal" in " ".join(errors_of(response, "experiment"))
    campaign.refresh_from_db()
    assert campaign.experiment is None


@pytest.mark.parametrize(
    "url",
    [
        "admin:goals_goal_add?parent=abc",
        "admin:goals_goal_add?scope_segment=abc",
        "admin:goals_experiment_add?goal=abc",
        "admin:campaigns_campaign_add?experiment=abc&goal=1x",
    ],
)
def test_an_add_page_with_a_preset_that_is_not_an_id_opens_with_nothing_picked(as_marketeer, url):
    name, query = url.split("?")

    response = as_marketeer.get(f"{reverse(name)}?{query}")

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert not any(form.initial.get(key) for key in [part.split("=")[0] for part in query.split("&")])
