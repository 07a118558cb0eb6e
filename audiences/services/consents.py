"""Consent per channel: every change a row, the current state kept beside it."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audiences.models import Channel, Consent, ConsentChange, Contact


def consent_record(
    *,
    contact: Contact,
    channel: str,
    status: str,
    source: str,
    proof: str = "",
    recorded_at: dt.datetime | None = None,
) -> tuple[ConsentChange | None, Consent]:
    """Record a consent change; returns (the new change or None when nothing changed, the current consent).

    The same status again is no change and adds no row, so a form submitted twice or an
    import run twice keeps the history clean. A change older than the current state (a
    late import of an old form) goes into the history but does not overrule a newer one.
    """
    if channel not in Channel.values:
        raise ValidationError({"channel": _("Unknown channel %(channel)r.") % {"channel": channel}})
    if status not in ConsentChange.Status.values:
        raise ValidationError({"status": _("Unknown consent status %(status)r.") % {"status": status}})
    if not source:
        raise ValidationError({"source": _("Say where the consent came from.")})
    recorded_at = recorded_at or timezone.now()
    with transaction.atomic():
        # One writer per contact at a time: two requests cannot both decide "this is new".
        Contact.objects.select_for_update().filter(pk=contact.pk).first()
        current = Consent.objects.filter(contact=contact, channel=channel).first()
        if current is not None and current.status == status and current.changed_at <= recorded_at:
            return None, current
        change = ConsentChange.objects.create(
            contact=contact, channel=channel, status=status, source=source, proof=proof, recorded_at=recorded_at
        )
        if current is None:
            current = Consent.objects.create(
                contact=contact, channel=channel, status=status, changed_at=recorded_at, change=change
            )
        elif recorded_at >= current.changed_at:
            current.status, current.changed_at, current.change = status, recorded_at, change
            current.save(update_fields=["status", "changed_at", "change"])
    return change, current


def consent_current_rebuild(*, contact_ids: list[int]) -> int:
    """Make the current consents of these contacts their newest change again (after a merge,
    an unmerge or an erasure moved or removed history, or a bulk load wrote it). Returns the
    number of current consents they have."""
    if not contact_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audiences_consent WHERE contact_id = ANY(%s)", [contact_ids])
        cursor.execute(
            """
            INSERT INTO audiences_consent (contact_id, channel, status, changed_at, change_id)
            SELECT DISTINCT ON (contact_id, channel) contact_id, channel, status, recorded_at, id
            FROM audiences_consentchange
            WHERE contact_id = ANY(%s)
            ORDER BY contact_id, channel, recorded_at DESC, id DESC
            """,
            [contact_ids],
        )
        return cursor.rowcount
