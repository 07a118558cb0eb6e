"""The public side of a sent message: the open pixel, click redirects, the unsubscribe and preferences
pages a contact reaches from their email, and the provider's status webhook.

None of these asks anyone to log in: a contact's pages are opened by a signed token in their own
message, a provider proves itself by signing its request. Each view only parses the request and
calls one service in campaigns/tracking/services.py.
"""

from __future__ import annotations

import base64
import json
import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audiences.models import Channel, Contact
from campaigns.tracking.links import click_target, opened_delivery
from campaigns.tracking.selectors import contact_consent_states, contact_for_link, delivery_id_from_message_id
from campaigns.tracking.services import (
    SignatureError,
    StaleSignatureError,
    StatusReport,
    contact_preference_set,
    contact_unsubscribe,
    delivery_click_record,
    delivery_open_record,
    delivery_status_ingest,
    webhook_signature_verify,
)
from dialoog.api.errors import ErrorResponseSerializer

logger = logging.getLogger(__name__)

# A 1x1 transparent GIF (42 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

# What a contact stops receiving, in their words; `?channel=` names it (callcenter is the phone).
CHANNEL_WORDS = {
    Channel.EMAIL: gettext_lazy("emails"),
    Channel.SMS: gettext_lazy("text messages (SMS)"),
    Channel.PHONE: gettext_lazy("phone calls"),
}
CHANNEL_ALIASES = {"callcenter": Channel.PHONE}


# --- Open pixel and clicks --------------------------------------------------------------------------


@require_safe
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    """The pixel at the end of a tracked email. The same image whatever the token, so that it tells
    nobody whether a token is valid; only a token we signed records an open."""
    delivery_id = opened_delivery(token)
    if delivery_id is not None:
        try:
            delivery_open_record(delivery_id=delivery_id)
        except DatabaseError:
            # A lost open is better than a broken image in the customer's email.
            logger.warning("The open of delivery %s was not recorded", delivery_id, exc_info=True)
    response = HttpResponse(PIXEL, content_type="image/gif")
    add_never_cache_headers(response)
    response["Pragma"] = "no-cache"
    return response


@require_safe
@never_cache
def click_redirect(request: HttpRequest, delivery_id: int) -> HttpResponse:
    """A tracked link: redirect to its target only when we signed this delivery and URL together,
    so that the endpoint is no open redirect for anybody's URL."""
    url = click_target(delivery_id, request.GET.get("u", ""), request.GET.get("s", ""))
    if url is None:
        return render(request, "campaigns/public/bad_link.html", status=400)
    try:
        delivery_click_record(delivery_id=delivery_id, url=url)
    except DatabaseError:
        logger.warning("The click of delivery %s was not recorded", delivery_id, exc_info=True)
    response = HttpResponseRedirect(url)
    # The target site need not see the tracking link (and the delivery id in it).
    response["Referrer-Policy"] = "no-referrer"
    return response


# --- The contact's own pages ----------------------------------------------------------------------


def _language(contact: Contact, request: HttpRequest) -> str:
    """The contact's own language when we have it (their email was in it); otherwise the browser's."""
    try:
        return translation.get_supported_language_variant(contact.locale or "")
    except LookupError:
        return request.LANGUAGE_CODE if hasattr(request, "LANGUAGE_CODE") else settings.LANGUAGE_CODE


def _channel(value: str | None) -> str:
    value = CHANNEL_ALIASES.get(value or "", value or "")
    return value if value in Channel.values else Channel.EMAIL


def _proof(request: HttpRequest, how: str) -> str:
    agent = request.headers.get("user-agent", "")[:300]
    return f"{how}; user agent: {agent}" if agent else how


def _not_found(request: HttpRequest) -> HttpResponse:
    return render(request, "campaigns/public/not_found.html", status=404)


def _public(response: HttpResponse) -> HttpResponse:
    response["X-Robots-Tag"] = "noindex"
    return response


@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET: the page that asks "unsubscribe from these messages?"; POST: the withdrawal.

    Exempt from CSRF on purpose: RFC 8058 one-click unsubscribe has the mailbox provider POST
    `List-Unsubscribe=One-Click` to this URL itself, without our CSRF token or cookies, and must get
    a 200. That is safe because a POST here does only one thing, idempotently: withdraw the consent
    of the contact the signed token names, for one channel. It cannot grant consent or change
    anything else (the preferences page, which can, keeps its CSRF protection), and the token in
    the URL, which only the contact's own messages carry, is what a forged request would lack.
    """
    contact = contact_for_link(token=token)
    if contact is None:
        return _not_found(request)
    channel = _channel(request.GET.get("channel"))
    language = _language(contact, request)
    with translation.override(language):
        context = {
            "channel": channel,
            "what": CHANNEL_WORDS[channel],
            "preferences_url": reverse("campaigns:preferences", args=[token]),
        }
        if request.method == "POST":
            one_click = request.POST.get("List-Unsubscribe") == "One-Click"
            contact_unsubscribe(
                contact=contact,
                channel=channel,
                proof=_proof(request, "one-click unsubscribe (RFC 8058)" if one_click else "unsubscribe page button"),
            )
            response = render(request, "campaigns/public/unsubscribed.html", context)
        else:
            response = render(request, "campaigns/public/unsubscribe.html", context)
        response["Content-Language"] = language
    return _public(response)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    """The contact's consent per channel, each with a button to turn it on or off (CSRF protected:
    unlike the unsubscribe link, this page can also grant consent)."""
    contact = contact_for_link(token=token)
    if contact is None:
        return _not_found(request)
    if request.method == "POST":
        channel = request.POST.get("channel", "")
        if channel not in Channel.values:
            return _not_found(request)
        contact_preference_set(
            contact=contact,
            channel=channel,
            granted=request.POST.get("granted") == "1",
            proof=_proof(request, "preferences page"),
        )
        return redirect(f"{reverse('campaigns:preferences', args=[token])}?saved=1")
    language = _language(contact, request)
    with translation.override(language):
        states = contact_consent_states(contact=contact)
        for state in states:
            state["what"] = CHANNEL_WORDS[state["channel"]]
        response = render(
            request, "campaigns/public/preferences.html", {"states": states, "saved": "saved" in request.GET}
        )
        response["Content-Language"] = language
    return _public(response)


# --- Provider status webhook ------------------------------------------------------------------------


class StatusEventSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=255, help_text="The provider's id of this event: each is processed once.")
    type = serializers.ChoiceField(choices=["delivered", "bounced", "complained"])
    delivery_id = serializers.IntegerField(
        required=False, min_value=1, help_text="Dialoog's delivery id (the `X-Dialoog-Delivery` header)."
    )
    message_id = serializers.CharField(
        required=False, max_length=998, help_text="Or the Message-ID it was sent with: `<dialoog-delivery-N@...>`."
    )
    bounce = serializers.ChoiceField(choices=["hard", "soft"], required=False, help_text="For a bounce.")
    occurred_at = serializers.DateTimeField(required=False, help_text="When it happened; now when left out.")
    detail = serializers.CharField(
        required=False, allow_blank=True, max_length=2000, help_text="The provider's words, such as the SMTP answer."
    )

    def validate(self, attrs):
        if "delivery_id" not in attrs:
            if "message_id" not in attrs:
                raise serializers.ValidationError({"delivery_id": _("Give delivery_id or message_id.")})
            delivery_id = delivery_id_from_message_id(attrs["message_id"])
            if delivery_id is None:
                raise serializers.ValidationError(
                    {"message_id": _("This is not the Message-ID of a Dialoog delivery (<dialoog-delivery-N@...>).")}
                )
            attrs["delivery_id"] = delivery_id
        if attrs["type"] == "bounced" and "bounce" not in attrs:
            raise serializers.ValidationError({"bounce": _("Say whether the bounce is hard or soft.")})
        return attrs


class StatusPayloadSerializer(serializers.Serializer):
    events = StatusEventSerializer(many=True, allow_empty=False, max_length=1000)


class StatusResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.ChoiceField(choices=["processed", "duplicate", "unknown_delivery"])
    delivery_id = serializers.IntegerField()


class WebhookNotConfigured(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "not_configured"


class DeliveryStatusView(APIView):
    """Status reports of the email (or SMS) provider: delivered, bounced, complained.

    No user logs in here: the provider proves itself with an HMAC signature over the timestamp and
    the raw body, made with the secret both sides hold (`DELIVERY_WEBHOOK_SECRET`). So there is no
    authentication class (a session or token would add nothing a provider has, and a session would
    bring CSRF checks a provider cannot pass) and the permission is AllowAny; the signature check
    in `post` is the authentication. A timestamp more than five minutes off is refused, and each
    event id is processed once, so a captured request cannot be replayed to any effect.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    provider = "delivery-status"

    @extend_schema(
        operation_id="delivery_status_report",
        request=StatusPayloadSerializer,
        responses={
            200: inline_serializer("DeliveryStatusResults", {"results": StatusResultSerializer(many=True)}),
            400: OpenApiResponse(
                ErrorResponseSerializer,
                description="The payload is not valid (each error names the field), or the signature's "
                "timestamp is more than five minutes off.",
            ),
            403: OpenApiResponse(ErrorResponseSerializer, description="The `X-Dialoog-Signature` does not match."),
            503: OpenApiResponse(
                ErrorResponseSerializer, description="No `DELIVERY_WEBHOOK_SECRET` is set: every report is refused."
            ),
        },
        description=(
            'Send `{"events": [...]}` signed with `X-Dialoog-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 '
            'of "<t>.<raw body>" with the shared secret>`. Each event is answered: `processed`, `duplicate` '
            "(its id was processed before) or `unknown_delivery`. A hard bounce and a complaint suppress the "
            "address; a complaint also withdraws the contact's consent for the channel."
        ),
    )
    def post(self, request: Request) -> Response:
        secret = settings.DELIVERY_WEBHOOK_SECRET
        if not secret:
            raise WebhookNotConfigured(
                _("Delivery status reports are switched off: set DELIVERY_WEBHOOK_SECRET to the provider's secret.")
            )
        body = request.body
        try:
            webhook_signature_verify(header=request.headers.get("x-dialoog-signature", ""), body=body, secret=secret)
        except SignatureError as error:
            raise exceptions.PermissionDenied(
                _("The X-Dialoog-Signature header does not match this request's body and the shared secret.")
            ) from error
        except StaleSignatureError as error:
            raise exceptions.ValidationError(
                {"X-Dialoog-Signature": _("The signature's timestamp is more than five minutes off: not accepted.")}
            ) from error
        try:
            data = json.loads(body)
        except ValueError as error:
            raise exceptions.ValidationError(_("The body is not JSON.")) from error
        payload = StatusPayloadSerializer(data=data)
        payload.is_valid(raise_exception=True)
        reports = [
            StatusReport(
                id=event["id"],
                type=event["type"],
                delivery_id=event["delivery_id"],
                occurred_at=event.get("occurred_at") or timezone.now(),
                bounce=event.get("bounce", ""),
                detail=event.get("detail", ""),
            )
            for event in payload.validated_data["events"]
        ]
        return Response({"results": delivery_status_ingest(reports=reports, provider=self.provider)})
