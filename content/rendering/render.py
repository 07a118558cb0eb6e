"""Compile a template once per version, render it for one contact within the limits.

    compiled = compile_template(source, channel="email_html", version_key=("template", 42, 7), blocks=blocks)
    html = render(compiled, context)

`compile_template` is cheap when the version was compiled before: the compiled template and
the blocks it includes (by slug, from `blocks`) are kept in an LRU keyed by channel and
`version_key`, and checked against the source given (a changed source or block under the same
key is compiled again, never served stale). A source it cannot compile raises
`TemplateSourceError` with the problems; `checks.check_template` reports more (unknown
variables, filters) and is what runs when a template is saved.

`render` streams the template's output and counts it, within the limits of environment.py,
and raises `RenderError` (or its `RenderLimitError`, `TemplateSecurityError`) with a message for
the marketeer; no exception of the template's making escapes as anything else.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _
from jinja2 import Template, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError

from content.rendering.environment import (
    MAX_BLOCK_DEPTH,
    MAX_OUTPUT_CHARS,
    RENDER_STATE,
    RenderState,
    TemplateEnvironment,
    add_guards,
    as_text,
    block_references,
    column_of,
    environment_for,
    parse,
    structure_problems,
)
from content.rendering.errors import Problem, RenderError, TemplateSecurityError, TemplateSourceError
from dialoog.caching import LRU

CACHE_SIZE = 512


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    channel: str
    version_key: Hashable
    source: str
    template: Template
    block_sources: Mapping[str, str]  # the blocks it includes, directly or through other blocks
    blocks: Mapping[str, Template]


@dataclass(frozen=True, slots=True)
class Built:
    template: Template
    references: list[tuple[str, int]]


TEMPLATES = LRU(CACHE_SIZE)
BLOCKS = LRU(CACHE_SIZE)


def build_template(environment: TemplateEnvironment, source: str | bytes) -> Built:
    """Source to a compiled Jinja template, refusing what the sandbox does not allow."""
    text = as_text(source)
    tree = parse(environment, text)
    problems = structure_problems(text, tree)
    if problems:
        raise TemplateSourceError(problems)
    references = block_references(tree)
    try:
        code = environment.compile(add_guards(environment, tree))
    except TemplateSyntaxError as error:  # an unknown filter or test
        line = error.lineno or 1
        raise TemplateSourceError([Problem(line, column_of(text, line, r"\|\s*(\w+)"), error.message or "")]) from error
    except (RecursionError, MemoryError, SyntaxError) as error:
        raise TemplateSourceError([Problem(1, 1, _("The template is nested too deeply."))]) from error
    template = environment.template_class.from_code(environment, code, environment.make_globals(None))
    # A block that reads nothing (no variable, no function, no other block), such as a header,
    # renders the same for everyone: render_block renders it once and keeps its output.
    template.dialoog_static = not references and not meta.find_undeclared_variables(tree)  # type: ignore[attr-defined]
    return Built(template, references)


def compile_template(
    source: str | bytes, *, channel: str, version_key: Hashable, blocks: Mapping[str, str] | None = None
) -> CompiledTemplate:
    """The compiled template for this version, from the cache when it holds it."""
    blocks = blocks or {}
    key = (channel, version_key)
    cached: CompiledTemplate | None = TEMPLATES.get(key)
    if (
        cached is not None
        and cached.source == source
        and all(blocks.get(slug) == block_source for slug, block_source in cached.block_sources.items())
    ):
        return cached
    environment = environment_for(channel)
    text = as_text(source)
    built = build_template(environment, text) if cached is None or cached.source != text else None
    template = built.template if built is not None else cached.template  # type: ignore[union-attr]
    references = built.references if built is not None else referenced_by(environment, text)
    block_sources: dict[str, str] = {}
    compiled_blocks: dict[str, Template] = {}
    for slug, line in references:
        include_block(channel, slug, line, [], blocks, block_sources, compiled_blocks)
    compiled = CompiledTemplate(channel, version_key, text, template, block_sources, compiled_blocks)
    TEMPLATES.put(key, compiled)
    return compiled


def referenced_by(environment: TemplateEnvironment, source: str) -> list[tuple[str, int]]:
    return block_references(parse(environment, source))


def include_block(
    channel: str,
    slug: str,
    line: int,
    chain: list[str],
    blocks: Mapping[str, str],
    block_sources: dict[str, str],
    compiled_blocks: dict[str, Template],
) -> None:
    """Compile block `slug` and the blocks it includes, refusing missing blocks, cycles and depth."""
    if slug in chain:
        raise TemplateSourceError([Problem(line, 1, block_cycle_message([*chain, slug]))])
    if len(chain) >= MAX_BLOCK_DEPTH:
        raise TemplateSourceError([Problem(line, 1, block_depth_message([*chain, slug]))])
    if slug in compiled_blocks:
        return
    source = blocks.get(slug)
    if source is None:
        raise TemplateSourceError([Problem(line, 1, _("Block “%(slug)s” does not exist.") % {"slug": slug})])
    key = (channel, slug, source)
    built: Built | None = BLOCKS.get(key)
    if built is None:
        try:
            built = build_template(environment_for(channel), source)
        except TemplateSourceError as error:
            first = error.problems[0]
            message = _("Block “%(slug)s” has an error at line %(line)s: %(error)s") % {
                "slug": slug,
                "line": first.line,
                "error": first.message,
            }
            raise TemplateSourceError([Problem(line, 1, message)]) from error
        BLOCKS.put(key, built)
    for child, _child_line in built.references:
        include_block(channel, child, line, [*chain, slug], blocks, block_sources, compiled_blocks)
    block_sources[slug] = source
    compiled_blocks[slug] = built.template


def block_cycle_message(chain: list[str]) -> str:
    return _("Block “%(slug)s” includes itself: %(chain)s.") % {"slug": chain[-1], "chain": " → ".join(chain)}


def block_depth_message(chain: list[str]) -> str:
    return _("Blocks are nested more than %(limit)s deep: %(chain)s.") % {
        "limit": MAX_BLOCK_DEPTH,
        "chain": " → ".join(chain),
    }


def render(compiled: CompiledTemplate, context: dict[str, Any]) -> str:
    """The message for one contact. `context` holds plain dicts, lists, text, numbers and dates."""
    state = RenderState(compiled.blocks)
    token = RENDER_STATE.set(state)
    template = compiled.template
    parts: list[str] = []
    try:
        for chunk in template.root_render_func(template.new_context(context)):
            state.output += len(chunk)
            if state.output > MAX_OUTPUT_CHARS:
                state.check_output()
            parts.append(chunk)
        state.check_time()
    except RenderError:
        raise
    except SecurityError as error:
        raise TemplateSecurityError(str(error)) from error
    except Exception as error:  # the template is untrusted code: whatever it raises is a failed render
        raise RenderError(
            _("The template could not be rendered: %(error)s") % {"error": f"{type(error).__name__}: {error}"}
        ) from error
    finally:
        RENDER_STATE.reset(token)
    return "".join(parts)


def clear_cache() -> None:
    TEMPLATES.clear()
    BLOCKS.clear()


__all__ = ["CompiledTemplate", "clear_cache", "compile_template", "render"]
