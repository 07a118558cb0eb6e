"""The checks run when a template or block is saved: every problem, each with its line and column.

    problems = check_template(source, channel="email_html", blocks={"footer": "..."}, published={"footer"})

Reports: a source too big or not UTF-8; a syntax error; constructs the sandbox refuses; a
variable the context does not have, checked against `context.SCHEMA` (with a suggestion:
"contact.first_nam (did you mean contact.first_name?)"), including the fields of a loop's items;
attributes starting with `_`; calls other than `range()`, `block()` and the allowed methods;
unknown filters, tests and date formats; a `range()` of constants past the cap; blocks that do
not exist, are not published, have errors, or include themselves (naming the chain).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping

from django.utils.translation import gettext as _
from jinja2 import nodes

from content.rendering.context import (
    ANY,
    ANYTHING,
    DATE,
    FUNCTION,
    LIST,
    LOOP,
    MAP,
    NUMBER,
    OBJECT,
    SCHEMA,
    TEXT,
    Field,
    list_of,
    scalar,
)
from content.rendering.environment import (
    DICT_METHODS,
    LOOP_METHODS,
    MAX_BLOCK_DEPTH,
    MAX_INT_BITS,
    MAX_RANGE,
    STR_METHODS,
    TemplateEnvironment,
    as_text,
    block_references,
    call_slug,
    column_of,
    environment_for,
    include_slug,
    is_block_call,
    parse,
    structure_problems,
)
from content.rendering.errors import Problem, TemplateSourceError
from content.rendering.filters import DATE_FORMATS

LOOP_FIELD = Field(
    LOOP,
    fields=dict.fromkeys(
        ("index", "index0", "revindex", "revindex0", "first", "last", "length", "previtem", "nextitem"), ANYTHING
    ),
)
DATE_ATTRIBUTES = frozenset({"year", "month", "day", "hour", "minute"})
RANGE = Field(FUNCTION, "range")
BLOCK = Field(FUNCTION, "block")
GLOBALS = {"range": RANGE, "block": BLOCK}
KEEPS_TYPE = frozenset({"d", "default", "sort", "reverse", "unique", "list", "select", "reject"})
KEEPS_LIST = frozenset({"selectattr", "rejectattr"})
GIVES_ITEM = frozenset({"first", "last", "min", "max"})
NUMBER_KINDS = frozenset({NUMBER, "money", "boolean"})


def check_template(
    source: str | bytes,
    *,
    channel: str,
    blocks: Mapping[str, str],
    published: Iterable[str],
    slug: str | None = None,
) -> list[Problem]:
    """Every problem in `source`, in order. `slug` is the block being saved, when it is one."""
    environment = environment_for(channel)
    try:
        text = as_text(source)
        tree = parse(environment, text)
    except TemplateSourceError as error:
        return error.problems
    checker = Checker(environment, text)
    checker.problems.extend(structure_problems(text, tree))
    checker.statements(tree.body, {})
    all_blocks = {**blocks, slug: text} if slug else dict(blocks)
    checker.check_blocks(tree, all_blocks, set(published), slug)
    return sorted(set(checker.problems), key=lambda problem: (problem.line, problem.column, problem.message))


def path_of(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        base = path_of(node.node)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        base = path_of(node.node)
        if base is None:
            return None
        value = node.arg.value
        return f"{base}.{value}" if isinstance(value, str) else f"{base}[{value!r}]"
    return None


def path_pattern(path: str) -> str:
    segments = [re.escape(segment) for segment in re.split(r"\.", path) if segment]
    return r"\b(" + r"\s*\.\s*".join(segments) + r")\b"


def suggestion(word: str, candidates: Iterable[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return _(" (did you mean %(name)s?)") % {"name": f"{prefix}{close[0]}"} if close else ""


def const_int(node: nodes.Node) -> int | None:
    """The value of a constant integer expression such as `10**9`, computed within the int cap."""
    if isinstance(node, nodes.Const) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, nodes.Neg):
        value = const_int(node.node)
        return None if value is None else -value
    if isinstance(node, nodes.Pow | nodes.Mul | nodes.Add | nodes.Sub):
        left, right = const_int(node.left), const_int(node.right)
        if left is None or right is None:
            return None
        if isinstance(node, nodes.Pow):
            if right < 0 or max(left.bit_length(), 1) * right > MAX_INT_BITS:
                return None
            return left**right
        if isinstance(node, nodes.Mul):
            return left * right if left.bit_length() + right.bit_length() <= MAX_INT_BITS else None
        return left + right if isinstance(node, nodes.Add) else left - right
    return None


class Checker:
    def __init__(self, environment: TemplateEnvironment, source: str) -> None:
        self.environment = environment
        self.source = source
        self.problems: list[Problem] = []
        self.saving: str | None = None  # the slug of the block being checked, when it is one
        self.clean_blocks: set[str] = set()  # blocks whose inclusions were checked and found fine

    def report(self, node: nodes.Node, message: str, *patterns: str) -> None:
        line = node.lineno or 1
        self.problems.append(Problem(line, column_of(self.source, line, *patterns), message))

    # Statements ------------------------------------------------------------------------------

    def statements(self, body: list[nodes.Node], scope: dict[str, Field]) -> None:
        for node in body:
            self.statement(node, scope)

    def statement(self, node: nodes.Node, scope: dict[str, Field]) -> None:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if not isinstance(child, nodes.TemplateData):
                    self.expr(child, scope)
        elif isinstance(node, nodes.If):
            self.expr(node.test, scope)
            self.statements(node.body, scope)
            for branch in node.elif_:
                self.statement(branch, scope)
            self.statements(node.else_, scope)
        elif isinstance(node, nodes.For):
            iterated = self.expr(node.iter, scope)
            inner = dict(scope)
            self.bind(node.target, item_of(iterated), inner)
            inner["loop"] = LOOP_FIELD
            if node.test is not None:
                self.expr(node.test, inner)
            self.statements(node.body, inner)
            self.statements(node.else_, scope)
        elif isinstance(node, nodes.Assign):
            self.bind(node.target, self.expr(node.node, scope), scope)
        elif isinstance(node, nodes.With):
            inner = dict(scope)
            for target, value in zip(node.targets, node.values, strict=False):
                self.bind(target, self.expr(value, scope), inner)
            self.statements(node.body, inner)
        elif isinstance(node, nodes.Include):
            pass  # checked with the blocks
        else:  # refused by the structure check; still look inside for more problems
            for part in node.iter_child_nodes():
                if isinstance(part, nodes.Expr):
                    self.expr(part, scope)
                else:
                    self.statement(part, scope)

    def bind(self, target: nodes.Node, field: Field | None, scope: dict[str, Field]) -> None:
        if isinstance(target, nodes.Name):
            scope[target.name] = field or ANYTHING
        elif isinstance(target, nodes.Tuple):
            for item in target.items:
                self.bind(item, ANYTHING, scope)

    # Expressions: each returns the Field it reads, ANYTHING when unknown, None after a problem --

    def expr(self, node: nodes.Node, scope: dict[str, Field]) -> Field | None:
        if isinstance(node, nodes.Name):
            return self.name(node, scope)
        if isinstance(node, nodes.Getattr):
            return self.member(node, self.expr(node.node, scope), node.attr)
        if isinstance(node, nodes.Getitem):
            base = self.expr(node.node, scope)
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                return self.member(node, base, node.arg.value)
            self.expr(node.arg, scope)
            if base is None:
                return None
            if isinstance(node.arg, nodes.Slice) or base.kind == TEXT:
                return base
            return item_of(base) if base.kind in (LIST, MAP) else ANYTHING
        if isinstance(node, nodes.Call):
            return self.call(node, scope)
        if isinstance(node, nodes.Filter):
            return self.filter(node, scope)
        if isinstance(node, nodes.Test):
            self.arguments(node, scope)
            if node.name not in self.environment.tests:
                message = _("Unknown test “%(name)s”%(hint)s.") % {
                    "name": node.name,
                    "hint": suggestion(node.name, self.environment.tests),
                }
                self.report(node, message, r"\bis\s+(?:not\s+)?(" + re.escape(node.name) + r")\b")
            return scalar("boolean", "")
        if isinstance(node, nodes.Mod) and isinstance(node.left, nodes.Const) and isinstance(node.left.value, str):
            self.report(node, _("Formatting text with % is not available; use the filters."), r"[\"']\s*(%)")
        if isinstance(node, nodes.Const):
            return scalar(TEXT if isinstance(node.value, str) else NUMBER, "")
        for child in node.iter_child_nodes():
            self.expr(child, scope)
        return ANYTHING

    def name(self, node: nodes.Name, scope: dict[str, Field]) -> Field | None:
        if node.name in scope:
            return scope[node.name]
        if node.name in SCHEMA.fields:
            return SCHEMA.fields[node.name]
        if node.name in GLOBALS:
            return GLOBALS[node.name]
        known = [*scope, *SCHEMA.fields]
        message = _("Unknown variable %(name)s%(hint)s.") % {"name": node.name, "hint": suggestion(node.name, known)}
        self.report(node, message, path_pattern(node.name))
        return None

    def member(self, node: nodes.Getattr | nodes.Getitem, base: Field | None, attribute: str) -> Field | None:
        path = path_of(node) or attribute
        if attribute.startswith("_"):
            message = _("“%(name)s” is not available in templates; they can read their context only.") % {
                "name": attribute
            }
            self.report(node, message, r"(" + re.escape(attribute) + r")")
            return None
        if base is None:
            return None
        if base.kind == OBJECT or base.kind == LOOP:
            if attribute in base.fields:
                return base.fields[attribute]
            if base.kind == LOOP and attribute in LOOP_METHODS:
                return Field(FUNCTION, "method")
            prefix = path[: -len(attribute)]
            message = _("Unknown variable %(name)s%(hint)s.") % {
                "name": path,
                "hint": suggestion(attribute, base.fields, prefix),
            }
        elif base.kind == MAP:
            return base.item or ANYTHING
        elif base.kind == ANY:
            return ANYTHING
        elif base.kind == TEXT and attribute in STR_METHODS:
            return Field(FUNCTION, "method")
        elif base.kind == DATE and attribute in DATE_ATTRIBUTES:
            return scalar(NUMBER, "")
        elif base.kind == LIST:
            message = _("%(name)s is a list: loop over it, or take one item with [0].") % {
                "name": path[: -len(attribute) - 1]
            }
        else:
            message = _("%(name)s has no “%(attribute)s”.") % {
                "name": path[: -len(attribute) - 1],
                "attribute": attribute,
            }
        self.report(node, message, path_pattern(path), r"\b(" + re.escape(attribute) + r")\b")
        return None

    def call(self, node: nodes.Call, scope: dict[str, Field]) -> Field | None:
        self.arguments(node, scope)
        callee = node.node
        if isinstance(callee, nodes.Name) and callee.name == "range" and "range" not in scope:
            numbers = [const_int(argument) for argument in node.args]
            if node.args and all(number is not None for number in numbers) and not node.kwargs:
                try:
                    count = len(range(*numbers))  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    count = 0
                if count > MAX_RANGE:
                    message = _("range() gives at most %(limit)s numbers; this one gives %(count)s.") % {
                        "limit": f"{MAX_RANGE:,}",
                        "count": f"{count:,}",
                    }
                    self.report(node, message, r"\b(range)\s*\(")
            return list_of("", scalar(NUMBER, ""))
        if is_block_call(node) and "block" not in scope:
            return scalar(TEXT, "")
        if isinstance(callee, nodes.Getattr):
            base = self.expr(callee.node, scope)
            if base is None:
                return None
            allowed = (
                DICT_METHODS
                if base.kind in (OBJECT, MAP)
                else STR_METHODS
                if base.kind == TEXT
                else LOOP_METHODS
                if base.kind == LOOP
                else STR_METHODS | DICT_METHODS
                if base.kind == ANY
                else frozenset()
            )
            if callee.attr in allowed:
                return ANYTHING if callee.attr in DICT_METHODS else base
            if callee.attr.startswith("_"):
                return self.member(callee, base, callee.attr)
        else:
            self.expr(callee, scope)
        message = _("Only range(), block() and a few text methods such as upper() can be called in templates.")
        self.report(node, message, r"(\w+)\s*\(")
        return None

    def filter(self, node: nodes.Filter, scope: dict[str, Field]) -> Field | None:
        base = self.expr(node.node, scope) if node.node is not None else ANYTHING
        self.arguments(node, scope)
        if node.name not in self.environment.filters:
            message = _("Unknown filter “%(name)s”%(hint)s.") % {
                "name": node.name,
                "hint": suggestion(node.name, self.environment.filters),
            }
            self.report(node, message, r"\|\s*(" + re.escape(node.name) + r")\b")
            return None
        date_format = node.args[0] if node.name == "date" and node.args else None
        if isinstance(date_format, nodes.Const) and date_format.value not in DATE_FORMATS:
            message = _("Unknown date format “%(name)s”; use one of %(formats)s.") % {
                "name": date_format.value,
                "formats": ", ".join(DATE_FORMATS),
            }
            self.report(node, message, r"\b(date)\s*\(")
        if base is None:
            return None
        if node.name in KEEPS_TYPE or (node.name in KEEPS_LIST and base.kind == LIST):
            return base
        if node.name in GIVES_ITEM and base.kind == LIST:
            return item_of(base)
        return ANYTHING

    def arguments(self, node: nodes.Call | nodes.Filter | nodes.Test, scope: dict[str, Field]) -> None:
        for argument in node.args:
            self.expr(argument, scope)
        for keyword in node.kwargs:
            self.expr(keyword.value, scope)
        for dynamic in (node.dyn_args, node.dyn_kwargs):
            if dynamic is not None:
                self.expr(dynamic, scope)

    # Blocks ----------------------------------------------------------------------------------

    def check_blocks(
        self, tree: nodes.Template, blocks: Mapping[str, str], published: set[str], slug: str | None
    ) -> None:
        self.saving = slug
        graph: dict[str, list[str] | None] = {}  # slug -> the slugs it includes; None when it has errors

        def includes(name: str) -> list[str] | None:
            if name not in graph:
                try:
                    graph[name] = [child for child, _line in block_references(parse(self.environment, blocks[name]))]
                except TemplateSourceError:
                    graph[name] = None
            return graph[name]

        for node in tree.find_all((nodes.Include, nodes.Call)):
            name = (
                include_slug(node)
                if isinstance(node, nodes.Include)
                else call_slug(node)
                if is_block_call(node)
                else None
            )
            if name is None:
                continue
            patterns = (r"block:(" + re.escape(name) + r")\b", r"[\"'](" + re.escape(name) + r")[\"']")
            if name not in blocks:
                message = _("Block “%(slug)s” does not exist%(hint)s.") % {
                    "slug": name,
                    "hint": suggestion(name, blocks),
                }
                self.report(node, message, *patterns)
                continue
            if name not in published and name != slug:
                message = _("Block “%(slug)s” is not published.") % {"slug": name}
                self.report(node, message, *patterns)
            problem = self.block_chain_problem(name, [slug] if slug else [], blocks, published, includes)
            if problem:
                self.report(node, problem, *patterns)

    def block_chain_problem(
        self,
        name: str,
        chain: list[str],
        blocks: Mapping[str, str],
        published: set[str],
        includes: Callable[[str], list[str] | None],
    ) -> str | None:
        """The first problem on the way down from block `name`: a cycle, depth, a missing or broken block."""
        chain = [*chain, name]
        if name in chain[:-1]:
            return _("Block “%(slug)s” includes itself: %(chain)s.") % {"slug": name, "chain": " → ".join(chain)}
        if len(chain) > MAX_BLOCK_DEPTH:
            return _("Blocks are nested more than %(limit)s deep: %(chain)s.") % {
                "limit": MAX_BLOCK_DEPTH,
                "chain": " → ".join(chain),
            }
        if name not in blocks:
            return _("Block “%(parent)s” includes block “%(slug)s”, which does not exist.") % {
                "parent": chain[-2],
                "slug": name,
            }
        if len(chain) > 1 and name not in published and chain[-2] != self.saving:
            return _("Block “%(parent)s” includes block “%(slug)s”, which is not published.") % {
                "parent": chain[-2],
                "slug": name,
            }
        if name in self.clean_blocks:
            return None
        children = includes(name)
        if children is None:
            return _("Block “%(slug)s” has errors; fix it first.") % {"slug": name}
        for child in children:
            problem = self.block_chain_problem(child, chain, blocks, published, includes)
            if problem:
                return problem
        self.clean_blocks.add(name)
        return None


def item_of(field: Field | None) -> Field | None:
    if field is None:
        return None
    if field.kind in (LIST, MAP):
        return field.item or ANYTHING
    return ANYTHING
