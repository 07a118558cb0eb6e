"""Audience exports over HTTP: the list, and each export's latest file (CSV of SHA-256 hashed,
normalised emails and phone numbers), for a job that uploads it to an advertising platform."""

from __future__ import annotations

import json

from django.http import HttpResponse
from django.urls import reverse
from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BaseRenderer, JSONRenderer

from campaigns.models import AudienceExport
from campaigns.services.exports import audience_export_filename


class CSVRenderer(BaseRenderer):
    """Lets a client ask for `text/csv`; the file itself is sent as it is stored, an error as JSON."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        return json.dumps(data).encode()


class AudienceExportSerializer(serializers.ModelSerializer):
    file_url = serializers.SerializerMethodField(help_text="The latest file; null when it was never exported.")

    class Meta:
        model = AudienceExport
        fields = [
            "id",
            "name",
            "segment",
            "schedule",
            "enabled",
            "last_occurrence",
            "exported_at",
            "row_count",
            "file_url",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_file_url(self, obj: AudienceExport) -> str | None:
        if obj.exported_at is None:
            return None
        url = reverse("audience-export-file", args=[obj.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request is not None else url


class AudienceExportViewSet(viewsets.ReadOnlyModelViewSet):
    """Audience exports: segments exported on a schedule as hashed customer lists."""

    serializer_class = AudienceExportSerializer
    queryset = AudienceExport.objects.all()
    filterset_fields = ["enabled", "segment"]
    ordering_fields = ["name", "exported_at"]

    def get_queryset(self):
        queryset = super().get_queryset()
        # Only the file's own endpoint reads the file.
        return queryset if self.action == "file" else queryset.defer("content")

    @extend_schema(
        summary="The export's latest file",
        description=(
            "CSV with the header `email_sha256,phone_sha256`: one row per contact of the segment, "
            "the SHA-256 (lower-case hex) of its first email address (trimmed, lower case) and of its "
            "first phone number (E.164 digits without the '+'); either may be empty. 404 when the "
            "export has not been written yet."
        ),
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="The CSV file.")},
    )
    @action(detail=True, methods=["get"], url_path="file", renderer_classes=[JSONRenderer, CSVRenderer])
    def file(self, request, pk=None):
        export = self.get_object()
        if export.exported_at is None:
            raise NotFound(gettext("This audience has not been exported yet."))
        response = HttpResponse(bytes(export.content), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{audience_export_filename(export)}"'
        return response
