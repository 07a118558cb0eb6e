import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audiences.models import Contact, ContactMerge, Event, Identity, PrivacyRequest, SegmentMember
from audiences.services.consents import consent_record
from dialoog.authentication import forget_all
from tests.factories import ContactFactory, EventFactory, IdentityFactory, SegmentFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:audiences_contact_changelist")


@pytest.fixture
def client():
    """Admin pages in English, as the messages are written (Dutch is the default language)."""
    return Client(headers={"accept-language": "en"})


def _contacts(count, start=0):
    for index in range(start, start + count):
        contact = ContactFactory(last_name=f"Bakker{index}")
        IdentityFactory(contact=contact, kind="email", value=f"bakker{index}@example.nl")


def test_contact_list_queries_do_not_grow_with_the_rows(client, marketeer, django_assert_num_queries):
    client.force_login(marketeer)
    _contacts(3)
    with django_assert_num_queries(7) as few:
        assert client.get(CHANGELIST).status_code == 200
    _contacts(30, start=3)
    forget_all()  # the permissions read again, as by the first request
    with django_assert_num_queries(len(few.captured_queries)):
        response = client.get(CHANGELIST)
    assert "bakker32@example.nl" in response.text  # the e-mail column comes from the same query


def test_the_unfiltered_list_never_counts_the_whole_table(client, marketeer, django_assert_num_queries):
    client.force_login(marketeer)
    _contacts(2)
    with django_assert_num_queries(7) as queries:
        client.get(CHANGELIST)
    sql = " ".join(query["sql"] for query in queries.captured_queries)
    assert "reltuples" in sql  # PostgreSQL's estimate first; exact only while the table is small


@pytest.mark.parametrize(
    ("term", "found"),
    [
        ("ANNA@Example.nl", True),
        ("06-12345678", True),
        ("+31 6 1234 5678", True),
        ("K777", True),
        ("de vries", True),
        ("vries", False),  # exact names only: no substring scan over a million rows
        ("onbekend@example.nl", False),
    ],
)
def test_search_finds_a_contact_by_what_the_customer_says(client, agent, term, found):
    client.force_login(agent)
    anna = ContactFactory(first_name="Anna", last_name="de Vries")
    IdentityFactory(contact=anna, kind="email", value="anna@example.nl")
    IdentityFactory(contact=anna, kind="phone", value="+31612345678")
    IdentityFactory(contact=anna, kind="customer_number", value="K777")
    ContactFactory(last_name="Jansen")
    response = client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200
    assert (str(anna.contact_key) in response.text) is found


def test_search_by_contact_key(client, agent):
    client.force_login(agent)
    contact = ContactFactory()
    response = client.get(CHANGELIST, {"q": str(contact.contact_key)})
    assert list(response.context["cl"].result_list) == [contact]


def test_contact_page_shows_identities_consent_history_timeline_and_segments(client, marketeer):
    client.force_login(marketeer)
    contact = ContactFactory(first_name="Fenna")
    IdentityFactory(contact=contact, kind="email", value="fenna@example.nl")
    consent_record(contact=contact, channel="email", status="granted", source="webshop", proof="Checkbox")
    consent_record(contact=contact, channel="email", status="withdrawn", source="afmeldlink")
    EventFactory(contact=contact, type="purchase", properties={"category": "Slapen"}, value=249, currency="EUR")
    listed = SegmentFactory(kind="static", name="Vaste klanten")
    SegmentMember.objects.create(segment=listed, contact=contact)
    SegmentFactory(name="Nooit gevraagd", rules={"version": 1, "root": {"consent": "sms", "status": "unknown"}})
    SegmentFactory(name="Mailbaar", rules={"version": 1, "root": {"consent": "email", "status": "granted"}})

    response = client.get(reverse("admin:audiences_contact_change", args=[contact.pk]))

    page = response.text
    assert "fenna@example.nl" in page
    assert "afmeldlink" in page and "webshop" in page  # both changes of the history
    assert "Slapen" in page and "249" in page
    assert "Vaste klanten" in page and "Nooit gevraagd" in page
    assert "Mailbaar" not in page  # consent was withdrawn


def test_adding_an_identity_in_the_admin_normalises_it_and_refuses_one_of_another_contact(client, marketeer):
    client.force_login(marketeer)
    contact, other = ContactFactory(), ContactFactory()
    IdentityFactory(contact=other, kind="email", value="bezet@example.nl")
    url = reverse("admin:audiences_contact_change", args=[contact.pk])
    form = {
        "first_name": "Tess",
        "last_name": "",
        "locale": "nl",
        "timezone": "",
        "attributes": "{}",
        "identities-TOTAL_FORMS": "1",
        "identities-INITIAL_FORMS": "0",
        "identities-0-kind": "phone",
        "identities-0-value": "06 9999 0000",
        "identities-0-source": "admin",
        "consent_changes-TOTAL_FORMS": "0",
        "consent_changes-INITIAL_FORMS": "0",
    }
    assert client.post(url, form).status_code == 302
    assert Identity.objects.get(contact=contact).value == "+31699990000"
    taken = client.post(url, {**form, "identities-0-kind": "email", "identities-0-value": "BEZET@example.nl"})
    assert taken.status_code == 200
    assert "merge the two contacts" in taken.text


def test_merge_action_and_undo_from_the_merges_page(client, marketeer):
    client.force_login(marketeer)
    older, newer = ContactFactory(), ContactFactory()
    IdentityFactory(contact=newer, kind="email", value="nieuw@example.nl")
    client.post(CHANGELIST, {"action": "merge_contacts", ACTION_CHECKBOX_NAME: [older.pk, newer.pk]})
    assert not Contact.objects.filter(pk=newer.pk).exists()
    assert Identity.objects.get(value="nieuw@example.nl").contact_id == older.pk
    merge = ContactMerge.objects.get()
    client.post(
        reverse("admin:audiences_contactmerge_changelist"),
        {"action": "undo_merges", ACTION_CHECKBOX_NAME: [merge.pk]},
    )
    assert Identity.objects.get(value="nieuw@example.nl").contact_id == newer.pk


def test_erase_asks_for_confirmation_then_erases(client, marketeer):
    client.force_login(marketeer)
    contact = ContactFactory(first_name="Gerrit")
    IdentityFactory(contact=contact, kind="email", value="gerrit@example.nl")
    EventFactory(contact=contact)
    asked = client.post(CHANGELIST, {"action": "erase_contacts", ACTION_CHECKBOX_NAME: [contact.pk]})
    assert asked.status_code == 200
    assert "cannot be undone" in asked.text
    assert Contact.objects.get(pk=contact.pk).erased_at is None
    client.post(CHANGELIST, {"action": "erase_contacts", ACTION_CHECKBOX_NAME: [contact.pk], "confirmed": "yes"})
    erased = Contact.objects.get(pk=contact.pk)
    assert erased.erased_at is not None and erased.first_name == ""
    assert Event.objects.filter(contact=erased).count() == 1
    assert PrivacyRequest.objects.filter(kind="erasure").count() == 1


def test_export_action_downloads_json(client, marketeer):
    client.force_login(marketeer)
    contact = ContactFactory()
    IdentityFactory(contact=contact, kind="email", value="export@example.nl")
    response = client.post(CHANGELIST, {"action": "export_contacts", ACTION_CHECKBOX_NAME: [contact.pk]})
    assert response["Content-Type"] == "application/json"
    assert response.json()[0]["identities"][0]["value"] == "export@example.nl"


def test_agents_can_find_contacts_but_not_erase_or_merge(client, agent):
    client.force_login(agent)
    contact = ContactFactory()
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert "erase_contacts" not in page.text and "merge_contacts" not in page.text
    client.post(CHANGELIST, {"action": "erase_contacts", ACTION_CHECKBOX_NAME: [contact.pk], "confirmed": "yes"})
    assert Contact.objects.get(pk=contact.pk).erased_at is None


def test_contact_page_queries_do_not_grow_with_the_segments(client, marketeer, django_assert_num_queries):
    client.force_login(marketeer)
    contact = ContactFactory()
    url = reverse("admin:audiences_contact_change", args=[contact.pk])
    rules = {"version": 1, "root": {"consent": "email", "status": "unknown"}}
    SegmentFactory(name="Een", rules=rules)
    client.get(url)
    with CaptureQueriesContext(connection) as one_segment:
        client.get(url)
    for number in range(8):
        SegmentFactory(name=f"Meer {number}", rules=rules)
        SegmentFactory(name=f"Lijst {number}", kind="static", rules={})
    with django_assert_num_queries(len(one_segment.captured_queries)):
        response = client.get(url)
    assert "Meer 7" in response.text  # every dynamic segment it meets is listed
    assert "Lijst 7" not in response.text  # it is on no list


def test_agents_find_a_contact_by_searching_but_do_not_see_the_whole_list(client, agent, marketeer):
    contact = ContactFactory(last_name="Zonneveld")
    client.force_login(agent)
    assert "Zonneveld" not in client.get(CHANGELIST).text
    assert "Zonneveld" in client.get(CHANGELIST, {"q": "Zonneveld"}).text
    client.force_login(marketeer)
    assert "Zonneveld" in client.get(CHANGELIST).text
    assert contact.pk
