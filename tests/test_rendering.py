"""The content rendering engine: Dutch filters, blocks, escaping, the sandbox, limits, checks and the cache."""

import datetime as dt
from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone, translation

from content.rendering import render as rendering
from content.rendering.checks import check_template
from content.rendering.context import SCHEMA, describe, sample_context
from content.rendering.errors import RenderError, RenderLimitError, TemplateSecurityError, TemplateSourceError
from content.rendering.filters import currency, date, number
from content.rendering.render import compile_template, render

BLOCKS = {
    "footer": '<p><a href="{{ links.unsubscribe }}">Afmelden</a></p>{% include "block:legal" %}',
    "legal": "<small>Dialoog B.V., {{ campaign.name }}</small>",
    "ping": '{% include "block:pong" %}',
    "pong": '{{ block("ping") }}',
    "self": '{% include "block:self" %}',
    "draft": "concept",
}
PUBLISHED = {"footer", "legal", "ping", "pong", "self"}


@pytest.fixture(autouse=True)
def english():
    rendering.clear_cache()
    with translation.override("en"):
        yield


def run(source, context=None, *, channel="email_html", blocks=BLOCKS):
    compiled = compile_template(source, channel=channel, version_key=("test", source), blocks=blocks)
    return render(compiled, sample_context() if context is None else context)


def check(source, **kwargs):
    return check_template(
        source, channel=kwargs.pop("channel", "email_html"), blocks=BLOCKS, published=PUBLISHED, **kwargs
    )


# --- Dutch filters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1234.56"), "€ 1.234,56"),
        (Decimal("1234567.891"), "€ 1.234.567,89"),
        (Decimal("0.005"), "€ 0,01"),
        (Decimal("-1234.5"), "€ -1.234,50"),
        (Decimal("-0.001"), "€ 0,00"),
        (12, "€ 12,00"),
        (19.99, "€ 19,99"),
        ("49.95", "€ 49,95"),
        (None, ""),
        ("", ""),
        ("n.v.t.", "n.v.t."),
        (Decimal("1e40"), "1E+40"),
    ],
)
def test_currency(value, expected):
    assert currency(value) == expected


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [
        (1234567, None, "1.234.567"),
        (Decimal("1234.5"), None, "1.234,5"),
        (Decimal("0.125"), 2, "0,13"),
        (-9876.5, 0, "-9.877"),
        (None, None, ""),
        ("abc", None, "abc"),
    ],
)
def test_number(value, decimals, expected):
    assert number(value, decimals) == expected


@pytest.mark.parametrize(
    ("value", "format_name", "expected"),
    [
        (dt.date(2026, 11, 22), "long", "22 november 2026"),
        (dt.date(2026, 11, 22), "short", "22-11-2026"),
        (dt.date(2026, 11, 22), "full", "zondag 22 november 2026"),
        (dt.date(2026, 3, 1), "month", "maart 2026"),
        ("2026-11-22", "long", "22 november 2026"),
        (dt.datetime(2026, 11, 22, 13, 30, tzinfo=dt.UTC), "datetime", "22 november 2026 14:30"),
        (dt.datetime(2026, 11, 22, 13, 30, tzinfo=dt.UTC), "time", "14:30"),
        (None, "long", ""),
        ("morgen", "long", "morgen"),
    ],
)
def test_date(value, format_name, expected):
    with timezone.override("Europe/Amsterdam"):
        assert date(value, format_name) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ offer.price | currency }}", "€ 974,25"),
        ("{{ offer.valid_until | date }}", "22 november 2026"),
        ('{{ offer.valid_until | date("short") }}', "22-11-2026"),
        ("{{ contact.scores.lifetime_value | number(0) }}", "1.841"),
        ('{{ contact.first_name | default("klant") }}', "Sanne"),
        ('{{ contact.nickname | default("klant") }}', "klant"),
        ('{{ contact.attributes.shoe_size | default("onbekend") }}', "onbekend"),
        ("[{{ contact.attributes.missing.deeper }}]", "[]"),
        ("[{{ offer.price | currency if offer.nothing else 'geen' }}]", "[geen]"),
        ("{{ contact.first_name | upper }} {{ contact.last_name | title }}", "SANNE De Vries"),
        (
            "{{ products | map(attribute='name') | join(', ') }}",
            "Tuinset Lissabon, Loungekussen Terra, Parasol Capri 3 m",
        ),
        (
            "{{ products | selectattr('category', 'equalto', 'textiel') | map(attribute='name') | first }}",
            "Loungekussen Terra",
        ),
        ("{{ products | length }} {{ (products | first).name | truncate(9, end='…') }}", "3 Tuinset…"),
        (
            "{{ '  x  ' | trim }}|{{ 'a b' | replace('b', 'c') }}|{{ 3.456 | round(1) }}|{{ '7' | int + 1 }}",
            "x|a c|3.5|8",
        ),
        ("{% for p in products %}{{ loop.index }}{{ loop.cycle('a', 'b') }}{% endfor %}", "1a2b3a"),
        ("{% for key, value in contact.scores.items() %}{{ key }};{% endfor %}", "churn;lifetime_value;"),
        ("{{ contact.first_name.upper() }} {{ '<b>' | striptags }}", "SANNE "),
        ('Hallo {{ "beste " ~ contact.first_name }}', "Hallo beste Sanne"),
    ],
)
def test_template_filters_and_fallbacks(source, expected):
    assert run(source, channel="sms") == expected


def test_missing_contact_renders_with_fallbacks():
    source = 'Beste {{ contact.first_name | default("klant") }}, {{ offer.price | currency }}'
    source += "{{ contact.scores.churn > 0.5 }}"
    assert run(source, {"contact": {}}, channel="sms") == "Beste klant, False"


# --- Blocks ----------------------------------------------------------------------------------


def test_blocks_are_included_by_slug_both_ways():
    html = run('{% include "block:footer" %}|{{ block("legal") }}')
    assert html == (
        '<p><a href="https://mail.example.nl/afmelden/3f9a2c">Afmelden</a></p>'
        "<small>Dialoog B.V., Najaarsactie tuinmeubelen</small>|<small>Dialoog B.V., Najaarsactie tuinmeubelen</small>"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('{% include "block:ping" %}', "Block “ping” includes itself: ping → pong → ping."),
        ('{{ block("self") }}', "Block “self” includes itself: self → self."),
        ('{% include "block:nope" %}', "Block “nope” does not exist."),
    ],
)
def test_compiling_refuses_block_cycles_and_missing_blocks(source, message):
    with pytest.raises(TemplateSourceError) as error:
        compile_template(source, channel="email_html", version_key=source, blocks=BLOCKS)
    assert error.value.problems[0].message == message


def test_block_depth_is_capped_at_render_time_too():
    state_blocks = {f"b{i}": f'{{% include "block:b{i + 1}" %}}' for i in range(12)} | {"b12": "end"}
    with pytest.raises(TemplateSourceError, match="nested more than 10 deep"):
        compile_template('{% include "block:b0" %}', channel="sms", version_key="deep", blocks=state_blocks)


# --- Escaping --------------------------------------------------------------------------------


def test_contact_data_is_escaped_in_html_and_not_in_sms():
    context = sample_context()
    context["contact"]["first_name"] = "<script>alert(1)</script>"
    source = "Hallo {{ contact.first_name }} {{ 'x' ~ contact.first_name }}"
    assert run(source, context) == (
        "Hallo &lt;script&gt;alert(1)&lt;/script&gt; x&lt;script&gt;alert(1)&lt;/script&gt;"
    )
    assert run(source, context, channel="sms") == "Hallo <script>alert(1)</script> x<script>alert(1)</script>"


def test_block_output_is_not_escaped_twice():
    assert run('{{ block("legal") }}').startswith("<small>")


@pytest.mark.parametrize(
    "source",
    [
        '{{ block("legal") | replace("small", "script") }}',
        '{{ block("legal")[0:1] ~ "svg onload=alert(1)>" }}',
        '{{ (block("legal") | e) | replace("small", "script") }}',
        '{{ block("legal") if true else "" }}',
        '{% set f = block %}{{ f("legal") }}',
    ],
)
def test_a_blocks_html_cannot_be_reshaped_into_markup_of_the_templates_making(english, source):
    message = "A block is printed on its own"

    assert any(message in problem.message for problem in check(source))
    with pytest.raises(TemplateSourceError, match=message):
        run(source)


# --- The sandbox -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ contact.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ contact['__class__'] }}",
        "{{ products.__len__() }}",
        "{{ range.__call__ }}",
        "{{ 'x'.format(1) }}",
        "{{ '{0.__class__}'.format(contact) }}",
        "{{ '%s' % contact }}",
        "{{ contact.attributes.clear() }}",
        "{{ products.append(1) }}",
        "{{ offer.valid_until.replace(year=1) }}",
    ],
)
def test_the_sandbox_refuses_reaching_outside_the_context(source):
    with pytest.raises(TemplateSecurityError):
        run(source)
    assert check(source)


@pytest.mark.parametrize(
    "source",
    [
        "{{ settings }}{{ settings.SECRET_KEY }}",
        "{{ os }}{{ open }}{{ request }}{{ config }}",
        "{{ lipsum }}{{ cycler }}{{ joiner }}{{ namespace }}{{ dict }}",
        "{{ range }}{{ 'x'.upper }}",
        "{{ Contact.objects.all() }}",
    ],
)
def test_names_outside_the_context_are_undefined_and_render_nothing(source):
    assert run(source) == ""


def test_the_shared_context_is_not_modified():
    context = sample_context()
    with pytest.raises(TemplateSecurityError):
        run("{{ contact.attributes.update({'city': 'x'}) }}", context)
    assert context["contact"]["attributes"]["city"] == "Utrecht"


# --- Limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{% for i in range(10**9) %}x{% endfor %}", "range() gives at most 1,000 numbers"),
        (
            "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}"
            "{% endfor %}",
            "loops ran more than 100,000 times",
        ),
        ("{% for i in range(1000) %}{% for j in range(1000) %}{{ 'y' * 100 }}{% endfor %}{% endfor %}", "longer than"),
        ("{% for c in 'x' * 5000 %}{% endfor %}", "at most 1,000 items"),
        ("{{ 'a' * 10**9 }}", "grew past"),
        ("{{ 10**100000 }}", "too big"),
        ("{% set a = 'x' * 600000 %}{{ a ~ a }}", "grew past"),
        ("{% set a = 'x' * 600000 %}{{ a + a }}", "grew past"),
        ("{{ ('a' * 100000) | replace('a', 'bbbbbbbbbbbb') }}", "grew past"),
        ("{{ range(1000) | join('-' * 10000) }}", "grew past"),
        ("{{ range(10) | batch(10**6, 'x') | list }}", "batch() takes 1 to 1,000"),
        ("{{ [[1]] | sum(start=[]) }}", "sum() adds numbers only"),
    ],
)
def test_render_limits_stop_runaway_templates(source, message):
    with pytest.raises(RenderLimitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(source, channel="sms")


def test_render_time_is_capped(monkeypatch):
    monkeypatch.setattr("content.rendering.environment.MAX_RENDER_SECONDS", 0.0)
    with pytest.raises(RenderLimitError, match="took longer"):
        run("{% for p in products %}{{ p.name }}{% endfor %}")


def test_errors_of_the_templates_making_are_render_errors():
    with pytest.raises(RenderError, match="ZeroDivisionError"):
        run("{{ 1 / 0 }}")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x" * (5 * 1024 * 1024), "5,242,880 characters long; the limit is 500,000"),
        (b"Hallo \xff\xfe", "not valid UTF-8: byte 0xff"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "{% macro %} is not available"),
        ("{% set x %}{% for i in range(1000) %}y{% endfor %}{% endset %}", "{% set %} is not available"),
        ('{% extends "base.html" %}', "{% extends %} is not available"),
        ('{% include "/etc/passwd" %}', "Only blocks can be included"),
        ("{% autoescape false %}{{ contact.first_name }}{% endautoescape %}", "{% autoescape %} is not available"),
        ("{% for x in products recursive %}{{ loop(x) }}{% endfor %}", "Recursive loops"),
        ("{{ contact.first_name | center(10**9) }}", "No filter named 'center'"),
    ],
)
def test_compiling_refuses_bad_sources(source, message):
    with pytest.raises(TemplateSourceError) as error:
        compile_template(source, channel="email_html", version_key="bad", blocks=BLOCKS)
    assert message in str(error.value)


def test_a_source_must_be_text():
    with pytest.raises(TypeError):
        compile_template(12, channel="sms", version_key="x")


# --- Checks at save time ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hallo\n  {{ contact.first_name }\n", [(2, 25, "Syntax error: unexpected '}'")]),
        ("{% for %}", [(1, 8, "Syntax error: Expected an expression, got 'end of statement block'")]),
        (
            "Hallo {{ contact.first_nam }}",
            [(1, 10, "Unknown variable contact.first_nam (did you mean contact.first_name?).")],
        ),
        ("{{ contat.first_name }}", [(1, 4, "Unknown variable contat (did you mean contact?).")]),
        (
            "{% for p in products %}\n{{ p.nmae }}{% endfor %}",
            [(2, 4, "Unknown variable p.nmae (did you mean p.name?).")],
        ),
        ("{{ offer.prise | currency }}", [(1, 4, "Unknown variable offer.prise (did you mean offer.price?).")]),
        ("{{ contact.first_name | uper }}", [(1, 25, "Unknown filter “uper” (did you mean upper?).")]),
        ("{% if offer is defind %}{% endif %}", [(1, 16, "Unknown test “defind” (did you mean defined?).")]),
        (
            "{{ offer.valid_until | date('kort') }}",
            [(1, 24, "Unknown date format “kort”; use one of long, short, full, month, datetime, time.")],
        ),
        ("{{ products.name }}", [(1, 4, "products is a list: loop over it, or take one item with [0].")]),
        (
            "{% for i in range(10**9) %}{% endfor %}",
            [(1, 13, "range() gives at most 1,000 numbers; this one gives 1,000,000,000.")],
        ),
        ('{% include "block:fotter" %}', [(1, 19, "Block “fotter” does not exist (did you mean footer?).")]),
        ('{{ block("draft") }}', [(1, 11, "Block “draft” is not published.")]),
        ('x\n{% include "block:ping" %}', [(2, 19, "Block “ping” includes itself: ping → pong → ping.")]),
        (
            "{{ ''.__class__ }}",
            [(1, 7, "“__class__” is not available in templates; they can read their context only.")],
        ),
        ("{{ contact.items.x }}", [(1, 4, "Unknown variable contact.items.")]),
        (
            "{{ 'x'.format(1) }}",
            [(1, 8, "Only range(), block() and a few text methods such as upper() can be called in templates.")],
        ),
        (b"ok\n\xc3\x28", [(2, 1, "The template is not valid UTF-8: byte 0xc3 cannot be read.")]),
    ],
)
def test_check_template_reports_each_problem_with_line_and_column(source, expected):
    assert [(p.line, p.column, p.message) for p in check(source)] == expected


@pytest.mark.parametrize(
    "source",
    [
        '{{ contact.first_name | default("klant") }} {{ contact.attributes.anything.at_all }}',
        "{% for p in products | selectattr('category', 'equalto', 'tuin') %}{{ p.name }}{{ loop.last }}{% endfor %}",
        "{% set top = products | first %}{{ top.price | currency }} {{ offer.valid_until.year }}",
        '{% include "block:footer" %}{{ block("legal") }}{{ links.view_in_browser }}{{ campaign.name }}',
        "{% for key, value in contact.attributes.items() %}{{ key }}={{ value }}{% endfor %}",
        "{% with n = contact.scores.churn * 100 %}{{ n | round }}{% endwith %}{{ contact.locale | upper }}",
    ],
)
def test_check_template_accepts_good_templates(source):
    assert check(source) == []


def test_check_sees_a_cycle_through_the_block_being_saved():
    problems = check_template(
        '{% include "block:footer" %}', channel="sms", blocks=BLOCKS, published=PUBLISHED, slug="legal"
    )
    assert [p.message for p in problems] == ["Block “legal” includes itself: legal → footer → legal."]


@pytest.mark.parametrize("size", [5 * 1024 * 1024])
def test_check_refuses_a_huge_body(size):
    assert [p.message for p in check("x" * size)] == [
        f"The template is {size:,} characters long; the limit is 500,000."
    ]


def test_check_reports_deep_nesting_and_giant_numbers_without_crashing():
    assert check("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}")[0].message == "The template is nested too deeply."
    assert check("{{ " + "9" * 5000 + " }}")[0].message.startswith("The template cannot be read")


# --- The context and the cache ---------------------------------------------------------------


def test_the_schema_describes_every_name():
    names = {path: (kind, description) for path, kind, description in describe()}
    assert names["contact.first_name"][0] == "text"
    assert names["contact.attributes.*"][0] == "any"
    assert names["contact.scores.*"][0] == "number"
    assert names["products[].price"][0] == "money"
    assert names["recommendations[].bought_with"][0] == "text"
    assert set(SCHEMA.fields) == {"contact", "recommendations", "products", "offer", "campaign", "links"}
    assert all(description for description in (d for _, d in names.values()))


def test_the_sample_context_renders_a_whole_email_without_problems():
    source = (
        '<p>Beste {{ contact.first_name | default("klant") }},</p>'
        '{% for p in products %}<a href="{{ p.url }}">{{ p.name }}: {{ p.price | currency }}</a>{% endfor %}'
        "<p>{{ offer.name }} met code {{ offer.code }}, geldig tot {{ offer.valid_until | date }}.</p>"
        '{% include "block:footer" %}'
    )
    assert check(source) == []
    html = run(source)
    assert "Beste Sanne" in html and "€ 1.299,00" in html and "22 november 2026" in html and "Afmelden" in html


def test_compiling_is_cached_per_version_key():
    with mock.patch.object(rendering, "build_template", wraps=rendering.build_template) as build:
        first = compile_template("Hallo {{ contact.first_name }}", channel="sms", version_key=("t", 1, 1))
        second = compile_template("Hallo {{ contact.first_name }}", channel="sms", version_key=("t", 1, 1))
        assert first is second
        assert build.call_count == 1
        compile_template("Dag {{ contact.first_name }}", channel="sms", version_key=("t", 1, 2))
        assert build.call_count == 2
        stale = compile_template("Hoi {{ contact.first_name }}", channel="sms", version_key=("t", 1, 1))
        assert build.call_count == 3  # same key, changed source: compiled again, never served stale
    assert render(stale, sample_context()) == "Hoi Sanne"


def test_a_changed_block_is_picked_up_under_the_same_version_key():
    compiled = compile_template('{{ block("legal") }}', channel="sms", version_key="k", blocks=BLOCKS)
    assert "Dialoog" in render(compiled, sample_context())
    changed = compile_template('{{ block("legal") }}', channel="sms", version_key="k", blocks={"legal": "Nieuw"})
    assert render(changed, sample_context()) == "Nieuw"
