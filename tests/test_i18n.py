from django.urls import reverse


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
