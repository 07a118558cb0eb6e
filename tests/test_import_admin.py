import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from audiences.models import Contact, Identity, Import
from audiences.services import imports as import_services
from audiences.tasks import import_run_task

CSV = "E-mailadres;Klantnummer;Voornaam;Punten\njan@example.nl;K1;Jan;12,5\nfout;K2;Piet;3\nanna@example.nl;K3;Anna;\n"


@pytest.fixture
def client():
    """Admin pages in English, as the messages are written (Dutch is the default language)."""
    return Client(headers={"accept-language": "en"})


def upload(client, content=CSV, name="klanten.csv", kind="contacts"):
    data = content.encode() if isinstance(content, str) else content
    return client.post(
        reverse("admin:audiences_import_add"),
        {"file": SimpleUploadedFile(name, data, content_type="text/csv"), "kind": kind, "source": "beurs"},
    )


def test_upload_map_preview_and_import_through_the_admin(client, marketeer, django_capture_on_commit_callbacks):
    client.force_login(marketeer)

    response = upload(client)
    created = Import.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("admin:audiences_import_mapping", args=[created.pk])
    assert (created.created_by, created.source, created.status) == (marketeer, "beurs", "uploaded")

    page = client.get(response.url)
    assert page.status_code == 200
    form = page.context["form"]
    assert [field.initial for field in form.visible_fields()] == [
        "identity:email",
        "identity:customer_number",
        "first_name",
        "",
    ]
    preview = page.context["preview"]
    assert [(row.line, row.action, row.errors) for row in preview.rows] == [
        (2, "create a new contact", []),
        (3, "", ["E-mailadres: 'fout' is not an e-mail address"]),
        (4, "create a new contact", []),
    ]
    assert "be rejected:" in page.content.decode()

    mapping = {
        "col_0": "identity:email",
        "col_1": "identity:customer_number",
        "col_2": "first_name",
        "col_3": "attribute:punten:number",
    }
    previewed = client.post(response.url, {**mapping, "_preview": "1"})
    assert previewed.status_code == 200
    assert Contact.objects.count() == 0
    with django_capture_on_commit_callbacks() as callbacks:
        queued = client.post(response.url, {**mapping, "_import": "1"})
    assert queued.status_code == 302
    assert queued.url == reverse("admin:audiences_import_change", args=[created.pk])
    created.refresh_from_db()
    assert (created.status, created.mapping["Punten"]) == ("queued", "attribute:punten:number")
    assert len(callbacks) == 1

    # The worker's part, run here: the task, twice (the second run must change nothing).
    import_run_task(created.pk)
    import_run_task(created.pk)
    created.refresh_from_db()
    assert (created.status, created.created_count, created.rejected_count) == ("done", 2, 1)
    assert Identity.objects.get(value="K1").contact.attributes == {"punten": 12.5}
    assert Contact.objects.count() == 2

    status = client.get(reverse("admin:audiences_import_status", args=[created.pk])).json()
    assert (status["status"], status["processed_rows"], status["created"], status["rejected"], status["finished"]) == (
        "done",
        3,
        2,
        1,
        True,
    )
    change = client.get(reverse("admin:audiences_import_change", args=[created.pk]))
    assert change.status_code == 200
    body = change.content.decode()
    assert "Download rejected rows (CSV)" in body
    assert "audiences/import_progress.js" in body

    download = client.get(reverse("admin:audiences_import_rejected", args=[created.pk]))
    assert download["Content-Type"].startswith("text/csv")
    assert b"".join(download.streaming_content).decode().splitlines() == [
        "\ufeffline;reason;E-mailadres;Klantnummer;Voornaam;Punten",
        "3;E-mailadres: 'fout' is not an e-mail address;fout;K2;Piet;3",
    ]


def test_a_mapping_without_identity_is_refused_on_import(client, marketeer):
    client.force_login(marketeer)
    upload(client)
    created = Import.objects.get()
    url = reverse("admin:audiences_import_mapping", args=[created.pk])

    response = client.post(url, {"col_0": "", "col_1": "", "col_2": "first_name", "col_3": "", "_import": "1"})

    assert response.status_code == 200
    assert "no contact identity" in response.content.decode()
    created.refresh_from_db()
    assert created.status == "uploaded"


def test_a_too_large_upload_is_refused_with_the_limit(client, marketeer, monkeypatch):
    client.force_login(marketeer)
    monkeypatch.setattr("audiences.admin.imports.MAX_UPLOAD_BYTES", 100)

    response = upload(client, content="email\n" + "a@example.nl\n" * 20)

    assert response.status_code == 200
    assert response.context["form"].errors["file"][0].startswith("The file is 0.0 MB; files up to 0 MB")
    assert not Import.objects.exists()
    assert import_services.MAX_UPLOAD_BYTES == 50 * 1024 * 1024


def test_an_unreadable_upload_says_why(client, marketeer):
    client.force_login(marketeer)

    response = upload(client, content="email\njan@example.nl\n".encode("utf-16"))

    assert response.status_code == 200
    assert response.context["form"].errors["file"] == [
        "klanten.csv: the file is not text in UTF-8 or Windows-1252 (looks like UTF-16): save it as CSV UTF-8"
    ]
    assert not Import.objects.exists()


def test_an_analyst_sees_imports_but_cannot_upload_or_map(client, analyst, marketeer):
    client.force_login(marketeer)
    upload(client)
    created = Import.objects.get()
    client.force_login(analyst)

    assert client.get(reverse("admin:audiences_import_changelist")).status_code == 200
    assert client.get(reverse("admin:audiences_import_change", args=[created.pk])).status_code == 200
    assert upload(client).status_code == 403
    assert client.get(reverse("admin:audiences_import_add")).status_code == 403
    assert client.get(reverse("admin:audiences_import_mapping", args=[created.pk])).status_code == 403
    assert Import.objects.count() == 1


def test_the_import_list_does_not_load_file_contents(client, marketeer, django_assert_max_num_queries):
    client.force_login(marketeer)
    for _ in range(3):
        upload(client)
    with django_assert_max_num_queries(12) as captured:
        response = client.get(reverse("admin:audiences_import_changelist"))
    assert response.status_code == 200
    listing = [query["sql"] for query in captured.captured_queries if 'FROM "audiences_import"' in query["sql"]]
    assert listing
    assert all('"audiences_import"."content"' not in sql for sql in listing)
