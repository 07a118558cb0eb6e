import io

import pytest
from django.core.management import CommandError, call_command

from audiences.models import Contact, Event, Identity, Import

CSV = "E-mailadres;Klantnummer;Voornaam;Punten\njan@example.nl;K1;Jan;12,5\nfout;K2;Piet;3\nanna@example.nl;K3;Anna;\n"


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_contacts_prints_a_summary_and_writes_the_rejected_rows(db, tmp_path):
    path = tmp_path / "klanten.csv"
    path.write_text(CSV, encoding="cp1252")

    out, err = run("import_contacts", str(path), "--source", "beurs", "--map", "Punten=attribute:points:number")

    assert "klanten.csv: 3 rows: 2 created, 0 updated, 0 unchanged, 0 merged, 1 rejected" in out
    assert "Punten → attribute:points:number" in err
    rejected = tmp_path / "klanten.csv.rejected.csv"
    assert f"Rejected rows, with line and reason: {rejected}" in out
    assert rejected.read_text(encoding="utf-8-sig").splitlines() == [
        "line;reason;E-mailadres;Klantnummer;Voornaam;Punten",
        "3;E-mailadres: 'fout' is not an e-mail address;fout;K2;Piet;3",
    ]
    assert Identity.objects.get(value="K1").contact.attributes == {"points": 12.5}
    assert Identity.objects.get(value="K1").source == "beurs"

    out, _err = run("import_contacts", str(path), "--rejected", str(tmp_path / "fouten.csv"))
    assert "0 created, 0 updated, 2 unchanged, 0 merged, 1 rejected" in out
    assert (tmp_path / "fouten.csv").exists()
    assert Contact.objects.count() == 2


def test_no_rejected_file_when_nothing_was_rejected(db, tmp_path):
    path = tmp_path / "goed.csv"
    path.write_text("email\njan@example.nl\n")
    out, _err = run("import_contacts", str(path))
    assert "1 created" in out
    assert not (tmp_path / "goed.csv.rejected.csv").exists()


def test_dry_run_shows_the_first_rows_and_writes_nothing(db, tmp_path):
    path = tmp_path / "klanten.csv"
    path.write_text(CSV)

    out, _err = run("import_contacts", str(path), "--dry-run")

    assert out.splitlines() == [
        "klanten.csv: CSV, utf-8, semicolon-delimited",
        "line 2: create a new contact",
        "line 3: REJECTED: E-mailadres: 'fout' is not an e-mail address",
        "line 4: create a new contact",
        "Dry run: nothing was written.",
    ]
    assert not Import.objects.exists()
    assert not Contact.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("email\njan@example.nl\n".encode("utf-16"), "looks like UTF-16"),
        (bytes(range(256)) * 4, "binary"),
    ],
)
def test_an_unreadable_file_stops_the_command_with_the_reason(db, tmp_path, content, message):
    path = tmp_path / "klanten.csv"
    path.write_bytes(content)
    with pytest.raises(CommandError, match=message):
        run("import_contacts", str(path))
    assert not Import.objects.exists()


def test_a_missing_file_stops_the_command(db, tmp_path):
    with pytest.raises(CommandError, match="cannot be read"):
        run("import_contacts", str(tmp_path / "nergens.csv"))


def test_an_unknown_column_in_map_is_refused(db, tmp_path):
    path = tmp_path / "klanten.csv"
    path.write_text(CSV)
    with pytest.raises(CommandError, match="has no column 'Mobiel'"):
        run("import_contacts", str(path), "--map", "Mobiel=identity:phone")


def test_the_exit_code_is_not_zero_for_an_unreadable_file(tmp_path, subprocess_env):
    import subprocess
    import sys

    from django.conf import settings

    path = tmp_path / "klanten.csv"
    path.write_bytes("email\njan@example.nl\n".encode("utf-16"))
    result = subprocess.run(
        [sys.executable, "manage.py", "import_contacts", str(path)],
        cwd=settings.BASE_DIR,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "looks like UTF-16" in result.stderr


def test_import_events_from_the_command(db, tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("email;type;datum;bedrag\njan@example.nl;purchase;22-11-2026;12,50\n;purchase;22-11-2026;1\n")

    out, _err = run("import_events", str(path))

    assert "2 rows: 1 created, 0 updated, 0 unchanged, 0 merged, 1 rejected" in out
    event = Event.objects.get()
    assert (str(event.value), event.contact.identities.get().value) == ("12.50", "jan@example.nl")
