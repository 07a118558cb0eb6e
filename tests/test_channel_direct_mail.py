"""Direct mail: a run's print file for the mailing house."""

import csv
import io

import pytest

from campaigns.channels.base import OutboundMessage, Result
from campaigns.channels.direct_mail import COLUMNS, PrintFileChannel, print_file
from campaigns.models import CampaignRun, Delivery
from tests.campaign_helpers import activated, campaign_for, customer, message_with, send_everything

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def print_folder(settings, tmp_path):
    settings.CAMPAIGN_CHANNELS = {
        **settings.CAMPAIGN_CHANNELS,
        "direct_mail": {
            "BACKEND": "campaigns.channels.direct_mail.PrintFileChannel",
            "OPTIONS": {"path": str(tmp_path)},
        },
    }
    return tmp_path


def _address(number):
    return {
        "street": "Dorpsstraat",
        "house_number": str(number),
        "postal_code": f"35{number:02d} AB",
        "city": "Utrecht",
        "country": "NL",
    }


def test_a_direct_mail_campaigns_print_file_has_one_personalised_row_per_sent_delivery(print_folder, settings):
    settings.CAMPAIGN_CHUNK_SIZE = 3  # several files for the run
    contacts = [
        customer(consent=(), first_name=f"Door{n}", last_name="de Vries", attributes=_address(n)) for n in range(7)
    ]
    campaign = activated(
        campaign_for(
            contacts,
            channels=("direct_mail",),
            message=message_with(email=False),
            holdout_percent=0,
            holdout_off_reason="test",
        )
    )

    send_everything()
    send_everything()

    run = CampaignRun.objects.get(campaign=campaign)
    sent = {delivery.pk: delivery for delivery in Delivery.objects.filter(run=run, status=Delivery.Status.SENT)}
    assert len(sent) == 7
    files = sorted((print_folder / f"campaign-{campaign.pk}" / f"run-{run.pk}").glob("batch-*.csv"))
    assert len(files) == 3
    assert not list(print_folder.rglob("*.tmp"))
    rows = list(csv.DictReader(io.StringIO(print_file(run=run))))
    assert [int(row["delivery_id"]) for row in rows] == sorted(sent)
    assert tuple(rows[0]) == COLUMNS
    by_contact = {contact.contact_key: (number, contact) for number, contact in enumerate(contacts)}
    for row in rows:
        number, contact = by_contact[sent[int(row["delivery_id"])].contact.contact_key]
        assert row["contact_key"] == str(contact.contact_key)
        assert row["first_name"] == f"Door{number}"
        assert row["last_name"] == "de Vries"
        assert (row["street"], row["house_number"], row["postal_code"], row["city"], row["country"]) == (
            "Dorpsstraat",
            str(number),
            f"35{number:02d} AB",
            "Utrecht",
            "NL",
        )
        assert sent[int(row["delivery_id"])].provider_id.endswith(".csv")


def _message(number, run_id=9):
    return OutboundMessage(
        delivery_id=number,
        idempotency_key=f"dialoog-delivery-{number}",
        channel="direct_mail",
        to=f"key-{number}",
        contact_key=f"key-{number}",
        campaign={"id": 4, "name": "Folder"},
        data={"first_name": "Eva", "last_name": f"Jansen{number}", "attributes": _address(number), "run_id": run_id},
    )


def test_a_batch_handed_over_again_rewrites_its_file_instead_of_adding_one(tmp_path):
    channel = PrintFileChannel(channel="direct_mail", path=str(tmp_path))
    batch = [_message(12), _message(11), _message(13)]

    first = channel.send_batch(batch)
    second = channel.send_batch(batch)  # the next worker, after the first died before recording

    assert {outcome.result for outcome in first + second} == {Result.SENT}
    files = list(tmp_path.rglob("*.csv"))
    assert [path.relative_to(tmp_path).as_posix() for path in files] == ["campaign-4/run-9/batch-11.csv"]
    rows = list(csv.DictReader(files[0].open(encoding="utf-8")))
    assert [row["delivery_id"] for row in rows] == ["11", "12", "13"]
    assert [row["last_name"] for row in rows] == ["Jansen11", "Jansen12", "Jansen13"]
    assert not list(tmp_path.rglob("*.tmp"))
