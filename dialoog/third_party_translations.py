"""Dutch names for the admin sections of packages that ship no Dutch translation.

django-celery-beat has no `nl` catalogue; marketeers edit schedules in the admin, so its
section and model names are translated in ours (our LOCALE_PATHS take precedence).
Marking them here keeps `makemessages` from dropping them.
"""

from django.utils.translation import gettext_noop

CELERY_BEAT_NAMES = [
    gettext_noop("Periodic Tasks"),
    gettext_noop("periodic task"),
    gettext_noop("periodic tasks"),
    gettext_noop("interval"),
    gettext_noop("intervals"),
    gettext_noop("crontab"),
    gettext_noop("crontabs"),
    gettext_noop("clocked"),
    gettext_noop("solar event"),
    gettext_noop("solar events"),
]
