import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from openpyxl import Workbook

from audiences.imports.mapping import build_plan, guess_mapping, parse_row
from audiences.imports.reading import (
    FileUnreadable,
    open_table,
    parse_boolean,
    parse_date,
    parse_datetime,
    parse_decimal,
)
from audiences.models import (
    Consent,
    ConsentChange,
    Contact,
    ContactMerge,
    Event,
    Identity,
    Import,
    ImportRejectedRow,
)
from audiences.services.imports import (
    MAX_UPLOAD_BYTES,
    import_create,
    import_preview,
    import_rejected_csv,
    import_run,
)
from tests.factories import ContactFactory, IdentityFactory

CONTACTS_CSV = (
    "E-mailadres;Telefoon;Klantnummer;Voornaam;Achternaam;Geboortedatum;Nieuwsbrief\n"
    "jan@example.nl;06-12345678;K1;Jan;Jansen;22-11-1980;ja\n"
    "PIET@Example.NL;+31 6 23456789;K2;Piet;Pietersen;1975-03-01;nee\n"
    "klaas@example.nl;;K3;Klaas;de Vries;;\n"
)


def run_file(content: bytes | str, *, kind="contacts", file_name="klanten.csv", mapping=None, source=""):
    if isinstance(content, str):
        content = content.encode()
    created = import_create(kind=kind, file_name=file_name, content=content, mapping=mapping, source=source)
    return import_run(import_run=created)


def table_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Contact, Identity, ConsentChange, Consent, Event, ContactMerge)
    }


def xlsx_bytes(rows, merge=None) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    if merge:
        sheet.merge_cells(merge)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- Reading ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "encoding"),
    [
        ("naam,e-mail\nJosé,jose@example.nl\n".encode(), "utf-8"),
        ("\ufeffnaam,e-mail\nJosé,jose@example.nl\n".encode(), "utf-8-sig"),
        ("naam,e-mail\nJosé,jose@example.nl\n".encode("cp1252"), "cp1252"),
    ],
)
def test_the_encodings_marketeers_have_are_read(content, encoding):
    table = open_table(content)
    assert table.encoding == encoding
    assert table.columns == ["naam", "e-mail"]
    assert list(table.rows) == [(2, ["José", "jose@example.nl"])]


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("a,b,c\n1,2,3\n", ","),
        ("a;b;c\n1;2,50;3\n4;5,75;6\n", ";"),
        ("a\tb\tc\n1\t2\t3\n", "\t"),
        ('naam;bedrag\n"Vries, de";12,50\n', ";"),
    ],
)
def test_the_delimiter_is_sniffed(text, delimiter):
    assert open_table(text.encode()).delimiter == delimiter


def test_utf16_is_refused_with_what_to_do():
    with pytest.raises(FileUnreadable, match=r"looks like UTF-16\): save it as CSV UTF-8"):
        open_table("naam;email\nJan;jan@example.nl\n".encode("utf-16"))
    with pytest.raises(FileUnreadable, match="looks like UTF-16"):
        open_table("naam;email\nJan;jan@example.nl\n".encode("utf-16-le"))


def test_binary_data_is_refused():
    with pytest.raises(FileUnreadable, match="binary"):
        open_table(bytes(range(256)) * 20)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("22-11-2026", dt.date(2026, 11, 22)),
        ("2-1-2026", dt.date(2026, 1, 2)),
        ("22/11/2026", dt.date(2026, 11, 22)),
        ("22.11.2026", dt.date(2026, 11, 22)),
        ("2026-11-22", dt.date(2026, 11, 22)),
        ("22-11-2026 14:30", dt.date(2026, 11, 22)),
        ("2026-11-22T14:30:00", dt.date(2026, 11, 22)),
    ],
)
def test_dutch_and_iso_dates(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["31-02-2026", "11/22/2026", "gisteren", "2026-13-01"])
def test_impossible_dates_say_so(text):
    with pytest.raises(ValueError, match="date"):
        parse_date(text)


def test_datetimes_are_local_time_unless_they_say_otherwise():
    amsterdam = __import__("zoneinfo").ZoneInfo("Europe/Amsterdam")
    assert parse_datetime("22-11-2026 14:30", amsterdam).isoformat() == "2026-11-22T14:30:00+01:00"
    assert parse_datetime("2026-07-01T10:00:00Z", amsterdam).isoformat() == "2026-07-01T10:00:00+00:00"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.234,56", "1234.56"),
        ("1234,56", "1234.56"),
        ("1234.56", "1234.56"),
        ("€ 12,50", "12.50"),
        ("1,234.56", "1234.56"),
        ("-3", "-3"),
        ("1.234.567", "1234567"),
    ],
)
def test_decimal_comma_and_point(text, expected):
    assert parse_decimal(text) == Decimal(expected)


def test_booleans_in_dutch_and_english():
    assert [
        parse_boolean(word) for word in ["ja", "Nee", "yes", "no", "true", "FALSE", "1", "0", "waar", "onwaar"]
    ] == [
        True,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
    ]
    with pytest.raises(ValueError, match="not yes or no"):
        parse_boolean("misschien")


def test_xlsx_is_read_from_the_first_sheet():
    content = xlsx_bytes(
        [["E-mail", "Klantnummer", "Geboortedatum"], ["jan@example.nl", 1001, dt.datetime(1980, 11, 22)]]  # noqa: DTZ001 - Excel cells have no time zone
    )
    table = open_table(content, "klanten.xlsx")
    assert table.columns == ["E-mail", "Klantnummer", "Geboortedatum"]
    assert list(table.rows) == [(2, ["jan@example.nl", "1001", "1980-11-22"])]


def test_xlsx_with_merged_header_cells_names_them():
    content = xlsx_bytes([["E-mail", "Naam", None], ["jan@example.nl", "Jan", "Jansen"]], merge="B1:C1")
    with pytest.raises(FileUnreadable, match=r"header cells B1:C1 are merged; unmerge them"):
        open_table(content, "klanten.xlsx")


def test_a_broken_xlsx_is_refused():
    with pytest.raises(FileUnreadable, match="not an Excel workbook"):
        open_table(b"PK\x03\x04 not really a zip", "klanten.xlsx")


def test_the_mapping_is_guessed_from_dutch_and_english_headers():
    columns = ["E-mailadres", "telefoon", "Mobiel", "klantnummer", "Voornaam", "last name", "Geboortedatum", "Notitie"]
    assert guess_mapping(columns, "contacts") == {
        "E-mailadres": "identity:email",
        "telefoon": "identity:phone",
        "Mobiel": "identity:phone",
        "klantnummer": "identity:customer_number",
        "Voornaam": "first_name",
        "last name": "last_name",
        "Geboortedatum": "attribute:birth_date:date",
        "Notitie": "",
    }


def test_every_parse_error_names_its_column():
    columns = ["email", "telefoon", "geboortedatum", "punten", "optin"]
    plan = build_plan(
        columns,
        {
            "email": "identity:email",
            "telefoon": "identity:phone",
            "geboortedatum": "attribute:birth_date:date",
            "punten": "attribute:points:number",
            "optin": "consent:email",
        },
        "contacts",
    )
    row = parse_row(plan, 7, ["jan(at)example.nl", "0612", "31-02-1980", "veel", "misschien"])
    assert row.errors == [
        "email: 'jan(at)example.nl' is not an e-mail address",
        "telefoon: '0612' is not a valid phone number",
        "geboortedatum: '31-02-1980' is not a date that exists (day-month-year)",
        "punten: 'veel' is not a number",
        "optin: 'misschien' is not a consent (ja/nee, granted/withdrawn, 1/0)",
    ]


# --- Contacts -----------------------------------------------------------------------------


def test_contacts_are_imported_with_identities_attributes_and_consents(db):
    run = run_file(CONTACTS_CSV, source="beurs 2026")

    assert (run.status, run.created_count, run.updated_count, run.rejected_count) == ("done", 3, 0, 0)
    jan = Identity.objects.get(kind="email", value="jan@example.nl").contact
    assert (jan.first_name, jan.last_name, jan.attributes) == ("Jan", "Jansen", {"birth_date": "1980-11-22"})
    assert sorted(jan.identities.values_list("kind", "value", "source")) == [
        ("customer_number", "K1", "beurs 2026"),
        ("email", "jan@example.nl", "beurs 2026"),
        ("phone", "+31612345678", "beurs 2026"),
    ]
    piet = Identity.objects.get(kind="email", value="piet@example.nl").contact
    assert Identity.objects.get(kind="phone", value="+31623456789").contact == piet
    assert piet.attributes == {"birth_date": "1975-03-01"}
    change = ConsentChange.objects.get(contact=jan)
    assert (change.channel, change.status, change.source, change.proof) == (
        "email",
        "granted",
        "beurs 2026",
        "Import klanten.csv, line 2",
    )
    assert Consent.objects.get(contact=jan, channel="email").change == change
    assert Consent.objects.get(contact=piet).status == "withdrawn"
    klaas = Identity.objects.get(value="K3").contact
    assert (klaas.attributes, klaas.consents.count()) == ({}, 0)


def test_importing_the_same_file_twice_changes_nothing_the_second_time(db):
    first = run_file(CONTACTS_CSV)
    before = table_counts()
    updated_at = dict(Contact.objects.values_list("id", "updated_at"))

    second = run_file(CONTACTS_CSV)

    assert (first.created_count, first.updated_count, first.unchanged_count) == (3, 0, 0)
    assert (second.created_count, second.updated_count, second.unchanged_count) == (0, 0, 3)
    assert table_counts() == before
    assert dict(Contact.objects.values_list("id", "updated_at")) == updated_at


def test_a_second_file_updates_only_what_differs(db):
    run_file(CONTACTS_CSV)
    jan = Identity.objects.get(value="K1").contact
    jan.attributes = {**jan.attributes, "vip": True}
    jan.save()

    run = run_file("klantnummer;voornaam;woonplaats;nieuwsbrief\nK1;Jan;Utrecht;ja\nK2;Pieter;;nee\nK3;Klaas;;\n")

    assert (run.created_count, run.updated_count, run.unchanged_count) == (0, 2, 1)
    jan.refresh_from_db()
    assert jan.attributes == {"birth_date": "1980-11-22", "vip": True, "city": "Utrecht"}
    assert Identity.objects.get(value="K2").contact.first_name == "Pieter"


def test_consent_history_is_written_only_when_the_consent_changes(db):
    run_file("email;optin email\njan@example.nl;ja\n")
    run_file("email;optin email\njan@example.nl;yes\n")
    run = run_file("email;optin email\njan@example.nl;nee\n")
    run_file("email;optin email\njan@example.nl;\n")

    jan = Identity.objects.get(value="jan@example.nl").contact
    assert list(jan.consent_changes.order_by("recorded_at", "id").values_list("status", flat=True)) == [
        "granted",
        "withdrawn",
    ]
    assert Consent.objects.get(contact=jan, channel="email").status == "withdrawn"
    assert run.updated_count == 1


def test_rows_of_one_person_in_one_file_become_one_contact(db):
    # Row 2 and 3 share the phone number, 3 and 4 the customer number: one person, transitively.
    run = run_file(
        "email;telefoon;klantnummer;voornaam;woonplaats\n"
        "a@example.nl;0612345678;;Anna;Delft\n"
        "b@example.nl;06 12345678;K9;;\n"
        ";;K9;Anne;\n"
        "c@example.nl;;;Chris;\n"
    )
    assert run.created_count == 2
    anna = Identity.objects.get(value="K9").contact
    assert sorted(anna.identities.values_list("value", flat=True)) == [
        "+31612345678",
        "K9",
        "a@example.nl",
        "b@example.nl",
    ]
    assert (anna.first_name, anna.attributes) == ("Anne", {"city": "Delft"})


def test_a_row_with_identities_of_two_contacts_merges_them_into_the_oldest(db):
    older = ContactFactory(first_name="Oud")
    IdentityFactory(contact=older, kind="email", value="jan@example.nl")
    newer = ContactFactory(first_name="Nieuw")
    IdentityFactory(contact=newer, kind="customer_number", value="K1")

    run = run_file("email;klantnummer;voornaam\njan@example.nl;K1;Jan\n")

    assert (run.merged_count, run.created_count, run.updated_count) == (1, 0, 1)
    merge = ContactMerge.objects.get()
    assert (merge.survivor_id, merge.absorbed_key) == (older.pk, newer.contact_key)
    assert "line 2" in merge.reason
    assert set(Identity.objects.filter(value__in=["jan@example.nl", "K1"]).values_list("contact", flat=True)) == {
        older.pk
    }
    older.refresh_from_db()
    assert older.first_name == "Jan"


def test_bad_rows_are_kept_with_line_and_reason_and_good_rows_go_in(db):
    run = run_file(
        "email;telefoon;geboortedatum\n"
        "goed@example.nl;0612345678;22-11-1980\n"
        "geen-email;0612345679;22-11-1980\n"
        "ook@example.nl;0612;\n"
        "kapot@example.nl;0612345670;01-01-1990;extra\n"
        ";;01-01-1990\n"
        "laatste@example.nl;;31-02-1990\n"
        "echt@example.nl;;\n"
    )

    assert (run.status, run.created_count, run.rejected_count, run.total_rows) == ("done", 2, 5, 7)
    rejected = list(ImportRejectedRow.objects.filter(import_run=run).values_list("line_number", "reason"))
    assert rejected == [
        (3, "email: 'geen-email' is not an e-mail address"),
        (4, "telefoon: '0612' is not a valid phone number"),
        (5, "the row has 4 fields where the header has 3 (check the delimiter and the quotes on this line)"),
        (6, "no contact identity: map a column to e-mail, phone or customer number (this row has none)"),
        (7, "geboortedatum: '31-02-1990' is not a date that exists (day-month-year)"),
    ]
    assert set(Identity.objects.filter(kind="email").values_list("value", flat=True)) == {
        "goed@example.nl",
        "echt@example.nl",
    }


def test_the_rejected_rows_download_as_csv_with_line_and_reason(db):
    run = run_file('email;naam\ngoed@example.nl;Goed\nfout;Fout\n"a;b";Quote\n')

    text = "".join(import_rejected_csv(import_run=run))

    assert text.splitlines() == [
        "\ufeffline;reason;email;naam",
        "3;email: 'fout' is not an e-mail address;fout;Fout",
        '4;"email: \'a;b\' is not an e-mail address";"a;b";Quote',
    ]


def test_a_mapping_without_an_identity_is_refused_up_front(db):
    with pytest.raises(ValidationError, match="no contact identity"):
        import_create(kind="contacts", file_name="x.csv", content=b"naam\nJan\n", mapping={"naam": "first_name"})


def test_a_file_over_the_upload_limit_is_refused_with_the_sizes(db):
    content = b"email\n" + b"a@example.nl\n" * (MAX_UPLOAD_BYTES // 13 + 1)
    with pytest.raises(ValidationError, match=r"groot.csv is 50.0 MB; files up to 50.0 MB can be uploaded"):
        import_create(kind="contacts", file_name="groot.csv", content=content)
    assert not Import.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("email\njan@example.nl\n".encode("utf-16"), "looks like UTF-16"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10, "binary"),
        (b"", "empty"),
    ],
)
def test_an_unreadable_file_is_refused_before_anything_is_written(db, content, message):
    with pytest.raises(ValidationError, match=message):
        import_create(kind="contacts", file_name="klanten.csv", content=content)
    assert not Import.objects.exists()


def test_an_unterminated_quote_is_rejected_naming_the_lines_it_swallowed(db):
    run = run_file('email;naam\ngoed@example.nl;Goed\n"open@example.nl;Open\nnog@example.nl;Nog\n')

    assert (run.status, run.created_count, run.rejected_count) == ("done", 1, 1)
    assert ImportRejectedRow.objects.get().reason == (
        "the row has 1 fields where the header has 2 (lines 3-4 were read as one row: a quote on line 3 is not closed)"
    )


def test_xlsx_contacts_are_imported(db):
    content = xlsx_bytes(
        [
            ["E-mail", "Klantnummer", "Geboortedatum", "Punten"],
            ["jan@example.nl", 1001, dt.datetime(1980, 11, 22), 12.5],  # noqa: DTZ001 - Excel cells have no time zone
            ["fout", 1002, None, None],
        ]
    )
    run = run_file(content, file_name="klanten.xlsx", mapping={"Punten": "attribute:points:number"})
    assert (run.created_count, run.rejected_count) == (1, 1)
    jan = Identity.objects.get(value="1001").contact
    assert jan.attributes == {"birth_date": "1980-11-22", "points": 12.5}
    assert ImportRejectedRow.objects.get().line_number == 3


def test_a_done_import_is_not_run_twice_and_a_failed_one_can_be(db):
    created = import_create(kind="contacts", file_name="k.csv", content=CONTACTS_CSV.encode())
    first = import_run(import_run=created)
    again = import_run(import_run=first)
    assert (again.status, again.created_count, Contact.objects.count()) == ("done", 3, 3)

    Import.objects.filter(pk=created.pk).update(status="failed")
    rerun = import_run(import_run=created)
    assert (rerun.status, rerun.created_count, rerun.unchanged_count, Contact.objects.count()) == ("done", 0, 3, 3)


def test_the_preview_shows_errors_and_actions_and_writes_nothing(db):
    existing = IdentityFactory(kind="email", value="jan@example.nl").contact
    created = import_create(kind="contacts", file_name="k.csv", content=CONTACTS_CSV.encode() + b"fout;;;;;;\n")
    before = table_counts()

    preview = import_preview(import_run=created, rows=4)

    assert [(row.line, row.action, row.errors) for row in preview.rows] == [
        (2, f"update contact #{existing.pk}", []),
        (3, "create a new contact", []),
        (4, "create a new contact", []),
        (5, "", ["E-mailadres: 'fout' is not an e-mail address"]),
    ]
    assert table_counts() == before
    assert ImportRejectedRow.objects.count() == 0


# --- Events -------------------------------------------------------------------------------

EVENTS_CSV = (
    "klantnummer;type;datum;bedrag;ordernummer;categorie\n"
    "K1;purchase;22-11-2026 14:30;1.234,56;O-1;fietsen\n"
    "K1;purchase;23-11-2026;12,50;;boeken\n"
    "K2;page_view;2026-11-24T10:00:00;;;\n"
    ";purchase;22-11-2026;1;O-9;\n"
    "K1;aankoop;22-11-2026;1;O-10;\n"
)
EVENTS_MAPPING = {"categorie": "event:property:category"}


def test_events_are_imported_to_the_contact_their_identity_names(db):
    k1 = IdentityFactory(kind="customer_number", value="K1").contact

    run = run_file(EVENTS_CSV, kind="events", file_name="orders.csv", mapping=EVENTS_MAPPING)

    assert (run.status, run.created_count, run.rejected_count) == ("done", 3, 2)
    order = Event.objects.get(external_id="O-1")
    assert (order.contact, order.type, order.value, order.properties) == (
        k1,
        "purchase",
        Decimal("1234.56"),
        {"category": "fietsen"},
    )
    assert order.occurred_at == dt.datetime(2026, 11, 22, 13, 30, tzinfo=dt.UTC)
    # K2 was unknown: a new contact known by that customer number.
    assert Identity.objects.get(value="K2").contact.events.get().type == "page_view"
    reasons = dict(ImportRejectedRow.objects.values_list("line_number", "reason"))
    assert reasons[5] == "no contact identity: map a column to e-mail, phone or customer number (this row has none)"
    assert reasons[6].startswith("type: unknown event type 'aankoop'; known: purchase, page_view")


def test_events_imported_twice_are_stored_once(db):
    run_file(EVENTS_CSV, kind="events", mapping=EVENTS_MAPPING)
    before = table_counts()

    second = run_file(EVENTS_CSV, kind="events", mapping=EVENTS_MAPPING)

    assert (second.created_count, second.unchanged_count) == (0, 3)
    assert table_counts() == before
    derived = Event.objects.exclude(external_id="O-1").values_list("external_id", flat=True)
    assert all(external_id.startswith("import:") for external_id in derived)


def test_an_events_mapping_needs_a_type_and_a_date(db):
    with pytest.raises(ValidationError, match="event:occurred_at"):
        import_create(
            kind="events",
            file_name="e.csv",
            content=b"email;type\njan@example.nl;purchase\n",
            mapping={"email": "identity:email", "type": "event:type"},
        )


def test_the_same_number_in_two_phone_columns_is_one_identity(db):
    run = run_file("email;telefoon;mobiel\njan@example.nl;0612345678;06-12345678\n")

    assert (run.created_count, run.rejected_count) == (1, 0)
    assert list(Identity.objects.filter(kind="phone").values_list("value", flat=True)) == ["+31612345678"]
    assert run_file("email;telefoon;mobiel\njan@example.nl;0612345678;06-12345678\n").unchanged_count == 1


def test_rejected_cells_a_spreadsheet_would_run_are_written_inert(db):
    run = run_file('email;naam;telefoon\nfout;=HYPERLINK("x");+31612345678\nook fout;@SUM(1+1);-12\n')

    rows = "".join(import_rejected_csv(import_run=run)).splitlines()[1:]

    assert rows[0].endswith(';"\'=HYPERLINK(""x"")";+31612345678')
    assert "'@SUM(1+1)" in rows[1]
    assert rows[1].endswith(";-12")  # numbers and phone numbers stay as they are


def test_a_number_too_large_rejects_its_row_only(db):
    content = "email;punten\ngoed@example.nl;12\nfout@example.nl;1e5000\nlang@example.nl;" + "9" * 5000 + "\n"
    run = run_file(content, mapping={"email": "identity:email", "punten": "attribute:points:number"})

    assert run.status == Import.Status.DONE
    assert run.created_count == 1
    assert sorted(run.rejected_rows.values_list("line_number", flat=True)) == [3, 4]
    assert "too large a number" in run.rejected_rows.get(line_number=4).reason
    assert Contact.objects.get().attributes == {"points": 12}
