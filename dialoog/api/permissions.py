from rest_framework import permissions
from rest_framework.permissions import DjangoModelPermissions


class ModelPermissions(DjangoModelPermissions):
    """Authenticated users, with the model permission of their role for every method.

    DRF's own class lets anyone who is logged in read; here reading needs `view_<model>`,
    so a role sees through the API exactly what it sees in the admin.
    """

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }


class RolePermission(permissions.BasePermission):
    """The Django permissions an action needs, from the view's `action_permissions`."""

    def has_permission(self, request, view):
        needed = view.action_permissions.get(view.action, ())
        return bool(request.user and request.user.is_authenticated and request.user.has_perms(needed))


class ActionPermissionsMixin:
    action_permissions: dict[str, tuple[str, ...]] = {}

    def get_permissions(self):
        if self.action in self.action_permissions:
            return [RolePermission()]
        return super().get_permissions()
