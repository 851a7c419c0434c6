"""Routing rule expressions, in the spirit of TaskRouter workflow filters.

A rule is a small Python-like boolean expression over a conversation context dict::

    channel == "sms" and "VIP" in tags and language in ["ja", "en"] and not priority < 1

The text is entered by admins but treated as hostile: it is parsed with ``ast`` and every node is
checked against a strict whitelist, then turned into plain Python closures. Nothing is ever handed
to ``eval``/``exec``/``compile``.

Grammar (everything else is rejected with a reason naming the offending part):

- ``and`` / ``or`` / ``not``, parentheses;
- comparisons ``==  !=  <  <=  >  >=  in  not in``, chained as in Python (``1 <= priority < 5``);
- field names from ``ALLOWED_FIELDS`` (ASCII only);
- constants: text, whole numbers (``-1`` allowed), ``True``/``False``/``None`` and the lowercase
  aliases ``true``/``false``/``null``;
- list, tuple or set literals of constants, only as a comparison operand (``language in ["ja", "en"]``).

Evaluation rules:

- a field missing from the context is ``None``;
- text comparisons are case-sensitive (``"vip" in tags`` does not match a ``"VIP"`` tag) and
  there is no type coercion (``ivr == 2`` does not match ``"2"``);
- a comparison that cannot be made (``None < 3``, ``"a" < 1``, ``1 in "abc"``) is False, for
  ``not in`` and ``!=`` chains too;
- ``x in None`` is False and ``x not in None`` is True: a missing list is an empty list;
- ``"text" in subject`` is a substring test when the right side is text;
- an empty expression matches everything.

``hour`` and ``weekday`` are whatever the caller puts in the context, computed in the queue's time
zone; ``time_fields()`` builds them (weekday is ISO: 1 = Monday … 7 = Sunday).
"""

from __future__ import annotations

import ast
import difflib
import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError

logger = logging.getLogger(__name__)

ALLOWED_FIELDS: tuple[str, ...] = (
    "channel", "inbox", "language", "tags", "journey_stage", "priority", "ivr", "customer_id", "subject",
    "hour", "weekday",
)
MAX_LENGTH = 2000
MAX_DEPTH = 30

_FIELDS = frozenset(ALLOWED_FIELDS)
_CONSTANT_NAMES: dict[str, Any] = {"true": True, "false": False, "null": None}
_CONTAINERS = (list, tuple, set, frozenset)
# The parser's own line endings (str.splitlines also splits on \x0c, \u2028 … and would misnumber lines).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# Why a node is refused, worded for the admin who typed it.
_FORBIDDEN: dict[type[ast.AST], str] = {
    ast.Call: "function calls are not allowed",
    ast.Attribute: "attribute access (the '.' operator) is not allowed",
    ast.Subscript: "indexing and slicing are not allowed",
    ast.Slice: "indexing and slicing are not allowed",
    ast.Lambda: "lambda expressions are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Starred: "starred expressions (*x) are not allowed",
    ast.IfExp: "conditional expressions (x if y else z) are not allowed",
    ast.BinOp: "arithmetic and bitwise operators are not allowed",
    ast.Dict: "dictionaries are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
}

_Evaluator = Callable[[Mapping[str, Any]], Any]
K = TypeVar("K")


@dataclass(frozen=True, eq=False)
class CompiledRule:
    """A checked expression; ``matches`` never raises for plain context values."""

    expression: str
    fields: frozenset[str]
    _evaluate: _Evaluator = field(repr=False)

    def matches(self, context: Mapping[str, Any]) -> bool:
        return _truthy(self._evaluate(context))


def compile_rule(expression: str | None) -> CompiledRule:
    """Parse and check ``expression``; raise ``ValidationError`` saying what is wrong and where.

    Results are cached per expression text, so callers may compile on every routing decision.
    """
    if expression is None:
        expression = ""
    if not isinstance(expression, str):
        raise ValidationError("a routing rule must be text", code="rule_type")
    if len(expression) > MAX_LENGTH:
        raise ValidationError(
            f"the expression is too long ({len(expression)} characters; at most {MAX_LENGTH})", code="rule_too_long"
        )
    return _compile_cached(expression)


def first_match(
    rules: Iterable[tuple[K, str | CompiledRule]], context: Mapping[str, Any], *, default: K | None = None
) -> K | None:
    """The key of the first rule, in the given order, whose expression matches ``context``; else ``default``.

    A rule that does not compile (saved before validation, or edited behind the model's back) is
    logged and skipped rather than stopping routing for every conversation.
    """
    for key, rule in rules:
        if not isinstance(rule, CompiledRule):
            try:
                rule = compile_rule(rule)
            except ValidationError as exc:
                logger.error("routing rule %r skipped, its expression is invalid: %s", key, "; ".join(exc.messages))
                continue
        if rule.matches(context):
            return key
    return default


def time_fields(at: datetime, time_zone: str | tzinfo) -> dict[str, int]:
    """``hour`` (0–23) and ``weekday`` (ISO, 1 = Monday … 7 = Sunday) of the aware ``at`` in ``time_zone``."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("time_fields() needs a timezone-aware datetime")
    zone = ZoneInfo(time_zone) if isinstance(time_zone, str) else time_zone
    local = at.astimezone(zone)
    return {"hour": local.hour, "weekday": local.isoweekday()}


# --- compiling --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _compile_cached(expression: str) -> CompiledRule:
    # Exceptions are not cached by lru_cache, so an invalid text is re-checked (cheaply) each time.
    return _Compiler(expression).compile()


class _Compiler:
    def __init__(self, expression: str):
        self.expression = expression
        self.fields: set[str] = set()

    def compile(self) -> CompiledRule:
        text = self.expression.strip()
        if not text:
            return CompiledRule(self.expression, frozenset(), lambda context: True)
        # Parse the stripped text (eval mode refuses leading spaces) and shift columns back.
        self.lead = len(self.expression) - len(self.expression.lstrip())
        self.text = text
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise self._syntax_error(exc) from None
        except (ValueError, RecursionError, MemoryError) as exc:
            # ValueError: null bytes on some Pythons; the others: absurd nesting inside the parser.
            raise ValidationError(f"syntax error: {exc}", code="rule_syntax") from None
        evaluate = self._expr(tree.body, 1)
        return CompiledRule(self.expression, frozenset(self.fields), evaluate)

    # -- errors

    def _syntax_error(self, exc: SyntaxError) -> ValidationError:
        lines = _LINE_BREAK.split(self.text)
        lineno = exc.lineno or 1
        line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
        offset = exc.offset or 0
        shift = self.lead if lineno == 1 else 0
        if 0 < offset <= len(line):
            where = f"column {offset + shift}"
        else:  # the parser points past the text when it ran out of input
            where = f"column {len(line) + 1 + shift} (end of {'the expression' if lineno == len(lines) else 'line'})"
        if len(lines) > 1:
            where = f"line {lineno}, {where}"
        return ValidationError(f"syntax error at {where}: {exc.msg}", code="rule_syntax")

    def _column(self, node: ast.AST) -> str:
        lines = _LINE_BREAK.split(self.text)
        lineno = getattr(node, "lineno", 1)
        line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
        # col_offset counts UTF-8 bytes; people count characters.
        column = len(line.encode()[: getattr(node, "col_offset", 0)].decode(errors="ignore")) + 1
        if lineno == 1:
            column += self.lead
        return f"line {lineno}, column {column}" if len(lines) > 1 else f"column {column}"

    def _snippet(self, node: ast.AST) -> str:
        segment = ast.get_source_segment(self.text, node) or ""
        segment = " ".join(segment.split())
        return segment if len(segment) <= 60 else segment[:57] + "..."

    def _refuse(self, node: ast.AST, reason: str, code: str = "rule_forbidden") -> ValidationError:
        return ValidationError(f"{reason} (at {self._column(node)}: {self._snippet(node)})", code=code)

    def _check(self, node: ast.AST, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self._refuse(node, f"the expression is nested too deeply (more than {MAX_DEPTH} levels)",
                               code="rule_too_deep")
        reason = _FORBIDDEN.get(type(node))
        if reason:
            raise self._refuse(node, reason)

    # -- nodes

    def _expr(self, node: ast.AST, depth: int) -> _Evaluator:
        """Anything that can stand as a condition: and/or/not, a comparison, a field or a constant."""
        self._check(node, depth)
        if isinstance(node, ast.BoolOp):
            parts = tuple(self._expr(value, depth + 1) for value in node.values)
            if isinstance(node.op, ast.And):
                return lambda context: all(_truthy(part(context)) for part in parts)
            return lambda context: any(_truthy(part(context)) for part in parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self._expr(node.operand, depth + 1)
            return lambda context: not _truthy(inner(context))
        if isinstance(node, ast.Compare):
            return self._compare(node, depth)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise self._refuse(node, "a list is only allowed in a comparison, e.g. language in [\"ja\", \"en\"]")
        return self._value(node, depth)

    def _value(self, node: ast.AST, depth: int) -> _Evaluator:
        """A field or a constant."""
        self._check(node, depth)
        if isinstance(node, ast.Name):
            name = self._name(node)
            if name in _CONSTANT_NAMES:
                constant = _CONSTANT_NAMES[name]
                return lambda context: constant
            self.fields.add(name)
            return lambda context: context.get(name)
        if isinstance(node, (ast.Constant, ast.UnaryOp)):
            constant = self._constant(node, depth)
            return lambda context: constant
        raise self._refuse(node, f"{type(node).__name__} expressions are not allowed")

    def _name(self, node: ast.Name) -> str:
        # The parser NFKC-normalizes identifiers (full-width letters become ASCII); insist on what was typed.
        typed = ast.get_source_segment(self.text, node) or node.id
        if typed != node.id or not typed.isascii():
            raise self._refuse(
                node, f"unknown field '{typed}' (field names are plain ASCII); allowed: {', '.join(ALLOWED_FIELDS)}",
                code="rule_unknown_field",
            )
        if node.id not in _FIELDS and node.id not in _CONSTANT_NAMES:
            hint = difflib.get_close_matches(node.id, ALLOWED_FIELDS, n=1)
            reason = f"unknown field '{node.id}'"
            if hint:
                reason += f" (did you mean '{hint[0]}'?)"
            raise self._refuse(node, f"{reason}; allowed: {', '.join(ALLOWED_FIELDS)}", code="rule_unknown_field")
        return node.id

    def _constant(self, node: ast.AST, depth: int) -> Any:
        """A literal: text, whole number (optionally negative), True/False/None or true/false/null."""
        self._check(node, depth)
        if isinstance(node, ast.Constant):
            value = node.value
            if value is None or isinstance(value, (str, bool, int)):
                return value
            raise self._refuse(
                node, f"{type(value).__name__} values are not allowed; use text, whole numbers, true, false or null"
            )
        if isinstance(node, ast.Name) and node.id in _CONSTANT_NAMES and self._name(node):
            return _CONSTANT_NAMES[node.id]
        if isinstance(node, ast.UnaryOp):
            operand = node.operand
            if (isinstance(node.op, ast.USub) and isinstance(operand, ast.Constant)
                    and type(operand.value) is int):
                return -operand.value
            symbol = {ast.USub: "-", ast.UAdd: "+", ast.Invert: "~"}.get(type(node.op), "?")
            raise self._refuse(node, f"the operator '{symbol}' is only allowed as '-' before a whole number")
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise self._refuse(node, "lists cannot be nested")
        raise self._refuse(node, "a list may only contain constant values (text, numbers, true, false, null)")

    def _operand(self, node: ast.AST, depth: int) -> _Evaluator:
        self._check(node, depth)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self._constant(element, depth + 1) for element in node.elts]
            if isinstance(node, ast.List):
                literal: Any = items
            elif isinstance(node, ast.Tuple):
                literal = tuple(items)
            else:
                literal = frozenset(items)
            return lambda context: literal
        return self._expr(node, depth)

    def _compare(self, node: ast.Compare, depth: int) -> _Evaluator:
        left = self._operand(node.left, depth + 1)
        steps = []
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            test = _COMPARISONS.get(type(op))
            if test is None:
                raise self._refuse(node, "'is' / 'is not' are not allowed; use == or !=")
            steps.append((test, self._operand(comparator, depth + 1)))

        def compare(context: Mapping[str, Any]) -> bool:
            a = left(context)
            for test, right in steps:
                b = right(context)
                if not test(a, b):
                    return False
                a = b
            return True

        return compare


# --- evaluating -------------------------------------------------------------------------------------


def _truthy(value: Any) -> bool:
    try:
        return bool(value)
    except Exception:  # a context value with a hostile __bool__ (e.g. an array) does not match
        return False


def _ordering(test: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool]:
    def safe(a: Any, b: Any) -> bool:
        try:
            return bool(test(a, b))
        except TypeError:  # None < 3, "a" < 1: no match rather than an error
            return False

    return safe


def _contains(item: Any, container: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, _CONTAINERS):
        try:
            return item in container
        except TypeError:  # unhashable item against a set
            return False
    return False  # None (missing) and anything else holds nothing


def _not_contains(item: Any, container: Any) -> bool:
    if container is None:
        return True  # a missing list is an empty list
    if isinstance(container, str):
        return isinstance(item, str) and item not in container
    if isinstance(container, _CONTAINERS):
        try:
            return item not in container
        except TypeError:
            return False
    return False


_COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: _ordering(lambda a, b: a == b),
    ast.NotEq: _ordering(lambda a, b: a != b),
    ast.Lt: _ordering(lambda a, b: a < b),
    ast.LtE: _ordering(lambda a, b: a <= b),
    ast.Gt: _ordering(lambda a, b: a > b),
    ast.GtE: _ordering(lambda a, b: a >= b),
    ast.In: _contains,
    ast.NotIn: _not_contains,
}
