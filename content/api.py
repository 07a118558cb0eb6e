"""Content over HTTP: read blocks and templates, and render a template for a contact."""

from __future__ import annotations

from dataclasses import asdict

from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Max
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from audiences.services.contacts import contact_by_key
from content.models import ContentBlock, Template
from content.rendering.context import sample_context
from content.rendering.errors import RenderError, TemplateSourceError
from content.selectors import contact_context, template_newest_versions, template_version_for
from content.services import template_problems, template_render
from dialoog.api.permissions import ActionPermissionsMixin


class IssueSerializer(serializers.Serializer):
    field = serializers.CharField()
    line = serializers.IntegerField()
    column = serializers.IntegerField()
    message = serializers.CharField()


class VersionSummarySerializer(serializers.Serializer):
    number = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    created_by = serializers.StringRelatedField()
    note = serializers.CharField()
    valid = serializers.BooleanField(source="is_valid")
    problems = IssueSerializer(many=True)
    warnings = IssueSerializer(many=True)


class BlockVersionSerializer(VersionSummarySerializer):
    id = serializers.IntegerField()
    body = serializers.CharField()
    text_body = serializers.CharField()
    prepared_html = serializers.CharField()
    prepared_text = serializers.CharField()


class BlockSerializer(serializers.ModelSerializer):
    published_version = serializers.IntegerField(source="published_version.number", allow_null=True, default=None)
    newest_version = serializers.IntegerField(allow_null=True)

    class Meta:
        model = ContentBlock
        fields = ["slug", "name", "kind", "description", "published_version", "newest_version", "updated_at"]


class BlockDetailSerializer(BlockSerializer):
    published = BlockVersionSerializer(source="published_version", allow_null=True)
    versions = VersionSummarySerializer(many=True)

    class Meta(BlockSerializer.Meta):
        fields = [*BlockSerializer.Meta.fields, "published", "versions"]


class BlockViewSet(viewsets.ReadOnlyModelViewSet):
    """Reusable content blocks, by slug: what templates include with {% include "block:slug" %}."""

    lookup_field = "slug"
    filterset_fields = ["kind"]
    ordering_fields = ["name", "slug", "updated_at"]

    def get_queryset(self):
        queryset = ContentBlock.objects.select_related("published_version").annotate(
            newest_version=Max("versions__number")
        )
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("versions__created_by")
        return queryset.order_by("name")

    def get_serializer_class(self):
        return BlockDetailSerializer if self.action == "retrieve" else BlockSerializer


class TemplateVersionSerializer(VersionSummarySerializer):
    id = serializers.IntegerField()
    language = serializers.CharField()
    subject = serializers.CharField()
    preheader = serializers.CharField()
    html = serializers.CharField()
    text = serializers.CharField()
    talking_points = serializers.CharField()
    offer_pitch = serializers.CharField()


class TemplateSerializer(serializers.ModelSerializer):
    message = serializers.CharField(source="message.name")
    message_id = serializers.IntegerField()
    sender_profile = serializers.StringRelatedField()
    languages = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = Template
        fields = ["id", "message_id", "message", "channel", "default_language", "sender_profile", "languages"]


class TemplateDetailSerializer(TemplateSerializer):
    usable = serializers.SerializerMethodField()
    problems = serializers.SerializerMethodField()
    versions = serializers.SerializerMethodField()

    class Meta(TemplateSerializer.Meta):
        fields = [*TemplateSerializer.Meta.fields, "usable", "problems", "versions"]

    def problem_list(self, template) -> list[str]:
        if not hasattr(template, "_problems"):
            template._problems = template_problems(template=template)
        return template._problems

    def get_usable(self, template) -> bool:
        return not self.problem_list(template)

    def get_problems(self, template) -> list[str]:
        return self.problem_list(template)

    @extend_schema(responses=TemplateVersionSerializer(many=True))
    def get_versions(self, template) -> list[dict]:
        newest = template_newest_versions(template=template)
        return TemplateVersionSerializer(list(newest.values()), many=True).data


class RenderInSerializer(serializers.Serializer):
    contact_key = serializers.UUIDField(
        required=False, help_text="The contact to render for; leave out and set `sample` for the sample profile."
    )
    sample = serializers.BooleanField(default=False, help_text="Render with the sample profile.")
    language = serializers.CharField(
        required=False, max_length=10, help_text="Render this language's version instead of the contact's."
    )

    def validate(self, attrs):
        if not attrs.get("contact_key") and not attrs["sample"]:
            raise ValidationError({"contact_key": _("Give a contact key, or set sample to true.")})
        return attrs


class SmsInfoSerializer(serializers.Serializer):
    encoding = serializers.CharField()
    length = serializers.IntegerField()
    parts = serializers.IntegerField()
    per_part = serializers.IntegerField()
    non_gsm_characters = serializers.ListField(child=serializers.CharField())


class RenderedSerializer(serializers.Serializer):
    channel = serializers.CharField()
    language = serializers.CharField()
    template_version_id = serializers.IntegerField()
    template_version = serializers.IntegerField(help_text="The version's number in its language.")
    block_version_ids = serializers.DictField(child=serializers.IntegerField())
    subject = serializers.CharField()
    preheader = serializers.CharField()
    html = serializers.CharField()
    text = serializers.CharField()
    talking_points = serializers.ListField(child=serializers.CharField())
    offer_pitch = serializers.CharField()
    sms = SmsInfoSerializer(allow_null=True)


class TemplateViewSet(ActionPermissionsMixin, viewsets.ReadOnlyModelViewSet):
    """Channel templates (email, SMS, callcenter script) with their newest version per language."""

    filterset_fields = ["channel", "message"]
    ordering_fields = ["id", "channel"]
    action_permissions = {"render": ("content.view_template", "audiences.view_contact")}

    def get_queryset(self):
        return (
            Template.objects.select_related("message", "sender_profile")
            .annotate(languages=ArrayAgg("versions__language", distinct=True, default=[]))
            .order_by("message__name", "channel")
        )

    def get_serializer_class(self):
        return TemplateDetailSerializer if self.action == "retrieve" else TemplateSerializer

    @extend_schema(request=RenderInSerializer, responses={200: RenderedSerializer})
    @action(detail=True, methods=["post"])
    def render(self, request, pk=None):
        """The template rendered for a contact (or the sample profile), in the contact's language
        (falling back to the template's default), with the versions it was rendered from."""
        template = self.get_object()
        data = RenderInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        language = values.get("language")
        if values.get("contact_key"):
            contact = contact_by_key(contact_key=values["contact_key"])
            if contact is None or contact.erased_at:
                raise ValidationError({"contact_key": _("There is no contact with this key.")})
            context = contact_context(contact=contact)
            language = language or contact.locale
        else:
            context = sample_context()
        version = template_version_for(template=template, language=language)
        if version is None:
            raise ValidationError({"template": _("This template has no version to render yet.")})
        try:
            message = template_render(version=version, context=context)
        except TemplateSourceError as error:
            raise ValidationError(
                {
                    "template": [
                        _("Version %(number)s has problems: %(problems)s")
                        % {"number": version.number, "problems": error}
                    ]
                }
            ) from error
        except RenderError as error:
            raise ValidationError({"template": [str(error)]}) from error
        body = {**asdict(message), "template_version": version.number}
        return Response(RenderedSerializer(body).data)
