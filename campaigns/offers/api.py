"""The next-best offer over HTTP, for callcenter agents: ask for the ranked offers of the customer on
the line, record their answer, read a decision back."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import RetrieveAPIView
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from campaigns.models import OfferChannel, OfferDecision, OfferResponse
from campaigns.offers.decisions import MAX_LIMIT, ContactNotFound, Decision, contact_lookup, offer_decide
from campaigns.offers.services import ResponseConflict, offer_response_record
from dialoog.api.errors import Conflict, ErrorResponseSerializer

USE_PERMISSION = "campaigns.use_next_best_offer"


class CallcenterAgents(permissions.BasePermission):
    """Only who may use the next-best offer (the Callcenter agent role, and administrators).

    The user's permissions are remembered per process (`dialoog.authentication`): Django read them
    in two queries on every request (7 ms of the decision's 14 on a busy machine). A role taken
    away applies within settings.API_AUTH_CACHE_SECONDS."""

    message = _("Only callcenter agents may ask for next-best offers and record the answers.")

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        return user.has_perm(USE_PERMISSION)


class NextBestOfferThrottle(UserRateThrottle):
    """Per user, at settings REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["next_best_offer"]."""

    scope = "next_best_offer"


# Output ------------------------------------------------------------------------------------


class ScorePartsSerializer(serializers.Serializer):
    propensity = serializers.FloatField(help_text="P: the chance of an accept, 0 to 1.")
    propensity_basis = serializers.CharField(help_text="Where the propensity comes from, in words.")
    context_weight = serializers.FloatField(help_text="C: how much this channel and moment favour the offer.")
    value = serializers.DecimalField(max_digits=10, decimal_places=2, help_text="V: what an accept is worth (€).")
    lever = serializers.FloatField(help_text="L: the marketeer's weight.")


class ScriptSerializer(serializers.Serializer):
    language = serializers.CharField()
    text = serializers.CharField(help_text="What the agent says, rendered for this contact.")
    talking_points = serializers.ListField(child=serializers.CharField())
    offer_pitch = serializers.CharField()


class RankedOfferSerializer(serializers.Serializer):
    offer_id = serializers.IntegerField()
    name = serializers.CharField()
    rank = serializers.IntegerField(help_text="1 is the best; a held-out top offer keeps rank 1 but is not listed.")
    score = serializers.FloatField(help_text="propensity x context weight x value x lever")
    score_parts = ScorePartsSerializer()
    explanation = serializers.CharField(help_text="Why this offer, in plain words and numbers.")
    script = ScriptSerializer()
    code = serializers.CharField(help_text="The code the customer uses to take the offer.")
    follow_up = serializers.ChoiceField(choices=["email", "sms"], allow_null=True, help_text="Its follow-up message.")


class LeftOutSerializer(serializers.Serializer):
    offer_id = serializers.IntegerField()
    name = serializers.CharField()
    reason = serializers.CharField(help_text="Why it is not offered now.")


class DecisionContactSerializer(serializers.Serializer):
    contact_key = serializers.UUIDField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    locale = serializers.CharField()


class DecisionSerializer(serializers.Serializer):
    decision_id = serializers.IntegerField(help_text="Refer to it when recording the customer's answer.")
    decided_at = serializers.DateTimeField()
    channel = serializers.ChoiceField(choices=OfferChannel.choices)
    contact = DecisionContactSerializer()
    offers = RankedOfferSerializer(many=True)
    left_out = LeftOutSerializer(many=True)


def decision_data(decision: Decision) -> dict[str, Any]:
    """The decision as the API and the agent console present it (plain data, no serializer pass:
    this is the hot path; DecisionSerializer documents the shape)."""
    contact = decision.contact
    return {
        "decision_id": decision.id,
        "decided_at": decision.decided_at.isoformat(),
        "channel": decision.channel,
        "contact": {
            "contact_key": str(contact["contact_key"]),
            "first_name": contact["first_name"],
            "last_name": contact["last_name"],
            "locale": contact["locale"],
        },
        "offers": [
            {
                "offer_id": item.spec.id,
                "name": item.spec.name,
                "rank": item.rank,
                "score": round(item.score, 4),
                "score_parts": {
                    "propensity": round(item.propensity, 4),
                    "propensity_basis": item.propensity_basis,
                    "context_weight": item.context_weight,
                    "value": str(item.spec.value),
                    "lever": item.spec.lever,
                },
                "explanation": item.explanation,
                "script": item.script,
                "code": item.spec.code,
                "follow_up": item.spec.follow_up_channel,
            }
            for item in decision.offers
        ],
        "left_out": [reason.as_dict() for reason in decision.left_out],
    }


LOOKUP_PARAMETERS = [
    OpenApiParameter("channel", OpenApiTypes.STR, enum=OfferChannel.values, description="Default `callcenter`."),
    OpenApiParameter(
        "limit", OpenApiTypes.INT, description=f"How many offers to present, 1 to {MAX_LIMIT}; default 3."
    ),
]
ERRORS = {
    400: OpenApiResponse(ErrorResponseSerializer, description="A parameter is not valid: the error names it."),
    404: OpenApiResponse(ErrorResponseSerializer, description="No contact is known by that key, e-mail or phone."),
    429: OpenApiResponse(ErrorResponseSerializer, description="Too many decisions asked by this user: wait a moment."),
}


class NextBestOffersView(APIView):
    """The ranked offers for one contact, each with its score parts, explanation and rendered
    script; the offers left out, each with why. The decision is recorded: answer it by its id."""

    permission_classes = [CallcenterAgents]
    throttle_classes = [NextBestOfferThrottle]

    def _parameters(self, request) -> tuple[str, int]:
        channel = request.query_params.get("channel") or OfferChannel.CALLCENTER
        if channel not in OfferChannel.values:
            raise ValidationError(
                {"channel": [_("Choose one of %(known)s.") % {"known": ", ".join(OfferChannel.values)}]}
            )
        raw = request.query_params.get("limit") or "3"
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationError({"limit": [_("A whole number from 1 to %(max)d.") % {"max": MAX_LIMIT}]})
        return channel, limit

    def decide(self, request, **lookup: Any) -> Response:
        channel, limit = self._parameters(request)
        try:
            how, value = contact_lookup(**lookup)
        except ValueError as error:
            field = next((name for name, given in lookup.items() if given), "contact_key")
            raise ValidationError({field: [str(error)]}) from error
        try:
            decision = offer_decide(lookup=how, value=value, channel=channel, limit=limit, agent=request.user)
        except ContactNotFound as error:
            raise NotFound(str(error)) from error
        return Response(decision_data(decision))

    @extend_schema(
        summary="The next-best offers for a contact, by contact key",
        parameters=LOOKUP_PARAMETERS,
        responses={200: DecisionSerializer, **ERRORS},
    )
    def get(self, request, contact_key: str) -> Response:
        return self.decide(request, contact_key=contact_key)


class NextBestOffersLookupView(NextBestOffersView):
    @extend_schema(
        summary="The next-best offers for a contact, by e-mail address or phone number",
        description="`?phone=06 12345678` finds the same contact as `+31612345678`.",
        parameters=[
            OpenApiParameter("email", OpenApiTypes.STR),
            OpenApiParameter("phone", OpenApiTypes.STR),
            OpenApiParameter("contact_key", OpenApiTypes.UUID),
            *LOOKUP_PARAMETERS,
        ],
        responses={200: DecisionSerializer, **ERRORS},
    )
    def get(self, request) -> Response:  # type: ignore[override]
        params = request.query_params
        return self.decide(
            request, contact_key=params.get("contact_key"), email=params.get("email"), phone=params.get("phone")
        )


# Responses ---------------------------------------------------------------------------------


class OfferResponseInSerializer(serializers.Serializer):
    decision = serializers.IntegerField(help_text="The decision the offer was presented in.")
    offer = serializers.IntegerField(help_text="The offer's id, as the decision listed it.")
    outcome = serializers.ChoiceField(choices=OfferResponse.Outcome.choices)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    client_request_id = serializers.CharField(
        max_length=100, help_text="Your id for this request: sending it again records nothing twice."
    )


class OfferResponseSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.username", default=None, read_only=True)

    class Meta:
        model = OfferResponse
        fields = [
            "id",
            "decision",
            "offer",
            "outcome",
            "reason",
            "agent",
            "client_request_id",
            "event_id",
            "created_at",
        ]


class OfferResponsesView(APIView):
    """Record what the customer answered to an offer presented in a decision. It becomes an
    `offer_response` event in the customer's history, counts for the offer's learned propensity
    and capacity, and an accept or a reject keeps the offer from the customer as the offer says."""

    permission_classes = [CallcenterAgents]

    @extend_schema(
        summary="Record the customer's answer to an offer",
        request=OfferResponseInSerializer,
        responses={
            201: OfferResponseSerializer,
            200: OpenApiResponse(
                OfferResponseSerializer, description="A retried request: what it recorded the first time."
            ),
            400: OpenApiResponse(
                ErrorResponseSerializer,
                description="Not valid: an unknown or too old decision, an offer not presented in it, a request id "
                "used for another response; the error names the field.",
            ),
            409: OpenApiResponse(
                ErrorResponseSerializer,
                description="Already accepted or rejected in this decision, the offer ended, or today's capacity "
                "is used.",
            ),
        },
    )
    def post(self, request) -> Response:
        data = OfferResponseInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            recorded = offer_response_record(
                decision_id=values["decision"],
                offer_id=values["offer"],
                outcome=values["outcome"],
                reason=values["reason"],
                client_request_id=values["client_request_id"],
                agent=request.user,
            )
        except ResponseConflict as error:
            raise Conflict(str(error), code="conflict") from error
        return Response(
            OfferResponseSerializer(recorded.response).data,
            status=status.HTTP_201_CREATED if recorded.created else status.HTTP_200_OK,
        )


class OfferDecisionItemSerializer(serializers.Serializer):
    offer_id = serializers.IntegerField()
    name = serializers.CharField(source="offer.name")
    rank = serializers.IntegerField()
    presented = serializers.BooleanField()
    held_out = serializers.BooleanField()
    propensity = serializers.FloatField()
    context_weight = serializers.FloatField()
    value = serializers.DecimalField(max_digits=10, decimal_places=2)
    lever = serializers.FloatField()
    score = serializers.FloatField()
    explanation = serializers.CharField()


class OfferDecisionSerializer(serializers.ModelSerializer):
    contact_key = serializers.UUIDField(source="contact.contact_key")
    agent = serializers.CharField(source="agent.username", default=None)
    items = OfferDecisionItemSerializer(many=True)
    responses = OfferResponseSerializer(many=True)

    class Meta:
        model = OfferDecision
        fields = ["id", "contact_key", "channel", "agent", "created_at", "items", "left_out", "responses"]


@extend_schema(summary="A decision: what was presented, held out and left out, and the answers")
class OfferDecisionView(RetrieveAPIView):
    serializer_class = OfferDecisionSerializer
    queryset = OfferDecision.objects.select_related("contact", "agent").prefetch_related(
        "items__offer", "responses__agent"
    )
