from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _roles_after_migrate(sender, apps=None, **kwargs) -> None:
    from django.apps import apps as global_apps

    from dialoog.roles import roles_sync

    # `flush` (and tests that truncate tables) send post_migrate without an app registry.
    roles_sync(apps=apps or global_apps)


class DialoogConfig(AppConfig):
    default = True
    name = "dialoog"
    verbose_name = _("Dialoog")

    def ready(self) -> None:
        from dialoog import lookups  # noqa: F401 - registers field__any
        from dialoog.authentication import connect_forgetting

        connect_forgetting()  # a token, user or role changed: the remembered answers are forgotten

        # Keeps the roles complete when later migrations add models.
        post_migrate.connect(_roles_after_migrate, sender=self, dispatch_uid="dialoog.roles_sync")


class DialoogAdminConfig(admin_apps.AdminConfig):
    """Django's admin, with Dialoog's site (its start page is the dashboard)."""

    default = False
    default_site = "dialoog.admin_site.DialoogAdminSite"
