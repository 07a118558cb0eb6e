"""The content editor's forms: a block's content, a template's content in one language, a test send.

The content fields are not model fields: every save becomes a new, immutable version through
the services, so the forms only carry what the marketeer typed. Text is kept exactly as typed
(no stripping), except that the browser's CRLF line ends become LF: otherwise every save of an
unchanged text would differ from the stored version, and line numbers would not match.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from content.models import ContentBlock, ContentBlockVersion, Template, TemplateVersion, language_code_validator
from content.rendering.environment import MAX_SOURCE_CHARS
from content.selectors import TEMPLATE_CONTENT_FIELDS, TEMPLATE_FIELDS

# The editor fields each channel uses, in the order they are shown (as the version diff has them).
CHANNEL_FIELDS: dict[str, tuple[str, ...]] = {
    channel: tuple(name for name, _label in fields) for channel, fields in TEMPLATE_FIELDS.items()
}

# The SMS counter's words (content/static/content/sms-counter.js reads them as JSON).
SMS_COUNTER_LABELS = {
    "character": _("character"),
    "characters": _("characters"),
    "part": _("part"),
    "parts": _("parts"),
    "nonGsm": _("not in GSM-7:"),
    "warning": _("each part is charged; keep it to {max} or fewer"),
}


def sms_counter_labels() -> str:
    return json.dumps({key: str(label) for key, label in SMS_COUNTER_LABELS.items()}, ensure_ascii=False)


class CodeTextarea(forms.Textarea):
    """A monospace editor for template source: no spell checking, no autocorrection."""

    def __init__(self, rows: int = 12, attrs: dict[str, Any] | None = None) -> None:
        base = {
            "rows": rows,
            "class": "vLargeTextField content-code",
            "spellcheck": "false",
            "autocapitalize": "off",
            "autocomplete": "off",
        }
        super().__init__(attrs={**base, **(attrs or {})})


class SourceField(forms.CharField):
    """Template source, kept as typed apart from line ends."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", False)
        kwargs.setdefault("max_length", MAX_SOURCE_CHARS)  # a bigger paste is refused on the form, whole
        super().__init__(**kwargs)

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        # No maxlength on the textarea: a browser would cut a long paste short without a word;
        # the form refuses it whole, with the length, instead.
        attrs = super().widget_attrs(widget)
        attrs.pop("maxlength", None)
        return attrs

    def to_python(self, value: Any) -> str:
        text = super().to_python(value)
        return text.replace("\r\n", "\n").replace("\r", "\n")


def source_field(
    model: type[ContentBlockVersion | TemplateVersion], name: str, rows: int, **kwargs: Any
) -> SourceField:
    """An editor for a version's field, labelled and explained as the model field is (unless given)."""
    model_field = model._meta.get_field(name)
    kwargs.setdefault("label", capfirst(model_field.verbose_name))
    kwargs.setdefault("help_text", model_field.help_text)
    return SourceField(widget=CodeTextarea(rows=rows), **kwargs)


def note_field() -> forms.CharField:
    return forms.CharField(
        label=_("Note"),
        required=False,
        max_length=200,
        help_text=_("Optional: what you changed and why, for the version history."),
    )


class BlockForm(forms.ModelForm):
    body = source_field(ContentBlockVersion, "body", 16, required=True)
    text_body = source_field(ContentBlockVersion, "text_body", 6)
    note = note_field()

    class Meta:
        model = ContentBlock
        fields = ["name", "slug", "kind", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2, "class": "vLargeTextField"})}

    # Set by the admin: the version the editor starts from.
    newest_version: ContentBlockVersion | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.newest_version is not None:
            self.fields["body"].initial = self.newest_version.body
            self.fields["text_body"].initial = self.newest_version.text_body


class TemplateForm(forms.ModelForm):
    """The template's own fields, and its content in one language (`editor_language`)."""

    editor_language = forms.CharField(
        label=_("Language"), max_length=10, widget=forms.HiddenInput, validators=[language_code_validator]
    )
    subject = source_field(TemplateVersion, "subject", 2)
    preheader = source_field(TemplateVersion, "preheader", 2)
    html = source_field(TemplateVersion, "html", 20)
    text = source_field(TemplateVersion, "text", 8, help_text="")  # the editor labels it per channel
    talking_points = source_field(TemplateVersion, "talking_points", 6)
    offer_pitch = source_field(TemplateVersion, "offer_pitch", 4)
    note = note_field()

    class Meta:
        model = Template
        fields = ["message", "channel", "default_language", "sender_profile"]

    # Set by the admin (see TemplateAdmin.get_form): the channel whose fields are edited (None:
    # not chosen yet, no editor), the language, and the version the editor starts from.
    editor_channel: str | None = None
    language: str = ""
    start_version: TemplateVersion | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        used = CHANNEL_FIELDS.get(self.editor_channel or "", ())
        for name in TEMPLATE_CONTENT_FIELDS:
            if name not in used:
                self.fields.pop(name, None)
        if not used:
            self.fields.pop("editor_language", None)
            self.fields.pop("note", None)
        else:
            self.fields["editor_language"].initial = self.language
        if self.start_version is not None:
            for name in used:
                self.fields[name].initial = getattr(self.start_version, name)
        if self.editor_channel == Template.Channel.EMAIL:
            self.fields["text"].label = _("Plain text")
            self.fields["text"].help_text = _("Derived from the HTML when left empty.")
            self.fields["subject"].required = True
            self.fields["html"].required = True
        elif self.editor_channel == Template.Channel.SMS:
            self.fields["text"].required = True
            self.fields["text"].widget.attrs.update(
                {
                    "data-sms-counter": "",
                    "data-sms-max-parts": str(settings.SMS_PART_WARNING),
                    "data-sms-labels": sms_counter_labels(),
                    "rows": 6,
                }
            )
            self.fields["text"].help_text = _(
                "The SMS as the contact receives it. Personalisation changes its length: the preview shows "
                "the parts for a real contact."
            )
        elif self.editor_channel == Template.Channel.SCRIPT:
            self.fields["text"].label = _("What the agent says")
            self.fields["text"].required = True
            self.fields["text"].help_text = ""
        if "channel" in self.fields and self.editor_channel and not self.instance.pk:
            # The editor below is for this channel: choosing another one here would not match it.
            self.fields["channel"].initial = self.editor_channel
            self.fields["channel"].disabled = True

    def clean_editor_language(self) -> str:
        return self.cleaned_data["editor_language"].strip().lower()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        channel = cleaned.get("channel") or self.instance.channel or self.editor_channel
        if cleaned.get("sender_profile") and channel != Template.Channel.EMAIL:
            self.add_error("sender_profile", gettext("Only an email has a sender profile."))
        return cleaned

    def content(self) -> dict[str, str]:
        """The content fields of the channel, as the service takes them."""
        return {name: self.cleaned_data.get(name, "") for name in CHANNEL_FIELDS.get(self.editor_channel or "", ())}


class LanguageForm(forms.Form):
    """Add a language to a template: opens the editor for it."""

    language = forms.CharField(
        label=_("Add a language"),
        max_length=10,
        validators=[language_code_validator],
        widget=forms.TextInput(attrs={"size": 6, "placeholder": "de"}),
    )

    def clean_language(self) -> str:
        return self.cleaned_data["language"].strip().lower()


class CompareForm(forms.Form):
    """Two versions to compare, by number."""

    old = forms.TypedChoiceField(label=_("Compare version"), coerce=int)
    new = forms.TypedChoiceField(label=_("with version"), coerce=int)

    def __init__(self, *args: Any, numbers: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(number, str(number)) for number in numbers]
        self.fields["old"].choices = choices
        self.fields["new"].choices = choices


class SendTestForm(forms.Form):
    to = forms.CharField(label=_("Send a test to"), max_length=254)

    def __init__(self, *args: Any, channel: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if channel == Template.Channel.SMS:
            self.fields["to"].label = _("Send a test SMS to")
            self.fields["to"].help_text = _("A mobile number, such as 06-12345678 or +31612345678.")
            self.fields["to"].widget.attrs.update({"inputmode": "tel", "autocomplete": "tel"})
        else:
            self.fields["to"].label = _("Send a test email to")
            self.fields["to"].help_text = _("The subject starts with [Test].")
            self.fields["to"].widget.attrs.update({"inputmode": "email", "autocomplete": "email"})


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Put a service's ValidationError on the form: on its fields when it names them."""
    if hasattr(error, "error_dict"):
        for name, errors in error.message_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, error.messages)
