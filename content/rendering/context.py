"""The personalisation context: what a template can read, as data, with a description per name.

The schema is a tree of `Field`s. The checks compare a template's variables against it; the
editor and the docs list it with `describe()`. At render time the context is a plain dict of
dicts, lists, str, Decimal, date and datetime values of this shape (never model instances): a
name the schema lists but the contact lacks renders as empty, so `default` can fill it in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_lazy as _

TEXT = "text"
NUMBER = "number"
MONEY = "money"
DATE = "date"
URL = "url"
BOOLEAN = "boolean"
ANY = "any"
OBJECT = "object"
LIST = "list"
MAP = "map"
LOOP = "loop"
FUNCTION = "function"


@dataclass(frozen=True)
class Field:
    """A name in the context: its kind, a description, and what it holds.

    An `object` has named `fields`; a `list` holds `item`s; a `map` takes any key, each holding
    an `item` (`contact.attributes.*`, `contact.scores.*`).
    """

    kind: str
    description: Any = ""
    fields: Mapping[str, Field] = field(default_factory=dict)
    item: Field | None = None


def scalar(kind: str, description: Any) -> Field:
    return Field(kind, description)


def obj(description: Any, /, **fields: Field) -> Field:
    return Field(OBJECT, description, fields=fields)


def list_of(description: Any, item: Field) -> Field:
    return Field(LIST, description, item=item)


def map_of(description: Any, item: Field) -> Field:
    return Field(MAP, description, item=item)


ANYTHING = Field(ANY)

PRODUCT = obj(
    _("A recommended product."),
    name=scalar(TEXT, _("The product's name.")),
    url=scalar(URL, _("The product's page in the shop.")),
    price=scalar(MONEY, _("The price in euro; format it with `| currency`.")),
    image_url=scalar(URL, _("The product's image.")),
    category=scalar(TEXT, _("The product's category.")),
    bought_with=scalar(
        TEXT,
        _("The contact's product it is often bought with; empty when it is a best seller of the category."),
    ),
)

SCHEMA = obj(
    _("The personalisation context."),
    contact=obj(
        _("The contact the message is for."),
        first_name=scalar(TEXT, _('First name; may be empty: `{{ contact.first_name | default("klant") }}`.')),
        last_name=scalar(TEXT, _("Last name; may be empty.")),
        locale=scalar(TEXT, _("The contact's language, such as `nl` or `en`.")),
        timezone=scalar(TEXT, _("The contact's timezone, such as `Europe/Amsterdam`.")),
        created_at=scalar(DATE, _("When the contact became known; format it with `| date`.")),
        attributes=map_of(
            _("The contact's attributes by key (`contact.attributes.city`); a key the contact lacks is empty."),
            Field(ANY, _("An attribute's value: text, a number, yes/no, a date or a list.")),
        ),
        scores=map_of(
            _("The contact's scores by name (`contact.scores.churn`), such as churn risk or lifetime value."),
            scalar(NUMBER, _("A score.")),
        ),
    ),
    recommendations=list_of(
        _(
            "The products recommended to the contact, best first: those most often bought with what the "
            "contact bought, then the best sellers of those categories. Empty when the contact never bought "
            "anything: give the loop an `else` to show something else then."
        ),
        PRODUCT,
    ),
    products=list_of(_("The same list as `recommendations`, by its older name."), PRODUCT),
    offer=obj(
        _("The offer the message makes; empty when it makes none."),
        name=scalar(TEXT, _("The offer's name.")),
        description=scalar(TEXT, _("The offer's description.")),
        price=scalar(MONEY, _("The offer's price in euro; format it with `| currency`.")),
        code=scalar(TEXT, _("The code the contact uses to take the offer.")),
        valid_until=scalar(DATE, _("The last day of the offer; format it with `| date`.")),
    ),
    campaign=obj(
        _("The campaign sending the message."),
        name=scalar(TEXT, _("The campaign's name.")),
    ),
    links=obj(
        _("Links personal to the contact."),
        unsubscribe=scalar(URL, _("Unsubscribes the contact from this channel.")),
        preferences=scalar(URL, _("The contact's preference page.")),
        view_in_browser=scalar(URL, _("This message as a web page.")),
    ),
)


def describe(root: Field = SCHEMA, prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """Every name in the context as (path, kind, description): `contact.first_name`, `products[].name`,
    `contact.attributes.*`, for the docs and the editor's autocompletion."""
    for name, child in root.fields.items():
        path = f"{prefix}{name}"
        yield path, child.kind, str(child.description)
        if child.kind == OBJECT:
            yield from describe(child, f"{path}.")
        elif child.kind == LIST and child.item is not None:
            yield from describe(child.item, f"{path}[].")
        elif child.kind == MAP and child.item is not None:
            yield f"{path}.*", child.item.kind, str(child.item.description)


def sample_context() -> dict[str, Any]:
    """A realistic Dutch context, for previews and tests. `products` is the same list as
    `recommendations`: templates written before the name was documented keep working."""
    recommendations = [
        {
            "name": "Tuinset Lissabon",
            "url": "https://shop.example.nl/p/tuinset-lissabon",
            "price": Decimal("1299.00"),
            "image_url": "https://shop.example.nl/img/tuinset-lissabon.jpg",
            "category": "tuinmeubelen",
            "bought_with": "Tuinstoel Porto",
        },
        {
            "name": "Loungekussen Terra",
            "url": "https://shop.example.nl/p/loungekussen-terra",
            "price": Decimal("34.95"),
            "image_url": "https://shop.example.nl/img/loungekussen-terra.jpg",
            "category": "textiel",
            "bought_with": "Tuinstoel Porto",
        },
        {
            "name": "Parasol Capri 3 m",
            "url": "https://shop.example.nl/p/parasol-capri",
            "price": Decimal("249.50"),
            "image_url": "https://shop.example.nl/img/parasol-capri.jpg",
            "category": "tuinmeubelen",
            "bought_with": "",
        },
    ]
    return {
        "contact": {
            "first_name": "Sanne",
            "last_name": "de Vries",
            "locale": "nl",
            "timezone": "Europe/Amsterdam",
            "created_at": dt.datetime(2024, 3, 14, 9, 30, tzinfo=dt.UTC),
            "attributes": {
                "city": "Utrecht",
                "loyalty_member": True,
                "favourite_category": "tuinmeubelen",
                "birth_date": dt.date(1986, 5, 2),
            },
            "scores": {"churn": Decimal("0.12"), "lifetime_value": Decimal("1840.50")},
        },
        "recommendations": recommendations,
        "products": recommendations,
        "offer": {
            "name": "Najaarskorting",
            "description": "25% korting op alle tuinmeubelen",
            "price": Decimal("974.25"),
            "code": "NAJAAR25",
            "valid_until": dt.date(2026, 11, 22),
        },
        "campaign": {"name": "Najaarsactie tuinmeubelen"},
        "links": {
            "unsubscribe": "https://mail.example.nl/afmelden/3f9a2c",
            "preferences": "https://mail.example.nl/voorkeuren/3f9a2c",
            "view_in_browser": "https://mail.example.nl/bekijk/3f9a2c",
        },
    }
