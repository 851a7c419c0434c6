"""Decoding what clients send, in one place: JSON (request bodies, websocket frames, query
parameters, cursors) and repeated query parameters.

Every failure is an ``UndecodableInput`` (a ``ValueError``) with a message fit to show the client,
so a door answers 400 (or closes its socket with 4400) instead of letting a ``RecursionError``,
an infinite float or a database overflow reach the database or the error page (issue 21 §4).

What is refused, and why:
* nesting deeper than ``MAX_JSON_DEPTH``: no payload of ours needs more, and Python's decoder
  (and everything that walks the result afterwards) recurses, so a few kilobytes of ``[[[[``
  would otherwise end in ``RecursionError``;
* numbers that are not finite (``NaN``, ``Infinity``, ``1e400``): JSON has no such numbers,
  PostgreSQL's jsonb refuses them and our renderers cannot write them back;
* integers past ``MAX_JSON_INTEGER_DIGITS`` digits (Python refuses past 4300 anyway, slowly).
"""

import json
import math
from collections.abc import Iterable

MAX_JSON_DEPTH = 32
MAX_JSON_INTEGER_DIGITS = 40
# A query parameter given more often than this is refused: no filter of ours needs more values,
# and each value costs a join or a condition (300 ``?tag=`` made SQLite give up with a 500).
MAX_REPEATED_QUERY_PARAMETER = 20
# Ids, positions and offsets clients hand back to us must fit the database's bigint.
MAX_DATABASE_INTEGER = 2**63 - 1


class UndecodableInput(ValueError):
    """Input we refuse to decode; ``str(exc)`` is the reason, written for the client."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UndecodableInput(f"JSON number {text[:40]} is out of range.")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INTEGER_DIGITS:
        raise UndecodableInput(f"JSON integer with more than {MAX_JSON_INTEGER_DIGITS} digits.")
    return int(text)


def _no_constant(name: str):
    raise UndecodableInput(f"JSON does not allow {name}.")


def json_depth_exceeds(value, limit: int) -> bool:
    """True when ``value`` nests lists/dicts deeper than ``limit``. Iterative: it must not itself
    recurse on the input it checks."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def json_decode(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH):
    """``json.loads`` for client input: finite numbers, bounded integers and nesting.
    Raises ``UndecodableInput`` with a reason for the client."""
    if isinstance(text, bytes | bytearray):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UndecodableInput("JSON must be UTF-8.") from exc
    try:
        value = json.loads(text, parse_float=_finite_float, parse_int=_bounded_int, parse_constant=_no_constant)
    except UndecodableInput:
        raise
    except RecursionError as exc:
        raise UndecodableInput(f"JSON nested deeper than {max_depth} levels.") from exc
    except ValueError as exc:  # JSONDecodeError included
        raise UndecodableInput(f"Invalid JSON: {exc}") from exc
    if json_depth_exceeds(value, max_depth):
        raise UndecodableInput(f"JSON nested deeper than {max_depth} levels.")
    return value


def json_encode_checked(value) -> None:
    """Raises ``UndecodableInput`` when ``value`` (built by code, not parsed: a form, a service
    argument) could not be stored as JSON: too deep, or a number that is not finite."""
    if json_depth_exceeds(value, MAX_JSON_DEPTH):
        raise UndecodableInput(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
    try:
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, RecursionError) as exc:
        raise UndecodableInput("Numbers must be finite (no NaN or Infinity).") from exc


def repeated_query_parameters(query, *, limit: int = MAX_REPEATED_QUERY_PARAMETER) -> list[str]:
    """The names of the parameters of a ``QueryDict`` given more than ``limit`` times."""
    return sorted(name for name in query.keys() if len(query.getlist(name)) > limit)


def database_integer(value) -> int:
    """An id/position a client handed back, as an int that fits a bigint column."""
    number = int(value)
    if not -MAX_DATABASE_INTEGER <= number <= MAX_DATABASE_INTEGER:
        raise UndecodableInput("Number out of range.")
    return number
