"""Every word the surveys app shows (the console's timeline, the admin, the customer's messages and
pages) has its Japanese translation: a string added without one fails here, not in front of a
Japanese agent or customer."""

import ast
import re
from pathlib import Path

import pytest
from django.utils import translation
from django.utils.translation import gettext

ROOT = Path(__file__).resolve().parents[2]
# Written the same in both languages.
SAME_IN_JAPANESE = {"CSAT (1–5)", "NPS (0–10)", "CES (1–7)"}


def _python_msgids() -> set[str]:
    found = set()
    for path in sorted((ROOT / "surveys").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("_", "gettext", "gettext_lazy") \
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def _template_msgids() -> set[str]:
    found = set()
    for path in sorted((ROOT / "templates" / "surveys").rglob("*.html")):
        text = path.read_text()
        found |= set(re.findall(r'{% translate "([^"]+)" %}', text))
        for body in re.findall(r"{% blocktranslate[^%]*%}(.*?){% endblocktranslate %}", text, re.DOTALL):
            found.add(re.sub(r"{{ (\w+) }}", r"%(\1)s", body))
    return found


@pytest.mark.parametrize("msgid", sorted(_python_msgids() | _template_msgids()))
def test_every_survey_string_has_a_japanese_translation(msgid):
    with translation.override("ja"):
        translated = gettext(msgid)
    assert translated != msgid or msgid in SAME_IN_JAPANESE, f"no Japanese for {msgid!r}"
