"""Email HTML prepared once per version (content/html.py): CSS inlined, unsafe HTML removed and
reported where the marketeer wrote it, template code kept byte for byte."""

import re
import subprocess
import sys
import time

import css_inline
import jinja2
import pytest

from content.html import MAX_DEPTH, MAX_ELEMENTS, html_to_text, prepare_email_html, prepare_fragment, with_preheader
from content.rendering.render import compile_template, render

DOCUMENT_START = (
    '<!DOCTYPE html><html><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
)
# Template code in front of what is reported, on both lines: its placeholders are not as long as
# the code, so a position computed in the protected source would be off.
LINE_1 = '<p>{{ contact.first_name | default("klant & co") }} {% if contact.vip %}!{% endif %}</p>'
LINE_2_START = "<div>{{ a }} {% if b %}x{% endif %} "


def position_of(source: str, needle: str) -> tuple[int, int]:
    """The 1-based line and column of `needle`, counted in the source as the marketeer sees it."""
    offset = source.index(needle)
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def head_and_body(document: str) -> tuple[str, str]:
    head, _, body = document.partition("</head>")
    return head, body


@pytest.mark.parametrize(
    ("snippet", "reported_at", "message", "gone"),
    [
        (
            "<script>alert('hoi')</script>",
            "<script",
            "The <script> tag is not allowed in emails; it was removed with its content.",
            ["<script", "alert"],
        ),
        (
            '<img src="a.png" alt="" onerror="alert(1)">',
            "onerror",
            "The onerror attribute on <img> runs a script, which emails may not do; it was removed.",
            ["onerror", "alert"],
        ),
        (
            '<a href="#" onclick="steal()">Klik</a>',
            "onclick",
            "The onclick attribute on <a> runs a script, which emails may not do; it was removed.",
            ["onclick", "steal"],
        ),
        (
            '<a href="javascript:alert(1)">Klik</a>',
            "href",
            "The javascript: address in the href of <a> is not allowed in emails; it was removed.",
            ["javascript", "alert"],
        ),
        (
            '<iframe src="https://evil.example/"></iframe>',
            "<iframe",
            "The <iframe> tag is not allowed in emails; it was removed with its content.",
            ["iframe", "evil.example"],
        ),
        (
            '<form action="https://evil.example/">Zoek <input name="q"></form>',
            "<form",
            "The <form> tag is not allowed in emails; it was removed (its content was kept).",
            ["<form", "<input", "evil.example"],
        ),
        (
            '<link rel="stylesheet" href="https://cdn.example/x.css">',
            "<link",
            "Stylesheets are not loaded from links in emails; the <link> was removed.",
            ["<link", "cdn.example"],
        ),
    ],
)
def test_each_removal_is_reported_where_it_was_written(english, snippet, reported_at, message, gone):
    source = f"{LINE_1}\n{LINE_2_START}{snippet}</div>"

    prepared = prepare_email_html(source)

    first = prepared.warnings[0]
    assert (first.line, first.column, first.message) == (*position_of(source, reported_at), message)
    for text in gone:
        assert text not in prepared.html
    assert prepared.errors == []


def test_an_input_is_reported_inside_a_removed_form(english):
    source = '<form>\n  <input name="q"></form>'

    prepared = prepare_email_html(source)

    assert [(w.line, w.column) for w in prepared.warnings] == [(1, 1), (2, 3)]
    assert prepared.warnings[1].message == "The <input> tag is not allowed in emails; it was removed."


def test_a_clean_email_gives_no_warnings():
    source = """<!DOCTYPE html>
<html lang="nl">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ campaign.subject }}</title>
<style>
  body { margin: 0; background: #f4f4f4; }
  .knop { background: {{ brand.color }}; color: #ffffff; padding: 12px 20px; }
  a:hover { text-decoration: underline; }
  @media (max-width: 600px) { .kolom { width: 100% !important; } }
</style>
</head>
<body>
<table role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" align="center">
  <tr>
    <td class="kolom" valign="top" bgcolor="#ffffff" style="padding: 20px">
      <h1>Hallo {{ contact.first_name | default("klant & co") }}</h1>
      <p dir="ltr" lang="nl" title="Aanbod">Bekijk ons <b>aanbod</b>.</p>
      <img src="{{ products[0].image_url }}" alt="Product" width="200" height="100">
      <a class="knop" href="https://voorbeeld.nl/aanbod?utm_source=email&amp;utm_medium=mail" target="_blank">Bekijk</a>
      <a href="mailto:info@voorbeeld.nl">Mail ons</a> <a href="tel:+31201234567">Bel ons</a>
      <a href="{{ links.unsubscribe }}">Afmelden</a>
    </td>
  </tr>
</table>
<center><font color="#999999" size="2">Voorbeeld BV</font></center>
</body>
</html>"""

    prepared = prepare_email_html(source)

    assert prepared.warnings == []
    assert prepared.errors == []


@pytest.mark.parametrize(
    "jinja",
    [
        "{% if contact.scores.churn > 0.5 %}<p>We missen je!</p>{% endif %}",
        '<p>Beste {{ contact.first_name | default("klant & co") }},</p>',
        '<a href="https://voorbeeld.nl/p/{{ product.id }}?u={{ contact.id }}">Bekijk</a>',
        '<a href="mailto:{{ contact.email }}">Mail</a>',
        '<a href="/{% if vip %}vip{% else %}gewoon{% endif %}">Relatief</a>',
        "{# comment with <b> #}",
        "{% if contact.scores.churn > 0.5\n      and contact.consent.email %}<p>Blijf!</p>{% endif %}",
        "<p>{%- if a < b -%}\n  kleiner\n{%- endif -%}</p>",
        '<p title="{{ x | default(\'"\') }}">{{ "}}" }}</p>',
        "<table>{% for p in products %}<tbody><tr><td>{{ p.name }}</td></tr></tbody>{% endfor %}</table>",
    ],
)
def test_template_code_survives_exactly(jinja):
    prepared = prepare_email_html(f"<div>{jinja}</div>")

    assert f"<div>{jinja}</div>" in prepared.html
    assert prepared.warnings == []
    assert prepared.errors == []


@pytest.mark.parametrize(
    ("written", "prepared"),
    [
        ('<a href="{{ links.unsubscribe }}">', '<a href="{{ (links.unsubscribe) | safe_url }}">'),
        (
            '<img src="{{ products[0].image_url }}" alt="">',
            '<img src="{{ (products[0].image_url) | safe_url }}" alt="">',
        ),
        ('<a href="{{ product.url }}?utm_source=mail">', '<a href="{{ (product.url) | safe_url }}?utm_source=mail">'),
        ('<a href="{{- product.url -}}#top">', '<a href="{{- (product.url) | safe_url -}}#top">'),
        (
            '<a href="{{ x | default("https://a.nl/?a=1&b=2") }}">',
            '<a href="{{ (x | default("https://a.nl/?a=1&b=2")) | safe_url }}">',
        ),
        ('<q cite=" {{ source }} ">', '<q cite=" {{ (source) | safe_url }} ">'),
    ],
)
def test_an_address_that_starts_with_a_variable_passes_through_safe_url(written, prepared):
    result = prepare_fragment(f"{written}x")

    assert result.html.startswith(prepared)
    assert result.errors == []


@pytest.mark.parametrize(
    ("source", "code", "message"),
    [
        (
            '<p>Hoi</p>\n<a href="java{{ x }}">x</a>',
            "{{ x }}",
            "The address in the href of <a> starts with text without its https:// or mailto: and then"
            " template code, which could turn it into a script link.",
        ),
        (
            '<p>Hoi</p>\n<img alt="" src="www.shop.nl/{{ x }}">',
            "{{ x }}",
            "The address in the src of <img> starts with text without its https:// or mailto: and then"
            " template code, which could turn it into a script link.",
        ),
        (
            "<p>Hoi</p>\n<a href=\"{{ 'java' }}script:alert(1)\">x</a>",
            "{{ 'java' }}",
            "In the href of <a>, the variable the address starts with may only be followed by /, ?, # or &"
            " (such as {{ product.url }}?utm_source=mail); other text could turn it into a script link.",
        ),
        (
            '<p>Hoi</p>\n<a href="{{ a }}\n{{ b }}">x</a>',
            "{{ a }}",
            "The address in the href of <a> starts with a {% %} or {# #} tag, or with two pieces of"
            " template code in a row, which cannot be checked.",
        ),
        (
            '<p>Hoi</p>\n<a href="{% if vip %}https://a.nl{% else %}https://b.nl{% endif %}">x</a>',
            "{% if vip %}",
            "The address in the href of <a> starts with a {% %} or {# #} tag, or with two pieces of"
            " template code in a row, which cannot be checked.",
        ),
        (
            '<p>Hoi</p>\n<q cite="{# bron #}{{ x }}">x</q>',
            "{# bron #}",
            "The address in the cite of <q> starts with a {% %} or {# #} tag, or with two pieces of"
            " template code in a row, which cannot be checked.",
        ),
    ],
)
def test_template_code_that_could_make_an_address_a_script_is_an_error(english, source, code, message):
    prepared = prepare_email_html(source)

    assert [(error.line, error.column, error.message) for error in prepared.errors] == [
        (
            *position_of(source, code),
            f"{message} Write the start of a link yourself (https://…) or make it one variable such as"
            " {{ links.unsubscribe }}.",
        )
    ]


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ('<p style="color: red;\n background: url({{ contact.site }})">x</p>', "{{ contact.site }}"),
        ("<p style=\"background-image: url( '{% if a %}x.png{% endif %}' )\">x</p>", "{% if a %}"),
        ("<style>\n.a { background: url(/img/{{ x }}.png) }</style><p class=a>x</p>", "{{ x }}"),
        ("<style>\n.a { background: u\\72l({{ x }}) }</style><p class=a>x</p>", "{{ x }}"),
        ("<style>\n@media (min-width: 1px) { .a { background: url({{ x }}) } }</style>", "{{ x }}"),
        ("<style>\n.a { background: url(a.png) {{ position }} }</style><p class=a>x</p>", "{{ position }}"),
    ],
)
def test_template_code_in_a_css_url_is_an_error_unless_after_https(english, source, code):
    prepared = prepare_email_html(source)

    assert [(error.line, error.column, error.message) for error in prepared.errors] == [
        (
            *position_of(source, code),
            "Template code in a CSS url() must come after the start of a web address, such as"
            " url(https://shop.nl/{{ product.image }}); write the start of the address yourself.",
        )
    ]


def test_template_code_in_a_css_url_after_https_is_kept():
    source = (
        '<style>.a { background: url("https://cdn.nl/{{ x }}.png") {{ position }} }</style>'
        '<p class="a" style="background: url(HTTPS://cdn.nl/{{ y }})">x</p>'
    )

    prepared = prepare_fragment(source)

    assert prepared.errors == []
    assert "url(HTTPS://cdn.nl/{{ y }})" in prepared.html


def test_a_cite_with_a_script_address_is_removed(english):
    prepared = prepare_fragment('<blockquote cite="javascript:alert(1)">x</blockquote>')

    assert prepared.html == "<blockquote>x</blockquote>"
    assert [w.message for w in prepared.warnings] == [
        "The javascript: address in the cite of <blockquote> is not allowed in emails; it was removed."
    ]


@pytest.mark.parametrize(
    ("source", "opening", "message"),
    [
        (
            '<p>Hoi</p>\n<a title="{% if false %}">{% endif %}" onmouseover="alert(1)" x="</a>',
            "{% if false %}",
            "This {% if %} starts inside an attribute value and continues in the text;"
            " open and close it in the same place.",
        ),
        (
            '<p>Hoi</p>\n<img alt="{% for x in [] %}">{% endfor %}" src=x onerror="alert(1)" y="">',
            "{% for x in [] %}",
            "This {% for %} starts inside an attribute value and continues in the text;"
            " open and close it in the same place.",
        ),
        (
            '<p>Hoi</p>\n{% if a %}<p title="{% else %}">x</p>{% endif %}',
            "{% if a %}",
            "This {% if %} starts in the text and continues inside an attribute value;"
            " open and close it in the same place.",
        ),
        (
            '<p>Hoi</p>\n<a href="https://a.nl/{% with x = 1 %}" title="{% endwith %}">x</a>',
            "{% with x = 1 %}",
            "This {% with %} starts inside an attribute value and continues inside another attribute value;"
            " open and close it in the same place.",
        ),
        (
            "<style>p { color: red; }\n{% if a %}</style><p>x</p>{% endif %}",
            "{% if a %}",
            "This {% if %} starts inside the <style> and continues in the text; open and close it in the same place.",
        ),
        (
            "<title>{% if a %}</title>\n<p>x</p>{% endif %}",
            "{% if a %}",
            "This {% if %} starts inside the <title> and continues in the text; open and close it in the same place.",
        ),
    ],
)
def test_a_block_whose_statements_are_in_different_places_is_an_error(english, source, opening, message):
    prepared = prepare_email_html(source)

    assert (*position_of(source, opening), message) in [(e.line, e.column, e.message) for e in prepared.errors]


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ('<p>Hoi</p>\n<a title="{% include "block:x" %}">x</a>', "{% include"),
        ("<p>Hoi</p>\n<p class='{{ block(\"x\") }}'>x</p>", "{{ block"),
        ('<p>Hoi</p>\n<a href="{{ block("x") }}">x</a>', "{{ block"),
        ('<p>Hoi</p>\n<style>p { color: red; } {% include "block:x" %}</style>', "{% include"),
        ('<p>Hoi</p>\n<title>{% include "block:x" %}</title>', "{% include"),
    ],
)
def test_a_block_included_elsewhere_than_in_the_text_is_an_error(english, source, code):
    prepared = prepare_email_html(source)

    assert [(e.line, e.column, e.message) for e in prepared.errors] == [
        (
            *position_of(source, code),
            "A block is HTML: include it between tags, not inside an HTML tag, a <style> or the <title>.",
        )
    ]


def test_a_block_included_in_the_text_is_fine():
    source = '<table><tr><td>{% include "block:kop" %}</td></tr></table>{{ block("voet") }}'

    prepared = prepare_email_html(source)

    assert prepared.errors == []


@pytest.mark.parametrize(
    "source",
    [
        "{% if x %}<b>a</b>{% elif y %}<i>b</i>{% else %}c{% endif %}",
        '<p class="{% if vip %}gold{% else %}{{ tier }}{% endif %}">x</p>',
        '<p style="color: {% if vip %}gold{% else %}{{ brand.color }}{% endif %}">x</p>',
        "<table>{% for p in products %}<tr><td>{{ p.name }}</td></tr>{% else %}<tr><td>-</td></tr>{% endfor %}</table>",
        "<style>{% if vip %}.prijs { color: gold; }{% endif %}</style><p class='prijs'>x</p>",
        "<style>.k { color: {% if vip %}gold{% else %}red{% endif %}; }</style><p class=k>a</p><p class=k>b</p>",
        "<title>{% if vip %}Voor jou{% else %}Nieuws{% endif %}</title><p>x</p>",
        '{% with n = contact.first_name %}<p title="{{ n }}">{{ n }}</p>{% endwith %}',
    ],
)
def test_blocks_in_one_place_are_fine(source):
    prepared = prepare_email_html(source)

    assert prepared.errors == []


@pytest.mark.parametrize(
    ("source", "code", "message"),
    [
        ("<p>Hoi</p>\n{% if a %}<p>x</p>", "{% if a %}", "This {% if %} is never closed with {% endif %}."),
        (
            "<p>Hoi</p>\n{% for a in b %}<p>x</p>{% endif %}",
            "{% endif %}",
            "This {% endif %} does not belong to a block opened before it.",
        ),
        (
            "<p>Hoi</p>\n<p>x</p>{% else %}",
            "{% else %}",
            "This {% else %} does not belong to a block opened before it.",
        ),
    ],
)
def test_a_block_not_closed_is_an_error(english, source, code, message):
    prepared = prepare_email_html(source)

    assert (*position_of(source, code), message) in [(e.line, e.column, e.message) for e in prepared.errors]


@pytest.mark.parametrize(
    ("source", "prepared_body"),
    [
        ("<p>Typ &#123;&#123; contact.nope &#125;&#125;</p>", "<p>Typ &#123;{ contact.nope }}</p>"),
        ("<p>&#123;% if x %&#125; &#x7b;#c#&#x7d; &lbrace;{</p>", "<p>&#123;% if x %} &#123;#c#} &#123;{</p>"),
        ('<p title="&#123;#">#&#125;</p>', '<p title="&#123;#">#}</p>'),
        ("<p>&#123;{{ contact.first_name }}</p>", "<p>&#123;{{ contact.first_name }}</p>"),
        ('<p title="&#123;{{ x }}">y</p>', '<p title="&#123;{{ x }}">y</p>'),
        ("<p>{<span></span>{ x }}</p>", "<p>{<span></span>{ x }}</p>"),
        ("<p>{<foo></foo>{ x }}</p>", "<p>&#123;{ x }}</p>"),
        ("<p>{ <i>a</i> }</p>", "<p>{ <i>a</i> }</p>"),
        ("<title>&#123;&#123; x &#125;&#125;</title><p>y</p>", "<p>y</p>"),
    ],
)
def test_an_encoded_brace_never_becomes_template_code(source, prepared_body):
    prepared = prepare_email_html(source)

    assert prepared.errors == []
    assert prepared.html.endswith(f"<body>{prepared_body}</body></html>")


def test_an_encoded_brace_in_the_title_stays_encoded():
    prepared = prepare_email_html("<title>&#123;&#123; x &#125;&#125;</title><p>y</p>")

    assert "<title>&#123;{ x }}</title>" in prepared.html


def test_template_code_in_a_style_survives_inlined_and_in_the_kept_media_query():
    source = """<style>
.knop { background: {{ brand.color }}; }
@media (max-width: {{ layout.mobile }}px) { .knop { color: {{ brand.text }} !important; } }
</style><a class="knop" href="https://voorbeeld.nl">Bekijk</a>"""

    prepared = prepare_email_html(source)

    head, body = head_and_body(prepared.html)
    assert '<a class="knop" href="https://voorbeeld.nl" style="background: {{ brand.color }};">Bekijk</a>' in body
    assert "@media (max-width: {{ layout.mobile }}px) { .knop { color: {{ brand.text }} !important; } }" in head
    assert prepared.errors == []


def test_template_code_between_css_rules_keeps_the_style_as_written():
    source = "<style>{% if contact.vip %}.prijs { color: gold; }{% endif %}</style><p class='prijs'>10</p>"

    prepared = prepare_email_html(source)

    head, body = head_and_body(prepared.html)
    assert "<style>{% if contact.vip %}.prijs { color: gold; }{% endif %}</style>" in head
    assert '<p class="prijs">10</p>' in body
    assert prepared.errors == []


def test_a_new_tbody_goes_before_the_loop_over_rows():
    prepared = prepare_fragment("<table>{% for p in products %}<tr><td>{{ p.name }}</td></tr>{% endfor %}</table>")

    assert (
        prepared.html
        == "<table><tbody>{% for p in products %}<tr><td>{{ p.name }}</td></tr>{% endfor %}</tbody></table>"
    )


def test_the_prepared_source_compiles_and_renders():
    source = """<!DOCTYPE html><html lang="nl"><head><title>{{ campaign.subject }}</title>
<style>.prijs { color: {{ brand.color }}; }</style></head><body>
<p>Beste {{ contact.first_name | default("klant & co") }},</p>
<table>{% for product in products %}<tr><td class="prijs">{{ product.name }}</td></tr>{% endfor %}</table>
{% if contact.scores.churn > 0.5 %}<p>We missen je!</p>{% endif %}
<a href="{{ links.unsubscribe }}">Afmelden</a>
</body></html>"""
    prepared = prepare_email_html(source)

    compiled = compile_template(prepared.html, channel="email_html", version_key=("test-html", 1), blocks={})
    rendered = render(
        compiled,
        {
            "campaign": {"subject": "Aanbod <nu>"},
            "brand": {"color": "#c00"},
            "contact": {"scores": {"churn": 0.7}},
            "products": [{"name": "Fiets"}, {"name": "Step"}],
            "links": {"unsubscribe": "https://voorbeeld.nl/af?c=1&t=2"},
        },
    )

    assert "<title>Aanbod &lt;nu&gt;</title>" in rendered
    assert "<p>Beste klant &amp; co,</p>" in rendered
    assert (
        '<table><tbody><tr><td class="prijs" style="color: #c00;">Fiets</td></tr>'
        '<tr><td class="prijs" style="color: #c00;">Step</td></tr></tbody></table>'
    ) in rendered
    assert "<p>We missen je!</p>" in rendered
    assert '<a href="https://voorbeeld.nl/af?c=1&amp;t=2">Afmelden</a>' in rendered


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ('<table><tr>\n  <td {% if highlight %}class="a"{% endif %}>x</td></tr></table>', "{% if highlight %}"),
        ('<table><tr>\n  <td {% if highlight %}class="a"{% endif %}>x</td></tr></table>', "{% endif %}"),
        ("<p>Hoi</p>\n<{{ tag }}>tekst</p>", "{{ tag }}"),
        ("<p>Hoi</p>\n<p {{ attributes }}>tekst</p>", "{{ attributes }}"),
        ("<p>Hoi</p>\n<p>tekst</p {% endif %}>", "{% endif %}"),
    ],
)
def test_template_code_in_a_tag_outside_attribute_values_is_an_error(english, source, code):
    prepared = prepare_email_html(source)

    assert (*position_of(source, code), prepared.errors[0].message) in [
        (error.line, error.column, error.message) for error in prepared.errors
    ]
    assert prepared.errors[0].message == (
        "Template tags inside an HTML tag are not supported; put the {% if %} around the whole tag"
        " or inside an attribute value."
    )


def test_template_code_in_removed_html_is_an_error_not_a_silent_change(english):
    source = '<p>Hoi</p>\n<script>var naam = "{{ contact.first_name }}";</script>\n<!-- {{ contact.email }} -->'

    prepared = prepare_email_html(source)

    assert [(error.line, error.column) for error in prepared.errors] == [
        position_of(source, "{{ contact.first_name }}"),
        position_of(source, "{{ contact.email }}"),
    ]
    assert prepared.errors[0].message.startswith("This template code is inside HTML or CSS that is removed")
    assert prepared.errors[1].message.startswith("Template code inside an HTML comment is not supported")


def test_css_from_a_style_is_inlined():
    prepared = prepare_email_html('<style>p.x { color: red; }</style><p class="x">Hoi</p><p>Doei</p>')

    head, body = head_and_body(prepared.html)
    assert '<p class="x" style="color: red;">Hoi</p><p>Doei</p>' in body
    assert "color: red" not in head


def test_media_queries_and_hover_stay_in_a_style_in_the_head():
    source = """<html><head><style>
a:hover { color: blue; }
@media (max-width: 600px) { .kolom { width: 100% !important; } }
</style></head><body><table><tr><td class="kolom"><a href="https://x.nl">x</a></td></tr></table></body></html>"""

    prepared = prepare_email_html(source)

    head, body = head_and_body(prepared.html)
    assert "a:hover { color: blue; }" in head
    assert "@media (max-width: 600px) { .kolom { width: 100% !important; } }" in head
    assert '<td class="kolom">' in body


def test_dangerous_css_is_removed_and_reported(english):
    source = """<style>
@import url("https://cdn.example/x.css");
p { color: red; width: expression(alert(1)); }
td { behavior: url(x.htc); background: url("javascript:alert(1)"); padding: 2px; }
</style><p>x</p><table><tr><td style="width: expr/**/ession(alert(2))">y</td></tr></table>"""

    prepared = prepare_email_html(source)

    assert [(w.line, w.column, w.message) for w in prepared.warnings] == [
        (
            *position_of(source, "@import"),
            "The CSS @import is not allowed in emails (stylesheets are not loaded); it was removed.",
        ),
        (*position_of(source, "width: expression"), "The CSS expression() is not allowed in emails; it was removed."),
        (*position_of(source, "behavior"), "The CSS behavior property is not allowed in emails; it was removed."),
        (
            *position_of(source, "background"),
            "A javascript: address in CSS is not allowed in emails; it was removed.",
        ),
        (*position_of(source, 'style="'), "The CSS expression() is not allowed in emails; it was removed."),
    ]
    for text in ("@import", "cdn.example", "expr", "behavior", "javascript", "alert"):
        assert text not in prepared.html
    assert '<p style="color: red;">x</p>' in prepared.html
    assert '<td style="padding: 2px;">y</td>' in prepared.html


def test_a_style_cannot_be_ended_early():
    prepared = prepare_email_html("<style>p { color: red }</style x><script>alert(1)</script></style><p>x</p>")

    assert prepared.warnings
    assert "<script" not in prepared.html
    assert "alert" not in prepared.html


STYLESHEET_SERVER = """
import http.server

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print(self.path, flush=True)
        body = b"p { color: red; }"
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.fixture
def stylesheet_server(monkeypatch):
    """A loopback HTTP server in its own process (css-inline holds the GIL while it fetches),
    printing the path of every request it gets."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "*")
    server = subprocess.Popen([sys.executable, "-c", STYLESHEET_SERVER], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())

    def requests() -> list[str]:
        server.terminate()
        output, _ = server.communicate(timeout=10)
        return output.split()

    yield port, requests
    if server.poll() is None:
        server.kill()
        server.wait()


def test_a_remote_stylesheet_is_never_fetched(stylesheet_server):
    port, requests = stylesheet_server
    source = f"""<html><head>
<link rel="stylesheet" href="http://127.0.0.1:{port}/link.css">
<style>@import url("http://127.0.0.1:{port}/import.css"); p {{ font-weight: bold; }}</style>
</head><body><p>Hoi</p><link rel="stylesheet" href="http://127.0.0.1:{port}/body-link.css"></body></html>"""
    # The server does see a fetch: css-inline with its defaults loads both links (the control).
    assert "color: red" in css_inline.inline(source.replace("/body-link.css", "/control.css"))

    prepared = prepare_email_html(source)

    assert sorted(requests()) == ["/control.css", "/link.css"]
    assert '<p style="font-weight: bold;">Hoi</p>' in prepared.html
    assert "127.0.0.1" not in prepared.html


def test_body_content_becomes_a_full_document():
    prepared = prepare_email_html("<p>Hoi {{ contact.first_name }}</p>")

    assert prepared.html == DOCUMENT_START + "<body><p>Hoi {{ contact.first_name }}</p></body></html>"


def test_a_full_document_keeps_its_language_title_and_body_style():
    source = """<!DOCTYPE html>
<html lang="nl" xmlns="http://www.w3.org/1999/xhtml">
<head><meta charset="utf-8"><title>Nieuws voor {{ contact.first_name }} &amp; co</title>
<style>body { background: #eeeeee; }</style></head>
<body bgcolor="#eeeeee" style="margin: 0">
<p>Hoi</p>
</body>
</html>"""

    prepared = prepare_email_html(source)

    assert prepared.html == (
        '<!DOCTYPE html><html lang="nl"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Nieuws voor {{ contact.first_name }} &amp; co</title></head>"
        '<body bgcolor="#eeeeee" style="background: #eeeeee;margin: 0"><p>Hoi</p></body></html>'
    )
    assert prepared.warnings == []


def test_a_fragment_has_no_document_shell():
    source = """<style>
.prijs { color: red; }
@media (max-width: 600px) { .prijs { font-size: 20px !important; } }
</style>
<p class="prijs">{{ product.price }}</p>"""

    prepared = prepare_fragment(source)

    assert prepared.html == (
        "<style>@media (max-width: 600px) { .prijs { font-size: 20px !important; } }</style>"
        '<p class="prijs" style="color: red;">{{ product.price }}</p>'
    )


def test_the_preheader_is_escaped_and_first_in_the_body():
    html = '<!DOCTYPE html><html><head><title>x</title></head><body class="a>b"><p>Hoi</p></body></html>'

    with_preview = with_preheader(html, "Nu 20% korting <b>& gratis verzending")

    body_tag = '<body class="a>b">'
    hidden = with_preview[with_preview.index(body_tag) + len(body_tag) :]
    assert hidden.startswith(
        '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all;">'
        "Nu 20% korting &lt;b&gt;&amp; gratis verzending&#847;&zwnj;&nbsp;&#847;&zwnj;&nbsp;"
    )
    assert hidden.endswith("&#847;&zwnj;&nbsp;</div><p>Hoi</p></body></html>")
    assert "<b>" not in with_preview


@pytest.mark.parametrize("preheader", ["", "   "])
def test_an_empty_preheader_leaves_the_html_as_it_is(preheader):
    html = "<!DOCTYPE html><html><head></head><body><p>Hoi</p></body></html>"

    assert with_preheader(html, preheader) is html


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("<h1>Welkom</h1><p>Eerste alinea.</p><p>Tweede.</p>", "Welkom\n\nEerste alinea.\n\nTweede."),
        ("<p>Regel een<br>regel twee</p>", "Regel een\nregel twee"),
        ("<p>Lijst:</p><ul><li>Fiets</li><li>Step</li></ul>", "Lijst:\n\n- Fiets\n- Step"),
        ('<p><a href="https://x">Bekijk</a></p>', "Bekijk (https://x)"),
        ('<p>Zie <a href="https://voorbeeld.nl">https://voorbeeld.nl</a>.</p>', "Zie https://voorbeeld.nl."),
        ('<a href="https://voorbeeld.nl"><img src="logo.png" alt="Logo"></a>', "Logo (https://voorbeeld.nl)"),
        ('<p><img src="fiets.png" alt="Een rode fiets"></p>', "Een rode fiets"),
        ("<p>Prijs&nbsp;&euro;&nbsp;10 &amp; gratis &lt;verzending&gt;</p>", "Prijs € 10 & gratis <verzending>"),
        (
            "<html><head><title>Titel</title><style>p { color: red; }</style></head>"
            "<body><script>alert(1)</script><p>Hoi</p></body></html>",
            "Hoi",
        ),
        ("<p>  veel    spaties\n   en\tregels </p>\n\n\n\n<div>b</div>", "veel spaties en regels\n\nb"),
        ("<table><tr><td>A</td><td>B</td></tr><tr><td>C</td></tr></table>", "A B\nC"),
        (
            '<p>Hoi {{ contact.first_name | default("klant & co") }}</p>'
            "<ul>{% for p in products %}<li>{{ p.name }}</li>{% endfor %}</ul>"
            '<p><a href="{{ links.unsubscribe }}">Afmelden</a></p>',
            'Hoi {{ contact.first_name | default("klant & co") }}\n\n'
            "{% for p in products %}\n- {{ p.name }}\n{% endfor %}\n\n"
            "Afmelden ({{ links.unsubscribe }})",
        ),
        ("<head><style>{% if x %}p {}{% endif %}</style></head><p>Hoi</p>", "{% if x %}{% endif %}\n\nHoi"),
    ],
)
def test_html_to_text(source, text):
    assert html_to_text(source) == text


def test_plain_text_from_template_code_renders():
    text = html_to_text("<ul>{% for p in products %}<li>{{ p.name }}</li>{% endfor %}</ul>")

    rendered = jinja2.Environment(autoescape=False).from_string(text).render(products=[{"name": "Fiets"}])  # noqa: S701

    assert re.sub(r"\s+", " ", rendered).strip() == "- Fiets"


DEEPER = (
    "The HTML is nested more than 200 elements deep here; close the elements you open"
    " (every <div>, <table>, <b>...) or nest them less deeply."
)
BIGGER = "The HTML has more than 20,000 elements; an email this big cannot be checked."
NEVER_CLOSED = (
    "This tag or comment is never closed (with > or -->), so the HTML after it cannot be read;"
    " close it, or write &lt; for a < in text."
)


@pytest.mark.parametrize(
    ("html", "column", "message"),
    [
        ("<div>" * (MAX_DEPTH + 1), 5 * MAX_DEPTH + 1, DEEPER),
        ("<table><tr><td>" * 70, 15 * 50 + 1, DEEPER),  # each table gets a <tbody> too
        ("<b><div>x</b>" * MAX_DEPTH, 13 * 100 + 1, DEEPER),  # html5ever keeps the <div> open in a copy of the <b>
        # Each <b> is closed with its <p>, and html5ever opens all of them again in the next <p>.
        ("".join(f"<p><b class=k{n}>x</p>" for n in range(MAX_DEPTH)), 4_250, BIGGER),
        ("<span>x</span>" * MAX_ELEMENTS, 14 * (MAX_ELEMENTS - 1) + 1, BIGGER),  # and the <p> on line 1
        ("<p>x</p><!-- never closed <b>x</b>", 9, NEVER_CLOSED),
        ("<p>x</p>" + "</" * 1000, 9, NEVER_CLOSED),
        ("<p>x</p><a title='x>y</a><p>z</p>", 9, NEVER_CLOSED),
        ("<p>x</p><![<![ y", 12, "The HTML cannot be read from here on; check the tag or comment that starts here."),
        ("<style>" + "a{" * 21 + "</style>", 8, "The CSS is nested more than 20 blocks deep; it cannot be read."),
        ('<p style="' + "a{" * 21 + '">x</p>', 4, "The CSS is nested more than 20 blocks deep; it cannot be read."),
        (
            "<style>" + "p { color: red; }" * 1001 + "</style>",
            8,
            "The style sheets have more than 1,000 rules; an email this big cannot be checked.",
        ),
        ("<p " + " ".join(f"a{n}=1" for n in range(201)) + ">x</p>", 1, "This tag has more than 200 attributes."),
    ],
)
def test_html_that_would_take_long_to_clean_is_refused_before_nh3(english, html, column, message):
    prepared = prepare_email_html(f"{LINE_1}\n{html}")

    assert prepared.html == ""
    assert [(e.line, e.column, e.message) for e in prepared.errors] == [(2, column, message)]


@pytest.mark.parametrize(
    "source",
    [
        "<table>" + "<tr><td>a<td>b<td><p>c" * 500 + "</table>",
        "<ul>" + "<li>punt <b>vet</b>" * 500 + "</ul>",
        "<p>a" * 1000,
        "<dl>" + "<dt>a<dd>b" * 500 + "</dl>",
        "<p><b>vet" + "<p>nog vet" * 300,
        "<font face=Arial>" + "<p>a</p><div>b</div>" * 500 + "</font>",
        "<table><tr><td><ul><li>a</td></tr></table>" * 300,
        "<table><tr><td>a</td></tr>" * 300 + "</table>",  # a table right in a table ends it
    ],
)
def test_sloppy_html_that_html5ever_nests_shallowly_is_not_refused(source):
    prepared = prepare_fragment(source)

    assert prepared.errors == []


def test_deeply_nested_html_is_refused_quickly():
    for source in ("<div>" * 100_000, "<!--" * 125_000, "</" * 250_000, "<a " * 166_666):
        started = time.monotonic()

        prepared = prepare_email_html(source)
        html_to_text(source)

        assert prepared.errors
        assert time.monotonic() - started < 2


def test_a_lt_right_before_template_code_in_a_style_is_an_error(english):
    source = "<style>p { color: red }\n<{% if false %}{% endif %}/style><img src=x onerror=alert(1)></style><p>x</p>"

    prepared = prepare_email_html(source)

    assert [(e.line, e.column, e.message) for e in prepared.errors] == [
        (
            *position_of(source, "{% if false %}"),
            "A < right before template code in a <style> could end the style; put a space between them.",
        )
    ]


@pytest.mark.parametrize(
    ("source", "text"),
    [
        (
            "<p>Typ &#123;&#123; x &#125;&#125; of &#123;% y %&#125; of &#123;#</p>",
            'Typ {{ "{" }}{ x }} of {{ "{" }}% y %} of {{ "{" }}#',
        ),
        ("<p>&#123;{{ contact.first_name }}</p>", '{{ "{" }}{{ contact.first_name }}'),
        (
            "<p>a</p><svg><text>x</text><svg></svg>y</svg><textarea>z</textarea><select><option>o</select><p>b</p>",
            "a\n\nb",
        ),
    ],
)
def test_html_to_text_prints_literal_braces_and_drops_what_nh3_removes(source, text):
    assert html_to_text(source) == text
    assert html_to_text(prepare_fragment(source).html) == text


def test_html_to_text_of_the_prepared_html():
    source = """<!DOCTYPE html><html lang="nl"><head><title>Nieuws {{ campaign.subject }}</title>
<style>p { color: red } @media (max-width: 600px) { p { color: blue } }</style></head>
<body><p>Hoi &#123;&#123;</p><script>alert(1)</script><a href="{{ links.unsubscribe }}">Afmelden</a>
<a href="{{ product.url }}?utm_source=mail">Bekijk</a></body></html>"""

    text = html_to_text(prepare_email_html(source).html)

    assert text == (
        'Hoi {{ "{" }}{\n\nAfmelden ({{ (links.unsubscribe) | safe_url }}) '
        "Bekijk ({{ (product.url) | safe_url }}?utm_source=mail)"
    )
