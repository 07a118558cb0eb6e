import pytest
from playwright.sync_api import expect

from dialoog.demo import DEMO_PASSWORD, demo_load
from tests.factories import GoalFactory

pytestmark = [pytest.mark.browser, pytest.mark.smoke]


def test_the_demo_marketeer_logs_in_and_sees_the_dashboard(live_server, page, transactional_db):
    demo_load(contacts=3, seed=1)
    GoalFactory(name="Meer tuinverkoop")

    page.goto(f"{live_server.url}/admin/")
    page.get_by_label("Gebruikersnaam").fill("marketeer")
    page.get_by_label("Wachtwoord").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Aanmelden").click()

    expect(page.get_by_role("heading", name="Dialoog-dashboard")).to_be_visible()
    expect(page.get_by_role("link", name="Meer tuinverkoop", exact=True)).to_be_visible()
    expect(page.get_by_text("3 klanten in het klantbeeld")).to_be_visible()


def test_the_language_switch_works_in_the_browser(live_server, page, transactional_db):
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Taal").select_option("en")
    expect(page.get_by_label("Username")).to_be_visible()
