"""One reading of language tags for every way one arrives (profiles.languages)."""

import pytest

from profiles.languages import language_tag, primary_language


@pytest.mark.parametrize("raw, tag, primary", [
    ("ja", "ja", "ja"), ("ja-JP", "ja-JP", "ja"), (" en_US ", "en-US", "en"), ("zh-Hant-TW", "zh-Hant-TW", "zh"),
    ("EN", "EN", "en"),
    ("", "", ""), ("x", "", ""), ("日本語", "", ""), ("12", "", ""), ("x-klingon", "", ""), ("i-navajo", "", ""),
    ("und", "", ""), ("mul", "", ""), ("zxx-Latn", "", ""), ("ja-" + "a" * 40, "", ""), (None, "", ""), (7, "", ""),
])
def test_a_plausible_tag_is_kept_and_anything_else_is_no_language(raw, tag, primary):
    assert language_tag(raw) == tag
    assert primary_language(raw) == primary


@pytest.mark.django_db
def test_a_language_set_with_a_region_meets_a_rule_about_the_language():
    """An agent may keep "ja-JP" on a profile; channels keep "ja". A rule asks `language == "ja"`."""
    from conversations.models import Queue, RoutingRule
    from conversations.routing.placement import queue_pick

    from ..factories import make_conversation, make_customer, make_inbox

    japanese = Queue.objects.create(name="Japanese", slug="japanese")
    RoutingRule.objects.create(name="Japanese", order=1, expression='language == "ja"', queue=japanese)
    conversation = make_conversation(make_customer(language="ja-JP"), make_inbox("sms"))
    assert queue_pick(conversation)["rule"] == "Japanese" and conversation.queue == japanese
