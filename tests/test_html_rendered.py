"""The prepared source rendered through the real sandbox, as every message is (content/html.py).

Messages are not sanitised again when they are rendered, so whatever the context holds and
whichever way the `{% if %}`s and `{% for %}`s go, the rendered HTML may have no script in it:
no `on...` attribute, no <script>, no `javascript:` address. Each bypass a review found is here,
with templates that must keep working.
"""

import itertools
import re
from html.parser import HTMLParser

import pytest

from content.html import html_to_text, prepare_email_html, prepare_fragment
from content.rendering.render import compile_template, render

HOSTILE_URLS = [
    "javascript:alert(1)",
    " JavaScript:alert(1)",
    "java\tscript:alert(1)",
    "\x01javascript:alert(1)",
    "vbscript:msgbox(1)",
    "data:text/html,<script>alert(1)</script>",
    'x" onmouseover="alert(1)',
    # Parts of one, for addresses that put text around template code.
    "script:alert(1)",
    "javascript",
]
SCRIPT_TAGS = frozenset({"script", "iframe", "object", "embed", "base", "form", "svg", "math"})
ADDRESS_ATTRIBUTES = frozenset({"href", "src", "cite", "action", "formaction", "background", "poster"})


class Dangers(HTMLParser):
    """What in a rendered message could run a script, as a browser's parser reads it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SCRIPT_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{name} on <{tag}>")
            elif name in ADDRESS_ATTRIBUTES and is_script_address(value or ""):
                self.found.append(f"{name}={value!r} on <{tag}>")
            elif name == "style" and "javascript:" in squeezed(value or ""):
                self.found.append(f"style={value!r} on <{tag}>")

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        if self.cdata_elem == "style" and "javascript:" in squeezed(data):
            self.found.append(f"<style>{data}")


def squeezed(text: str) -> str:
    return re.sub(r"[\x00-\x20]", "", text).lower()


def is_script_address(value: str) -> bool:
    return squeezed(value).startswith(("javascript:", "vbscript:", "data:"))


def dangers(rendered: str) -> list[str]:
    parser = Dangers()
    # As if more followed: a tag left open at the end would be dropped, one closed later would not.
    parser.feed(rendered + "\"'>")
    parser.close()
    if re.search(r"<script", rendered, re.IGNORECASE):
        parser.found.append("<script")
    return parser.found


COUNTER = itertools.count()


# A block whose HTML, printed inside an attribute value, would end it.
BLOCKS = {"x": prepare_fragment('<p title=" onmouseover=alert(1) x=">y</p>').html}


def rendered(prepared_html: str, context: dict) -> str:
    compiled = compile_template(
        prepared_html, channel="email_html", version_key=("test-html-rendered", next(COUNTER)), blocks=BLOCKS
    )
    return render(compiled, context)


def rendered_text(text: str, context: dict) -> str:
    compiled = compile_template(
        text, channel="email_text", version_key=("test-text-rendered", next(COUNTER)), blocks={"x": "y"}
    )
    return render(compiled, context)


def contexts() -> list[dict]:
    """Every way the conditions can go, with hostile addresses everywhere an address can come from."""
    found = []
    for condition, count, url in itertools.product((True, False), (0, 1, 2), HOSTILE_URLS):
        found.append(
            {
                "c": condition,
                "vip": condition,
                "items": list(range(count)),
                "x": url,
                "y": url,
                "site": url,
                "contact": {"first_name": "Jan", "email": url, "attributes": {"site": url}},
                "links": {"unsubscribe": url},
                "product": {"url": url, "id": url, "image": url},
            }
        )
    return found


def assert_safe_or_refused(source: str, *, fragment: bool = False) -> bool:
    """The source is refused (errors, no HTML), or every render of it is safe. Whether it was refused."""
    prepared = (prepare_fragment if fragment else prepare_email_html)(source)
    if prepared.errors:
        assert prepared.html == ""
        return True
    for context in contexts():
        html = rendered(prepared.html, context)
        assert dangers(html) == [], (source, prepared.html, context, html)
        text = html_to_text(prepared.html)
        rendered_text(text, context)  # the derived text renders as well
    return False


# --- The bypasses ---------------------------------------------------------------------------------

BYPASSES = [
    # 1. A block's statements in different places of the HTML.
    '<a title="{% if false %}">{% endif %}" onmouseover="alert(1)" x="</a>',
    '<img title="{% for x in [] %}">{% endfor %}" src=x onerror="alert(1)" y="">',
    '<a href="https://a.nl/{% if c %}" title="{% endif %}javascript:alert(1)">x</a>',
    '{% if c %}<a title="{% else %}" onmouseover="alert(1)">{% endif %}x</a>',
    '<p title="{% with z = 1 %}">{% endwith %}" onmouseover="alert(1)" x="</p>',
    "<style>p { color: red; }{% if c %}</style><img src=x onerror=alert(1)>{% endif %}</style>",
    "<style>p{color:red}<{% if false %}{% endif %}/style><img src=x onerror=alert(1)></style><p>x</p>",
    "<style>p{color:red}<{{ x }}/style ><img src=x onerror=alert(1)></style><p>x</p>",
    "<style>p{color:red}</st{# #}yle><img src=x onerror=alert(1)></style><p>x</p>",
    '<a title="{% include "block:x" %}">x</a>',
    "<a title='{{ block(\"x\") }}'>x</a>",
    '<p>{% include "block:x" %}</p>',
    # 2. Delimiters written as character references.
    "<p>Typ &#123;&#123; contact.nope &#125;&#125;</p>",
    '<a title="&#123;#">#&#125;" onmouseover="alert(1)" x="">x</a>',
    '<a title="&#x7b;%if false%&#x7d;">&#123;% endif %&#125;" onmouseover="alert(1)" x="">x</a>',
    "<p>&#123;{{ x }}</p>",
    "<p>{<foo></foo>{ x }}</p>",
    '<p title="&#123;{{ x }}">y</p>',
    "<title>&#123;&#123; x &#125;&#125;</title><p>y</p>",
    # 3. Addresses that come from template code.
    "<a href=\"{{ 'javascript:alert(1)' }}\">x</a>",
    '<a href="{{ contact.attributes.site }}">x</a>',
    "<a href=\"{{ 'java' }}script:alert(1)\">x</a>",
    '<a href="java{{ x }}">x</a>',
    '<a href="{{ x }}{{ y }}">x</a>',
    '<a href="{{ x }}\n{{ y }}">x</a>',
    '<a href="{% if c %}javascript:alert(1){% endif %}">x</a>',
    '<a href="{# #}{{ x }}">x</a>',
    '<a href="&#106;ava{{ x }}">x</a>',
    '<a href="{{ x }}:alert(1)">x</a>',
    '<img alt="" src="{{ x }}">',
    '<img alt="" src=" {{- x -}} ">',
    '<q cite="{{ x }}">x</q>',
    '<blockquote cite="javascript:alert(1)">x</blockquote>',
    '<p style="background: url({{ x }})">x</p>',
    "<style>.a { background: url('{{ x }}') }</style><p class=a>x</p>",
]


@pytest.mark.parametrize("source", BYPASSES)
def test_a_bypass_is_refused_or_renders_safely(source):
    assert_safe_or_refused(source)
    assert_safe_or_refused(source, fragment=True)


@pytest.mark.parametrize(
    "source",
    [
        '<a title="{% if false %}">{% endif %}" onmouseover="alert(1)" x="</a>',
        '<img title="{% for x in [] %}">{% endfor %}" src=x onerror="alert(1)" y="">',
        "<a href=\"{{ 'java' }}script:alert(1)\">x</a>",
        '<a href="java{{ x }}">x</a>',
        '<a href="{{ x }}{{ y }}">x</a>',
        '<a href="{% if c %}javascript:alert(1){% endif %}">x</a>',
        '<p style="background: url({{ x }})">x</p>',
        "<style>p{color:red}<{% if false %}{% endif %}/style><img src=x onerror=alert(1)></style><p>x</p>",
        '<a title="{% include "block:x" %}">x</a>',
    ],
)
def test_what_cannot_be_made_safe_is_refused(source):
    assert assert_safe_or_refused(source)


@pytest.mark.parametrize(
    ("source", "context", "expected"),
    [
        ("<a href=\"{{ 'javascript:alert(1)' }}\">x</a>", {}, '<a href="">x</a>'),
        (
            '<a href="{{ contact.attributes.site }}">x</a>',
            {"contact": {"attributes": {"site": "java\tscript:x"}}},
            '<a href="">x</a>',
        ),
        ('<img alt="" src="{{ x }}">', {"x": "data:image/svg+xml,<svg onload=alert(1)>"}, '<img alt="" src="">'),
        ("<p>Typ &#123;&#123; contact.nope &#125;&#125;</p>", {}, "<p>Typ &#123;{ contact.nope }}</p>"),
        (
            '<a title="&#123;#">#&#125;" onmouseover="alert(1)" x="">x</a>',
            {},
            '<a title="&#123;#">#}" onmouseover="alert(1)" x=""&gt;x</a>',
        ),
        ("<p>&#123;{{ x }}</p>", {"x": "Jan"}, "<p>&#123;Jan</p>"),
    ],
)
def test_a_bypass_that_is_made_safe_renders_like_this(source, context, expected):
    prepared = prepare_fragment(source)

    assert prepared.errors == []
    assert rendered(prepared.html, context) == expected


def test_an_encoded_brace_shows_as_a_brace():
    prepared = prepare_email_html("<p>Typ &#123;&#123; contact.nope &#125;&#125; en &#123;% if %&#125;</p>")

    html = rendered(prepared.html, {})
    text = rendered_text(html_to_text(prepared.html), {})

    shown = Text()
    shown.feed(html)
    assert shown.text == "Typ {{ contact.nope }} en {% if %}"
    assert text == "Typ {{ contact.nope }} en {% if %}"


class Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = ""

    def handle_data(self, data: str) -> None:
        self.text += data


# Statements that open and close a block, put two by two in every place of a tag and around it;
# whatever is not refused must render safely every way the block goes.
STATEMENTS = [
    ("{% if c %}", "{% endif %}"),
    ("{% if c %}", "{% else %}"),
    ("{% for i in items %}", "{% endfor %}"),
    ("{% with z = 1 %}", "{% endwith %}"),
]
GADGETS = [
    '<a title="{A}">{B}" onmouseover="alert(1)" x="</a>',
    '{A}<a title="{B}" onmouseover="alert(1)">x</a>',
    '<a href="https://x.nl/{A}" title="{B}javascript:alert(1)">x</a>',
    '<a href="{A}javascript:alert(1){B}">x</a>',
    '<a href="/{A}x{B}">x</a>',
    '<p class="{A}a" title="{B}" onclick="alert(1)">x</p>',
    '<p style="color: red{A}" title="{B}">x</p>',
    "<style>p{color:red}{A}</style><img src=x onerror=alert(1)>{B}</style>",
    "<style>p{color:red}<{A}{B}/style><img src=x onerror=alert(1)></style>",
    "<title>{A}</title><p onclick=alert(1)>{B}</p>",
    '<p title="&#123;{A}">{B}#" onclick="alert(1)"</p>',
]


@pytest.mark.parametrize(("gadget", "statements"), list(itertools.product(GADGETS, STATEMENTS)))
def test_blocks_in_any_two_places_are_refused_or_render_safely(gadget, statements):
    opening, other = statements
    source = gadget.replace("{A}", opening).replace("{B}", other)
    if other == "{% else %}":
        source += "{% endif %}"

    assert_safe_or_refused(source)


# --- Templates that keep working ------------------------------------------------------------------

WORKING = [
    (
        "{% if x %}<b>a</b>{% else %}<i>b</i>{% endif %}",
        [({"x": True}, "<b>a</b>"), ({"x": False}, "<i>b</i>")],
    ),
    (
        '<p class="{% if vip %}gold{% endif %}">Hoi</p>',
        [({"vip": True}, '<p class="gold">Hoi</p>'), ({"vip": False}, '<p class="">Hoi</p>')],
    ),
    (
        '<a href="{{ links.unsubscribe }}">Afmelden</a>',
        [
            (
                {"links": {"unsubscribe": "https://voorbeeld.nl/af?c=1&t=2"}},
                '<a href="https://voorbeeld.nl/af?c=1&amp;t=2">',
            ),
            ({"links": {"unsubscribe": "mailto:af@voorbeeld.nl"}}, '<a href="mailto:af@voorbeeld.nl">'),
            ({"links": {"unsubscribe": "/af"}}, '<a href="/af">'),
            ({}, '<a href="">'),
        ],
    ),
    (
        '<a href="{{ product.url }}?utm_source=mail">Bekijk</a>',
        [({"product": {"url": "https://shop.nl/p/1"}}, '<a href="https://shop.nl/p/1?utm_source=mail">Bekijk</a>')],
    ),
    (
        '<a href="https://shop.nl/p/{{ product.id }}">Bekijk</a>',
        [({"product": {"id": 7}}, '<a href="https://shop.nl/p/7">Bekijk</a>')],
    ),
    (
        '<a href="mailto:{{ contact.email }}">Mail</a>',
        [({"contact": {"email": "jan@voorbeeld.nl"}}, '<a href="mailto:jan@voorbeeld.nl">Mail</a>')],
    ),
    (
        "<table>{% for p in products %}<tr><td>{{ p.name }}</td></tr>{% endfor %}</table>",
        [
            (
                {"products": [{"name": "Fiets"}, {"name": "Step"}]},
                "<table><tbody><tr><td>Fiets</td></tr><tr><td>Step</td></tr></tbody></table>",
            ),
            ({"products": []}, "<table><tbody></tbody></table>"),
        ],
    ),
    (
        "<style>.knop { background: {% if vip %}gold{% else %}{{ brand.color }}{% endif %}; }</style>"
        '<p class="knop">x</p>',
        [
            ({"vip": True}, '<p class="knop" style="background: gold;">x</p>'),
            ({"vip": False, "brand": {"color": "#c00"}}, '<p class="knop" style="background: #c00;">x</p>'),
        ],
    ),
    (
        '<img alt="" src="https://cdn.shop.nl/{{ product.image }}">',
        [({"product": {"image": "fiets.png"}}, '<img alt="" src="https://cdn.shop.nl/fiets.png">')],
    ),
]


@pytest.mark.parametrize(("source", "renders"), WORKING)
def test_a_legitimate_template_keeps_working(source, renders):
    prepared = prepare_email_html(source)

    assert prepared.errors == []
    for context, expected in renders:
        html = rendered(prepared.html, context)
        assert expected in html
        assert dangers(html) == []


def test_the_derived_text_of_a_prepared_email_renders():
    prepared = prepare_email_html(
        "<html><head><title>Nieuws</title></head><body><p>Hoi {{ contact.first_name }} &#123;&#123;</p>"
        '<p><a href="{{ links.unsubscribe }}">Afmelden</a> <a href="{{ product.url }}?u=1">Bekijk</a></p>'
        '<p><a href="{{ x }}">Weg</a></p></body></html>'
    )

    text = rendered_text(
        html_to_text(prepared.html),
        {
            "contact": {"first_name": "Jan"},
            "links": {"unsubscribe": "https://voorbeeld.nl/af"},
            "product": {"url": "https://shop.nl/p/1"},
            "x": "javascript:alert(1)",
        },
    )

    assert text == ("Hoi Jan {{\n\nAfmelden (https://voorbeeld.nl/af) Bekijk (https://shop.nl/p/1?u=1)\n\nWeg ()")
