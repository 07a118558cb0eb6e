"""The sandbox templates run in: Jinja2's immutable sandbox, narrowed to the context and guarded by limits.

What a template can reach: the context it is given (plain dicts, lists, text, numbers, dates),
the globals `range` (capped) and `block`, an allowlist of filters and tests, and a handful of
harmless methods (`"x".upper()`, `dict.items()`, `loop.cycle()`). Anything starting with `_`, any
other method, settings, the ORM, files: not reachable, and an attempt raises
`TemplateSecurityError`. A name outside the context is undefined and renders as empty.

Jinja has no instruction counter, so the limits are placed where work can grow:

- before compiling: the source's size; constructs that buffer or recurse (`macro`, `call`,
  `set ... endset`, `filter` blocks, recursive loops) and reach outside (`extends`, `import`,
  includes other than blocks) are refused, so nothing recurses but blocks, and blocks are
  checked for cycles and capped in depth;
- every `for` loop is rewritten to iterate through `guard_loop`: at most `MAX_LOOP_ITEMS` per
  loop and `MAX_ITERATIONS` per render, and the deadline is checked on every iteration;
- `range()` stops past `MAX_RANGE` items; `+`, `*`, `**` and `~` refuse results past
  `MAX_VALUE_CHARS` characters or `MAX_INT_BITS` bits before computing them, and text `%`
  formatting is refused; filters that can multiply their input (`replace`, `join`, `wordwrap`,
  `batch`) check the size first, and every filter checks the deadline and its result's size;
- the output is streamed and counted (render.py), and a block's output counts towards it.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from decimal import Decimal
from typing import Any, TypeGuard, cast

from django.utils.translation import gettext as _
from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, Undefined, nodes, pass_context
from jinja2.filters import FILTERS, do_batch, do_join, do_replace, do_sum, do_wordwrap, make_attrgetter
from jinja2.parser import Parser
from jinja2.runtime import Context, LoopContext, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.tests import TESTS
from jinja2.utils import pass_environment, pass_eval_context
from jinja2.visitor import NodeTransformer
from markupsafe import Markup, soft_str

from content.rendering import filters as dutch
from content.rendering.errors import Problem, RenderLimitError, TemplateSecurityError, TemplateSourceError

MAX_SOURCE_CHARS = 500_000
MAX_OUTPUT_CHARS = 1_000_000
MAX_VALUE_CHARS = 1_000_000
MAX_RANGE = 1_000
MAX_LOOP_ITEMS = 1_000
MAX_ITERATIONS = 100_000
MAX_INT_BITS = 1_024
MAX_BLOCK_DEPTH = 10
MAX_RENDER_SECONDS = 2.0

BLOCK_PREFIX = "block:"

# Channels and whether their output is HTML, so that contact data in it is escaped.
CHANNELS = {"email_html": True, "email_text": False, "sms": False, "script": False}

STR_METHODS = frozenset(
    {"upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip", "startswith", "endswith"}
)
DICT_METHODS = frozenset({"items", "keys", "values", "get"})
LOOP_METHODS = frozenset({"cycle", "changed"})

PUBLIC_FILTERS = (
    "abs",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "forceescape",
    "groupby",
    "int",
    "items",
    "last",
    "length",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "reject",
    "rejectattr",
    "reverse",
    "round",
    "select",
    "selectattr",
    "sort",
    "string",
    "striptags",
    "title",
    "trim",
    "truncate",
    "unique",
    "upper",
    "urlencode",
    "wordcount",
)
PUBLIC_TESTS = tuple(sorted(set(TESTS) - {"callable", "filter", "test"}))

FORBIDDEN_TAGS: dict[type[nodes.Node], str] = {
    nodes.Macro: "macro",
    nodes.CallBlock: "call",
    nodes.FilterBlock: "filter",
    nodes.AssignBlock: "set",
    nodes.Extends: "extends",
    nodes.Block: "block",
    nodes.Import: "import",
    nodes.FromImport: "from",
    nodes.ScopedEvalContextModifier: "autoescape",
    nodes.EvalContextModifier: "autoescape",
}
ALLOWED_NODES = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.If,
    nodes.For,
    nodes.Assign,
    nodes.With,
    nodes.Include,
    nodes.Name,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Slice,
    nodes.Const,
    nodes.List,
    nodes.Tuple,
    nodes.Dict,
    nodes.Pair,
    nodes.Keyword,
    nodes.Filter,
    nodes.Test,
    nodes.Call,
    nodes.CondExpr,
    nodes.Compare,
    nodes.Operand,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.Neg,
    nodes.Pos,
    nodes.Add,
    nodes.Sub,
    nodes.Mul,
    nodes.Div,
    nodes.FloorDiv,
    nodes.Mod,
    nodes.Pow,
    nodes.Concat,
)


# --- Per-render state ------------------------------------------------------------------------


class RenderState:
    """The budget of one render, shared by the template and the blocks it includes."""

    __slots__ = ("blocks", "chain", "deadline", "iterations", "output", "pending")

    def __init__(self, blocks: Mapping[str, Template]) -> None:
        self.blocks = blocks
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.iterations = 0
        self.output = 0  # characters yielded by the template
        self.pending = 0  # characters rendered by blocks, not yet yielded
        self.chain: list[str] = []

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimitError(
                _("The template took longer than %(seconds)s seconds to render.") % {"seconds": MAX_RENDER_SECONDS}
            )

    def check_output(self) -> None:
        if self.output + self.pending > MAX_OUTPUT_CHARS:
            raise RenderLimitError(
                _("The message is longer than %(limit)s characters.") % {"limit": f"{MAX_OUTPUT_CHARS:,}"}
            )


RENDER_STATE: ContextVar[RenderState | None] = ContextVar("dialoog_render_state", default=None)


def check_time() -> None:
    state = RENDER_STATE.get()
    if state is not None:
        state.check_time()


def check_size(value: Any) -> Any:
    if isinstance(value, str | list | tuple) and len(value) > MAX_VALUE_CHARS:
        raise RenderLimitError(
            _("A value in the template grew past %(limit)s characters or items.") % {"limit": f"{MAX_VALUE_CHARS:,}"}
        )
    return value


def too_big(size: int) -> None:
    if size > MAX_VALUE_CHARS:
        raise RenderLimitError(
            _("A value in the template grew past %(limit)s characters or items.") % {"limit": f"{MAX_VALUE_CHARS:,}"}
        )


# --- What templates can call -----------------------------------------------------------------


class TemplateFunction:
    """A callable a template may call; it renders as nothing, so no address or module leaks."""

    __slots__ = ("function", "jinja_pass_arg")

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        pass_arg = getattr(function, "jinja_pass_arg", None)
        if pass_arg is not None:
            self.jinja_pass_arg = pass_arg

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __str__(self) -> str:
        return ""

    def __html__(self) -> str:
        return ""

    __repr__ = __str__


def capped_range(*args: Any) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise RenderLimitError(
            _("range() gives at most %(limit)s numbers; this one gives %(count)s.")
            % {"limit": f"{MAX_RANGE:,}", "count": f"{len(numbers):,}"}
        )
    return numbers


def guard_loop(iterable: Any) -> Iterator[Any]:
    try:
        count = len(iterable)
    except TypeError:
        count = 0
    if count > MAX_LOOP_ITEMS:
        raise RenderLimitError(
            _("A loop goes over at most %(limit)s items; this one has %(count)s.")
            % {"limit": f"{MAX_LOOP_ITEMS:,}", "count": f"{count:,}"}
        )
    return counted(iterable, RENDER_STATE.get())


def counted(iterable: Iterable[Any], state: RenderState | None) -> Iterator[Any]:
    for index, item in enumerate(iterable):
        if index >= MAX_LOOP_ITEMS:
            raise RenderLimitError(_("A loop goes over at most %(limit)s items.") % {"limit": f"{MAX_LOOP_ITEMS:,}"})
        if state is not None:
            state.iterations += 1
            if state.iterations > MAX_ITERATIONS:
                raise RenderLimitError(
                    _("The template's loops ran more than %(limit)s times in all.") % {"limit": f"{MAX_ITERATIONS:,}"}
                )
            state.check_time()
        yield item


@pass_eval_context
def guard_concat(eval_ctx: Any, values: list[Any]) -> str:
    too_big(sum(len(soft_str(value)) for value in values))
    return markup_join(values) if eval_ctx.autoescape else str_join(values)


@pass_context
def render_block(context: Context, slug: str) -> str:
    state = RENDER_STATE.get()
    template = state.blocks.get(slug) if state is not None else None
    if state is None or template is None:
        raise RenderLimitError(_("Block “%(slug)s” does not exist or is not published.") % {"slug": slug})
    if slug in state.chain:
        raise RenderLimitError(
            _("Block “%(slug)s” includes itself: %(chain)s.")
            % {"slug": slug, "chain": " → ".join([*state.chain, slug])}
        )
    if len(state.chain) >= MAX_BLOCK_DEPTH:
        raise RenderLimitError(
            _("Blocks are nested more than %(limit)s deep: %(chain)s.")
            % {"limit": MAX_BLOCK_DEPTH, "chain": " → ".join([*state.chain, slug])}
        )
    static = getattr(template, "dialoog_static", False)
    if static and "dialoog_output" in template.__dict__:
        text = template.dialoog_output  # type: ignore[attr-defined]
        return Markup(text) if context.eval_ctx.autoescape else text  # noqa: S704 - rendered by our sandbox
    state.chain.append(slug)
    parts: list[str] = []
    size = 0
    try:
        for chunk in template.root_render_func(template.new_context(context.get_all(), True)):
            size += len(chunk)
            state.pending += len(chunk)
            state.check_output()
            parts.append(chunk)
    finally:
        state.chain.pop()
        state.pending -= size
    text = "".join(parts)
    if static:
        template.dialoog_output = text  # type: ignore[attr-defined]
    return Markup(text) if context.eval_ctx.autoescape else text  # noqa: S704 - rendered by our sandbox, escaped there


class BoundMethod(TemplateFunction):
    """One of the allowed methods (`"x".upper`), wrapped so that it renders as nothing."""

    __slots__ = ()


class MissingValue(ChainableUndefined):
    """A value the context lacks: renders as "", `default` replaces it, and it never fails a send.

    Attributes and items of it are missing too; arithmetic with it is missing; comparisons with
    it are false.
    """

    __slots__ = ()

    def _missing(self, *args: Any, **kwargs: Any) -> MissingValue:
        return self

    def _false(self, other: Any) -> bool:
        return False

    # Undefined declares these as always failing (returning Never); here they return the missing value.
    __call__ = _missing  # type: ignore[assignment]
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _missing  # type: ignore[assignment]
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _missing  # type: ignore[assignment]
    __pow__ = __rpow__ = __neg__ = __pos__ = _missing  # type: ignore[assignment]
    __lt__ = __le__ = __gt__ = __ge__ = _false  # type: ignore[assignment]


# --- Filters and tests -----------------------------------------------------------------------


def guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, checking the deadline before and the size of its result after."""

    @functools.wraps(function)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        check_time()
        return check_size(function(*args, **kwargs))

    return filter_


@pass_eval_context
def join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    items = list(value)
    if attribute is not None:
        items = list(map(make_attrgetter(eval_ctx.environment, attribute), items))
    too_big(sum(len(soft_str(item)) for item in items) + len(soft_str(d)) * max(len(items) - 1, 0))
    return do_join(eval_ctx, items, d)


@pass_eval_context
def replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    text, old_text, new_text = soft_str(s), soft_str(old), soft_str(new)
    occurrences = text.count(old_text) if old_text else len(text) + 1
    if count is not None and 0 <= count < occurrences:
        occurrences = count
    too_big(len(text) + occurrences * (len(new_text) - len(old_text)))
    return do_replace(eval_ctx, s, old, new, count)


@pass_environment
def wordwrap(
    environment: Any, s: str, width: int = 79, break_long_words: bool = True, wrapstring: str | None = None
) -> str:
    text = soft_str(s)
    too_big(len(text) + (len(text) // max(int(width), 1) + 1) * len(wrapstring or "\n"))
    return do_wordwrap(environment, s, width, break_long_words, wrapstring)


def batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if not 1 <= int(linecount) <= MAX_LOOP_ITEMS:
        raise RenderLimitError(_("batch() takes 1 to %(limit)s items a row.") % {"limit": f"{MAX_LOOP_ITEMS:,}"})
    return do_batch(value, linecount, fill_with)


@pass_environment
def sum_(environment: Any, iterable: Iterable[Any], attribute: str | int | None = None, start: Any = 0) -> Any:
    if isinstance(start, bool) or not isinstance(start, int | float | Decimal):
        raise RenderLimitError(_("sum() adds numbers only."))
    return do_sum(environment, iterable, attribute, start)


def template_filters() -> dict[str, Callable[..., Any]]:
    own = {
        "currency": dutch.currency,
        "date": dutch.date,
        "number": dutch.number,
        "safe_url": dutch.safe_url,
        "join": join,
        "replace": replace,
        "wordwrap": wordwrap,
        "batch": batch,
        "sum": sum_,
    }
    return {name: guarded(function) for name, function in {**{n: FILTERS[n] for n in PUBLIC_FILTERS}, **own}.items()}


# --- The environment ---------------------------------------------------------------------------


class TemplateEnvironment(ImmutableSandboxedEnvironment):
    """One per channel (`environment_for`); autoescaped for HTML channels."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=MissingValue, cache_size=0, keep_trailing_newline=True)
        self.globals = {"range": TemplateFunction(capped_range), "block": TemplateFunction(render_block)}
        self.filters = template_filters()
        self.tests = {name: TESTS[name] for name in PUBLIC_TESTS}
        # Reached only through nodes the rewrite inserts (EnvironmentAttribute), never by name.
        self.dialoog_loop = TemplateFunction(guard_loop)
        self.dialoog_concat = TemplateFunction(guard_concat)
        self.dialoog_block = TemplateFunction(render_block)

    # Attribute access ----------------------------------------------------------------------

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute[:1] == "_":
            self.unsafe_undefined(obj, attribute)
        if type(obj) is dict:  # a context value: its keys come before dict's methods
            try:
                return obj[attribute]
            except KeyError:
                pass
        return self.method(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, str) and argument[:1] == "_":
            self.unsafe_undefined(obj, argument)
        return self.method(super().getitem(obj, argument))

    @staticmethod
    def method(value: Any) -> Any:
        if callable(value) and not isinstance(value, Undefined | TemplateFunction):
            return BoundMethod(value)  # is_safe_attribute let only allowed methods through
        return value

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if isinstance(value, Undefined) or not callable(value):
            return True
        return (
            (isinstance(obj, str) and attr in STR_METHODS)
            or (isinstance(obj, dict) and attr in DICT_METHODS)
            or (isinstance(obj, LoopContext) and attr in LOOP_METHODS)
        )

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise TemplateSecurityError(
            _("“%(attribute)s” is not available in templates; they can read their context only.")
            % {"attribute": attribute}
        )

    def wrap_str_format(self, value: Any) -> None:
        return None  # "...".format is not an allowed method, so it is refused like the others

    def is_safe_callable(self, obj: Any) -> bool:
        return isinstance(obj, TemplateFunction | MissingValue)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if not self.is_safe_callable(obj):
            raise TemplateSecurityError(
                _("Only range(), block() and a few text methods such as upper() can be called in templates.")
            )
        return context.call(obj, *args, **kwargs)

    # Operators -----------------------------------------------------------------------------

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_time()
        if operator == "**":
            if is_int(left) and is_int(right) and right > 0 and max(left.bit_length(), 1) * right > MAX_INT_BITS:
                raise RenderLimitError(_("A number in the template is too big."))
        elif operator == "*":
            if is_int(left) and is_int(right):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise RenderLimitError(_("A number in the template is too big."))
            elif is_int(right) and isinstance(left, str | list | tuple):
                too_big(len(left) * right)
            elif is_int(left) and isinstance(right, str | list | tuple):
                too_big(len(right) * left)
        elif operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                too_big(len(left) + len(right))
        elif operator == "%" and isinstance(left, str):
            raise TemplateSecurityError(_("Formatting text with % is not available; use the filters."))
        return self.binop_table[operator](left, right)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@functools.cache
def environment_for(channel: str) -> TemplateEnvironment:
    if channel not in CHANNELS:
        raise ValueError(f"Unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}.")
    return TemplateEnvironment(autoescape=CHANNELS[channel])


# --- Source to syntax tree ---------------------------------------------------------------------


def column_of(source: str, line: int, *patterns: str) -> int:
    """The 1-based column of the first pattern found on `line`, else 1."""
    lines = source.splitlines()
    if not 1 <= line <= len(lines):
        return 1
    for pattern in patterns:
        found = re.search(pattern, lines[line - 1])
        if found:
            return found.start(found.lastindex or 0) + 1
    return 1


def as_text(source: str | bytes) -> str:
    """The source as text: bytes must be UTF-8, and the source at most `MAX_SOURCE_CHARS` long."""
    if isinstance(source, bytes):
        raw = source
        if len(raw) > 4 * MAX_SOURCE_CHARS:
            raise TemplateSourceError([too_long(len(raw))])
        try:
            source = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            before = raw[: error.start].decode("utf-8", errors="replace")
            message = _("The template is not valid UTF-8: byte 0x%(byte)02x cannot be read.") % {
                "byte": raw[error.start]
            }
            raise TemplateSourceError([Problem.at(before, len(before), message)]) from error
    elif not isinstance(source, str):
        raise TypeError(f"A template's source is text, not {type(source).__name__}.")
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateSourceError([too_long(len(source))])
    unreadable = [index for index in (source.find("\x00"), source.find("\ufffd")) if index >= 0]
    if unreadable:
        message = _(
            "The template holds a character that could not be read (a NUL byte or �); "
            "was it pasted from a file in another encoding?"
        )
        raise TemplateSourceError([Problem.at(source, min(unreadable), message)])
    return source


def too_long(size: int) -> Problem:
    return Problem(
        1,
        1,
        _("The template is %(size)s characters long; the limit is %(limit)s.")
        % {"size": f"{size:,}", "limit": f"{MAX_SOURCE_CHARS:,}"},
    )


def parse(environment: TemplateEnvironment, source: str) -> nodes.Template:
    """The syntax tree of `source`, or TemplateSourceError with the line and column of the syntax error."""
    parser: Parser | None = None
    try:
        parser = Parser(environment, source)
        return parser.parse()
    except TemplateSyntaxError as error:
        line = error.lineno or 1
        at = re.search(r" at (\d+)$", error.message or "")
        message = _("Syntax error: %(error)s") % {"error": error.message}
        if at and int(at.group(1)) <= len(source):
            problem = Problem.at(source, int(at.group(1)), message)
        else:
            problem = Problem(line, syntax_error_column(source, line, parser, error.message or ""), message)
        raise TemplateSourceError([problem]) from error
    except RecursionError as error:
        line = parser.stream.current.lineno if parser is not None else 1
        raise TemplateSourceError([Problem(line, 1, _("The template is nested too deeply."))]) from error
    except ValueError as error:  # such as an integer literal longer than Python reads
        line = parser.stream.current.lineno if parser is not None else 1
        raise TemplateSourceError(
            [Problem(line, 1, _("The template cannot be read: %(error)s") % {"error": error})]
        ) from error


def syntax_error_column(source: str, line: int, parser: Parser | None, message: str) -> int:
    lines = source.splitlines()
    unexpected = re.match(r"unexpected '([^' ]{1,3})'", message)
    if unexpected and 1 <= line <= len(lines) and unexpected.group(1) in lines[line - 1]:
        return lines[line - 1].index(unexpected.group(1)) + 1
    if parser is None:
        return 1
    token = parser.stream.current
    if token.type == "eof":
        return len(lines[-1]) + 1 if lines else 1
    if token.lineno != line or not 1 <= line <= len(lines):
        return 1
    found = lines[line - 1].find(str(token.value))
    return found + 1 if found >= 0 else 1


# --- Structure: what a template may contain, and the rewrite that adds the guards -----------


def node_pattern(node: nodes.Node) -> tuple[str, ...]:
    tag = FORBIDDEN_TAGS.get(type(node))
    if tag:
        return (r"\{%-?\s*(" + tag + r")\b",)
    return ()


def structure_problems(source: str, tree: nodes.Template) -> list[Problem]:
    """Constructs a template may not contain, each with where it is."""
    problems: list[Problem] = []
    # A block's HTML is printed as it is: only `{{ block("x") }}` on its own may use it, so that no
    # filter, slice or `~` can reshape trusted markup (`block("x") | replace("p", "script")`).
    printed_blocks = {
        id(child.node) for output in tree.find_all(nodes.Output) for child in output.nodes if is_block_call(child)
    }
    for name in tree.find_all(nodes.Name):
        if name.name == "block" and name.ctx == "load" and id(name) not in printed_blocks:
            line = name.lineno or 1
            message = (
                _(
                    'A block is printed on its own, as {{ block("footer") }} or {%% include "block:footer" %%}; '
                    "filters and other expressions cannot change it."
                )
                % {}
            )  # "%%" is a literal "%" once formatted
            problems.append(Problem(line, column_of(source, line, r"\b(block)\b"), message))
    for node in tree.find_all(nodes.Node):
        line = node.lineno or 1
        if isinstance(node, ALLOWED_NODES):
            if isinstance(node, nodes.For) and node.recursive:
                message = _("Recursive loops are not available in templates.")
                problems.append(Problem(line, column_of(source, line, r"\b(recursive)\b"), message))
            elif isinstance(node, nodes.Include) and include_slug(node) is None:
                message = _('Only blocks can be included, by their slug: {%% include "block:footer" %%}.') % {}
                problems.append(Problem(line, column_of(source, line, r"\b(include)\b"), message))
            elif is_block_call(node) and call_slug(node) is None:
                message = _('A block is named by its slug in quotes: block("footer").')
                problems.append(Problem(line, column_of(source, line, r"\b(block)\s*\("), message))
            continue
        tag = FORBIDDEN_TAGS.get(type(node))
        if tag:
            message = _("{%% %(tag)s %%} is not available in templates.") % {"tag": tag}
        else:
            message = _("This construct is not available in templates.")
        problems.append(Problem(line, column_of(source, line, *node_pattern(node)), message))
    return problems


def include_slug(node: nodes.Include) -> str | None:
    name = node.template.value if isinstance(node.template, nodes.Const) else None
    if isinstance(name, str) and name.startswith(BLOCK_PREFIX) and len(name) > len(BLOCK_PREFIX):
        return name[len(BLOCK_PREFIX) :]
    return None


def is_block_call(node: nodes.Node) -> TypeGuard[nodes.Call]:
    return isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "block"


def call_slug(node: nodes.Call) -> str | None:
    if len(node.args) == 1 and not node.kwargs and node.dyn_args is None and node.dyn_kwargs is None:
        argument = node.args[0]
        if isinstance(argument, nodes.Const) and isinstance(argument.value, str) and argument.value:
            return argument.value
    return None


def block_references(tree: nodes.Template) -> list[tuple[str, int]]:
    """The slugs of the blocks a template includes, with the line of each inclusion."""
    references = []
    for node in tree.find_all((nodes.Include, nodes.Call)):
        slug = (
            include_slug(node) if isinstance(node, nodes.Include) else call_slug(node) if is_block_call(node) else None
        )
        if slug is not None:
            references.append((slug, node.lineno))
    return references


class AddGuards(NodeTransformer):
    """Loops iterate through `guard_loop`, `~` goes through `guard_concat`, includes render blocks."""

    def guard(self, name: str, argument: nodes.Expr, lineno: int) -> nodes.Call:
        return nodes.Call(nodes.EnvironmentAttribute(name, lineno=lineno), [argument], [], None, None, lineno=lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        # Jinja types For.iter as any Node; the parser only ever puts an expression there.
        node.iter = self.guard("dialoog_loop", cast(nodes.Expr, node.iter), node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self.guard("dialoog_concat", nodes.List(node.nodes, lineno=node.lineno), node.lineno)

    def visit_Include(self, node: nodes.Include) -> nodes.Node:
        slug = include_slug(node)
        return nodes.Output([self.guard("dialoog_block", nodes.Const(slug), node.lineno)], lineno=node.lineno)


def add_guards(environment: TemplateEnvironment, tree: nodes.Template) -> nodes.Template:
    guarded_tree = AddGuards().visit(tree)
    guarded_tree.set_environment(environment)
    return guarded_tree
