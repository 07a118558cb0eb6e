"""Contacts: identity resolution, merge and unmerge, and the GDPR requests.

Every way in (API, import, events) calls `contact_resolve` with the identities it carries.
It finds the contact by any of them, creates one when none is known, and merges contacts
when the identities turn out to belong to more than one: they are the same person.
A merge records everything it moved and changed, so that `contact_unmerge` restores both
contacts exactly.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from audiences.identities import InvalidIdentity, normalise_identity
from audiences.models import (
    Consent,
    ConsentChange,
    Contact,
    ContactMerge,
    Event,
    Identity,
    PrivacyRequest,
    Score,
    Segment,
    SegmentMember,
)
from audiences.services.consents import consent_current_rebuild

logger = logging.getLogger(__name__)

CONTACT_FIELDS = ["first_name", "last_name", "locale", "timezone"]
# What an erased contact's events keep: enough for totals per category, nothing that names anyone.
ANONYMISED_EVENT_PROPERTIES = ["category", "product", "items", "outcome", "score", "channel", "campaign"]
# The more restrictive of two consent states wins in a merge.
RESTRICTIVENESS: dict[str, int] = {ConsentChange.Status.WITHDRAWN: 2, ConsentChange.Status.GRANTED: 1}


@dataclass
class Resolution:
    contact: Contact
    created: bool
    merges: list[ContactMerge] = field(default_factory=list)
    identities_added: int = 0
    changed: bool = False


def identities_normalise(identities: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[tuple[str, str]]:
    """(kind, normalised value) pairs; a ValidationError keyed `identities.<kind>` for each bad one."""
    pairs = identities.items() if isinstance(identities, Mapping) else identities
    normalised, errors = [], {}
    for kind, value in pairs:
        if value is None or value == "":
            continue
        try:
            normalised.append((kind, normalise_identity(kind, value)))
        except InvalidIdentity as error:
            errors[f"identities.{kind}"] = str(error)
    if errors:
        raise ValidationError(errors)
    return list(dict.fromkeys(normalised))


def _lock_identities(pairs: list[tuple[str, str]]) -> None:
    """Serialise resolutions of the same identity: two requests carrying the same new e-mail
    address at the same moment must end up with one contact, not two."""
    with connection.cursor() as cursor:
        for kind, value in sorted(pairs):
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"identity:{kind}:{value}"])


def contact_resolve(
    *,
    identities: Mapping[str, Any] | Iterable[tuple[str, Any]],
    fields: Mapping[str, Any] | None = None,
    attributes: Mapping[str, Any] | None = None,
    source: str = "",
    user: Any = None,
) -> Resolution:
    """Find the contact these identities belong to, or create it; merge contacts they show to
    be one person; add the identities it lacked and update the fields and attributes given."""
    pairs = identities_normalise(identities)
    if not pairs:
        raise ValidationError({"identities": _("Give at least one identity (e-mail, phone, customer number, ...).")})
    fields = {name: value for name, value in (fields or {}).items() if value not in (None, "")}
    unknown = set(fields) - set(CONTACT_FIELDS)
    if unknown:
        raise ValidationError({name: _("Unknown contact field.") for name in sorted(unknown)})
    with transaction.atomic():
        _lock_identities(pairs)
        match = Q()
        for kind, value in pairs:
            match |= Q(kind=kind, value=value)
        for _attempt in range(5):
            owner_ids = sorted(set(Identity.objects.filter(match).values_list("contact_id", flat=True)))
            contacts = list(Contact.objects.select_for_update().filter(pk__in=owner_ids).order_by("pk"))
            if len(contacts) == len(owner_ids):
                break
            # A concurrent merge removed an owner between the two reads: look again.
        else:
            # Identities whose contact is gone (they have no database constraint): not anyone's.
            orphans = sorted(set(owner_ids) - {contact.pk for contact in contacts})
            logger.warning("Identities of contacts that no longer exist (%s) removed", orphans)
            Identity.objects.filter(contact_id__in=orphans).delete()
            owner_ids = [contact.pk for contact in contacts]
        created = not owner_ids
        if created:
            contact = Contact(**fields, attributes=dict(attributes or {}))
            contact.full_clean(exclude=["contact_key"])
            contact.save()
            resolution = Resolution(contact=contact, created=True, changed=True)
        else:
            survivor, others = contacts[0], contacts[1:]
            resolution = Resolution(contact=survivor, created=False)
            for other in others:
                resolution.merges.append(
                    contact_merge(
                        survivor=survivor,
                        absorbed=other,
                        reason=_("Identities of both arrived together (%(source)s).") % {"source": source or "?"},
                        user=user,
                    )
                )
            survivor.refresh_from_db()
            resolution.changed = _contact_apply(contact=survivor, fields=fields, attributes=attributes or {})
        owned = set(Identity.objects.filter(contact=resolution.contact).values_list("kind", "value"))
        missing = [
            Identity(contact=resolution.contact, kind=k, value=v, source=source)
            for k, v in pairs
            if (k, v) not in owned
        ]
        Identity.objects.bulk_create(missing)
        resolution.identities_added = len(missing)
        resolution.changed = resolution.changed or bool(missing) or bool(resolution.merges)
    return resolution


def _contact_apply(*, contact: Contact, fields: Mapping[str, Any], attributes: Mapping[str, Any]) -> bool:
    """Set the given fields and attributes; save only when something differs. True when saved."""
    changed = [name for name, value in fields.items() if getattr(contact, name) != value]
    for name in changed:
        setattr(contact, name, fields[name])
    new_attributes = {**contact.attributes, **attributes}
    if new_attributes != contact.attributes:
        contact.attributes = new_attributes
        changed.append("attributes")
    if not changed:
        return False
    contact.full_clean(exclude=["contact_key"])
    contact.save(update_fields=[*changed, "updated_at"])
    return True


def _contact_fields(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.pk,
        "contact_key": str(contact.contact_key),
        **{name: getattr(contact, name) for name in CONTACT_FIELDS},
        "attributes": contact.attributes,
        "created_at": contact.created_at.isoformat(),
        "updated_at": contact.updated_at.isoformat(),
    }


def _memberships(contact: Contact) -> QuerySet[SegmentMember]:
    """The contact's rows on static lists, found through the lists' primary key (segment,
    contact): the members table has no index by contact alone."""
    static = Segment.objects.filter(kind=Segment.Kind.STATIC).values("pk")
    return SegmentMember.objects.filter(segment__in=static, contact=contact)


def _memberships_move(segment_ids: list[int], *, source: Contact, target: Contact) -> None:
    if segment_ids:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE audiences_segmentmember SET contact_id = %s WHERE contact_id = %s AND segment_id = ANY(%s)",
                [target.pk, source.pk, segment_ids],
            )


def _ids(queryset: QuerySet[Any]) -> list[int]:
    return list(queryset.order_by("pk").values_list("pk", flat=True))


def contact_merge(*, survivor: Contact, absorbed: Contact, reason: str = "", user: Any = None) -> ContactMerge:
    """Merge `absorbed` into `survivor`: they are one person.

    Identities, events, consent history, scores and static segment memberships move to the
    survivor; where both have a score of the same name or are on the same list, the
    survivor's stays and the absorbed one is kept in the record. The survivor's blank fields
    and missing attributes are filled from the absorbed contact. Per channel the most
    restrictive consent wins: if either had withdrawn, the survivor has withdrawn, recorded
    as a change with source "merge". The absorbed contact is then deleted; its contact key
    keeps pointing at the survivor through the merge record.
    """
    if survivor.pk == absorbed.pk:
        raise ValidationError(_("A contact cannot be merged with itself."))
    if survivor.erased_at or absorbed.erased_at:
        raise ValidationError(_("An erased contact cannot be merged."))
    with transaction.atomic():
        locked = {c.pk: c for c in Contact.objects.select_for_update().filter(pk__in=[survivor.pk, absorbed.pk])}
        if len(locked) != 2:
            raise ValidationError(_("Both contacts must exist to merge them."))
        survivor, absorbed = locked[survivor.pk], locked[absorbed.pk]
        restrictive = _merged_consents(survivor, absorbed)

        survivor_scores = set(Score.objects.filter(contact=survivor).values_list("name", flat=True))
        survivor_lists = set(_memberships(survivor).values_list("segment_id", flat=True))
        clashing_scores = Score.objects.filter(contact=absorbed, name__in=survivor_scores)
        clashing_members = _memberships(absorbed).filter(segment_id__in=survivor_lists)
        kept = {
            "scores": [
                {"name": s.name, "value": s.value, "computed_at": s.computed_at.isoformat()} for s in clashing_scores
            ],
            "segment_members": [
                {"segment_id": m.segment_id, "added_at": m.added_at.isoformat()} for m in clashing_members
            ],
        }
        moved = {
            "identities": _ids(Identity.objects.filter(contact=absorbed)),
            "events": _ids(Event.objects.filter(contact=absorbed)),
            "consent_changes": _ids(ConsentChange.objects.filter(contact=absorbed)),
            "scores": _ids(Score.objects.filter(contact=absorbed).exclude(name__in=survivor_scores)),
            # Members are keyed by (segment, contact): the segments of the lists moved.
            "segment_members": sorted(
                _memberships(absorbed).exclude(segment_id__in=survivor_lists).values_list("segment_id", flat=True)
            ),
        }
        Identity.objects.filter(pk__in=moved["identities"]).update(contact=survivor)
        Event.objects.filter(pk__in=moved["events"]).update(contact=survivor)
        ConsentChange.objects.filter(pk__in=moved["consent_changes"]).update(contact=survivor)
        Score.objects.filter(pk__in=moved["scores"]).update(contact=survivor)
        _memberships_move(moved["segment_members"], source=absorbed, target=survivor)
        clashing_members.delete()

        # Fill what the survivor lacks; remember what it was, to put it back on unmerge.
        survivor_before: dict[str, Any] = {"fields": {}, "attributes_added": []}
        filled = {}
        for name in ["first_name", "last_name", "timezone"]:
            if not getattr(survivor, name) and getattr(absorbed, name):
                survivor_before["fields"][name] = getattr(survivor, name)
                filled[name] = getattr(absorbed, name)
        added_attributes = {k: v for k, v in absorbed.attributes.items() if k not in survivor.attributes}
        survivor_before["attributes_added"] = sorted(added_attributes)
        absorbed_fields = _contact_fields(absorbed)
        absorbed_fields["erased_at"] = None
        absorbed_key = absorbed.contact_key
        absorbed.delete()

        for name, value in filled.items():
            setattr(survivor, name, value)
        survivor.attributes = {**survivor.attributes, **added_attributes}
        survivor.save(update_fields=[*filled, "attributes", "updated_at"])

        now = timezone.now()
        added_changes = []
        for channel, status in restrictive.items():
            added_changes.append(
                ConsentChange.objects.create(
                    contact=survivor,
                    channel=channel,
                    status=status,
                    source="merge",
                    proof=_("Merge of contact %(absorbed)s: the most restrictive consent is kept.")
                    % {"absorbed": absorbed_key},
                    recorded_at=now,
                ).pk
            )
        consent_current_rebuild(contact_ids=[survivor.pk])
        merge = ContactMerge.objects.create(
            survivor=survivor,
            absorbed_key=absorbed_key,
            absorbed=absorbed_fields,
            survivor_before=survivor_before,
            moved=moved,
            added={"consent_changes": added_changes, "kept": kept},
            reason=reason[:255],
            merged_by=user if getattr(user, "pk", None) else None,
        )
    logger.info("Merged contact %s into %s (merge %s)", absorbed_key, survivor.contact_key, merge.pk)
    return merge


def _merged_consents(survivor: Contact, absorbed: Contact) -> dict[str, str]:
    """Per channel, the status the merged contact must end with when the newest change of the
    two histories together would not give it: the most restrictive of the two current states."""
    current: dict[str, list[tuple[Any, str]]] = {}
    for consent in Consent.objects.filter(contact__in=[survivor, absorbed]):
        current.setdefault(consent.channel, []).append((consent.changed_at, consent.status))
    needed = {}
    for channel, states in current.items():
        strictest = max((status for _at, status in states), key=RESTRICTIVENESS.__getitem__)
        newest = max(states)[1]
        if newest != strictest:
            needed[channel] = strictest
    return needed


def contact_unmerge(*, merge: ContactMerge, user: Any = None) -> Contact:
    """Undo a merge: the absorbed contact comes back with its own key, fields, identities,
    events, consents, scores and list memberships; the survivor is as it was before.

    What arrived after the merge stays with the survivor. Merges are undone newest first:
    if the survivor was itself merged away since, that merge must be undone first.
    """
    with transaction.atomic():
        merge = ContactMerge.objects.select_for_update().get(pk=merge.pk)
        if merge.unmerged_at:
            raise ValidationError(_("This merge was already undone."))
        survivor = Contact.objects.select_for_update().filter(pk=merge.survivor_id).first()
        if survivor is None:
            later = _merge_that_absorbed(merge.survivor_id)
            raise ValidationError(
                _("The surviving contact was merged into another contact since: undo that merge (%(later)s) first.")
                % {"later": later.pk if later else "?"}
            )
        snapshot = merge.absorbed
        restored = Contact(
            pk=snapshot["id"],
            contact_key=uuid.UUID(snapshot["contact_key"]),
            **{name: snapshot[name] for name in CONTACT_FIELDS},
            attributes=snapshot["attributes"],
        )
        restored.save(force_insert=True)
        Contact.objects.filter(pk=restored.pk).update(
            created_at=snapshot["created_at"], updated_at=snapshot["updated_at"]
        )
        moved = merge.moved
        moved_rows: list[tuple[type[Identity | Event | ConsentChange | Score], str]] = [
            (Identity, "identities"),
            (Event, "events"),
            (ConsentChange, "consent_changes"),
            (Score, "scores"),
        ]
        for model, key in moved_rows:
            model.objects.filter(pk__in=moved.get(key, []), contact=survivor).update(contact=restored)
        _memberships_move(moved.get("segment_members", []), source=survivor, target=restored)
        kept = merge.added.get("kept", {})
        Score.objects.bulk_create(Score(contact=restored, **score) for score in kept.get("scores", []))
        SegmentMember.objects.bulk_create(
            SegmentMember(contact=restored, **member) for member in kept.get("segment_members", [])
        )
        ConsentChange.objects.filter(pk__in=merge.added.get("consent_changes", []), contact=survivor).delete()

        before = merge.survivor_before
        for name, value in before.get("fields", {}).items():
            if getattr(survivor, name) == snapshot[name]:  # unless someone changed it since
                setattr(survivor, name, value)
        for key in before.get("attributes_added", []):
            if key in survivor.attributes and survivor.attributes[key] == snapshot["attributes"].get(key):
                del survivor.attributes[key]
        survivor.save(update_fields=[*before.get("fields", {}), "attributes", "updated_at"])
        consent_current_rebuild(contact_ids=[survivor.pk, restored.pk])
        merge.unmerged_at = timezone.now()
        merge.unmerged_by = user if getattr(user, "pk", None) else None
        merge.save(update_fields=["unmerged_at", "unmerged_by"])
    logger.info("Unmerged contact %s from %s (merge %s)", restored.contact_key, survivor.contact_key, merge.pk)
    return restored


def contact_by_key(*, contact_key: uuid.UUID | str) -> Contact | None:
    """The contact with this key or, when it was merged, the contact it lives on in."""
    try:
        key = uuid.UUID(str(contact_key))
    except ValueError:
        return None
    contact = Contact.objects.filter(contact_key=key).first()
    if contact is not None:
        return contact
    merge = ContactMerge.objects.filter(absorbed_key=key, unmerged_at=None).order_by("-merged_at").first()
    return _merge_survivor(merge)


def contact_survivor(*, contact_id: int) -> Contact | None:
    """The contact that a contact merged away (by id) lives on in, through a chain of merges."""
    return _merge_survivor(_merge_that_absorbed(contact_id))


def _merge_survivor(merge: ContactMerge | None) -> Contact | None:
    """The surviving contact of a merge, following later merges (A into B, later B into C)."""
    for _hop in range(100):
        if merge is None:
            return None
        contact = Contact.objects.filter(pk=merge.survivor_id).first()
        if contact is not None:
            return contact
        merge = _merge_that_absorbed(merge.survivor_id)
    return None


def _merge_that_absorbed(contact_id: int) -> ContactMerge | None:
    return ContactMerge.objects.filter(absorbed__id=contact_id, unmerged_at=None).order_by("-merged_at").first()


def contact_export(*, contact: Contact, user: Any = None) -> dict[str, Any]:
    """Everything Dialoog holds about one contact, as JSON-ready data (GDPR access request).
    Logged as a privacy request."""
    data = {
        "contact": _contact_fields(contact) | {"erased_at": contact.erased_at},
        "identities": list(
            contact.identities.order_by("kind", "value").values("kind", "value", "source", "created_at")
        ),
        "consent_history": list(
            contact.consent_changes.order_by("channel", "recorded_at").values(
                "channel", "status", "source", "proof", "recorded_at"
            )
        ),
        "consents": list(contact.consents.order_by("channel").values("channel", "status", "changed_at")),
        "events": list(
            contact.events.order_by("occurred_at").values(
                "type", "occurred_at", "properties", "value", "currency", "external_id", "created_at"
            )
        ),
        "scores": list(contact.scores.order_by("name").values("name", "value", "computed_at")),
        "segments": list(_memberships(contact).order_by("segment__name").values("segment__name", "added_at")),
        "merges": list(
            contact.merges.order_by("merged_at").values("absorbed_key", "merged_at", "unmerged_at", "reason")
        ),
    }
    PrivacyRequest.objects.create(
        kind=PrivacyRequest.Kind.EXPORT, contact_key=contact.contact_key, requested_by=_user(user)
    )
    logger.info("Exported the data of contact %s", contact.contact_key)
    return data


def contact_erase(*, contact: Contact, user: Any = None, note: str = "") -> Contact:
    """Erase a contact on request (GDPR): identities, consents, scores, list memberships and
    merge records go; names and attributes are emptied; the contact gets a new key no other
    system knows. Events stay for totals, with their external id and all but a few
    non-personal properties removed."""
    with transaction.atomic():
        contact = Contact.objects.select_for_update().get(pk=contact.pk)
        if contact.erased_at:
            raise ValidationError(_("This contact was already erased."))
        old_key = contact.contact_key
        contact.identities.all().delete()
        contact.consents.all().delete()
        contact.consent_changes.all().delete()
        contact.scores.all().delete()
        _memberships(contact).delete()
        _merge_records_delete(contact_id=contact.pk, contact_key=old_key)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE audiences_event SET external_id = NULL,
                    properties = COALESCE(
                        (SELECT jsonb_object_agg(key, value) FROM jsonb_each(properties) WHERE key = ANY(%s)),
                        '{}'::jsonb)
                WHERE contact_id = %s
                """,
                [ANONYMISED_EVENT_PROPERTIES, contact.pk],
            )
        contact.contact_key = uuid.uuid4()
        contact.first_name = contact.last_name = contact.timezone = ""
        contact.attributes = {}
        contact.erased_at = timezone.now()
        contact.save()
        PrivacyRequest.objects.create(
            kind=PrivacyRequest.Kind.ERASURE, contact_key=old_key, requested_by=_user(user), note=note[:255]
        )
    logger.info("Erased contact %s", old_key)
    return contact


def _merge_records_delete(*, contact_id: int, contact_key: uuid.UUID) -> None:
    """Delete the merge records that hold this person's data: the merges into the contact,
    the merges into the contacts it absorbed, and so on down the chain, and its own."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE chain (id, absorbed_id) AS (
                SELECT id, (absorbed ->> 'id')::bigint FROM audiences_contactmerge
                WHERE survivor_id = %s OR absorbed_key = %s
                UNION
                SELECT merge.id, (merge.absorbed ->> 'id')::bigint
                FROM audiences_contactmerge merge JOIN chain ON merge.survivor_id = chain.absorbed_id
            )
            DELETE FROM audiences_contactmerge WHERE id IN (SELECT id FROM chain)
            """,
            [contact_id, contact_key],
        )


def _user(user: Any) -> Any:
    return user if getattr(user, "pk", None) else None
