"""The customer picture over HTTP: contacts (upsert, profile, lookups, consents, GDPR, the
products to recommend), merges, and events in."""

from __future__ import annotations

from zoneinfo import available_timezones

from django.db.models import OuterRef, Prefetch, Subquery
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from audiences.identities import InvalidIdentity, normalise_identity
from audiences.insights.products import products_recommended
from audiences.models import Channel, Consent, ConsentChange, Contact, ContactMerge, Event, Identity
from audiences.services.consents import consent_record
from audiences.services.contacts import (
    CONTACT_FIELDS,
    contact_by_key,
    contact_erase,
    contact_export,
    contact_merge,
    contact_resolve,
    contact_unmerge,
)
from audiences.services.events import MAX_BATCH, EventIn, event_ingest
from audiences.values import json_value_problem
from dialoog.api.errors import ErrorResponseSerializer, flatten_errors
from dialoog.api.permissions import ActionPermissionsMixin

RECENT_EVENTS = 20
UNKNOWN = "unknown"
RECOMMENDATIONS_DEFAULT = 5
RECOMMENDATIONS_MAX = 20


# Output ------------------------------------------------------------------------------------


class IdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = Identity
        fields = ["kind", "value", "source", "created_at"]


class EventOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = ["id", "type", "occurred_at", "properties", "value", "currency", "external_id", "created_at"]


class ConsentStateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=[*ConsentChange.Status.values, UNKNOWN])
    changed_at = serializers.DateTimeField(allow_null=True)
    source = serializers.CharField(allow_null=True)


class ContactSerializer(serializers.ModelSerializer):
    """A contact's profile: who they are, how we reach them, may we, and what they did lately."""

    identities = IdentitySerializer(many=True, read_only=True)
    consents = serializers.SerializerMethodField()
    scores = serializers.SerializerMethodField()
    recent_events = EventOutSerializer(many=True, read_only=True)

    class Meta:
        model = Contact
        fields = [
            "contact_key",
            *CONTACT_FIELDS,
            "attributes",
            "identities",
            "consents",
            "scores",
            "recent_events",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(serializers.DictField(child=ConsentStateSerializer()))
    def get_consents(self, contact) -> dict:
        current = {consent.channel: consent for consent in contact.consents.all()}
        return {
            channel: {
                "status": current[channel].status if channel in current else UNKNOWN,
                "changed_at": current[channel].changed_at if channel in current else None,
                "source": current[channel].change.source if channel in current else None,
            }
            for channel in Channel.values
        }

    def get_scores(self, contact) -> dict[str, float]:
        return {score.name: score.value for score in contact.scores.all()}


class RecommendedProductSerializer(serializers.Serializer):
    name = serializers.CharField()
    category = serializers.CharField()
    price = serializers.DecimalField(
        max_digits=12, decimal_places=2, allow_null=True, help_text="The median price per item, in euro."
    )
    url = serializers.CharField(help_text="The product's page in the shop; empty when the shop never sent one.")
    image_url = serializers.CharField(help_text="The product's image; empty when the shop never sent one.")
    reason = serializers.CharField(
        help_text='Why it is recommended, in the user\'s language: "bought with Gasbarbecue" or '
        '"best seller in category Barbecues".'
    )


class ContactRecommendationsSerializer(serializers.Serializer):
    contact_key = serializers.UUIDField()
    recommendations = RecommendedProductSerializer(
        many=True, help_text="Best first; empty for a contact who never bought."
    )


def recommendation_data(product: dict) -> dict:
    """A recommended product as the API shows it: the template context's item, with the reason in words."""
    if product["bought_with"]:
        reason = _("bought with %(product)s") % {"product": product["bought_with"]}
    else:
        reason = _("best seller in category %(category)s") % {"category": product["category"]}
    return {
        "name": product["name"],
        "category": product["category"],
        "price": product["price"],
        "url": product["url"],
        "image_url": product["image_url"],
        "reason": reason,
    }


def profile_queryset():
    return Contact.objects.filter(erased_at=None).prefetch_related(
        "identities",
        Prefetch("consents", queryset=Consent.objects.select_related("change")),
        "scores",
        Prefetch(
            "events", queryset=Event.objects.order_by("-occurred_at", "-id")[:RECENT_EVENTS], to_attr="recent_events"
        ),
    )


# Input -------------------------------------------------------------------------------------


class IdentitiesField(serializers.DictField):
    """`{"email": "...", "phone": "..."}`: identity kind → value."""

    child = serializers.CharField(max_length=255, allow_blank=True)

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        errors, cleaned = {}, {}
        for kind, value in data.items():
            if not value:
                continue
            try:
                cleaned[kind] = normalise_identity(kind, value)
            except InvalidIdentity as error:
                errors[kind] = [str(error)]
        if errors:
            raise ValidationError(errors)
        return cleaned


class JsonObjectField(serializers.DictField):
    """A JSON object as PostgreSQL can store it: no NUL characters, finite numbers of a sane size."""

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        problem = json_value_problem(data)
        if problem:
            path, message = problem
            raise ValidationError({path: [message]} if path else [message])
        return data


def _valid_timezone(value: str) -> str:
    if value and value not in available_timezones():
        raise ValidationError(_("Unknown time zone; use a name such as Europe/Amsterdam."))
    return value


class ConsentInSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    status = serializers.ChoiceField(choices=ConsentChange.Status.choices)
    source = serializers.CharField(max_length=100, default="api")
    proof = serializers.CharField(allow_blank=True, default="", help_text="The form, call or import it was given in.")
    recorded_at = serializers.DateTimeField(required=False, help_text="When it was given; now when left out.")


class ContactUpsertSerializer(serializers.Serializer):
    identities = IdentitiesField(help_text='At least one: identity kind → value, e.g. {"email": "a@b.nl"}.')
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    locale = serializers.RegexField(
        r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$", max_length=10, required=False, help_text="A language code: nl, en, de-AT."
    )
    timezone = serializers.CharField(
        max_length=64, required=False, allow_blank=True, validators=[_valid_timezone], help_text="e.g. Europe/Amsterdam"
    )
    attributes = JsonObjectField(required=False, help_text="Merged into the contact's attributes.")
    consents = ConsentInSerializer(many=True, required=False)
    source = serializers.CharField(max_length=100, default="api")

    def validate_identities(self, value):
        if not value:
            raise ValidationError(_("Give at least one identity (e-mail, phone, customer number, ...)."))
        return value


class RecommendationsQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        min_value=1,
        max_value=RECOMMENDATIONS_MAX,
        default=RECOMMENDATIONS_DEFAULT,
        help_text=f"How many products, 1 to {RECOMMENDATIONS_MAX}; default {RECOMMENDATIONS_DEFAULT}.",
    )


class EventInSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=Event.Type.choices)
    occurred_at = serializers.DateTimeField()
    contact_key = serializers.UUIDField(required=False)
    identities = IdentitiesField(required=False)
    properties = JsonObjectField(required=False, default=dict)
    value = serializers.DecimalField(max_digits=12, decimal_places=2, required=False, allow_null=True)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, allow_blank=True, default="")
    external_id = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)

    def validate(self, attrs):
        if not attrs.get("contact_key") and not attrs.get("identities"):
            raise ValidationError(
                {"identities": _("No contact identity: give a contact key, e-mail, phone or customer number.")}
            )
        if attrs.get("value") is not None and not attrs.get("currency"):
            attrs["currency"] = "EUR"
        return attrs


class EventResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["stored", "duplicate", "rejected"])
    id = serializers.IntegerField(allow_null=True)
    contact_key = serializers.UUIDField(allow_null=True)
    errors = serializers.ListField(child=serializers.DictField())


class MergeSerializer(serializers.ModelSerializer):
    survivor_key = serializers.SerializerMethodField(help_text="Null when the survivor was merged away since.")

    class Meta:
        model = ContactMerge
        fields = ["id", "survivor_key", "absorbed_key", "reason", "merged_at", "unmerged_at", "moved"]

    def get_survivor_key(self, merge) -> str | None:
        if hasattr(merge, "current_survivor_key"):
            key = merge.current_survivor_key
        else:
            key = Contact.objects.filter(pk=merge.survivor_id).values_list("contact_key", flat=True).first()
        return str(key) if key else None


class MergeInSerializer(serializers.Serializer):
    survivor = serializers.UUIDField(help_text="Contact key of the contact that stays.")
    absorbed = serializers.UUIDField(help_text="Contact key of the contact merged into it.")
    reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


# Views -------------------------------------------------------------------------------------


class ContactPagination(CursorPagination):
    """No COUNT(*) over a million contacts: pages follow a cursor."""

    ordering = "-id"
    page_size = 50


def _contact_or_404(key) -> Contact:
    contact = contact_by_key(contact_key=key)
    if contact is None or contact.erased_at:
        raise NotFound(_("No contact has the key %(key)s.") % {"key": key})
    return contact


LOOKUP_PARAMETERS = [
    OpenApiParameter(kind, OpenApiTypes.STR, description=f"Find by {label.lower()} (normalised first).")
    for kind, label in Identity.Kind.choices
]


class ContactViewSet(ActionPermissionsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Contacts: one customer picture, found by contact key or by any identity."""

    queryset = Contact.objects.none()
    serializer_class = ContactSerializer
    lookup_field = "contact_key"
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"
    pagination_class = ContactPagination
    filter_backends: list = []
    action_permissions = {
        "consents": ("audiences.add_consentchange", "audiences.view_contact"),
        "export": ("audiences.view_contact", "audiences.change_contact"),
        "erase": ("audiences.delete_contact",),
        "merge": ("audiences.change_contact",),
        # Whoever may read a contact may read what to recommend to them, as with the profile.
        "recommendations": ("audiences.view_contact",),
    }

    def get_queryset(self):
        queryset = profile_queryset()
        if self.action != "list":
            return queryset
        if not any(kind in self.request.query_params for kind in Identity.Kind.values) and not (
            self.request.user.has_perm("audiences.browse_contact")
        ):
            raise PermissionDenied(
                _("Your role looks contacts up one at a time: add ?email=, ?phone= or another identity.")
            )
        for kind in Identity.Kind.values:
            raw = self.request.query_params.get(kind)
            if raw is None:
                continue
            try:
                value = normalise_identity(kind, raw)
            except InvalidIdentity as error:
                raise ValidationError({kind: [str(error)]}) from error
            queryset = queryset.filter(identities__kind=kind, identities__value=value)
        return queryset

    def get_object(self):
        contact = _contact_or_404(self.kwargs["contact_key"])
        self.check_object_permissions(self.request, contact)
        return profile_queryset().get(pk=contact.pk)

    @extend_schema(parameters=LOOKUP_PARAMETERS)
    def list(self, request, *args, **kwargs):
        """Contacts, newest first; `?email=` or `?phone=` (any identity kind) finds one."""
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=ContactUpsertSerializer,
        responses={201: ContactSerializer, 200: ContactSerializer},
        description="Create or update a contact, found by any identity it carries. Identities of two "
        "contacts in one call merge them. 201 when the contact is new, 200 when it existed.",
    )
    def create(self, request):
        data = ContactUpsertSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        resolution = contact_resolve(
            identities=values["identities"],
            fields={name: values[name] for name in CONTACT_FIELDS if name in values},
            attributes=values.get("attributes"),
            source=values["source"],
            user=request.user,
        )
        for consent in values.get("consents", []):
            consent_record(contact=resolution.contact, **consent)
        contact = profile_queryset().get(pk=resolution.contact.pk)
        return Response(
            self.get_serializer(contact).data,
            status=status.HTTP_201_CREATED if resolution.created else status.HTTP_200_OK,
        )

    @extend_schema(request=ConsentInSerializer, responses={201: ContactSerializer, 200: ContactSerializer})
    @action(detail=True, methods=["post"])
    def consents(self, request, contact_key=None):
        """Record a consent change for a channel; 201 when it changed the consent, 200 when it was already so."""
        contact = _contact_or_404(contact_key)
        data = ConsentInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        change, _current = consent_record(contact=contact, **data.validated_data)
        contact = profile_queryset().get(pk=contact.pk)
        return Response(
            self.get_serializer(contact).data, status=status.HTTP_201_CREATED if change else status.HTTP_200_OK
        )

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def export(self, request, contact_key=None):
        """Everything Dialoog holds about this contact (GDPR access request); logged."""
        return Response(contact_export(contact=_contact_or_404(contact_key), user=request.user))

    @extend_schema(
        parameters=[RecommendationsQuerySerializer],
        responses={
            200: ContactRecommendationsSerializer,
            400: OpenApiResponse(
                ErrorResponseSerializer,
                description=f"`limit` is not a whole number from 1 to {RECOMMENDATIONS_MAX}: the error names it.",
            ),
            404: OpenApiResponse(ErrorResponseSerializer, description="No contact has this key, or it was erased."),
        },
    )
    @action(detail=True, methods=["get"])
    def recommendations(self, request, contact_key=None):
        """The products to recommend to this contact, best first ("customers who bought this also
        bought"), each with the reason: bought with one of the contact's products, or a best seller of
        a category the contact bought in. Empty for a contact who never bought anything. The same list
        as `recommendations` in a template; the pairs are refreshed every night."""
        query = RecommendationsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        contact = _contact_or_404(contact_key)
        found = products_recommended(contact_ids=[contact.pk], limit=query.validated_data["limit"])
        data = {
            "contact_key": contact.contact_key,
            "recommendations": [recommendation_data(product) for product in found.get(contact.pk, [])],
        }
        return Response(ContactRecommendationsSerializer(data).data)

    @extend_schema(
        request=None,
        responses={200: inline_serializer("Erased", {"erased": serializers.BooleanField()})},
    )
    @action(detail=True, methods=["post"])
    def erase(self, request, contact_key=None):
        """Erase this contact (GDPR): personal data removed, events kept anonymised; logged."""
        contact_erase(contact=_contact_or_404(contact_key), user=request.user, note="API")
        return Response({"erased": True})

    @extend_schema(
        request=inline_serializer("MergeWith", {"other": serializers.UUIDField()}), responses={201: MergeSerializer}
    )
    @action(detail=True, methods=["post"])
    def merge(self, request, contact_key=None):
        """Merge another contact into this one (they are one person); undo with `merges/{id}/unmerge/`."""
        survivor = _contact_or_404(contact_key)
        other = request.data.get("other") if isinstance(request.data, dict) else None
        absorbed = contact_by_key(contact_key=other) if other else None
        if absorbed is None:
            raise ValidationError({"other": [_("No contact has this key.")]})
        merge = contact_merge(survivor=survivor, absorbed=absorbed, reason="API", user=request.user)
        return Response(MergeSerializer(merge).data, status=status.HTTP_201_CREATED)


class MergeViewSet(ActionPermissionsMixin, viewsets.ReadOnlyModelViewSet):
    """Merges of contacts found to be one person, each one undoable."""

    # No select_related: the survivor of an older merge may have been merged away since, and
    # an inner join would hide that merge, which must be undone first.
    queryset = ContactMerge.objects.annotate(
        current_survivor_key=Subquery(Contact.objects.filter(pk=OuterRef("survivor_id")).values("contact_key")[:1])
    ).order_by("-merged_at")
    serializer_class = MergeSerializer
    filterset_fields = ["absorbed_key"]
    action_permissions = {"create": ("audiences.change_contact",), "unmerge": ("audiences.change_contact",)}

    @extend_schema(request=MergeInSerializer, responses={201: MergeSerializer})
    def create(self, request):
        data = MergeInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        survivor = contact_by_key(contact_key=data.validated_data["survivor"])
        absorbed = contact_by_key(contact_key=data.validated_data["absorbed"])
        errors = {}
        if survivor is None:
            errors["survivor"] = [_("No contact has this key.")]
        if absorbed is None:
            errors["absorbed"] = [_("No contact has this key.")]
        if errors:
            raise ValidationError(errors)
        merge = contact_merge(
            survivor=survivor, absorbed=absorbed, reason=data.validated_data["reason"], user=request.user
        )
        return Response(self.get_serializer(merge).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: ContactSerializer})
    @action(detail=True, methods=["post"])
    def unmerge(self, request, pk=None):
        """Undo this merge: both contacts come back as they were. Returns the restored contact."""
        restored = contact_unmerge(merge=self.get_object(), user=request.user)
        return Response(ContactSerializer(profile_queryset().get(pk=restored.pk)).data)


class EventViewSet(ActionPermissionsMixin, viewsets.GenericViewSet):
    """Events in: one object, or a list of up to 1,000, each answered on its own."""

    queryset = Event.objects.none()
    serializer_class = EventInSerializer
    action_permissions = {"create": ("audiences.add_event",)}

    @extend_schema(
        request=EventInSerializer(many=True),
        responses={200: inline_serializer("EventResults", {"results": EventResultSerializer(many=True)})},
        description="Send one event or a list of up to 1,000. Each is answered: `stored`, `duplicate` (its "
        "`external_id` was stored before) or `rejected` with the reasons. A stored event is visible in the "
        "contact's profile when this call returns. One event sent alone answers 201, 200 or 400.",
    )
    def create(self, request):
        single = isinstance(request.data, dict)
        raw = [request.data] if single else request.data
        if not isinstance(raw, list) or not raw:
            raise ValidationError(_("Send an event object or a list of them."))
        if len(raw) > MAX_BATCH:
            raise ValidationError(_("Send at most %(max)d events at once.") % {"max": MAX_BATCH})
        items, results = [], {}
        for index, body in enumerate(raw):
            data = EventInSerializer(data=body if isinstance(body, dict) else None)
            if data.is_valid():
                items.append((index, EventIn(**data.validated_data)))
            else:
                errors = flatten_errors(data.errors)
                results[index] = {
                    "index": index,
                    "status": "rejected",
                    "id": None,
                    "contact_key": None,
                    "errors": errors,
                }
        ingested = event_ingest(
            items=[item for _index, item in items],
            user=request.user,
            # An event may bring a new customer, or tie a new identity to a known one, only
            # from a sender who may do that to contacts directly.
            may_create=request.user.has_perm("audiences.add_contact"),
            may_change=request.user.has_perm("audiences.change_contact"),
        )
        for (index, _item), result in zip(items, ingested, strict=True):
            results[index] = {**vars(result), "index": index}
        answers = [results[index] for index in range(len(raw))]
        if not single:
            return Response({"results": answers})
        answer = answers[0]
        if answer["status"] == "rejected":
            return Response(
                {"type": "validation_error", "errors": answer["errors"]}, status=status.HTTP_400_BAD_REQUEST
            )
        return Response(answer, status=status.HTTP_201_CREATED if answer["status"] == "stored" else status.HTTP_200_OK)
