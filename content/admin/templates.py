"""Messages and their channel templates in the admin: the editor per language, the checks, the
version history, and the preview with a real contact or the sample profile, with a test send.

A template's content is saved per language as a new version through `template_version_create`;
the newest version in each language is the one campaigns use.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.postgres.aggregates import ArrayAgg
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from audiences.models import Contact
from audiences.selectors.contacts import contact_primary_identities
from content.admin.common import (
    PREVIEW_WIDTHS,
    HistoryRow,
    compare_response,
    content_display,
    issues,
    object_for,
    variables,
)
from content.forms import CHANNEL_FIELDS, LanguageForm, SendTestForm, TemplateForm, add_service_errors
from content.models import ContentBlockVersion, Message, Template, TemplateVersion, language_code_validator
from content.rendering.context import sample_context
from content.rendering.errors import RenderError, TemplateSourceError
from content.selectors import TEMPLATE_FIELDS as TEMPLATE_FIELD_LABELS
from content.selectors import contact_context, template_newest_versions, template_version_for
from content.services import (
    template_problems,
    template_render,
    template_rollback,
    template_send_test,
    template_version_create,
)
from content.sms import sms_warning

CONTACT_MATCHES = 10

PICKER_LABELS = {
    "searching": _("Searching…"),
    "none": _("No contact found. Try an e-mail address, a phone number, a customer number or an exact last name."),
    "failed": _("The search failed; try again."),
}


def valid_language(code: str | None) -> str | None:
    code = (code or "").strip().lower()
    if not code:
        return None
    try:
        language_code_validator(code)
    except ValidationError:
        return None
    return code


def ordered_languages(template: Template, newest: dict[str, TemplateVersion]) -> list[str]:
    """The languages with a version, the default language first."""
    others = sorted(code for code in newest if code != template.default_language)
    return [template.default_language, *others] if template.default_language in newest else others


@dataclass
class Editor:
    """What the editor works on in this request: the channel, the language, and its versions."""

    channel: str | None
    language: str
    newest: dict[str, TemplateVersion] = field(default_factory=dict)
    languages: list[str] = field(default_factory=list)

    @property
    def version(self) -> TemplateVersion | None:
        """The newest version in the editor's language: the one campaigns use."""
        return self.newest.get(self.language)

    def start(self, template: Template | None) -> TemplateVersion | None:
        """What the editor starts from: the language's newest version, or for a language without
        one yet, the default language's (to translate from)."""
        if self.version is not None:
            return self.version
        if template is not None and template.default_language in self.newest:
            return self.newest[template.default_language]
        return next(iter(self.newest.values()), None)


def change_url(template: Template, language: str | None = None) -> str:
    url = reverse("admin:content_template_change", args=[template.pk])
    return f"{url}?{urlencode({'language': language})}" if language else url


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["name", "channels", "updated_at"]
    search_fields = ["name"]
    readonly_fields = ["templates_overview", "created_at", "updated_at"]

    class Media:
        css = {"all": ["content/content-admin.css"]}

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(None, {"fields": ["name", "description"]})]
        if obj is not None:
            fieldsets += [
                (_("Templates"), {"fields": ["templates_overview"]}),
                (_("Record"), {"fields": [("created_at", "updated_at")]}),
            ]
        return fieldsets

    def get_queryset(self, request):
        templates = Template.objects.annotate(
            languages=ArrayAgg("versions__language", distinct=True, default=[])
        ).order_by("channel")
        return super().get_queryset(request).prefetch_related(Prefetch("templates", queryset=templates))

    @admin.display(description=_("templates"))
    def channels(self, message: Message) -> str:
        rows = [
            (
                reverse("admin:content_template_change", args=[template.pk]),
                template.get_channel_display(),
                ", ".join(template.languages) or gettext("no content yet"),
            )
            for template in message.templates.all()
        ]
        if not rows:
            return self.get_empty_value_display()
        return format_html_join(" · ", '<a href="{}">{}</a> ({})', rows)

    @admin.display(description=_("templates"))
    def templates_overview(self, message: Message) -> str:
        """Each template with its languages and whether campaigns can use it (at most one per channel)."""
        templates = list(message.templates.all())
        rows = []
        for template in templates:
            problems = template_problems(template=template)
            if problems:
                state = format_html(
                    '<span class="content-state content-state--problem">{}</span> {}',
                    gettext("Not usable:"),
                    problems[0],
                )
            else:
                state = format_html(
                    '<span class="content-state content-state--ok">{}</span>', gettext("Usable by campaigns")
                )
            rows.append(
                (
                    reverse("admin:content_template_change", args=[template.pk]),
                    template.get_channel_display(),
                    ", ".join(template.languages) or gettext("no content yet"),
                    state,
                )
            )
        have = {template.channel for template in templates}
        add = [
            (f"{reverse('admin:content_template_add')}?{urlencode({'message': message.pk, 'channel': value})}", label)
            for value, label in Template.Channel.choices
            if value not in have
        ]
        table = (
            format_html(
                "<table class='dialoog-compact'><tr><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
                gettext("Channel"),
                gettext("Languages"),
                gettext("Usable"),
                format_html_join("", "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td></tr>", rows),
            )
            if rows
            else format_html("<p>{}</p>", gettext("No templates yet."))
        )
        links = format_html_join(" ", '<a class="button" href="{}">+ {}</a>', add) if add else ""
        return format_html("{}<p>{}</p>", table, links)


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    list_display = ["__str__", "channel", "default_language", "language_list", "sender_profile"]
    list_filter = ["channel"]
    list_select_related = ["message", "sender_profile"]
    search_fields = ["message__name"]
    autocomplete_fields = ["message"]
    ordering = ["message__name", "channel"]

    class Media:
        css = {"all": ["content/content-admin.css"]}
        js = ["content/sms-counter.js"]

    # --- the list ---------------------------------------------------------------------------

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        if not str(initial.get("message", "0")).isdigit():  # ?message=abc: no message picked, not a 500
            initial.pop("message")
        return initial

    def get_queryset(self, request):
        return (
            super().get_queryset(request).annotate(languages=ArrayAgg("versions__language", distinct=True, default=[]))
        )

    @admin.display(description=_("languages"))
    def language_list(self, template: Template) -> str:
        return ", ".join(template.languages) or gettext("no content yet")

    # --- the editor -------------------------------------------------------------------------

    def editor_for(self, request: HttpRequest, obj: Template | None) -> Editor:
        """The editor's channel and language for this request, read once."""
        cache = request.__dict__.setdefault("_content_template_editor", {})
        key = obj.pk if obj is not None else None
        if key in cache:
            return cache[key]
        if obj is not None:
            channel: str | None = obj.channel
            default = obj.default_language
        else:
            channel = request.GET.get("channel") if request.GET.get("channel") in Template.Channel.values else None
            default = valid_language(request.GET.get("default_language")) or str(
                Template._meta.get_field("default_language").default
            )
        posted = request.POST.get("editor_language") if request.method == "POST" else None
        language = valid_language(posted) or valid_language(request.GET.get("language")) or default
        newest = template_newest_versions(template=obj) if obj is not None else {}
        editor = Editor(channel, language, newest, ordered_languages(obj, newest) if obj is not None else [])
        cache[key] = editor
        return editor

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        editor = self.editor_for(request, obj)
        if obj is not None:
            obj.content_editor = editor  # for content_readonly, which only gets the object
        attributes = {"editor_channel": editor.channel, "language": editor.language, "start_version": None}
        if editor.channel:
            attributes["start_version"] = editor.start(obj)
        return type(form.__name__, (form,), attributes)

    def get_fieldsets(self, request, obj=None):
        editor = self.editor_for(request, obj)
        about = ["message", "channel", "default_language"]
        if editor.channel in (None, Template.Channel.EMAIL):
            about.append("sender_profile")
        fieldsets: list[tuple[Any, dict[str, Any]]] = [(None, {"fields": about})]
        if obj is not None:
            fieldsets.append((_("Use"), {"fields": ["usable"]}))
        if editor.channel is None:
            fieldsets[0][1]["description"] = gettext(
                "Choose the channel and save: the editor for its content opens next."
            )
            return fieldsets
        if obj is None or self.has_change_permission(request, obj):
            content = ["editor_language", *CHANNEL_FIELDS[editor.channel], "note"]
        else:
            content = ["content_readonly"]
        if obj is None:
            title = gettext("Content, in the default language")
        else:
            title = gettext("Content in “%(language)s”") % {"language": editor.language}
        fieldsets.append((title, {"fields": content, "classes": ["content-editor"]}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        fields = ["usable", "content_readonly"]
        if obj is not None:
            fields.append("channel")  # its versions were written for this channel
        return fields

    @admin.display(description=_("usable by campaigns"))
    def usable(self, template: Template) -> str:
        problems = template_problems(template=template)
        if not problems:
            return format_html(
                '<span class="content-state content-state--ok">{}</span>',
                gettext("Yes: campaigns can use this template."),
            )
        return format_html(
            '<span class="content-state content-state--problem">{}</span><ul class="errorlist content-usable">{}</ul>',
            gettext("No, not yet:"),
            format_html_join("", "<li>{}</li>", ((problem,) for problem in problems)),
        )

    @admin.display(description=_("content"))
    def content_readonly(self, template: Template) -> str:
        editor: Editor | None = getattr(template, "content_editor", None)
        if editor is None or editor.channel is None:
            return self.get_empty_value_display()
        return content_display(editor.version, TEMPLATE_FIELD_LABELS[Template.Channel(editor.channel)])

    def save_model(self, request, obj, form, change):
        obj.save()  # message, channel, default language, sender: the template's own fields
        if not form.editor_channel:
            return
        # A new template's first content is in its default language.
        language = form.cleaned_data["editor_language"] if change else form.cleaned_data["default_language"]
        before = template_newest_versions(template=obj).get(language) if change else None
        version = template_version_create(
            template=obj,
            language=language,
            **form.content(),
            user=request.user,
            note=form.cleaned_data.get("note", ""),
        )
        obj.saved_language = language
        self._report_version(request, version, unchanged=before is not None and before.pk == version.pk)

    def _report_version(self, request, version: TemplateVersion, *, unchanged: bool) -> None:
        values = {"language": version.language, "number": version.number, "count": len(version.problems)}
        if unchanged:
            message = gettext("The “%(language)s” content did not change: it is still version %(number)s.")
            self.message_user(request, message % values, messages.INFO)
        elif version.problems:
            message = ngettext(
                "Saved the “%(language)s” content as version %(number)s, with %(count)d problem: campaigns "
                "cannot use it until it is fixed.",
                "Saved the “%(language)s” content as version %(number)s, with %(count)d problems: campaigns "
                "cannot use it until they are fixed.",
                len(version.problems),
            )
            self.message_user(request, message % values, messages.WARNING)
        else:
            message = gettext("Saved the “%(language)s” content as version %(number)s.")
            self.message_user(request, message % values, messages.SUCCESS)

    def response_add(self, request, obj, post_url_continue=None):
        response = super().response_add(request, obj, post_url_continue)
        if "_addanother" in request.POST or admin.options.IS_POPUP_VAR in request.POST:
            return response
        # Straight on to the editor: a template without content is of no use yet.
        if "_continue" in request.POST or not self.editor_for(request, None).channel:
            return HttpResponseRedirect(change_url(obj, getattr(obj, "saved_language", None)))
        return response

    def response_change(self, request, obj):
        response = super().response_change(request, obj)
        if "_continue" in request.POST:
            return HttpResponseRedirect(change_url(obj, getattr(obj, "saved_language", None)))
        return response

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        editor = self.editor_for(request, obj)
        context["variables"] = variables() if editor.channel else []
        if obj is not None:
            version = editor.version
            labels = TEMPLATE_FIELD_LABELS[Template.Channel(obj.channel)]
            context["editor"] = {
                "language": editor.language,
                "version": version,
                "problems": issues(version.problems, labels) if version else [],
                "warnings": issues(version.warnings, labels) if version else [],
                "new_language": version is None,
                "start": editor.start(obj),
            }
            context["languages"] = [
                {"code": code, "url": change_url(obj, code), "current": code == editor.language}
                for code in editor.languages
            ]
            if editor.language not in editor.languages:
                context["languages"].append(
                    {"code": editor.language, "url": change_url(obj, editor.language), "current": True, "new": True}
                )
            context["language_form"] = LanguageForm()
            context["history"] = self.history_rows(obj, editor.language)
            context["can_change_versions"] = self.has_change_permission(request, obj)
            context["compare_url"] = (
                f"{reverse('admin:content_template_compare', args=[obj.pk])}?{urlencode({'language': editor.language})}"
            )
            context["preview_url"] = (
                f"{reverse('admin:content_template_preview', args=[obj.pk])}?{urlencode({'language': editor.language})}"
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def history_rows(self, template: Template, language: str) -> list[HistoryRow]:
        versions = template.versions.filter(language=language).select_related("created_by").order_by("-number")
        compare = reverse("admin:content_template_compare", args=[template.pk])
        rows, newest = [], None
        for version in versions:
            newest = newest or version
            query = urlencode({"language": language, "old": version.number, "new": newest.number})
            rows.append(
                HistoryRow(
                    version=version,
                    published=version.pk == newest.pk,
                    publish_url="",
                    rollback_url=reverse(
                        "admin:content_template_rollback", args=[template.pk, language, version.number]
                    ),
                    compare_url=f"{compare}?{query}",
                )
            )
        return rows

    # --- rolling back, comparing, previewing ------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path("contacts/", wrap(self.contact_search_view), name="{}_{}_contacts".format(*info)),
            path(
                "<path:object_id>/versions/<str:language>/<int:number>/rollback/",
                wrap(require_POST(self.rollback_view)),
                name="{}_{}_rollback".format(*info),
            ),
            path("<path:object_id>/compare/", wrap(self.compare_view), name="{}_{}_compare".format(*info)),
            path("<path:object_id>/preview/", wrap(self.preview_view), name="{}_{}_preview".format(*info)),
            *super().get_urls(),
        ]

    def _template_for(self, request, object_id: str, *, change: bool = False) -> Template:
        return object_for(self, request, object_id, change=change)

    def rollback_view(self, request, object_id, language, number):
        template = self._template_for(request, object_id, change=True)
        version = get_object_or_404(template.versions, language=language, number=number)
        try:
            restored = template_rollback(version=version, user=request.user)
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
        else:
            self.message_user(
                request,
                gettext(
                    "Rolled the “%(language)s” content back to version %(old)s: saved as version %(new)s, "
                    "the one campaigns use."
                )
                % {"language": language, "old": version.number, "new": restored.number},
                messages.SUCCESS,
            )
        return redirect(change_url(template, language))

    def compare_view(self, request, object_id):
        template = self._template_for(request, object_id)
        language = valid_language(request.GET.get("language")) or template.default_language
        return compare_response(
            request,
            self,
            obj=template,
            versions=list(template.versions.filter(language=language).order_by("-number")),
            title=gettext("Compare “%(language)s” versions of “%(template)s”")
            % {"language": language, "template": template},
            back_url=change_url(template, language),
            extra_query={"language": language},
        )

    # --- the contact picker -----------------------------------------------------------------

    def contact_search_view(self, request):
        """GET `q`: at most 10 contacts, found the way the contact list finds them (by indexes)."""
        if not (self.has_view_permission(request) and request.user.has_perm("audiences.view_contact")):
            raise PermissionDenied
        term = request.GET.get("q", "").strip()
        if len(term) < 2:
            return JsonResponse({"results": []})
        contact_admin = self.admin_site.get_model_admin(Contact)
        queryset, _distinct = contact_admin.get_search_results(
            request, Contact.objects.filter(erased_at__isnull=True), term
        )
        contacts = list(queryset.order_by("last_name", "first_name", "pk")[:CONTACT_MATCHES])
        primary = contact_primary_identities(contact_ids=[contact.pk for contact in contacts])
        return JsonResponse(
            {
                "results": [
                    {
                        "id": contact.pk,
                        "name": str(contact),
                        "identity": primary.get(contact.pk, ""),
                        "contact_key": str(contact.contact_key),
                    }
                    for contact in contacts
                ]
            }
        )

    # --- the preview ------------------------------------------------------------------------

    def preview_view(self, request, object_id):
        """The template rendered for a contact or the sample profile, in a language; POST sends a test."""
        template = self._template_for(request, object_id)
        newest = template_newest_versions(template=template)
        can_pick = request.user.has_perm("audiences.view_contact")
        can_send = self.has_change_permission(request, template) and template.channel != Template.Channel.SCRIPT

        contact = None
        if can_pick and request.GET.get("contact"):
            with contextlib.suppress(ValueError):
                contact = Contact.objects.filter(pk=int(request.GET["contact"]), erased_at__isnull=True).first()
            if contact is None:
                self.message_user(request, gettext("That contact does not exist (any more)."), messages.WARNING)
        language = valid_language(request.GET.get("language"))
        if language in newest:
            version = newest[language]
        else:
            # The version this contact gets (their language, else the default language's).
            version = template_version_for(template=template, language=contact.locale if contact else None)
        context = contact_context(contact=contact) if contact is not None else sample_context()

        send_form = SendTestForm(channel=template.channel, initial={"to": self.test_recipient(request, template)})
        if request.method == "POST":
            if not can_send:
                raise PermissionDenied
            send_form = SendTestForm(request.POST, channel=template.channel)
            if version is None:
                send_form.add_error(None, gettext("There is no version to send yet."))
            elif send_form.is_valid():
                try:
                    sent = template_send_test(version=version, context=context, to=send_form.cleaned_data["to"])
                except ValidationError as error:
                    add_service_errors(send_form, error)
                except (TemplateSourceError, RenderError) as error:
                    send_form.add_error(None, str(error))
                else:
                    self.message_user(
                        request,
                        gettext("Sent a test to %(to)s.") % {"to": send_form.cleaned_data["to"].strip()}
                        + (f" {gettext('Subject:')} {sent.subject}" if sent.subject else ""),
                        messages.SUCCESS,
                    )
                    return redirect(request.get_full_path())

        rendered, render_error, blocks = None, "", []
        if version is None:
            render_error = gettext("This template has no content yet: write it in the editor first.")
        else:
            try:
                rendered = template_render(version=version, context=context)
            except (TemplateSourceError, RenderError) as error:
                render_error = str(error)
            else:
                blocks = list(
                    ContentBlockVersion.objects.filter(pk__in=rendered.block_version_ids.values())
                    .select_related("block")
                    .order_by("block__slug")
                )

        chosen = language if language in newest else ""
        sms_limit_warning = ""
        if rendered is not None and rendered.sms is not None:
            sms_limit_warning = sms_warning(rendered.text, settings.SMS_PART_WARNING) or ""
        context_data = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": template,
            "title": gettext("Preview of “%(template)s”") % {"template": template},
            "template_obj": template,
            "problems": template_problems(template=template),
            "languages": ordered_languages(template, newest),
            "language": chosen,
            "version": version,
            "contact": contact,
            "sample": sample_context()["contact"],
            "can_pick": can_pick,
            "picker_labels": {key: str(label) for key, label in PICKER_LABELS.items()},
            "contact_search_url": reverse("admin:content_template_contacts"),
            "rendered": rendered,
            "render_error": render_error,
            "blocks": blocks,
            "sms_warning": sms_limit_warning,
            "sms_limit": settings.SMS_PART_WARNING,
            "preview_widths": PREVIEW_WIDTHS,
            "can_send": can_send,
            "send_form": send_form if can_send else None,
            "change_url": change_url(template, version.language if version else None),
            "sample_url": f"{request.path}?{urlencode({'language': chosen})}" if chosen else request.path,
        }
        return TemplateResponse(request, "admin/content/template/preview.html", context_data)

    def test_recipient(self, request, template: Template) -> str:
        return request.user.email if template.channel == Template.Channel.EMAIL else ""
