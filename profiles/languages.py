"""Language tags as people and channels give them: an agent editing a profile, a browser's
``navigator.language``, an email's Content-Language. One reading of them for everyone."""

import re

# A BCP 47 tag whose primary subtag is an ISO 639 code ("ja", "en-US", "zh-Hant-TW"); POSIX locales
# ("ja_JP") are read as the tag they mean. Private-use and grandfathered forms ("x-…", "i-…") and
# the codes that name no language are no better than nothing for routing or display.
_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,6}")
_NO_LANGUAGE = frozenset({"und", "mul", "mis", "zxx"})
MAX_LENGTH = 35


def language_tag(raw) -> str:
    """``raw`` as a plausible language tag (hyphenated), or "" when it is none."""
    if not isinstance(raw, str):
        return ""
    tag = raw.strip().replace("_", "-")
    if len(tag) > MAX_LENGTH or not _TAG.fullmatch(tag) or tag.split("-", 1)[0].lower() in _NO_LANGUAGE:
        return ""
    return tag


def primary_language(raw) -> str:
    """The primary language subtag of a plausible tag, lower case ("ja-JP" -> "ja"), or "": what
    routing rules compare (``language == "ja"``), whatever region or script a tag adds."""
    return language_tag(raw).split("-", 1)[0].lower()
