"""Email HTML prepared once per saved version: CSS inlined, unsafe HTML removed, template code kept.

Marketeers write email templates and content blocks as Jinja sources. When a version is saved,
`prepare_email_html` (a whole email) or `prepare_fragment` (a block included into emails) turns
the source into the Jinja source that is compiled and rendered for every message:

1. every Jinja construct (`{{ }}`, `{% %}`, `{# #}`) is replaced by a placeholder;
2. the protected source is scanned with `html.parser`: everything the next steps will remove is
   reported with its line and column in the marketeer's source, and the document is taken apart
   (title, language, `<style>` sheets, the `<body>` tag's attributes, the body);
3. the CSS is sanitised and inlined with css-inline; rules it cannot inline (media queries,
   `:hover`) stay in a `<style>`; nothing is ever fetched;
4. the body is sanitised with nh3 (Ammonia) against an allowlist for email;
5. the placeholders are replaced by the template code they stand for, byte for byte (except
   `| safe_url` added to a variable an address starts with, see below).

The messages rendered from the prepared source are not sanitised again (10,000 a second), so it
must be safe whatever the context holds and whichever way its `{% if %}`s go:

- a block's statements (`{% if %}`, `{% else %}`, `{% endif %}`) must all be in the same place of
  the prepared HTML: in the text, or in one attribute value, or in the <style> or <title>;
  leaving out what lies between them may not end an attribute value or a tag;
- a `{` that would start template code with what follows it (`&#123;&#123; x &#125;&#125;`, which
  html.parser and nh3 decode to `{{ x }}`) is written `&#123;`, and the template code of the
  prepared source is checked to be exactly the protected code;
- template code in an address (`href`, `src`, `cite`) may come after text that holds the whole
  scheme (`https://shop.nl/{{ x }}`) or starts a relative address (`/`, `?`, `#`, `.`); an address
  that starts with one variable gets `| safe_url` (no `javascript:` from contact data), and after
  it only `/`, `?`, `#` or `&` may follow; anything else is an error, as is template code in a CSS
  `url()` that does not come after `https://`, and a `<` right before template code in a <style>;
- HTML that would keep html5ever busy for long (nesting past `MAX_DEPTH`, more than
  `MAX_ELEMENTS` elements, a tag or comment never closed before more markup, which html.parser
  reads in quadratic time) is refused before css-inline and nh3 see it.

Why placeholders: css-inline and nh3 both parse with html5ever, which would rewrite template
code: text between table rows (`{% for %}`) is moved in front of the table, the `"` in
`{{ x | default("a") }}` ends an attribute value, the `<` in `{% if a < b %}` is escaped. A
placeholder is `j<nonce>x<n>x`: letters and digits, which html5ever keeps as they are in
attribute values (a relative URL at the start of `href`, not a scheme) and CSS. In text it is
wrapped in an HTML comment (`<!--j<nonce>x<n>x-->`), because comments stay where they are
inside tables. The nonce is random, so a marketeer cannot type (or encode) a placeholder.
Template code that would not survive (in an attribute name, in HTML that is removed) is an
error: the version is refused rather than saved with other template code than was written.

The marketeer's HTML comments are dropped (Outlook's conditional comments with a warning);
rows written straight into a <table> get their <tbody> before any template code in front of
them, so that a `{% for %}` around rows does not repeat the <tbody>.

`with_preheader` puts the preview line into a rendered message; `html_to_text` derives a
plain-text body (a Jinja text source) from the prepared HTML.
"""

from __future__ import annotations

import bisect
import html
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from html.parser import HTMLParser
from typing import Any

import css_inline
import nh3
from django.utils.translation import gettext as _

from content.rendering.errors import Problem

URL_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
# No data: URLs, not even data:image/... in <img src>: Gmail and Outlook do not show them,
# a data:image/svg+xml opened on its own runs its scripts, and an image belongs on a URL.

EMAIL_TAGS = frozenset(
    nh3.ALLOWED_TAGS
    | {"address", "caption", "center", "col", "colgroup", "div", "font", "section", "span"}
    | {"table", "tbody", "td", "tfoot", "th", "thead", "tr"}
)
# Removed with everything inside them; any other tag outside EMAIL_TAGS is removed, its text kept.
REMOVED_WITH_CONTENT = frozenset(
    {"applet", "embed", "frame", "frameset", "iframe", "math", "noembed", "noframes", "noscript", "object"}
    | {"plaintext", "script", "select", "style", "svg", "template", "textarea", "title", "xmp"}
)
VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "keygen", "link", "meta", "param", "source"}
    | {"track", "wbr"}
)
# Outside a <table>, html5ever drops these tags (their text stays).
TABLE_PARTS = frozenset({"caption", "col", "colgroup", "tbody", "td", "tfoot", "th", "thead", "tr"})
# `class` so that kept media queries still apply; presentational attributes because email
# clients (Outlook above all) still lay out with them.
GENERIC_ATTRIBUTES = frozenset({"class", "dir", "lang", "role", "style", "title"})
GENERIC_ATTRIBUTE_PREFIXES = frozenset({"aria-"})
CELL = {"width", "height", "align", "valign", "bgcolor", "colspan", "rowspan", "nowrap"}
EXTRA_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title", "target", "name"},
    "img": {"src", "alt", "width", "height", "border", "align", "hspace", "vspace"},
    "table": {"width", "height", "align", "bgcolor", "border", "cellpadding", "cellspacing"},
    "td": CELL,
    "th": CELL,
    "tr": {"height", "align", "valign", "bgcolor"},
    "tbody": {"align", "valign"},
    "thead": {"align", "valign"},
    "tfoot": {"align", "valign"},
    "col": {"width", "span", "align", "valign"},
    "colgroup": {"width", "span", "align", "valign"},
    "font": {"color", "face", "size"},
    "hr": {"width", "size", "align", "noshade"},
    "ol": {"start", "type"},
    "ul": {"type"},
    **{tag: {"align"} for tag in ("div", "p", "h1", "h2", "h3", "h4", "h5", "h6")},
}
EMAIL_ATTRIBUTES: dict[str, frozenset[str]] = {
    tag: frozenset(nh3.ALLOWED_ATTRIBUTES.get(tag, set()) | EXTRA_ATTRIBUTES.get(tag, set()))
    for tag in set(nh3.ALLOWED_ATTRIBUTES) | set(EXTRA_ATTRIBUTES)
}
# Kept on the <body> tag itself, with the CSS of `body { }` rules inlined into its style: as
# written, and where most clients look. (Gmail drops <body>; a wrapper table is the way there.)
BODY_ATTRIBUTES = frozenset({"bgcolor", "class", "dir", "lang", "style", "title"})
# The document structure: taken apart by the scan, rebuilt around the cleaned body.
STRUCTURE_TAGS = frozenset({"html", "head", "body", "meta", "link", "title", "style"})
# The allowed attributes that hold an address (nh3 checks the scheme of href and src, not of cite).
URL_ATTRIBUTES = frozenset({"href", "src", "cite"})

# html5ever (in css-inline and nh3) takes time quadratic in the depth of the elements: 100,000
# nested <div> take half a minute. What would be nested deeper, or is too big, is refused
# before either runs. Real emails stay far below these.
MAX_DEPTH = 200
MAX_ELEMENTS = 20_000
MAX_ATTRIBUTES = 200  # on one tag
# css-inline matches every rule against every element; the CSS is read recursively.
MAX_CSS_RULES = 1_000
MAX_CSS_DEPTH = 20

# Rules css-inline cannot inline (media queries, :hover) stay in the <style> it keeps; the
# rules it inlined are taken out of it. Nothing is loaded: <link> never reaches it.
INLINER = css_inline.CSSInliner(
    inline_style_tags=True,
    keep_style_tags=True,
    remove_inlined_selectors=True,
    keep_link_tags=False,
    load_remote_stylesheets=False,
)

DOCUMENT_HEAD = '<!DOCTYPE html><html{lang}><head><meta charset="utf-8">' + (
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
)
# The preheader, hidden, then a filler of invisible characters so that the preview line mail
# clients show does not run on into the first text of the body.
PREHEADER = '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all;">{text}{filler}</div>'
PREHEADER_FILLER = "&#847;&zwnj;&nbsp;" * 100
BODY_TAG = re.compile(r"""<body\b(?:[^>"']|"[^"]*"|'[^']*')*>""", re.IGNORECASE)


@dataclass(frozen=True)
class PreparedHtml:
    html: str  # the prepared Jinja source; "" when there are errors (it could be unsafe to render)
    warnings: list[Problem]  # things removed (the version is still usable)
    errors: list[Problem]  # things that make the version unusable


def prepare_email_html(source: str) -> PreparedHtml:
    """A whole email, from a full document or just body content: inlined, cleaned, in a document shell."""
    return prepare(source, document=True)


def prepare_fragment(source: str) -> PreparedHtml:
    """A content block included into emails: inlined and cleaned, without a document shell."""
    return prepare(source, document=False)


def with_preheader(html: str, preheader: str) -> str:
    """The rendered message with the rendered preheader as the first, hidden, thing in its body."""
    if not preheader.strip():
        return html
    hidden = PREHEADER.format(text=escape(preheader), filler=PREHEADER_FILLER)
    body = BODY_TAG.search(html)
    at = body.end() if body else 0
    return html[:at] + hidden + html[at:]


def html_to_text(source: str) -> str:
    """A plain-text body (a Jinja text source) from an HTML Jinja source, best from the prepared one;
    the template code passes through unchanged, a `{{` in the text is printed by template code."""
    protected = protect(source)
    extractor = TextExtractor(protected)
    try:
        extractor.feed(protected.text)
        unread = unreadable_rest(extractor, protected.text)
        if unread is None:
            extractor.close()
        else:  # `prepare` refuses it; the statements in the rest keep the blocks whole
            extractor.keep_statements(protected.text[unread:])
    except AssertionError:  # html.parser gave up, and so does `prepare`
        pass
    return protected.restore(literal_braces(extractor.text(), protected))


# Template code and its placeholders ------------------------------------------------------------

JINJA_OPEN = re.compile(r"\{[{%#]")
# Inside {{ }} and {% %}: strings and brackets, so that "}}" in a string or a dict does not end it.
JINJA_INNER = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|%\}|[\[\](){}]""", re.DOTALL)
RAW_BLOCK = re.compile(r"\{%[-+]?\s*raw\s*[-+]?%\}")
RAW_BLOCK_END = re.compile(r"\{%[-+]?\s*endraw\s*[-+]?%\}")
STATEMENT_NAME = re.compile(r"\{%[-+]?\s*(\w+)")
# Statements that open a block closed by `end<name>` (`set` only without `=`), and the statements
# that continue one.
BLOCK_STATEMENTS = frozenset({"autoescape", "block", "call", "filter", "for", "if", "macro", "raw", "trans", "with"})
BLOCK_MIDDLES = {"if": frozenset({"elif", "else"}), "for": frozenset({"else"}), "trans": frozenset({"pluralize"})}


@dataclass(frozen=True, slots=True)
class Construct:
    """One `{{ }}`, `{% %}` or `{# #}` in the source, where it starts and ends."""

    start: int
    end: int
    text: str

    @property
    def is_statement(self) -> bool:
        return self.text.startswith("{%")

    @property
    def statement(self) -> str:
        """The statement's name (`if`, `endfor`...); "" for expressions and comments."""
        name = STATEMENT_NAME.match(self.text) if self.is_statement else None
        return name.group(1) if name else ""

    @property
    def opens_block(self) -> bool:
        word = self.statement
        return word in BLOCK_STATEMENTS or (word == "set" and "=" not in self.text)

    @property
    def continues_block(self) -> bool:
        """`{% else %}`, `{% endif %}`...: part of a block opened before it."""
        word = self.statement
        return word.startswith("end") or word in ("elif", "else", "pluralize")


@dataclass(frozen=True)
class Protected:
    """The source with each construct replaced by its placeholder, and the way back."""

    source: str
    text: str
    nonce: str
    constructs: list[Construct]
    starts: list[int]  # where each placeholder starts in `text`
    unclosed: int | None  # the offset of a construct that is never closed

    @property
    def marker(self) -> str:
        return f"j{self.nonce}x"

    def placeholder(self, index: int) -> str:
        return f"{self.marker}{index}x"

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(rf"{self.marker}(\d+)x")

    @cached_property
    def restorer(self) -> re.Pattern[str]:
        """A placeholder, also wrapped in a comment (or in an escaped one, in text that was raw)."""
        token = rf"{self.marker}(\d+)x"
        return re.compile(rf"<!--{token}-->|&lt;!--{token}--&gt;|{token}")

    def restore(self, text: str, rewritten: Mapping[int, str] | None = None) -> str:
        """The text with the template code back; `rewritten` replaces some of it (`| safe_url` added)."""
        if not self.constructs:
            return text
        rewritten = rewritten or {}

        def code(found: re.Match[str]) -> str:
            index = int(next(filter(None, found.groups())))
            return rewritten.get(index, self.constructs[index].text)

        return self.restorer.sub(code, text)


def protect(source: str) -> Protected:
    constructs, unclosed = jinja_constructs(source)
    nonce = secrets.token_hex(5)
    while nonce in source:  # pragma: no cover - one chance in a trillion
        nonce = secrets.token_hex(5)
    pieces: list[str] = []
    starts: list[int] = []
    position = length = 0
    for index, construct in enumerate(constructs):
        pieces.append(source[position : construct.start])
        length += construct.start - position
        token = f"j{nonce}x{index}x"
        starts.append(length)
        pieces.append(token)
        length += len(token)
        position = construct.end
    pieces.append(source[position:])
    return Protected(source, "".join(pieces), nonce, constructs, starts, unclosed)


def jinja_constructs(source: str) -> tuple[list[Construct], int | None]:
    """The constructs in source order (the content of a raw block is HTML, not template code)."""
    constructs: list[Construct] = []
    position = 0
    while (opening := JINJA_OPEN.search(source, position)) is not None:
        end = construct_end(source, opening.start())
        if end < 0:
            return constructs, opening.start()
        constructs.append(Construct(opening.start(), end, source[opening.start() : end]))
        position = end
        if RAW_BLOCK.fullmatch(source, opening.start(), end):
            raw_end = RAW_BLOCK_END.search(source, end)
            if raw_end is None:
                return constructs, opening.start()
            constructs.append(Construct(raw_end.start(), raw_end.end(), raw_end.group()))
            position = raw_end.end()
    return constructs, None


def construct_end(source: str, start: int) -> int:
    """Where the construct opened at `start` ends, as Jinja's lexer sees it; -1 if never."""
    kind = source[start + 1]
    if kind == "#":
        close = source.find("#}", start + 2)
        return close + 2 if close >= 0 else -1
    depth = 0
    for token in JINJA_INNER.finditer(source, start + 2):
        text = token.group()
        if text in ("(", "[", "{"):
            depth += 1
        elif text in (")", "]", "}") and depth:
            depth -= 1
        elif kind == "{" and text == "}" and source.startswith("}", token.end()):
            return token.end() + 1
        elif kind == "%" and text == "%}" and not depth:
            return token.end()
    return -1


def line_starts(text: str) -> list[int]:
    return [0, *(found.end() for found in re.finditer("\n", text))]


class Positions:
    """Offsets in the protected text as 1-based lines and columns of the marketeer's source."""

    def __init__(self, protected: Protected) -> None:
        self.protected = protected
        self.text_lines = line_starts(protected.text)
        self.source_lines = line_starts(protected.source)
        self.ends = [start + len(protected.placeholder(index)) for index, start in enumerate(protected.starts)]

    def offset(self, line: int, column: int) -> int:
        """The offset of `html.parser`'s position (1-based line, 0-based column)."""
        return self.text_lines[line - 1] + column

    def source_offset(self, offset: int) -> int:
        index = bisect.bisect_right(self.protected.starts, offset) - 1
        if index < 0:
            return offset
        construct = self.protected.constructs[index]
        if offset < self.ends[index]:
            return construct.start
        return construct.end + offset - self.ends[index]

    def at_source(self, source_offset: int, message: str) -> Problem:
        line = bisect.bisect_right(self.source_lines, source_offset)
        return Problem(line, source_offset - self.source_lines[line - 1] + 1, message)

    def at(self, offset: int, message: str) -> Problem:
        return self.at_source(self.source_offset(offset), message)


# Blocks of template code -------------------------------------------------------------------------
#
# The statements of a block (`{% if %}`, `{% else %}`, `{% endif %}`) leave out or repeat what lies
# between them. That keeps the HTML whole only when all of them are in one place of it: all in
# the text between tags, or all in the same attribute value, or all in the <style> or <title>.
# An `{% if false %}` in an attribute value with its `{% endif %}` in the text after the tag
# leaves out the rest of the value, and that text becomes the rest of the tag:
# `<a title="{% if false %}">{% endif %}" onmouseover="..."` renders an onmouseover. A block
# (`{% include "block:x" %}`) is HTML printed as it is, so it belongs in the text as well.
# Where each statement is, is read from the prepared HTML itself (as html5ever serialised it),
# so that a parser reading the source differently cannot hide one.

Place = tuple[str, int]  # "text", "attribute", "style", "title" or "tag"; where it starts (0 for text)


def block_problems(protected: Protected, positions: Positions) -> list[Problem]:
    """Statements that open a block never closed, or that continue or close no open block."""
    open_blocks: list[Construct] = []
    for construct in protected.constructs:
        word = construct.statement
        if word in ("raw", "endraw"):
            continue  # paired up by `jinja_constructs`
        if construct.opens_block:
            open_blocks.append(construct)
        elif construct.continues_block:
            opening = open_blocks[-1].statement if open_blocks else ""
            if opening and word == f"end{opening}":
                open_blocks.pop()
            elif word not in BLOCK_MIDDLES.get(opening, ()):
                message = _("This {%% %(tag)s %%} does not belong to a block opened before it.") % {"tag": word}
                return [positions.at_source(construct.start, message)]
    return [positions.at_source(block.start, unclosed_block_message(block.statement)) for block in open_blocks]


def unclosed_block_message(tag: str) -> str:
    return _("This {%% %(tag)s %%} is never closed with {%% end%(tag)s %%}.") % {"tag": tag}


def block_place_problems(constructs: list[Construct], places: list[tuple[int, Place]]) -> list[tuple[int, str]]:
    """The blocks whose statements are not all in one place: the index of the opening statement, and why."""
    problems: list[tuple[int, str]] = []
    reported: set[int] = set()
    open_blocks: list[tuple[int, Place]] = []
    for index, place in places:
        construct = constructs[index]
        if construct.opens_block:
            open_blocks.append((index, place))
        elif construct.continues_block and open_blocks:
            opening, opened_at = open_blocks[-1]
            if place != opened_at and opening not in reported:
                reported.add(opening)
                problems.append((opening, block_place_message(constructs[opening].statement, opened_at, place)))
            if construct.statement.startswith("end"):
                open_blocks.pop()
    return problems


# `{% include "block:x" %}` and `{{ block("x") }}` print a block's HTML as it is.
BLOCK_CALL = re.compile(r"(?<![\w.])block\s*\(")


def inclusion_place_problems(constructs: list[Construct], places: list[tuple[int, Place]]) -> list[tuple[int, str]]:
    """Blocks included elsewhere than in the text: their HTML would end the attribute value it is in."""
    message = _("A block is HTML: include it between tags, not inside an HTML tag, a <style> or the <title>.")
    problems = []
    for index, place in places:
        construct = constructs[index]
        includes = construct.statement == "include" or (
            construct.text.startswith("{{") and BLOCK_CALL.search(construct.text) is not None
        )
        if includes and place[0] != "text":
            problems.append((index, message))
    return problems


def block_place_message(tag: str, opened_at: Place, place: Place) -> str:
    where = {
        "text": _("in the text"),
        "attribute": _("inside an attribute value"),
        "style": _("inside the <style>"),
        "title": _("inside the <title>"),
        "tag": _("inside an HTML tag"),
    }
    elsewhere = _("inside another attribute value") if place[0] == opened_at[0] == "attribute" else where[place[0]]
    return _(
        "This {%% %(tag)s %%} starts %(start)s and continues %(elsewhere)s; open and close it in the same place."
    ) % {"tag": tag, "start": where[opened_at[0]], "elsewhere": elsewhere}


# CSS -------------------------------------------------------------------------------------------

CSS_SYNTAX = re.compile(r"""/\*.*?(?:\*/|\Z)|"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|\\.|[{}();]""", re.DOTALL)
CSS_COMMENT_OR_STRING = re.compile(r"""/\*.*?(?:\*/|\Z)|"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?""", re.DOTALL)
CSS_ESCAPE = re.compile(r"\\([0-9a-fA-F]{1,6})\s?|\\(.)", re.DOTALL)
END_STYLE = re.compile(r"</style", re.IGNORECASE)
CSS_SPACE = re.compile(r"(?:\s|/\*.*?\*/)*", re.DOTALL)
# What old mail clients run from CSS, found in a declaration with comments and escapes undone.
CSS_DANGERS = (
    ("@import", "import"),
    ("expression(", "expression"),
    ("javascript:", "javascript"),
    ("vbscript:", "vbscript"),
    ("behavior:", "behavior"),
    ("behaviour:", "behavior"),
    ("-moz-binding", "binding"),
)


@dataclass(frozen=True, slots=True)
class CssItem:
    """A statement ending in `;`, or a rule (or at-rule) with its `{block}` (offsets inside the braces)."""

    start: int
    end: int
    block: tuple[int, int] | None


@dataclass(frozen=True)
class StyleSheet:
    css: str  # sanitised, placeholders still in
    problems: list[tuple[int, str]]  # offset in the sheet, what was removed
    inlinable: bool  # False when template code sits between rules or in a selector or property name


def css_items(css: str, start: int, end: int) -> Iterator[CssItem]:
    item_start, depth, parens, block_start = start, 0, 0, start
    for token in CSS_SYNTAX.finditer(css, start, end):
        text = token.group()
        if text == "(" and not depth:
            parens += 1
        elif text == ")" and not depth:
            parens = max(parens - 1, 0)
        elif text == "{":
            if not depth:
                block_start = token.end()
            depth += 1
        elif text == "}" and depth:
            depth -= 1
            if not depth:
                yield CssItem(item_start, token.end(), (block_start, token.start()))
                item_start, parens = token.end(), 0
        elif text == ";" and not depth and not parens:
            yield CssItem(item_start, token.end(), None)
            item_start = token.end()
    if item_start < end:
        yield CssItem(item_start, end, (block_start, end) if depth else None)


def without_comments(css: str) -> str:
    return CSS_COMMENT_OR_STRING.sub(lambda found: "" if found.group().startswith("/*") else found.group(), css)


def css_unescaped(css: str) -> str:
    def character(found: re.Match[str]) -> str:
        if found.group(2) is not None:
            return found.group(2)
        code = int(found.group(1), 16)
        return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"

    return CSS_ESCAPE.sub(character, css)


def css_danger(css: str, placeholders: re.Pattern[str]) -> str | None:
    """What is dangerous in a statement, also once its template code renders as nothing."""
    normalised = re.sub(r"\s+", "", css_unescaped(without_comments(css))).lower()
    for text in (normalised, placeholders.sub("", normalised)):
        for needle, label in CSS_DANGERS:
            if needle in text:
                return label
    return None


def css_message(label: str) -> str:
    messages = {
        "import": _("The CSS @import is not allowed in emails (stylesheets are not loaded); it was removed."),
        "expression": _("The CSS expression() is not allowed in emails; it was removed."),
        "javascript": _("A javascript: address in CSS is not allowed in emails; it was removed."),
        "vbscript": _("A vbscript: address in CSS is not allowed in emails; it was removed."),
        "behavior": _("The CSS behavior property is not allowed in emails; it was removed."),
        "binding": _("The CSS -moz-binding property is not allowed in emails; it was removed."),
        "end_style": _("The text </style inside a <style> would end it early; it was made harmless."),
    }
    return messages[label]


def sanitise_stylesheet(css: str, protected: Protected) -> StyleSheet:
    placeholders = protected.pattern
    problems: list[tuple[int, str]] = []
    cleaned = sanitise_rules(css, 0, len(css), placeholders, problems)
    problems += [(found.start(), "end_style") for found in END_STYLE.finditer(css)]
    cleaned = END_STYLE.sub(lambda found: "<\\/" + found.group()[2:], cleaned)
    return StyleSheet(cleaned, problems, is_inlinable(css, protected))


def sanitise_rules(
    css: str, start: int, end: int, placeholders: re.Pattern[str], problems: list[tuple[int, str]]
) -> str:
    """The statements and rules between start and end without comments and dangerous statements."""
    kept = []
    for item in css_items(css, start, end):
        if item.block is None:
            label = css_danger(css[item.start : item.end], placeholders)
            if label:
                problems.append((first_visible(css, item.start, item.end), label))
            else:
                kept.append(without_comments(css[item.start : item.end]))
            continue
        block_start, block_end = item.block
        inner = sanitise_rules(css, block_start, block_end, placeholders, problems)
        closing = css[block_end : item.end] or "}"
        kept.append(without_comments(css[item.start : block_start]) + inner + closing)
    return "".join(kept)


def sanitise_declarations(css: str, placeholders: re.Pattern[str]) -> tuple[str, list[str]]:
    """A style attribute's value without dangerous declarations, and what was removed."""
    problems: list[tuple[int, str]] = []
    cleaned = sanitise_rules(css, 0, len(css), placeholders, problems)
    if not problems:
        return css, []
    return cleaned, [label for _offset, label in problems]


def first_visible(css: str, start: int, end: int) -> int:
    found = CSS_SPACE.match(css, start, end)
    return found.end() if found and found.end() < end else start


def is_inlinable(css: str, protected: Protected) -> bool:
    """Whether all template code is inside declaration values that close the blocks they open
    (or inside at-rules, which are kept as written).

    css-inline copies a value into every element a rule matches, which keeps the template code
    in it whole; template code around rules or properties would be torn apart.
    """
    placeholders = protected.pattern
    if not placeholders.search(css):
        return True
    for item in css_items(css, 0, len(css)):
        if item.block is None:
            if placeholders.search(css, item.start, item.end):
                return False
            continue
        prelude = without_comments(css[item.start : item.block[0]]).strip()
        if prelude.startswith("@"):
            continue
        if placeholders.search(prelude):
            return False
        for declaration in css_items(css, *item.block):
            text = css[declaration.start : declaration.end]
            name, colon, _value = text.partition(":")
            if placeholders.search(text) and (declaration.block or not colon or placeholders.search(name)):
                return False
            if not blocks_balanced([protected.constructs[int(index)] for index in placeholders.findall(text)]):
                return False
    return True


def css_declarations(css: str, start: int, end: int) -> Iterator[CssItem]:
    """The statements between start and end, also those inside rules and at-rules."""
    for item in css_items(css, start, end):
        if item.block is None:
            yield item
        else:
            yield from css_declarations(css, *item.block)


def css_shape(css: str) -> tuple[int, int]:
    """How many blocks (`{ }`: rules, at-rules) the CSS has, and how deep they nest."""
    count = depth = deepest = 0
    for token in CSS_SYNTAX.finditer(css):
        if token.group() == "{":
            count, depth = count + 1, depth + 1
            deepest = max(deepest, depth)
        elif token.group() == "}" and depth:
            depth -= 1
    return count, deepest


CSS_URL = re.compile(r"url\(\s*['\"]?", re.IGNORECASE)
WEB_URL_START = re.compile(r"https?://", re.IGNORECASE)
# The start of `</style`, which template code right after it could complete (`<{{ x }}`).
STYLE_END_START = re.compile(r"<(?:/(?:s(?:t(?:y(?:le?)?)?)?)?)?\Z", re.IGNORECASE)


def css_url_constructs(css: str, placeholders: re.Pattern[str]) -> list[int]:
    """The first template code after each `url(` in a declaration, unless that url( starts with http(s)://.

    `url({{ x }})` could load a `javascript:` address in old mail clients; after a literal
    https:// the template code can only make a part of a web address.
    """
    if not placeholders.search(css):
        return []
    found = []
    for declaration in css_declarations(css, 0, len(css)):
        text = css_unescaped(without_comments(css[declaration.start : declaration.end]))
        urls = list(CSS_URL.finditer(text))
        ends = [url.start() for url in urls[1:]] + [len(text)] if urls else []
        for url, following in zip(urls, ends, strict=True):
            placeholder = (
                None if WEB_URL_START.match(text, url.end()) else placeholders.search(text, url.end(), following)
            )
            if placeholder is not None:
                found.append(int(placeholder.group(1)))
    return found


def css_url_message() -> str:
    return _(
        "Template code in a CSS url() must come after the start of a web address, such as"
        " url(https://shop.nl/{{ product.image }}); write the start of the address yourself."
    )


# Links ------------------------------------------------------------------------------------------

URL_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*):")
URL_IGNORED = {ord("\t"): None, ord("\n"): None, ord("\r"): None}
C0_AND_SPACE = "".join(map(chr, range(0x21)))
WEB_AUTHORITY = re.compile(r"https?:[\\/]*([^\\/?#]*)", re.IGNORECASE)
PORT = re.compile(r":(\d*)\Z")
FORBIDDEN_HOST = re.compile(r"[\x00-\x20#/:<>?@\[\\\]^|\x7f]")


# A relative address starting with one of these never gets a scheme, whatever follows; nor does
# an address that starts with a variable (which passes through `safe_url`) and goes on with one of
# the others.
RELATIVE_URL_START = ("/", "?", "#", ".")
AFTER_URL_VARIABLE = ("/", "?", "#", "&")


def url_text(value: str) -> str:
    """An address as a browser reads its start: without tabs and newlines, leading spaces and controls."""
    return value.translate(URL_IGNORED).lstrip(C0_AND_SPACE)


def url_template_problem(
    value: str, placeholders: re.Pattern[str], constructs: list[Construct]
) -> tuple[str, int] | None:
    """Which rule an address with template code breaks ("prefix", "start", "after") and at which
    construct; None if it keeps to them:

    - it starts with text that holds the whole scheme (`https://shop.nl/{{ x }}`, `mailto:{{ x }}`;
      nh3 checks that scheme) or with /, ?, # or . (relative, it never gets a scheme);
    - or it starts with one `{{ }}`, which gets `| safe_url`, followed by nothing or by /, ?, # or &.
    """
    first = placeholders.search(value)
    if first is None:
        return None
    index = int(first.group(1))
    prefix = url_text(value[: first.start()])
    if prefix:
        return None if ":" in prefix or prefix.startswith(RELATIVE_URL_START) else ("prefix", index)
    if not constructs[index].text.startswith("{{"):
        return "start", index
    rest = value[first.end() :].translate(URL_IGNORED)
    following = placeholders.search(rest)
    literal = rest[: following.start()] if following else rest.rstrip(C0_AND_SPACE)
    if following and not literal:
        return "start", index
    if literal and not literal.startswith(AFTER_URL_VARIABLE):
        return "after", index
    return None


def starts_with_template_code(value: str, placeholders: re.Pattern[str]) -> int | None:
    """The construct an address starts with, if it starts with one."""
    first = placeholders.search(value)
    return int(first.group(1)) if first and not url_text(value[: first.start()]) else None


def with_safe_url(code: str) -> str:
    """`{{ x }}` as `{{ (x) | safe_url }}`, its whitespace control kept where it was."""
    opening = code[:3] if code[2:3] in ("-", "+") else code[:2]
    closing = code[-3:] if code.endswith("-}}") and len(code) > len(opening) + 2 else code[-2:]
    inner = code[len(opening) : len(code) - len(closing)].strip()
    return f"{opening} ({inner}) | safe_url {closing}"


def link_message(rule: str, attribute: str, tag: str) -> str:
    messages = {
        "prefix": _(
            "The address in the %(attribute)s of <%(tag)s> starts with text without its https:// or mailto:"
            " and then template code, which could turn it into a script link."
        ),
        "start": _(
            "The address in the %(attribute)s of <%(tag)s> starts with a {%% %%} or {# #} tag, or with two"
            " pieces of template code in a row, which cannot be checked."
        ),
        "after": _(
            "In the %(attribute)s of <%(tag)s>, the variable the address starts with may only be followed by"
            " /, ?, # or & (such as {{ product.url }}?utm_source=mail); other text could turn it into a script link."
        ),
    }
    write_it = _(
        "Write the start of a link yourself (https://…) or make it one variable such as {{ links.unsubscribe }}."
    )
    return f"{messages[rule] % {'attribute': attribute, 'tag': tag}} {write_it}"


def url_problem(value: str) -> tuple[str, str] | None:
    """Why Ammonia drops this URL (read as the WHATWG URL parser reads it) and its scheme; None if kept."""
    url = value.translate(URL_IGNORED).strip(C0_AND_SPACE)
    scheme = URL_SCHEME.match(url)
    if scheme is None:
        return None  # relative, which is also how a placeholder at the start reads
    name = scheme.group(1).lower()
    if name not in URL_SCHEMES:
        message = _(
            "The %(scheme)s: address in the %(attribute)s of <%(tag)s> is not allowed in emails; it was removed."
        )
        return message, scheme.group(1)
    if name in ("http", "https") and not is_web_address(url):
        return _("The address in the %(attribute)s of <%(tag)s> is not a valid web address; it was removed."), name
    return None


def is_web_address(url: str) -> bool:
    authority = WEB_AUTHORITY.match(url)
    host = authority.group(1).rpartition("@")[2] if authority else ""
    port = PORT.search(host)
    if port:
        host = host[: port.start()]
        if port.group(1) and int(port.group(1)) > 65535:
            return False
    if host.startswith("[") and host.endswith("]"):
        return len(host) > 2  # an IPv6 address
    return bool(host) and not FORBIDDEN_HOST.search(host)


# The scan -----------------------------------------------------------------------------------------

TAG_OPENING = re.compile(r"<[a-zA-Z][^\t\n\r\f />\x00]*(?:\s|/(?!>))*")
# As html.parser reads attributes (its `attrfind_tolerant`).
ATTRIBUTE = re.compile(r"""((?<=['"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*('[^']*'|"[^"]*"|(?!['"])[^>\s]*))?(?:\s|/(?!>))*""")


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    start: int  # where its name starts
    end: int  # where its value (with its quote) ends
    value: str  # with character references decoded
    value_start: int
    value_end: int


def tag_attributes(text: str, offset: int) -> list[Attribute]:
    """The attributes of the start tag `text`, which starts at `offset`."""
    opening = TAG_OPENING.match(text)
    position = opening.end() if opening else len(text)
    attributes = []
    while (found := ATTRIBUTE.match(text, position)) is not None and found.end() > position:
        value_start, value_end = found.span(3) if found.group(3) is not None else (found.end(1), found.end(1))
        end = value_end
        raw = text[value_start:value_end]
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            value_start, value_end = value_start + 1, value_end - 1
        attributes.append(
            Attribute(
                found.group(1).lower(),
                offset + found.start(1),
                offset + end,
                html.unescape(text[value_start:value_end]),
                offset + value_start,
                offset + value_end,
            )
        )
        position = found.end()
    return attributes


@dataclass(frozen=True, slots=True)
class Edit:
    start: int
    end: int
    text: str


# How html5ever nests elements, as far as the depth goes (the HTML standard's tree construction,
# simplified so that it errs on the side of more depth).
FORMATTING_TAGS = frozenset({"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong"})
FORMATTING_TAGS |= {"tt", "u"}
SCOPE_MARKERS = frozenset({"applet", "caption", "marquee", "object", "td", "template", "th"})
DEFAULT_SCOPE = SCOPE_MARKERS | {"html", "table"}
TABLE_SCOPE = frozenset({"html", "table", "template"})
SPECIAL_TAGS = DEFAULT_SCOPE | STRUCTURE_TAGS | VOID_TAGS | REMOVED_WITH_CONTENT | TABLE_PARTS
SPECIAL_TAGS |= {"address", "article", "aside", "basefont", "bgsound", "blockquote", "button", "center", "dd"}
SPECIAL_TAGS |= {"details", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "frame"}
SPECIAL_TAGS |= {"h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "li", "listing", "main", "menu", "nav"}
SPECIAL_TAGS |= {"ol", "p", "pre", "search", "section", "summary", "ul"}
CLOSES_P = frozenset({"address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div", "dl"})
CLOSES_P |= {"fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header"}
CLOSES_P |= {"hgroup", "hr", "listing", "main", "menu", "nav", "ol", "p", "pre", "section", "summary", "table", "ul"}
ROW_PARTS = frozenset({"tbody", "thead", "tfoot", "tr", "td", "th"})
# A start tag closes the open elements of these kinds, if one is open below the scope's boundary.
IMPLIED_ENDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    **dict.fromkeys(CLOSES_P, (frozenset({"p"}), DEFAULT_SCOPE | {"button"})),
    "li": (frozenset({"li", "p"}), DEFAULT_SCOPE | {"ol", "ul"}),
    **dict.fromkeys(("dd", "dt"), (frozenset({"dd", "dt", "p"}), DEFAULT_SCOPE | {"dl"})),
    **dict.fromkeys(("td", "th"), (frozenset({"td", "th"}), TABLE_SCOPE)),
    "tr": (frozenset({"tr", "td", "th"}), TABLE_SCOPE),
    **dict.fromkeys(("tbody", "thead", "tfoot"), (ROW_PARTS, TABLE_SCOPE)),
    **{tag: (frozenset({tag}), DEFAULT_SCOPE) for tag in ("a", "button", "nobr", "option")},
}


class TooComplex(Exception):
    """The HTML is refused before css-inline and nh3 see it; `offset` is where, in the protected source."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


class OpenElements:
    """The elements html5ever would hold open, roughly: enough to tell how deep it would nest.

    Start tags that close an open <p>, <li>, <td>... (implied end tags) close it here too; end tags
    close up to their element within its scope. Formatting elements (<b>, <font>...) closed
    implicitly stay in the list of active formatting elements and are opened again before the
    next text or inline element, as html5ever does: `<p><b class=1></p><p><b class=2></p>...`
    nests ever deeper (and makes html5ever take minutes) although every <p> is closed.
    """

    def __init__(self) -> None:
        self.stack: list[str] = []
        # The list of active formatting elements: [tag, attributes, position in the stack or -1];
        # None is a marker (a <td> or <caption> opened after them).
        self.formatting: list[list[Any] | None] = []
        self.created = 0

    def start(self, tag: str, attrs: list[tuple[str, str | None]]) -> str | None:
        """A start tag; a message when it goes past the limits."""
        if len(attrs) > MAX_ATTRIBUTES:
            return _("This tag has more than %(limit)s attributes.") % {"limit": MAX_ATTRIBUTES}
        implied = IMPLIED_ENDS.get(tag)
        if implied is not None:
            self.close_any(*implied)
        current = self.stack[-1] if self.stack else ""
        if tag == "table" and current in ("table", *TABLE_PARTS - {"td", "th", "caption"}):
            self.close_any(frozenset({"table"}), TABLE_SCOPE)  # a table right in a table ends it
        elif tag in ("tr", "td", "th") and current == "table":
            self.push("tbody")  # rows belong in a row group
        if tag in ("td", "th") and self.stack and self.stack[-1] in ("tbody", "thead", "tfoot"):
            self.push("tr")
        if tag in FORMATTING_TAGS or tag not in SPECIAL_TAGS:
            self.reopen()
        if tag in VOID_TAGS:
            self.created += 1
        else:
            self.push(tag)
            if tag in SCOPE_MARKERS:
                self.formatting.append(None)
            elif tag in FORMATTING_TAGS:
                self.add_formatting(tag, sorted((name, value or "") for name, value in attrs))
        return self.problem()

    def push(self, tag: str) -> None:
        self.stack.append(tag)
        self.created += 1

    def end(self, tag: str) -> None:
        if tag in FORMATTING_TAGS and self.end_formatting(tag):
            return
        if tag in TABLE_PARTS or tag == "table":
            boundary = TABLE_SCOPE
        elif tag in ("p", "li", "dd", "dt"):
            boundary = IMPLIED_ENDS[tag][1]
        elif tag in SPECIAL_TAGS:
            boundary = DEFAULT_SCOPE
        else:  # "any other end tag" stops at any special element
            boundary = SPECIAL_TAGS
        for position in range(len(self.stack) - 1, -1, -1):
            if self.stack[position] == tag:
                self.pop_to(position)
                return
            if self.stack[position] in boundary:
                return

    def text(self) -> str | None:
        self.reopen()
        return self.problem()

    def problem(self) -> str | None:
        if len(self.stack) > MAX_DEPTH:
            return _(
                "The HTML is nested more than %(limit)s elements deep here; close the elements you open"
                " (every <div>, <table>, <b>...) or nest them less deeply."
            ) % {"limit": MAX_DEPTH}
        if self.created > MAX_ELEMENTS or len(self.formatting) > MAX_DEPTH:
            return _("The HTML has more than %(limit)s elements; an email this big cannot be checked.") % {
                "limit": f"{MAX_ELEMENTS:,}"
            }
        return None

    def close_any(self, tags: frozenset[str], boundary: frozenset[str]) -> None:
        """Close the lowest open element of `tags` above the nearest boundary (implied end tags)."""
        lowest = None
        for position in range(len(self.stack) - 1, -1, -1):
            if self.stack[position] in tags:
                lowest = position
            if self.stack[position] in boundary:
                break
        if lowest is not None:
            self.pop_to(lowest)

    def pop_to(self, position: int) -> None:
        for tag in self.stack[position:]:
            if tag in SCOPE_MARKERS:
                while self.formatting and self.formatting.pop() is not None:
                    pass
        del self.stack[position:]
        for entry in self.formatting:
            if entry is not None and entry[2] >= position:
                entry[2] = -1

    def reopen(self) -> None:
        """html5ever's "reconstruct the active formatting elements"."""
        start = len(self.formatting)
        while start and self.formatting[start - 1] is not None:
            start -= 1
        for entry in self.formatting[start:]:
            if entry is not None and entry[2] < 0:
                entry[2] = len(self.stack)
                self.push(entry[0])

    def add_formatting(self, tag: str, attributes: list[tuple[str, str]]) -> None:
        same = [
            entry
            for entry in reversed(self.formatting[self.last_marker() :])
            if entry is not None and entry[0] == tag and entry[1] == attributes
        ]
        if len(same) >= 3:  # the "Noah's Ark" clause
            self.formatting.remove(same[-1])
        self.formatting.append([tag, attributes, len(self.stack) - 1])

    def end_formatting(self, tag: str) -> bool:
        """html5ever's adoption agency, for depth: whether the end tag was handled."""
        marker = self.last_marker()
        for index in range(len(self.formatting) - 1, marker - 1, -1):
            entry = self.formatting[index]
            if entry is not None and entry[0] == tag:
                position = entry[2]
                if position < 0:
                    del self.formatting[index]
                elif not any(other in SPECIAL_TAGS for other in self.stack[position + 1 :]):
                    del self.formatting[index]
                    self.pop_to(position)
                # Else html5ever moves what is inside into a copy of the element: as deep as before.
                return True
        return False

    def last_marker(self) -> int:
        for index in range(len(self.formatting) - 1, -1, -1):
            if self.formatting[index] is None:
                return index + 1
        return 0


class HtmlScan(HTMLParser):
    """Reads the protected source once, as html5ever will, and finds:

    - what nh3 and this module will remove, reported with its position (`warnings`), and template
      code where no placeholder can survive (`errors`);
    - the parts of the document: `title`, `lang`, `style_sheets` (offsets of their CSS),
      `body_attributes`;
    - `edits` that turn the protected source into the body content: the document structure,
      comments and style sheets cut out, placeholders in text wrapped in comments, each style
      attribute replaced by a custom property standing for it (css-inline refuses a malformed
      style attribute, and leaves a custom property alone).

    Every event's offset is kept; an event ends where the next one starts.
    """

    def __init__(self, protected: Protected, positions: Positions, *, document: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.protected = protected
        self.positions = positions
        self.document = document
        self.placeholders = protected.pattern
        self.warnings: list[Problem] = []
        self.errors: list[Problem] = []
        self.event_starts: list[int] = []
        self.event_kinds: list[str] = []
        self.event_cut: list[bool] = []
        self.value_spans: dict[int, list[tuple[int, int]]] = {}
        self.source_edits: list[Edit] = []
        self.inline_styles: list[str] = []
        self.style_sheets: list[tuple[int, int]] = []
        self.title: str | None = None
        self.lang: str | None = None
        self.body_attributes: list[tuple[str, str]] | None = None
        self.cutting: str | None = None  # the <title> or <style> being taken out
        self.cut_content_start = 0
        self.removing: str | None = None  # nh3 removes this element with its content
        self.removing_depth = 0
        # Open tables: where a <tbody> would go, and whether a row group is open.
        self.tables: list[tuple[int, bool]] = []
        self.reported: set[int] = set()  # constructs with an error already
        self.url_expressions: dict[int, str] = {}  # `{{ x }}` starting an address, as `{{ (x) | safe_url }}`
        self.open_elements = OpenElements()
        self.css_rules = 0

    # Events

    def event(self, kind: str, *, cut: bool = False) -> int:
        start = self.positions.offset(*self.getpos())
        self.event_starts.append(start)
        self.event_kinds.append(kind)
        self.event_cut.append(cut or self.cutting is not None)
        return start

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        start = self.event("tag")
        if not self.cutting and tag not in STRUCTURE_TAGS:
            self.refuse(start, self.open_elements.start(tag, attrs))
        text = self.get_starttag_text() or ""
        attributes = tag_attributes(text, start)
        self.value_spans[len(self.event_starts) - 1] = [(a.value_start, a.value_end) for a in attributes]
        if self.cutting:
            return
        for attribute in attributes:
            if attribute.name == "style":
                self.check_css_shape(attribute.start, attribute.value)
        if tag in STRUCTURE_TAGS:
            self.event_cut[-1] = True
            self.take_structure(tag, start, start + len(text), attributes)
            return
        self.replace_style_attributes(attributes)
        if self.removing:
            self.removing_depth += tag == self.removing
            return
        self.check_element(tag, start, attributes)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in ("title", "style") and self.cutting == tag:
            self.cutting = None

    def handle_endtag(self, tag: str) -> None:
        start = self.event("endtag")
        if not self.cutting and tag not in STRUCTURE_TAGS:
            self.open_elements.end(tag)
        if self.cutting:
            if tag == self.cutting:
                self.finish_cut(start)
            return
        if self.removing:
            self.removing_depth -= tag == self.removing
            self.removing = self.removing if self.removing_depth else None
            return
        if tag in ("html", "head", "body"):
            self.event_cut[-1] = True
        elif tag in ("table", "tbody", "thead", "tfoot", "caption", "colgroup") and self.tables:
            self.close_table_part(tag, self.protected.text.find(">", start) + 1 or len(self.protected.text))

    def handle_data(self, data: str) -> None:
        start = self.event("raw" if self.cdata_elem else "data")
        if not (self.cutting or self.cdata_elem) and not data.isspace():
            self.refuse(start, self.open_elements.text())

    def refuse(self, offset: int, message: str | None) -> None:
        if message is not None:
            raise TooComplex(offset, message)

    def check_css_shape(self, offset: int, css: str) -> int:
        """The number of rules in the CSS; refused if they nest too deeply to be read."""
        rules, depth = css_shape(css)
        if depth > MAX_CSS_DEPTH:
            message = _("The CSS is nested more than %(limit)s blocks deep; it cannot be read.")
            raise TooComplex(offset, message % {"limit": MAX_CSS_DEPTH})
        return rules

    def handle_comment(self, data: str) -> None:
        start = self.event("comment", cut=True)
        if data.lstrip().lower().startswith("[if") and not (self.cutting or self.removing):
            self.warn(start, _("Conditional comments (<!--[if mso]>) are not supported; this one was removed."))

    def handle_decl(self, decl: str) -> None:
        self.event("markup", cut=True)

    def unknown_decl(self, data: str) -> None:
        self.event("markup", cut=True)

    def handle_pi(self, data: str) -> None:
        self.event("markup", cut=True)

    def close(self) -> None:
        super().close()
        if self.cutting == "style":  # never closed: html.parser reports no data for it
            self.event_starts.append(self.cut_content_start)
            self.event_kinds.append("raw")
            self.event_cut.append(True)
        if self.cutting:
            self.finish_cut(len(self.protected.text))

    # The document's structure

    def take_structure(self, tag: str, start: int, end: int, attributes: list[Attribute]) -> None:
        if tag == "html" and self.lang is None:
            self.lang = next((a.value for a in attributes if a.name == "lang"), None)
        elif tag == "body" and self.body_attributes is None:
            self.body_attributes = self.checked_body_attributes(attributes) if self.document else []
            if attributes and not self.document:
                self.warn(start, _("A content block has no <body>; the attributes of its <body> tag were removed."))
        elif tag == "body" and attributes:
            self.warn(start, _("Only the first <body> tag is used; the attributes of this one were removed."))
        elif tag == "link":
            rel = next((a.value for a in attributes if a.name == "rel"), "")
            if "stylesheet" in rel.lower().split():
                self.warn(start, _("Stylesheets are not loaded from links in emails; the <link> was removed."))
            else:
                self.warn(start, _("The <link> tag is not allowed in emails; it was removed."))
        elif tag in ("title", "style"):
            self.cutting, self.cut_content_start = tag, end

    def finish_cut(self, end: int) -> None:
        if self.cutting == "style":
            self.style_sheets.append((self.cut_content_start, end))
            self.css_rules += self.check_css_shape(
                self.cut_content_start, self.protected.text[self.cut_content_start : end]
            )
            if self.css_rules > MAX_CSS_RULES:
                message = _("The style sheets have more than %(limit)s rules; an email this big cannot be checked.")
                raise TooComplex(self.cut_content_start, message % {"limit": f"{MAX_CSS_RULES:,}"})
        elif self.cutting == "title" and self.title is None:
            self.title = self.protected.text[self.cut_content_start : end]
        self.cutting = None

    def checked_body_attributes(self, attributes: list[Attribute]) -> list[tuple[str, str]]:
        kept = []
        for attribute in attributes:
            if attribute.name not in BODY_ATTRIBUTES:
                self.warn(
                    attribute.start, attribute_message(attribute.name) % {"attribute": attribute.name, "tag": "body"}
                )
            elif attribute.name == "style":
                kept.append(("style", self.style_token(self.checked_style(attribute))))
            else:
                kept.append((attribute.name, attribute.value))
        return kept

    # Elements and attributes

    def check_element(self, tag: str, start: int, attributes: list[Attribute]) -> None:
        if tag in REMOVED_WITH_CONTENT or tag not in EMAIL_TAGS:
            self.warn(start, removed_tag_message(tag) % {"tag": tag})
            if tag in REMOVED_WITH_CONTENT and tag not in VOID_TAGS:
                self.removing, self.removing_depth = tag, 1
            return
        if tag in TABLE_PARTS and not self.tables:
            self.warn(start, _("The <%(tag)s> tag belongs inside a <table>; it was removed.") % {"tag": tag})
            return
        self.open_table_part(tag, start + len(self.get_starttag_text() or ""))
        allowed = EMAIL_ATTRIBUTES.get(tag, frozenset())
        for attribute in attributes:
            self.check_attribute(tag, attribute, allowed)

    def open_table_part(self, tag: str, end: int) -> None:
        """Rows straight in a <table> get a <tbody> here, before the template code that precedes them.

        html5ever would add it right before the first <tr>, after a `{% for %}` placed in front of the
        rows, so that the loop would repeat the <tbody> as well.
        """
        if tag == "table":
            self.tables.append((end, False))
        elif tag in ("tbody", "thead", "tfoot") and self.tables:
            self.tables[-1] = (self.tables[-1][0], True)
        elif tag == "tr" and self.tables and not self.tables[-1][1]:
            self.source_edits.append(Edit(self.tables[-1][0], self.tables[-1][0], "<tbody>"))
            self.tables[-1] = (self.tables[-1][0], True)

    def close_table_part(self, tag: str, end: int) -> None:
        if tag == "table":
            self.tables.pop()
        else:
            self.tables[-1] = (end, False)

    def check_attribute(self, tag: str, attribute: Attribute, allowed: frozenset[str]) -> None:
        name = attribute.name
        if name not in allowed and name not in GENERIC_ATTRIBUTES and not name.startswith("aria-"):
            self.warn(attribute.start, attribute_message(name) % {"attribute": name, "tag": tag})
        elif name in URL_ATTRIBUTES:
            self.check_address(tag, attribute)
        elif name == "style":
            self.checked_style(attribute)

    def check_address(self, tag: str, attribute: Attribute) -> None:
        """An address: its scheme, and the rules for template code in it (`url_template_problem`)."""
        constructs = self.protected.constructs
        template_problem = url_template_problem(attribute.value, self.placeholders, constructs)
        if template_problem is not None:
            rule, index = template_problem
            self.jinja_error(index, link_message(rule, attribute.name, tag))
            # nh3 may drop the address; the rest of its template code is not reported as lost as well.
            self.reported.update(int(found.group(1)) for found in self.placeholders.finditer(attribute.value))
            return
        first = starts_with_template_code(attribute.value, self.placeholders)
        if first is not None:
            self.url_expressions[first] = with_safe_url(constructs[first].text)
        problem = url_problem(attribute.value)
        if problem:
            message, scheme = problem
            names = {"attribute": attribute.name, "tag": tag, "scheme": self.protected.restore(scheme)}
            self.warn(attribute.start, message % names)

    def checked_style(self, attribute: Attribute) -> str:
        cleaned, labels = sanitise_declarations(attribute.value, self.placeholders)
        for label in labels:
            self.warn(attribute.start, css_message(label))
        for index in css_url_constructs(cleaned, self.placeholders):
            self.jinja_error(index, css_url_message())
        return cleaned

    def replace_style_attributes(self, attributes: list[Attribute]) -> None:
        for attribute in attributes:
            if attribute.name == "style":
                token = self.style_token(sanitise_declarations(attribute.value, self.placeholders)[0])
                self.source_edits.append(Edit(attribute.start, attribute.end, f'style="{token}"'))

    def style_token(self, style: str) -> str:
        """The custom property that stands for a style attribute's value until nh3 has cleaned it."""
        self.inline_styles.append(style)
        return f"--s{self.protected.nonce}x{len(self.inline_styles) - 1}x:0"

    def warn(self, offset: int, message: str) -> None:
        self.warnings.append(self.positions.at(offset, message))

    # After the scan

    def edits(self) -> list[Edit]:
        """The cuts, wrapped placeholders and replaced style attributes, in source order."""
        text = self.protected.text
        edits = list(self.source_edits)
        ends = [*self.event_starts[1:], len(text)] if self.event_starts else []
        edits += [
            Edit(start, end, "") for start, end, cut in zip(self.event_starts, ends, self.event_cut, strict=True) if cut
        ]
        for index, start in enumerate(self.protected.starts):
            event = bisect.bisect_right(self.event_starts, start) - 1
            kind = self.event_kinds[event] if event >= 0 else "data"
            if kind == "data" and not (event >= 0 and self.event_cut[event]):
                token = self.protected.placeholder(index)
                edits.append(Edit(start, start + len(token), f"<!--{token}-->"))
            elif kind in ("endtag", "markup") or (kind == "tag" and not self.in_value(event, start)):
                self.jinja_error(index, in_tag_message())
            elif kind == "comment":
                self.jinja_error(index, in_comment_message())
        return sorted(edits, key=lambda edit: (edit.start, edit.end))

    def in_value(self, event: int, offset: int) -> bool:
        return any(start <= offset < end for start, end in self.value_spans.get(event, []))

    def jinja_error(self, index: int, message: str) -> None:
        if index in self.reported:
            return  # one error for each piece of template code
        self.reported.add(index)
        self.errors.append(self.positions.at_source(self.protected.constructs[index].start, message))


def in_tag_message() -> str:
    return _(
        "Template tags inside an HTML tag are not supported; put the {% if %} around the whole tag"
        " or inside an attribute value."
    )


def in_comment_message() -> str:
    return _("Template code inside an HTML comment is not supported; use a {# #} template comment instead.")


def lost_message() -> str:
    return _(
        "This template code is inside HTML or CSS that is removed (see the warnings), so it would be lost;"
        " move it out of there or remove it."
    )


def removed_tag_message(tag: str) -> str:
    if tag in VOID_TAGS:
        return _("The <%(tag)s> tag is not allowed in emails; it was removed.")
    if tag in REMOVED_WITH_CONTENT:
        return _("The <%(tag)s> tag is not allowed in emails; it was removed with its content.")
    return _("The <%(tag)s> tag is not allowed in emails; it was removed (its content was kept).")


def attribute_message(name: str) -> str:
    if name.startswith("on"):
        return _("The %(attribute)s attribute on <%(tag)s> runs a script, which emails may not do; it was removed.")
    return _("The %(attribute)s attribute on <%(tag)s> is not allowed in emails; it was removed.")


def apply_edits(text: str, edits: list[Edit]) -> str:
    pieces, position = [], 0
    for edit in edits:
        pieces += [text[position : edit.start], edit.text]
        position = edit.end
    pieces.append(text[position:])
    return "".join(pieces)


# Preparing -------------------------------------------------------------------------------------

INLINED = re.compile(
    r"<html><head>(?P<head>(?:<style[^>]*>.*?</style>)*)</head>"
    r"""<body(?P<attributes>(?:[^>"']|"[^"]*"|'[^']*')*)>(?P<body>.*)</body></html>\s*""",
    re.DOTALL,
)
STYLE_ELEMENT = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL)
STYLE_VALUE = re.compile(r'\sstyle="([^"]*)"')


@dataclass
class Preparation:
    """What one preparation collects on its way."""

    protected: Protected
    positions: Positions
    scan: HtmlScan
    warnings: list[Problem]
    errors: list[Problem]
    css_tokens: set[int]  # template code in inlined CSS, which may end up in no element
    refused: bool = False  # the HTML is not even given to css-inline and nh3


def prepare(source: str, *, document: bool) -> PreparedHtml:
    preparation = scanned(source, document=document)
    scan, protected = preparation.scan, preparation.protected
    if preparation.refused:
        errors = sorted(scan.errors + preparation.errors, key=position_of)
        return PreparedHtml("", sorted(preparation.warnings, key=position_of), errors)
    sheets = style_sheets(preparation)
    content = apply_edits(protected.text, scan.edits())
    body_attributes = dict(scan.body_attributes or [])
    try:
        head_css, body_style, body = inlined(preparation, sheets, content, body_attributes)
    except (css_inline.InlineError, ValueError) as error:
        preparation.errors.append(Problem(1, 1, _("The CSS could not be inlined: %(error)s") % {"error": error}))
        head_css, body_style, body = "", body_attributes.get("style"), content
    body = cleaned_body(preparation, restore_inline_styles(preparation, body)).strip()
    if document:
        if body_style is not None:
            style = restore_inline_styles(preparation, body_style, escaped=False)
            body_attributes["style"] = sanitise_declarations(style, protected.pattern)[0]
        body_tag = "<body" + "".join(f' {name}="{escape(value)}"' for name, value in body_attributes.items()) + ">"
        prepared = document_html(scan, head_css, body_tag, body)
    else:
        prepared = (f"<style>{head_css}</style>" if head_css else "") + body
    prepared = with_braces_encoded(preparation, prepared)
    reading = read_prepared(prepared, protected)
    check_lost(preparation, prepared)
    check_blocks_intact(preparation, prepared)
    for index, message in [
        *block_place_problems(protected.constructs, reading.places),
        *inclusion_place_problems(protected.constructs, reading.places),
    ]:
        scan.jinja_error(index, message)
    check_addresses(preparation, reading.addresses)
    restored = protected.restore(prepared, scan.url_expressions)
    check_template_code(preparation, reading.places, restored)
    errors = sorted(scan.errors + preparation.errors, key=position_of)
    return PreparedHtml("" if errors else restored, sorted(preparation.warnings, key=position_of), errors)


def scanned(source: str, *, document: bool) -> Preparation:
    protected = protect(source)
    positions = Positions(protected)
    scan = HtmlScan(protected, positions, document=document)
    errors = block_problems(protected, positions)
    if protected.unclosed is not None:
        errors.append(positions.at_source(protected.unclosed, _("This template tag is never closed.")))
    preparation = Preparation(protected, positions, scan, scan.warnings, errors, set())
    try:
        scan.feed(protected.text)
        unread = unreadable_rest(scan, protected.text)
        if unread is not None:
            raise TooComplex(unread, never_closed_message())
        scan.close()
    except TooComplex as refusal:
        errors.append(positions.at(refusal.offset, refusal.message))
        preparation.refused = True
    except AssertionError:  # html.parser's way of giving up, on `<![<![` for one
        message = _("The HTML cannot be read from here on; check the tag or comment that starts here.")
        errors.append(positions.at(positions.offset(*scan.getpos()), message))
        preparation.refused = True
    return preparation


def unreadable_rest(parser: HTMLParser, text: str) -> int | None:
    """Where a tag, comment or declaration starts that is never closed, when more markup follows it.

    html.parser keeps it for `close()`, which then searches the rest of the source for its end
    once for every `<` that follows: `</` or `<!--` repeated 100,000 times takes minutes. (html5ever
    makes the rest a comment, or drops it.)
    """
    rest = parser.rawdata
    return len(text) - len(rest) if "<" in rest[1:] else None


def never_closed_message() -> str:
    return _(
        "This tag or comment is never closed (with > or -->), so the HTML after it cannot be read;"
        " close it, or write &lt; for a < in text."
    )


def style_sheets(preparation: Preparation) -> list[StyleSheet]:
    """The sanitised style sheets; what was removed from them is reported."""
    text, placeholders = preparation.protected.text, preparation.protected.pattern
    sheets = []
    for start, end in preparation.scan.style_sheets:
        sheet = sanitise_stylesheet(text[start:end], preparation.protected)
        preparation.warnings += [
            preparation.positions.at(start + at, css_message(label)) for at, label in sheet.problems
        ]
        if sheet.inlinable:
            preparation.css_tokens |= {int(found.group(1)) for found in placeholders.finditer(sheet.css)}
        for index in css_url_constructs(sheet.css, placeholders):
            preparation.scan.jinja_error(index, css_url_message())
        for found in placeholders.finditer(sheet.css):
            if STYLE_END_START.search(sheet.css, max(found.start() - 7, 0), found.start()):
                message = _(
                    "A < right before template code in a <style> could end the style; put a space between them."
                )
                preparation.scan.jinja_error(int(found.group(1)), message)
        sheets.append(sheet)
    return sheets


def inlined(
    preparation: Preparation, sheets: list[StyleSheet], content: str, body_attributes: dict[str, str]
) -> tuple[str, str | None, str]:
    """The CSS kept for the head, the body tag's style, and the body content, with the CSS inlined."""
    if not any(sheet.css.strip() for sheet in sheets):
        return "", body_attributes.get("style"), content
    head = "".join(
        ("<style>" if sheet.inlinable else '<style data-css-inline="ignore">') + sheet.css + "</style>"
        for sheet in sheets
    )
    body_tag = "<body" + "".join(f' {name}="{escape(value)}"' for name, value in body_attributes.items()) + ">"
    output = INLINER.inline(f"<html><head>{head}</head>{body_tag}{content}</body></html>")
    parts = INLINED.fullmatch(output)
    if parts is None:
        raise ValueError(_("the HTML could not be taken apart again"))
    kept_css = "\n".join(css for css in STYLE_ELEMENT.findall(parts.group("head")) if css.strip())
    body_style = STYLE_VALUE.search(parts.group("attributes"))
    return (
        sanitise_stylesheet(kept_css, preparation.protected).css,
        html.unescape(body_style.group(1)) if body_style else None,
        parts.group("body"),
    )


def restore_inline_styles(preparation: Preparation, text: str, *, escaped: bool = True) -> str:
    """Each style attribute's own value back in the place of the custom property standing for it."""
    styles = preparation.scan.inline_styles
    if not styles:
        return text
    pattern = re.compile(rf"--s{preparation.protected.nonce}x(\d+)x\s*:\s*0")
    if escaped:
        return pattern.sub(lambda found: escape(styles[int(found.group(1))]), text)
    return pattern.sub(lambda found: styles[int(found.group(1))], text)


def cleaned_body(preparation: Preparation, body: str) -> str:
    placeholders = preparation.protected.pattern

    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        if attribute == "style":
            return sanitise_declarations(value, placeholders)[0]
        if attribute in URL_ATTRIBUTES and url_problem(value):
            return None  # nh3 checks href and src itself, but not cite
        return value

    cleaned = nh3.clean(
        body,
        tags=set(EMAIL_TAGS),
        clean_content_tags=set(REMOVED_WITH_CONTENT),
        attributes={"*": set(GENERIC_ATTRIBUTES), **{tag: set(names) for tag, names in EMAIL_ATTRIBUTES.items()}},
        attribute_filter=attribute_filter,
        generic_attribute_prefixes=set(GENERIC_ATTRIBUTE_PREFIXES),
        strip_comments=False,  # the placeholders in text are comments; the marketeer's were cut
        link_rel=None,
        url_schemes=set(URL_SCHEMES),
    )
    other_comments = re.compile(rf"<!--(?!{preparation.protected.marker}\d+x-->).*?-->", re.DOTALL)
    return other_comments.sub("", cleaned)


def document_html(scan: HtmlScan, head_css: str, body_tag: str, body: str) -> str:
    lang = f' lang="{escape(scan.lang)}"' if scan.lang else ""
    parts = [DOCUMENT_HEAD.format(lang=lang)]
    if scan.title is not None:
        parts.append(f"<title>{html.escape(html.unescape(scan.title), quote=False)}</title>")
    if head_css:
        parts.append(f"<style>{head_css}</style>")
    parts += ["</head>", body_tag, body, "</body></html>"]
    return "".join(parts)


# The prepared HTML as html5ever serialised it (and `document_html` wrote it): attribute values
# always quoted, `<` in text always escaped.
PREPARED_TOKEN = re.compile(
    r"<!--.*?-->|<(?P<raw>style|title)\b[^>]*>.*?</(?P=raw)>"
    r"""|<[a-zA-Z](?:[^>"']|"[^"]*"|'[^']*')*>|[^<]+|<""",
    re.DOTALL | re.IGNORECASE,
)
PREPARED_TAG_NAME = re.compile(r"<([^\s/>]+)")
PREPARED_ATTRIBUTE = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]*)))?""")


@dataclass(frozen=True)
class Reading:
    """Where the template code ended up in the prepared HTML."""

    places: list[tuple[int, Place]]  # every placeholder, in order, and where it is
    addresses: list[tuple[str, str, str]]  # tag, attribute, value: addresses holding template code


def with_braces_encoded(preparation: Preparation, prepared: str) -> str:
    """Every `{` that would start template code with what follows it, written as `&#123;`.

    html.parser and nh3 decode `&#123;&#123; x &#125;&#125;` to `{{ x }}`, which would run as
    template code that was never checked; `&#123;` shows as `{` in every mail client. In a
    <style>, where a character reference is not decoded, such a `{` is an error.
    """
    marker = preparation.protected.marker
    brace = re.compile(rf"\{{(?=[{{%#]|(?:<!--|&lt;!--)?{marker}\d+x)")
    pieces, position = [], 0
    for token in PREPARED_TOKEN.finditer(prepared):
        if (token.group("raw") or "").lower() != "style":
            continue
        pieces += [brace.sub("&#123;", prepared[position : token.start()]), token.group()]
        position = token.end()
        if brace.search(token.group()):
            sheets = preparation.scan.style_sheets
            message = _("The CSS holds {{, {% or {# that is not template code; put a space after the {.")
            at = preparation.positions.at(sheets[0][0], message) if sheets else Problem(1, 1, message)
            preparation.errors.append(at)
    pieces.append(brace.sub("&#123;", prepared[position:]))
    return "".join(pieces)


def read_prepared(prepared: str, protected: Protected) -> Reading:
    placeholders = protected.pattern
    places: list[tuple[int, Place]] = []
    addresses: list[tuple[str, str, str]] = []
    for token in PREPARED_TOKEN.finditer(prepared):
        text = token.group()
        if not placeholders.search(text):
            continue
        indexes = [(found.start(), int(found.group(1))) for found in placeholders.finditer(text)]
        if token.group("raw"):
            places += [(index, (token.group("raw").lower(), token.start())) for _at, index in indexes]
        elif text.startswith("<") and not text.startswith("<!--"):
            name = PREPARED_TAG_NAME.match(text)
            tag = name.group(1).lower() if name else ""
            values = []
            for attribute in PREPARED_ATTRIBUTE.finditer(text, name.end() if name else 1):
                group = next((group for group in (2, 3, 4) if attribute.group(group) is not None), None)
                if group is None:
                    continue
                values.append(attribute.span(group))
                value = html.unescape(attribute.group(group))
                if attribute.group(1).lower() in URL_ATTRIBUTES and placeholders.search(value):
                    addresses.append((tag, attribute.group(1).lower(), value))
            for at, index in indexes:
                value_start = next((start for start, end in values if start <= at < end), None)
                places.append(
                    (
                        index,
                        ("tag", token.start()) if value_start is None else ("attribute", token.start() + value_start),
                    )
                )
        else:
            places += [(index, ("text", 0)) for _at, index in indexes]
    return Reading(places, addresses)


def check_addresses(preparation: Preparation, addresses: list[tuple[str, str, str]]) -> None:
    """A backstop: every address with template code in the prepared HTML keeps to the rules."""
    scan, protected = preparation.scan, preparation.protected
    for tag, attribute, value in addresses:
        problem = url_template_problem(value, protected.pattern, protected.constructs)
        index = starts_with_template_code(value, protected.pattern)
        if problem is None and index is not None and index not in scan.url_expressions:
            problem = "start", index
        if problem is not None:
            scan.jinja_error(problem[1], link_message(problem[0], attribute, tag))


def check_template_code(preparation: Preparation, places: list[tuple[int, Place]], restored: str) -> None:
    """A backstop: the template code in the prepared source is exactly the code protected, in order."""
    constructs, rewritten = preparation.protected.constructs, preparation.scan.url_expressions
    expected = [rewritten.get(index, constructs[index].text) for index, _place in places]
    found, unclosed = jinja_constructs(restored)
    if unclosed is not None or [construct.text for construct in found] != expected:
        message = _("The template code could not be kept exactly as written; please report this.")
        preparation.errors.append(Problem(1, 1, message))


def check_lost(preparation: Preparation, prepared: str) -> None:
    """Template code that did not make it into the prepared HTML is an error (unless reported already)."""
    protected = preparation.protected
    kept = {int(match.group(1)) for match in protected.pattern.finditer(prepared)}
    kept |= preparation.css_tokens | preparation.scan.reported
    for index, construct in enumerate(protected.constructs):
        if index not in kept:
            preparation.errors.append(preparation.positions.at_source(construct.start, lost_message()))


def check_blocks_intact(preparation: Preparation, prepared: str) -> None:
    """A backstop: if the source's `{% if %}`, `{% for %}`... are closed in order, so must the prepared ones be.

    css-inline copies template code in a CSS value into every element a rule matches, or into none;
    a value that opens a block and another that closes it could come apart. Parsing with Jinja
    would tell as well, but takes a second for a large template; this takes a millisecond.
    """
    protected = preparation.protected
    if not any(construct.is_statement for construct in protected.constructs):
        return
    kept = [protected.constructs[int(found.group(1))] for found in protected.pattern.finditer(prepared)]
    if blocks_balanced(protected.constructs) and not blocks_balanced(kept):
        message = _("The template code could not be kept intact when the CSS was inlined; please report this.")
        preparation.errors.append(Problem(1, 1, message))


def blocks_balanced(constructs: list[Construct]) -> bool:
    open_blocks: list[str] = []
    for construct in constructs:
        word = construct.statement
        if word.startswith("end"):
            if not open_blocks or open_blocks.pop() != word[3:]:
                return False
        elif construct.opens_block:
            open_blocks.append(word)
    return not open_blocks


def position_of(problem: Problem) -> tuple[int, int]:
    return problem.line, problem.column


def escape(text: str) -> str:
    return html.escape(text, quote=True)


# Plain text ----------------------------------------------------------------------------------

PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "pre"})
LINES = frozenset({"div", "tr", "table", "section", "article", "header", "footer", "center", "hr", "address"})
LINES |= {"dl", "dt", "dd", "figure", "figcaption", "caption", "li"}
SKIPPED = frozenset({"head", "style", "script", "title", "noscript", "template"}) | (REMOVED_WITH_CONTENT - VOID_TAGS)
WHITESPACE = re.compile(r"\s+")
SPACES = re.compile(r"[^\S\n]+")
BLANK_LINES = re.compile(r"\n{3,}")
# Block elements leave a mark where a line (or paragraph) ends; marks next to each other, or to
# a <br>, make one break, so that </tr><tr> is one line break and </p><p> one blank line.
LINE, PARAGRAPH = "\x01", "\x02"
BREAKS = re.compile(r"\s*[\x01\x02][\x01\x02\s]*")


class TextExtractor(HTMLParser):
    """The text of a protected HTML source, laid out in lines; `{% %}` in dropped parts is kept."""

    def __init__(self, protected: Protected) -> None:
        super().__init__(convert_charrefs=True)
        self.protected = protected
        self.pieces: list[str] = []
        self.skipping: str | None = None
        self.skipping_depth = 0  # of elements like the one skipped, inside it
        self.links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text = self.get_starttag_text() or ""
        if self.skipping:
            self.skipping = None if (tag == "body" and self.skipping == "head") else self.skipping
            self.skipping_depth += tag == self.skipping
            self.keep_statements(text)
            return
        if tag in SKIPPED:
            self.skipping, self.skipping_depth = tag, 0
            self.keep_statements(text)
            return
        values = dict(attrs)
        self.keep_statements(text, {"a": "href", "img": "alt"}.get(tag))
        self.pieces.append(layout_before(tag))
        if tag == "a":
            self.links.append((values.get("href"), len(self.pieces)))
        elif tag == "img" and values.get("alt"):
            self.pieces.append(f" {values['alt']} ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if self.skipping == tag:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping:
                self.skipping_depth -= 1
                self.skipping = None if self.skipping_depth < 0 else self.skipping
            return
        if tag == "a" and self.links:
            href, mark = self.links.pop()
            text = WHITESPACE.sub(" ", BREAKS.sub(" ", "".join(self.pieces[mark:]))).strip()
            self.pieces[mark:] = [link_text(text, href)]
        self.pieces.append(PARAGRAPH if tag in PARAGRAPHS else LINE if tag in LINES else "")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            self.keep_statements(data)
        else:
            self.pieces.append(WHITESPACE.sub(" ", data))

    def handle_comment(self, data: str) -> None:
        self.keep_statements(data)

    def keep_statements(self, text: str, used_attribute: str | None = None) -> None:
        """`{% %}` in what is dropped, so that blocks stay balanced and `{% set %}` still runs."""
        if self.protected.marker not in text:
            return
        attributes = tag_attributes(text, 0) if used_attribute else []
        used = [(a.value_start, a.value_end) for a in attributes if a.name == used_attribute]
        for found in self.protected.pattern.finditer(text):
            inside_used = any(start <= found.start() < end for start, end in used)
            if self.protected.constructs[int(found.group(1))].is_statement and not inside_used:
                self.pieces.append(found.group())

    def text(self) -> str:
        text = BREAKS.sub(lambda found: "\n\n" if PARAGRAPH in found.group() else "\n", "".join(self.pieces))
        lines = (SPACES.sub(" ", line).strip() for line in text.split("\n"))
        return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def literal_braces(text: str, protected: Protected) -> str:
    """Each `{` that would start template code with what follows it, printed by template code:
    `{{ "{" }}` (not inside a `{% raw %}` block, which prints what it holds as it is)."""
    brace = re.compile(rf"\{{(?=[{{%#]|{protected.marker}\d+x)")
    pieces, position, raw = [], 0, False
    for found in protected.pattern.finditer(text):
        statement = protected.constructs[int(found.group(1))].statement
        if statement in ("raw", "endraw"):
            before = text[position : found.start()]
            pieces += [before if raw else brace.sub('{{ "{" }}', before), found.group()]
            position, raw = found.end(), statement == "raw"
    pieces.append(text[position:] if raw else brace.sub('{{ "{" }}', text[position:]))
    return "".join(pieces)


def layout_before(tag: str) -> str:
    if tag in PARAGRAPHS:
        return PARAGRAPH
    if tag == "li":
        return LINE + "- "
    if tag == "br":
        return "\n"
    if tag in LINES:
        return LINE
    return " " if tag in ("td", "th") else ""


def link_text(text: str, href: str | None) -> str:
    href = (href or "").strip()
    if not href or href.startswith("#") or href in (f"mailto:{text}", f"tel:{text}"):
        return text
    if not text or text == href:
        return href
    return f"{text} ({href})"
