"""Forms that save through a service while they validate, so that a refusal lands on its field."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError


class ServiceForm(forms.ModelForm):
    """A form whose validation ends in a service call; what the service refuses is shown on the
    field it names (or above the form), and nothing is saved.

    The service runs the model's validation itself (full_clean) beside its own rules, so the
    form does not run it a second time: each refusal is reported once, in the service's words.
    `_post_clean` is where a model form validates its instance (Django's UserCreationForm checks
    the password there too); here the service takes that place.
    """

    user: Any = None  # who saves: set by ServiceFormAdmin.get_form

    def save_through_service(self) -> Any:
        """Call the service with `self.cleaned_data`; return the saved object."""
        raise NotImplementedError

    def _post_clean(self) -> None:
        if self.errors:
            return
        try:
            saved = self.save_through_service()
        except ValidationError as error:
            self.add_service_errors(error)
        else:
            self.instance = saved

    def add_service_errors(self, error: ValidationError) -> None:
        if not hasattr(error, "error_dict"):
            self.add_error(None, error)
            return
        for field, messages in error.message_dict.items():
            self.add_error(field if field in self.fields else None, messages)


class ServiceFormAdmin(admin.ModelAdmin):
    """An admin whose form saved the object through the services during validation."""

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.user = request.user  # a new class per call (modelform_factory): nothing is shared
        return form

    def save_model(self, request, obj, form, change):
        """Saved already: the form's validation called the service."""
