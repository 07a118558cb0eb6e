"""The roles of Dialoog's users, as Django groups with their permissions.

Roles are defined here, in code, and applied by `roles_sync`: by the data migration that
creates them and again after every `migrate`, so that models added later are covered
without a migration per model. A group's permissions are set to exactly what its role
says; give someone more rights by adding them to a second group of your own.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db.models import Q

MARKETEER = "Marketeer"
ANALYST = "Analyst"
CALLCENTER_AGENT = "Callcenter agent"
ADMINISTRATOR = "Administrator"

ALL_ACTIONS = ("add", "change", "delete", "view")
READ = ("view",)
OUR_APPS = ("audiences", "content", "goals", "campaigns")
EVERYTHING = "*"
SCHEDULES = ("intervalschedule", "crontabschedule", "clockedschedule", "solarschedule")

# role -> rules of (app label, model name or "*", actions)
ROLES: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    MARKETEER: [
        *[(app, EVERYTHING, ALL_ACTIONS) for app in OUR_APPS],
        ("audiences", "contact", ("browse",)),
        # Marketeers see the planned work and change *when* it runs (the schedules). Which task
        # runs with which arguments stays with administrators: a periodic task can start any
        # registered task, past the services and their checks.
        ("django_celery_beat", EVERYTHING, READ),
        *[("django_celery_beat", schedule, ALL_ACTIONS) for schedule in SCHEDULES],
    ],
    ANALYST: [
        *[(app, EVERYTHING, READ) for app in OUR_APPS],
        ("audiences", "contact", ("browse",)),
        ("django_celery_beat", EVERYTHING, READ),
        # Analysts (the data scientists) decide which trained churn or lifetime-value model writes the scores.
        ("audiences", "predictionmodel", ("activate",)),
    ],
    CALLCENTER_AGENT: [
        # Reads the customer (looked up by an identity: listing every contact is not theirs), the
        # campaigns and the scripts; records what happened on the call.
        ("audiences", EVERYTHING, READ),
        ("content", EVERYTHING, READ),
        ("campaigns", EVERYTHING, READ),
        ("audiences", "event", ("add",)),
        ("audiences", "consentchange", ("add",)),
        # The next-best offer: asking for it and recording the customer's answer, for agents alone.
        ("campaigns", "offerdecision", ("use",)),
    ],
    ADMINISTRATOR: [
        (EVERYTHING, EVERYTHING, ALL_ACTIONS),
        ("audiences", "contact", ("browse",)),
        ("campaigns", "offerdecision", ("use",)),
        ("audiences", "predictionmodel", ("activate",)),
    ],
}

# role -> rules taken back from what its ROLES rules give
WITHHELD: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    # Customer lists for advertising platforms, hashed or not, are no part of a call.
    CALLCENTER_AGENT: [("campaigns", "audienceexport", ALL_ACTIONS)],
}


def _rule_filter(app_label: str, model: str, actions: tuple[str, ...]) -> Q:
    condition = Q()
    if app_label != EVERYTHING:
        condition &= Q(content_type__app_label=app_label)
    if model != EVERYTHING:
        condition &= Q(content_type__model=model)
    action_condition = Q()
    for action in actions:
        action_condition |= Q(codename__startswith=f"{action}_")
    return condition & action_condition


def roles_sync(*, apps) -> None:
    """Create the role groups and give each exactly the permissions its role lists.

    `apps` is an app registry: the migration's historical one, or the global one.
    """
    for app_config in apps.get_app_configs():
        # Permissions are normally made after all migrations ran; make them now.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = models_module

    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for role, rules in ROLES.items():
        condition = Q(pk__in=[])
        for rule in rules:
            condition |= _rule_filter(*rule)
        withheld = Q(pk__in=[])
        for rule in WITHHELD.get(role, ()):
            withheld |= _rule_filter(*rule)
        group, _created = group_model.objects.get_or_create(name=role)
        group.permissions.set(permission_model.objects.filter(condition).exclude(withheld))
