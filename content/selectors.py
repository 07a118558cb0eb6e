"""Reads of the content app: published blocks, the version a contact gets, personalisation
contexts, and the difference between two versions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Max, QuerySet
from django.utils.translation import gettext_lazy as _

from audiences.insights.products import products_recommended
from audiences.models import Contact
from audiences.selectors.contacts import contact_profiles
from content.models import ContentBlock, ContentBlockVersion, Template, TemplateVersion
from content.rendering.context import sample_context
from dialoog.signing import sign

LINK_SALT = "dialoog.content.links"


@dataclass(frozen=True)
class BlockSources:
    """The blocks templates can include, by slug: their HTML for email, their text for the other
    channels, and the version each came from (a delivery records it)."""

    html: dict[str, str] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    version_ids: dict[str, int] = field(default_factory=dict)
    published: frozenset[str] = frozenset()
    # Template versions compiled against these blocks, by version id (versions never change).
    compiled: dict[int, Any] = field(default_factory=dict, compare=False, repr=False)

    def for_channel(self, channel: str) -> dict[str, str]:
        return self.html if channel == "email_html" else self.text


def published_blocks() -> BlockSources:
    """Every published block, in one query: what renders on the send path."""
    versions = ContentBlockVersion.objects.filter(
        pk__in=ContentBlock.objects.filter(published_version__isnull=False).values("published_version")
    ).select_related("block")
    sources = BlockSources()
    for version in versions:
        slug = version.block.slug
        sources.html[slug] = version.prepared_html
        sources.text[slug] = version.prepared_text
        sources.version_ids[slug] = version.pk
    return BlockSources(sources.html, sources.text, sources.version_ids, frozenset(sources.html))


def checkable_blocks() -> BlockSources:
    """What the save-time checks compare against: each block's published version, or its newest
    version when it has never been published (so that "not published" can be said of it)."""
    sources = published_blocks()
    html, text, version_ids = dict(sources.html), dict(sources.text), dict(sources.version_ids)
    newest = (
        ContentBlockVersion.objects.filter(block__published_version__isnull=True)
        .order_by("block_id", "-number")
        .distinct("block_id")
    )
    for version in newest.select_related("block"):
        html[version.block.slug] = version.prepared_html
        text[version.block.slug] = version.prepared_text
        version_ids[version.block.slug] = version.pk
    return BlockSources(html, text, version_ids, sources.published)


def block_newest_version(*, block: ContentBlock) -> ContentBlockVersion | None:
    return block.versions.order_by("-number").first()


def template_languages(*, template: Template) -> list[str]:
    """The languages the template has versions in, its default language first."""
    languages = sorted(set(template.versions.values_list("language", flat=True)))
    if template.default_language in languages:
        languages.remove(template.default_language)
        languages.insert(0, template.default_language)
    return languages


def template_newest_versions(*, template: Template) -> dict[str, TemplateVersion]:
    """The newest version in each language: the ones that are used."""
    newest = template.versions.order_by("language", "-number").distinct("language")
    return {version.language: version for version in newest}


def language_candidates(language: str | None, default_language: str) -> list[str]:
    """The languages to look for, best first, for a contact speaking `language`: their language,
    its main language (`en` for `en-gb`), the template's default language."""
    wanted = (language or "").strip().lower().replace("_", "-").split(".")[0]  # en_GB.UTF-8 is en-gb
    return [code for code in (wanted, wanted.split("-")[0], default_language) if code]


def version_for_language(
    newest: Mapping[str, TemplateVersion], *, language: str | None, default_language: str
) -> TemplateVersion | None:
    """Of a template's newest versions by language (`template_newest_versions`), the one a contact
    speaking `language` gets, as `template_version_for` chooses it; no query."""
    for code in language_candidates(language, default_language):
        if code in newest:
            return newest[code]
    return None


def template_version_for(*, template: Template, language: str | None) -> TemplateVersion | None:
    """The version a contact speaking `language` gets: their language, else its main language
    (`en` for `en-gb`), else the template's default language."""
    candidates = language_candidates(language, template.default_language)
    versions = template.versions.filter(language__in=candidates)
    newest = {row["language"]: row["number"] for row in versions.values("language").annotate(number=Max("number"))}
    for code in candidates:
        if code in newest:
            return template.versions.get(language=code, number=newest[code])
    return None


def templates_with_versions() -> QuerySet[Template]:
    return Template.objects.select_related("message", "sender_profile")


# --- Personalisation context -------------------------------------------------------------------


def contact_links(contact_key: object) -> dict[str, str]:
    """The contact's personal links (unsubscribe, preferences, this message as a web page), signed
    so that nobody can guess another contact's."""
    token = sign(str(contact_key), salt=LINK_SALT)  # as signing.Signer(salt=LINK_SALT) signs it
    base = f"{settings.PUBLIC_URL}/m/{token}"
    return {
        "unsubscribe": f"{base}/unsubscribe/",
        "preferences": f"{base}/preferences/",
        "view_in_browser": f"{base}/view/",
    }


class Recommendations:
    """The product recommendations of a batch of contacts, read for the whole batch in one go the
    first time a template asks for any one contact's `recommendations` (or `products`, the same
    list): a batch whose templates never show products reads nothing."""

    def __init__(self, contact_ids: Iterable[int]) -> None:
        self.contact_ids = list(contact_ids)
        self.found: dict[int, list[dict[str, Any]]] | None = None

    def of(self, contact_id: int) -> RecommendedProducts:
        return RecommendedProducts(self, contact_id)

    def load(self, contact_id: int) -> list[dict[str, Any]]:
        if self.found is None:
            self.found = products_recommended(contact_ids=self.contact_ids)
        return self.found.get(contact_id, [])


class RecommendedProducts(Sequence[Mapping[str, Any]]):
    """One contact's `recommendations` in the context: a list to the template, read when first used."""

    __slots__ = ("_contact_id", "_items", "_recommendations")

    def __init__(self, recommendations: Recommendations, contact_id: int) -> None:
        self._recommendations = recommendations
        self._contact_id = contact_id
        self._items: list[dict[str, Any]] | None = None

    def _loaded(self) -> list[dict[str, Any]]:
        if self._items is None:
            self._items = self._recommendations.load(self._contact_id)
        return self._items

    def __getitem__(self, index: Any) -> Any:
        return self._loaded()[index]

    def __len__(self) -> int:
        return len(self._loaded())

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self._loaded())

    def __repr__(self) -> str:
        return repr(self._loaded())


def context_from_profile(
    profile: Mapping[str, Any],
    *,
    offer: Mapping[str, Any] | None = None,
    campaign: Mapping[str, Any] | None = None,
    products: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A contact's context from its profile. `products` are the contact's recommended products: the
    context holds them as `recommendations`, the documented name, and as `products`, the name
    templates written before used, one and the same list."""
    recommendations = products if products is not None else []
    return {
        "contact": {
            "first_name": profile["first_name"],
            "last_name": profile["last_name"],
            "locale": profile["locale"],
            "timezone": profile["timezone"],
            "created_at": profile["created_at"],
            "attributes": profile["attributes"] or {},
            "scores": profile["scores"],
        },
        "recommendations": recommendations,
        "products": recommendations,
        "offer": dict(offer or {}),
        "campaign": dict(campaign or {}),
        "links": contact_links(profile["contact_key"]),
    }


def contact_contexts(
    *,
    contact_ids: Iterable[int],
    offer: Mapping[str, Any] | None = None,
    campaign: Mapping[str, Any] | None = None,
) -> dict[int, dict[str, Any]]:
    """The personalisation context of each contact, by id, in two queries for the whole batch, and
    two more when a template shows the `recommendations` (`audiences.insights.products`; a contact
    without any gets none, and templates fall back with
    `{% for product in recommendations %}…{% else %}`). `products` is the same list, by its older name.
    """
    profiles = contact_profiles(contact_ids=contact_ids)
    recommendations = Recommendations(profiles)
    return {
        contact_id: context_from_profile(
            profile, offer=offer, campaign=campaign, products=recommendations.of(contact_id)
        )
        for contact_id, profile in profiles.items()
    }


def contact_context(
    *, contact: Contact, offer: Mapping[str, Any] | None = None, campaign: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """One contact's context; for a preview, with the sample offer and campaign when none is given."""
    sample = sample_context()
    contexts = contact_contexts(
        contact_ids=[contact.pk],
        offer=sample["offer"] if offer is None else offer,
        campaign=sample["campaign"] if campaign is None else campaign,
    )
    return contexts[contact.pk]


# --- Comparing versions ------------------------------------------------------------------------

BLOCK_FIELDS = (("body", _("Body")), ("text_body", _("Plain-text body")))
TEMPLATE_FIELDS = {
    Template.Channel.EMAIL: (
        ("subject", _("Subject")),
        ("preheader", _("Preheader")),
        ("html", _("HTML body")),
        ("text", _("Plain-text body")),
    ),
    Template.Channel.SMS: (("text", _("Text")),),
    Template.Channel.SCRIPT: (
        ("text", _("What the agent says")),
        ("talking_points", _("Talking points")),
        ("offer_pitch", _("Offer pitch")),
    ),
}


# Every content field of a template version, in the order the editor shows them.
TEMPLATE_CONTENT_FIELDS = tuple(dict.fromkeys(name for fields in TEMPLATE_FIELDS.values() for name, _label in fields))


@dataclass(frozen=True)
class FieldDiff:
    label: str
    lines: list[tuple[str, str]]  # (" ", "+" or "-" or "@", line)
    changed: bool


def version_fields(version: ContentBlockVersion | TemplateVersion) -> tuple[tuple[str, Any], ...]:
    if isinstance(version, ContentBlockVersion):
        return BLOCK_FIELDS
    return TEMPLATE_FIELDS[Template.Channel(version.template.channel)]


def version_diff(
    *, old: ContentBlockVersion | TemplateVersion, new: ContentBlockVersion | TemplateVersion
) -> list[FieldDiff]:
    """What changed from `old` to `new`, field by field, as unified-diff lines with context."""
    diffs = []
    for name, label in version_fields(new):
        before, after = getattr(old, name).splitlines(), getattr(new, name).splitlines()
        lines: list[tuple[str, str]] = []
        for line in list(difflib.unified_diff(before, after, lineterm="", n=3))[2:]:
            lines.append((line[:1] if line[:1] in "+-@" else " ", line[1:] if line[:1] in "+- " else line))
        diffs.append(FieldDiff(str(label), lines, before != after))
    return diffs
