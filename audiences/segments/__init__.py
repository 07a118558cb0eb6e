"""Segment rules: the schema (parse and validate) and the compiler (rules → one query). Pure code, no I/O."""

from .compiler import Resolver, compile_rules
from .schema import Problem, RuleError, Rules, parse_rules

__all__ = ["Problem", "Resolver", "RuleError", "Rules", "compile_rules", "parse_rules"]
