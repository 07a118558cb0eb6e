import datetime as dt

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from audiences.models import Contact, Event, Identity, Segment
from campaigns.models import Campaign
from content.models import Message, SenderProfile, Template
from goals.models import Goal


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = True
    password = factory.django.Password("secret-pass-123")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(Group.objects.get(name=extracted))


class GoalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Goal

    name = factory.Sequence(lambda n: f"Doel {n}")
    domain = "conversions"
    metric = "conversion_rate"
    target = 10
    starts_on = factory.LazyFunction(lambda: dt.date.today() - dt.timedelta(days=10))
    deadline = factory.LazyFunction(lambda: dt.date.today() + dt.timedelta(days=80))


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"Campagne {n}")
    goal = factory.SubFactory(GoalFactory)


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    first_name = factory.Faker("first_name", locale="nl_NL")
    last_name = factory.Faker("last_name", locale="nl_NL")


class IdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Identity

    contact = factory.SubFactory(ContactFactory)
    kind = Identity.Kind.EMAIL
    value = factory.Sequence(lambda n: f"klant{n}@example.nl")


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    contact = factory.SubFactory(ContactFactory)
    type = Event.Type.PURCHASE
    occurred_at = factory.LazyFunction(timezone.now)
    external_id = factory.Sequence(lambda n: f"test-event-{n}")


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Segment

    name = factory.Sequence(lambda n: f"Segment {n}")
    rules = factory.LazyFunction(lambda: {"version": 1, "root": {"all": [{"consent": "email", "status": "granted"}]}})


class SenderProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SenderProfile

    name = factory.Sequence(lambda n: f"Afzender {n}")
    from_name = "Tuincentrum De Linde"
    from_email = "nieuws@delinde.example.nl"
    reply_to = "klantenservice@delinde.example.nl"


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    name = factory.Sequence(lambda n: f"Najaarsactie {n}")


class TemplateFactory(factory.django.DjangoModelFactory):
    """A template without versions: tests save them through the services."""

    class Meta:
        model = Template

    message = factory.SubFactory(MessageFactory)
    channel = Template.Channel.EMAIL
    sender_profile = factory.Maybe(
        factory.LazyAttribute(lambda template: template.channel == Template.Channel.EMAIL),
        yes_declaration=factory.SubFactory(SenderProfileFactory),
        no_declaration=None,
    )
