"""What the rendering engine reports: problems found in a template's source, and render errors."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a template, where it is (1-based line and column) and why."""

    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.message}"

    @classmethod
    def at(cls, text: str, index: int, message: str) -> Problem:
        """A problem at character `index` of `text`."""
        return cls(text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1, message)


class TemplateSourceError(ValueError):
    """The source cannot be compiled: too big, not UTF-8, a syntax error, a construct not allowed."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(problem) for problem in problems))


class RenderError(Exception):
    """Rendering one message failed; the message says why, in the marketeer's words."""


class RenderLimitError(RenderError):
    """A render limit was reached: output size, loop iterations, time, block depth, value size."""


class TemplateSecurityError(RenderError):
    """The template reached for something outside its context (`__class__`, a method, ...)."""
