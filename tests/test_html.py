"""Email HTML prepared once per version (content/html.py): CSS inlined, unsafe HTML removed and
reported where the marketeer wrote it, template code kept byte for byte."""

import re
import subprocess
import sys

import css_inline
import jinja2
import pytest

from content.html import html_to_text, prepare_email_html, prepare_fragment, with_preheader

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
        '<a href="{{ links.unsubscribe }}">Afmelden</a>',
        '<img src="{{ products[0].image_url }}" alt="Product">',
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
    environment = jinja2.Environment(autoescape=True)

    environment.parse(prepared.html)
    rendered = environment.from_string(prepared.html).render(
        campaign={"subject": "Aanbod <nu>"},
        brand={"color": "#c00"},
        contact={"scores": {"churn": 0.7}},
        products=[{"name": "Fiets"}, {"name": "Step"}],
        links={"unsubscribe": "https://voorbeeld.nl/af?c=1&t=2"},
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
