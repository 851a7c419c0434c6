"""Routing rule expressions: the whitelist, the reasons given, matching semantics and first-match order."""

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from conversations.routing import rules
from conversations.routing.rules import ALLOWED_FIELDS, CompiledRule, compile_rule, first_match, time_fields

CONTEXT = {
    "channel": "sms", "inbox": "support@shop.example.jp", "language": "ja", "tags": ["VIP", "wholesale"],
    "journey_stage": "after_sales_support", "priority": 0, "ivr": "2", "customer_id": 5,
    "subject": "注文の返品について (order 1234)", "hour": 14, "weekday": 3,
}


def reason(expression) -> str:
    with pytest.raises(ValidationError) as caught:
        compile_rule(expression)
    assert len(caught.value.messages) == 1
    return caught.value.messages[0]


# --- hostile and invalid input is refused, with the reason and the offending part -------------------


@pytest.mark.parametrize(("expression", "expected"), [
    ("__import__('os').system('x')", "function calls are not allowed"),
    ("__import__('os')", "function calls are not allowed"),
    ("len(tags) > 1", "function calls are not allowed"),
    ("().__class__", "attribute access"),
    ("().__class__.__bases__[0].__subclasses__()", "function calls are not allowed"),
    ("tags.__len__", "attribute access"),
    ("channel.upper() == 'SMS'", "function calls are not allowed"),
    ("tags[0] == 'VIP'", "indexing and slicing are not allowed"),
    ("subject[:3] == 're:'", "indexing and slicing are not allowed"),
    ("[x for x in tags]", "comprehensions are not allowed"),
    ("'VIP' in [x for x in tags]", "comprehensions are not allowed"),
    ("{x for x in tags}", "comprehensions are not allowed"),
    ("{x: 1 for x in tags}", "comprehensions are not allowed"),
    ("any(x for x in tags)", "function calls are not allowed"),
    ("channel in (x for x in tags)", "comprehensions are not allowed"),
    ("lambda: 1", "lambda expressions are not allowed"),
    ("(lambda: 1) == 1", "lambda expressions are not allowed"),
    ("f'{channel}' == 'sms'", "f-strings are not allowed"),
    ("(channel := 'sms')", "assignment expressions (:=) are not allowed"),
    ("'x' in [*tags]", "starred expressions (*x) are not allowed"),
    ("'sms' if channel else 'x'", "conditional expressions"),
    ("priority + 1 > 2", "arithmetic and bitwise operators are not allowed"),
    ("priority | 1", "arithmetic and bitwise operators are not allowed"),
    ("'%s' % channel == 'sms'", "arithmetic and bitwise operators are not allowed"),
    ("{'a': 1} == channel", "dictionaries are not allowed"),
    ("priority is None", "'is' / 'is not' are not allowed; use == or !="),
    ("priority is not None", "'is' / 'is not' are not allowed"),
    ("~priority == 1", "the operator '~'"),
    ("-priority == 1", "the operator '-' is only allowed as '-' before a whole number"),
    ("priority == +1", "the operator '+'"),
    ("priority == -(-1)", "the operator '-'"),
    ("priority > 1.5", "float values are not allowed"),
    ("priority == 1j", "complex values are not allowed"),
    ("channel == b'sms'", "bytes values are not allowed"),
    ("channel == ...", "ellipsis values are not allowed"),
    ("channel in [tags]", "a list may only contain constant values"),
    ("channel in [[1], 2]", "lists cannot be nested"),
    ("[1, 2]", "a list is only allowed in a comparison"),
    ("not ['VIP']", "a list is only allowed in a comparison"),
    ("channel == 'sms' or ('a', 'b')", "a list is only allowed in a comparison"),
    ("await channel", "await is not allowed"),
])
def test_forbidden_constructs_are_refused_with_a_reason(expression, expected):
    message = reason(expression)
    assert expected in message
    assert "(at column" in message


def test_the_reason_quotes_the_offending_part_and_its_column():
    assert reason("channel == 'sms' and tags.__len__") == (
        "attribute access (the '.' operator) is not allowed (at column 22: tags.__len__)"
    )
    assert reason("__import__('os').system('x')") == (
        "function calls are not allowed (at column 1: __import__('os').system('x'))"
    )


def test_unknown_field_names_the_field_and_the_allowed_ones():
    message = reason("passwod == 'x'")
    assert message.startswith("unknown field 'passwod'; allowed: channel, inbox, language, tags, journey_stage")
    assert "hour, weekday" in message


def test_unknown_field_suggests_a_close_match():
    assert "unknown field 'chanel' (did you mean 'channel'?)" in reason("chanel == 'sms'")


@pytest.mark.parametrize("name", ["__import__", "__builtins__", "self", "context", "os", "True_", "Channel"])
def test_names_outside_the_whitelist_are_unknown_fields(name):
    assert f"unknown field '{name}'" in reason(f"{name} == 1")


@pytest.mark.parametrize("expression", [
    "pässwort == 1",
    "言語 == 'ja'",
    "ｃｈａｎｎｅｌ == 'sms'",  # full-width: Python's parser would quietly normalize it to "channel"
    "ｔｒｕｅ",
    "channel in [ｎｕｌｌ]",
])
def test_unicode_field_names_are_refused(expression):
    message = reason(expression)
    assert "unknown field" in message
    assert "(field names are plain ASCII)" in message


def test_unicode_in_text_constants_is_fine_and_columns_count_characters():
    assert compile_rule("subject == '返品' or language == 'ja'").matches(CONTEXT)
    assert "(at column 20: passwod)" in reason("subject == '返品' or passwod")


@pytest.mark.parametrize(("expression", "expected"), [
    ("channel ==", "syntax error at column 11 (end of the expression)"),
    ("channel == 'sms' and (", "syntax error at column 22: '(' was never closed"),
    ("channel = 'sms'", "syntax error at column"),
    ("channel == 'sms' &&& tags", "syntax error at column"),
    ("channel == 'sms'; import os", "syntax error at column"),
    ("import os", "syntax error at column"),
    ("channel == 'sms'\nand priority > 1", "syntax error at line 2, column 1"),
    ("a\0b", "syntax error"),
    ("'unterminated", "syntax error at column 1"),
])
def test_syntax_errors_give_a_column(expression, expected):
    assert expected in reason(expression)


def test_leading_whitespace_is_allowed_and_columns_still_count_it():
    assert compile_rule("   channel == 'sms'").matches(CONTEXT)
    assert "(at column 4: passwod)" in reason("   passwod == 1")


def test_multiline_expressions_work_inside_parentheses():
    rule = compile_rule("(channel == 'sms'\n and 'VIP' in tags)")
    assert rule.matches(CONTEXT)
    assert "line 2, column 6" in reason("(channel == 'sms'\n and passwod)")


def test_too_long_is_refused_before_parsing():
    assert reason("x" * 2001) == "the expression is too long (2001 characters; at most 2000)"
    padded = "channel == 'sms'" + " " * (2000 - len("channel == 'sms'"))
    assert compile_rule(padded).matches(CONTEXT)  # exactly at the limit


@pytest.mark.parametrize("expression", [
    "not " * 31 + "channel",
    "(" * 40 + "channel" + ")" * 40 + " and " + "not " * 40 + "tags",
    "priority == " + "(" * 150 + "1" + ")" * 150 + " and " + "not " * 100 + "tags",
    "channel == 'a' and (" * 30 + "tags" + ")" * 30,
    "(" * 300 + "1" + ")" * 300,  # beyond the parser's own limit
    "[" * 500 + "]" * 500,
    "not " * 499 + "tags",  # 2000 characters of nothing but nesting
])
def test_deep_nesting_is_refused(expression):
    message = reason(expression)
    assert "nested too deeply" in message or "syntax error" in message or "too long" in message


def test_nesting_up_to_the_limit_is_accepted():
    assert compile_rule("not " * 29 + "channel").matches(CONTEXT) is False  # odd number of nots
    assert compile_rule("not " * 28 + "channel").matches(CONTEXT) is True
    assert "nested too deeply (more than 30 levels)" in reason("not " * 30 + "channel")


@pytest.mark.parametrize("value", [42, b"channel", ["channel"], object()])
def test_non_text_expressions_are_refused(value):
    assert reason(value) == "a routing rule must be text"


def test_nothing_is_ever_executed(monkeypatch):
    """The compiler walks the tree itself: no eval/exec, and compile() only ever to an AST (ast.parse)."""
    import ast
    import builtins

    real_compile = builtins.compile
    calls = []

    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec called")

    def ast_only_compile(source, filename, mode, flags=0, *args, **kwargs):
        calls.append(flags)
        assert flags & ast.PyCF_ONLY_AST, "compile() to code object"
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    rules._compile_cached.cache_clear()
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "eval", forbidden)
        patch.setattr(builtins, "exec", forbidden)
        patch.setattr(builtins, "compile", ast_only_compile)
        rule = compile_rule("channel == 'sms' and 'VIP' in tags and not priority > 3")
        matched = rule.matches(CONTEXT)
        with pytest.raises(ValidationError):
            compile_rule("__import__('os').system('touch /tmp/pwned')")
    assert matched
    assert calls  # ast.parse went through the patched compile, as an AST only


# --- matching ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expression", "expected"), [
    ("", True),
    ("   ", True),
    ("channel == 'sms'", True),
    ("channel == \"sms\"", True),
    ("channel == 'SMS'", False),  # case-sensitive
    ("channel != 'email'", True),
    ("'VIP' in tags", True),
    ("'vip' in tags", False),  # case-sensitive
    ("'VIP' not in tags", False),
    ("'retail' not in tags", True),
    ("language in ['ja', 'en']", True),
    ("language in ('en', 'fr')", False),
    ("language in {'ja'}", True),
    ("language not in ['en']", True),
    ("priority == 0", True),
    ("priority > 0", False),
    ("priority >= 0", True),
    ("priority < 1", True),
    ("priority <= -1", False),
    ("-1 < priority < 1", True),  # chained
    ("0 < priority < 1", False),
    ("1 > priority >= 0", True),
    ("ivr == '2'", True),
    ("ivr == 2", False),  # no type coercion
    ("customer_id == 5", True),
    ("customer_id in [1, 5, 9]", True),
    ("'返品' in subject", True),  # substring test on text
    ("'refund' in subject", False),
    ("inbox == 'support@shop.example.jp' and journey_stage == 'after_sales_support'", True),
    ("hour >= 9 and hour < 18 and weekday <= 5", True),
    ("channel == 'email' or 'VIP' in tags", True),
    ("channel == 'email' or 'retail' in tags", False),
    ("not channel == 'email'", True),
    ("not (channel == 'sms' and priority > 0)", True),
    ("channel == 'sms' and ('VIP' in tags or priority > 5)", True),
    ("channel == 'sms' and ('retail' in tags or priority > 5)", False),
    ("true", True),
    ("false", False),
    ("True and not False", True),
    ("null == journey_stage", False),
    ("tags", True),  # a bare field is its truthiness
    ("priority", False),
    ("channel == channel", True),
    ("tags == ['VIP', 'wholesale']", True),
])
def test_truth_table(expression, expected):
    assert compile_rule(expression).matches(CONTEXT) is expected


@pytest.mark.parametrize(("expression", "expected"), [
    ("journey_stage == None", True),
    ("journey_stage == null", True),
    ("journey_stage != null", False),
    ("priority < 3", False),  # None < 3 would raise in Python: no match instead
    ("priority > 3", False),
    ("not priority < 3", True),  # ...which `not` then inverts, as written
    ("'VIP' in tags", False),
    ("'VIP' not in tags", True),  # a missing list is empty
    ("language in ['ja', None]", True),
    ("subject == ''", False),
    ("'x' in subject", False),
])
def test_missing_fields_are_none(expression, expected):
    assert compile_rule(expression).matches({}) is expected


@pytest.mark.parametrize(("expression", "context", "expected"), [
    ("priority < 3", {"priority": "high"}, False),
    ("priority >= 'a'", {"priority": 3}, False),
    ("1 in subject", {"subject": "1 2 3"}, False),
    ("1 not in subject", {"subject": "abc"}, False),
    ("'VIP' in tags", {"tags": "VIP,retail"}, True),  # text container: substring
    ("'VIP' in tags", {"tags": 7}, False),
    ("'VIP' not in tags", {"tags": 7}, False),
    ("tags in {'a'}", {"tags": ["a"]}, False),  # unhashable against a set
    ("tags not in {'a'}", {"tags": ["a"]}, False),
    ("'VIP' in tags", {"tags": ("VIP",)}, True),
    ("'VIP' in tags", {"tags": {"VIP"}}, True),
    ("'VIP' in tags", {"tags": {"VIP": 1}}, False),  # mappings are not lists
    ("priority > 1 < 'x'", {"priority": 3}, False),
    ("priority == true", {"priority": 1}, True),  # Python's 1 == True
    ("weekday in [6, 7]", {"weekday": 7}, True),
])
def test_type_mismatches_do_not_raise(expression, context, expected):
    assert compile_rule(expression).matches(context) is expected


def test_a_context_value_that_cannot_be_truth_tested_does_not_match():
    class Weird:
        def __bool__(self):
            raise ValueError("ambiguous")

    assert compile_rule("tags").matches({"tags": Weird()}) is False
    assert compile_rule("not tags").matches({"tags": Weird()}) is True


def test_lowercase_aliases_are_constants_not_fields():
    rule = compile_rule("priority != null and true")
    assert rule.fields == {"priority"}
    assert rule.matches({"priority": 0})


def test_fields_lists_the_fields_used():
    rule = compile_rule("channel == 'sms' and ('VIP' in tags or priority > hour) and not language in ['ja']")
    assert rule.fields == {"channel", "tags", "priority", "hour", "language"}
    assert compile_rule("").fields == frozenset()
    assert compile_rule("true or 1 == 1").fields == frozenset()


def test_every_allowed_field_compiles():
    for name in ALLOWED_FIELDS:
        assert compile_rule(f"{name} == null").fields == {name}


def test_compile_is_cached_and_none_is_empty():
    assert compile_rule("channel == 'sms'") is compile_rule("channel == 'sms'")
    assert isinstance(compile_rule(None), CompiledRule)
    assert compile_rule(None).matches({})


def test_matches_always_returns_a_bool():
    assert compile_rule("tags").matches(CONTEXT) is True
    assert compile_rule("customer_id").matches({"customer_id": 0}) is False
    assert compile_rule("channel or tags").matches(CONTEXT) is True


# --- first match ------------------------------------------------------------------------------------


RULES = [
    ("vip-ja", "'VIP' in tags and language == 'ja'"),
    ("sms", "channel == 'sms'"),
    ("everything", ""),
]


def test_first_match_takes_rules_in_order():
    assert first_match(RULES, CONTEXT) == "vip-ja"
    assert first_match(RULES, {**CONTEXT, "language": "en"}) == "sms"
    assert first_match(RULES, {"channel": "email"}) == "everything"
    assert first_match(list(reversed(RULES)), CONTEXT) == "everything"


def test_first_match_falls_back_to_the_default():
    specific = RULES[:2]
    assert first_match(specific, {"channel": "email"}) is None
    assert first_match(specific, {"channel": "email"}, default="general") == "general"
    assert first_match([], CONTEXT, default=0) == 0


def test_first_match_accepts_any_key_and_generators_and_compiled_rules():
    class Rule:
        def __init__(self, expression):
            self.expression = expression

    wanted = Rule("channel == 'sms'")
    candidates = [Rule("channel == 'email'"), wanted, Rule("")]
    assert first_match(((rule, rule.expression) for rule in candidates), CONTEXT) is wanted
    assert first_match([(0, compile_rule("channel == 'sms'"))], CONTEXT, default=9) == 0


def test_first_match_skips_and_logs_an_invalid_rule(caplog):
    chosen = first_match([("broken", "__import__('os')"), ("typo", "chanel == 'sms'"), ("sms", "channel == 'sms'")],
                         CONTEXT)
    assert chosen == "sms"
    assert "'broken' skipped" in caplog.text
    assert "function calls are not allowed" in caplog.text
    assert "'typo' skipped" in caplog.text


# --- time fields ------------------------------------------------------------------------------------


def test_time_fields_are_local_to_the_given_zone():
    at = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # Sunday in UTC, Monday 08:30 in Tokyo
    assert time_fields(at, "Asia/Tokyo") == {"hour": 8, "weekday": 1}
    assert time_fields(at, "UTC") == {"hour": 23, "weekday": 7}
    assert time_fields(datetime(2026, 7, 1, 12, tzinfo=UTC), "America/New_York") == {"hour": 8, "weekday": 3}
    with pytest.raises(ValueError, match="timezone-aware"):
        time_fields(datetime(2026, 3, 1, 12), "UTC")


def test_time_fields_feed_a_time_of_day_rule():
    office = compile_rule("weekday <= 5 and 9 <= hour < 18")
    assert office.matches(time_fields(datetime(2026, 3, 2, 0, 30, tzinfo=UTC), "Asia/Tokyo"))  # Mon 09:30 JST
    assert not office.matches(time_fields(datetime(2026, 3, 2, 0, 30, tzinfo=UTC), "UTC"))  # Mon 00:30 UTC
