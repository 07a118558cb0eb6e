import ast

from django.conf import settings
from django.urls import reverse
from django.utils import translation


def test_the_admin_speaks_dutch_by_default(client, marketeer):
    client.force_login(marketeer)
    html = client.get(reverse("admin:index")).content.decode()
    assert '<html lang="nl"' in html
    assert "Dialoog-dashboard" in html
    assert "Lopende doelen" in html
    # django-celery-beat ships no Dutch; our catalogue names its admin section.
    assert "Planning" in html and "Geplande taken" in html


def test_the_language_switch_turns_the_admin_to_english(client, marketeer):
    client.force_login(marketeer)

    response = client.post(reverse("set_language"), {"language": "en", "next": reverse("admin:index")})
    assert response.status_code == 302
    html = client.get(reverse("admin:index")).content.decode()

    assert '<html lang="en"' in html
    assert "Dialoog dashboard" in html
    assert "Running goals" in html


def test_the_login_page_offers_the_language_switch(client, db):
    html = client.get(reverse("admin:login")).content.decode()
    assert 'action="/i18n/setlang/"' in html
    assert "Nederlands" in html and "English" in html
    assert "Gebruikersnaam" in html


def _po_entries(path):
    """(msgid, msgstr) of each singular entry in a .po file, joining continued lines."""
    entries, key, values = [], None, {}
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if line.startswith(("msgid ", "msgstr ", "msgid_plural ", "msgstr[")):
            key, _space, rest = line.partition(" ")
            values[key] = ast.literal_eval(rest)
        elif line.startswith('"') and key:
            values[key] += ast.literal_eval(line)
        elif not line.strip() and values:
            if values.get("msgid") and "msgid_plural" not in values:
                entries.append((values["msgid"], values.get("msgstr", "")))
            key, values = None, {}
    return entries


def test_the_dutch_catalogue_is_complete_and_compiled():
    po = settings.BASE_DIR / "locale" / "nl" / "LC_MESSAGES" / "django.po"
    assert "#, fuzzy" not in po.read_text(encoding="utf-8")
    entries = _po_entries(po)
    assert len(entries) > 50
    assert [msgid for msgid, msgstr in entries if not msgstr] == []
    # The committed .mo says what the .po says (run compilemessages after editing the .po).
    with translation.override("nl"):
        stale = [msgid for msgid, msgstr in entries if translation.gettext(msgid) != msgstr]
    assert stale == []
