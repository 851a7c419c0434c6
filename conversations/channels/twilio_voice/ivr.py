"""A voice inbox's IVR: its configuration (``inbox.settings["ivr"]``), checked when the inbox is
saved, and the caller's input matched against its menu. Pure: no database, no Twilio.

    {"greeting": {"ja": "お電話ありがとうございます。", "en": "Thank you for calling."},
     "menu": {"ja": "ご注文は1、…", "en": "For orders press 1, …"},
     "options": [{"key": "1", "name": "orders", "queue": "support", "tags": ["phone-order"],
                  "language": "", "speech": {"ja": ["注文"], "en": ["order"]}}, …],
     "default_option": "orders",          # when the caller says nothing after the retries
     "retries": 2, "timeout": 5,           # menu repeats on no input, seconds to wait for a key
     "english_key": "9",                   # switches every prompt to English
     "hours_queue": "support",             # whose business hours apply (default: the inbox's queue)
     "closed": {"ja": "…{opens}…", "en": "…{opens}…"}, "voicemail": {"ja": …, "en": …},
     "max_wait_seconds": 600,              # then voicemail (default: the queue's overflow time
                                           # when it overflows nowhere, else 600)
     "transcribe": false, "hold_music_url": "", "speech_model": "googlev2_telephony",
     "voices": {"ja": "Polly.Mizuki", "en": "Polly.Joanna"}}

Everything is optional: an inbox without ``ivr`` gets the built-in Japanese/English prompts and a
menu-less line straight into its queue.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

LANGUAGES = ("ja", "en")
TWILIO_LANGUAGE = {"ja": "ja-JP", "en": "en-US"}
DEFAULT_VOICES = {"ja": "Polly.Mizuki", "en": "Polly.Joanna"}
# Voices Twilio offers per language (a voice that does not match the language is warning 13331).
KNOWN_VOICES = {
    "ja": ("Polly.Mizuki", "Polly.Takumi", "Polly.Kazuha", "Polly.Tomoko", "Google.ja-JP-Standard-A",
           "Google.ja-JP-Standard-B", "Google.ja-JP-Standard-C", "Google.ja-JP-Standard-D",
           "Google.ja-JP-Wavenet-A", "Google.ja-JP-Wavenet-B", "Google.ja-JP-Wavenet-C", "Google.ja-JP-Wavenet-D"),
    "en": ("Polly.Joanna", "Polly.Matthew", "Polly.Salli", "Polly.Joey", "Polly.Kendra", "Polly.Ivy",
           "Google.en-US-Standard-C", "Google.en-US-Standard-D", "Google.en-US-Wavenet-F"),
}
SPEECH_MODELS = ("googlev2_telephony", "googlev2_short", "googlev2_long", "phone_call", "default",
                 "numbers_and_commands", "deepgram_nova-2", "deepgram_nova-3")
DEFAULT_SPEECH_MODEL = "googlev2_telephony"
OPTION_KEYS = frozenset("0123456789*#")
_NAME = re.compile(r"[a-z0-9_-]{1,40}")

DEFAULT_TEXTS = {
    "greeting": {"ja": "お電話ありがとうございます。", "en": "Thank you for calling."},
    "menu": {"ja": "", "en": ""},
    "english": {"ja": "", "en": "For English, press 9."},  # said in English to callers hearing Japanese
    "no_input": {"ja": "恐れ入りますが、もう一度お選びください。", "en": "Sorry, please choose again."},
    "closed": {"ja": "ただいま営業時間外です。受付は{opens}に再開いたします。",
               "en": "We are closed now. We open again {opens}."},
    "closed_unknown": {"ja": "ただいま営業時間外です。", "en": "We are closed now."},
    "voicemail": {"ja": "発信音のあとにお名前とご用件をお話しください。終わりましたら#を押してください。",
                  "en": "Please leave your name and message after the tone, then press the pound key."},
    "voicemail_none": {"ja": "メッセージは録音されませんでした。お電話ありがとうございました。",
                       "en": "No message was recorded. Thank you for calling."},
    "voicemail_thanks": {"ja": "メッセージをお預かりしました。折り返しご連絡いたします。",
                         "en": "Thank you. We received your message and will get back to you."},
    "queued": {"ja": "担当者におつなぎします。", "en": "Connecting you to an agent."},
    "position": {"ja": "現在{position}番目にお待ちいただいております。", "en": "You are number {position} in line."},
    "wait": {"ja": "およそ{minutes}分でおつなぎできる見込みです。", "en": "The expected wait is about {minutes} minutes."},
    "wait_menu": {"ja": "このままお待ちいただく場合は1、折り返しのお電話をご希望の場合は2、"
                        "留守番電話にメッセージを残す場合は3を押してください。",
                  "en": "To keep waiting, press 1. To be called back without losing your place, press 2. "
                        "To leave a voicemail, press 3."},
    "keep_waiting": {"ja": "このままお待ちください。", "en": "Please stay on the line."},
    "callback": {"ja": "順番が来ましたら、こちらからお電話いたします。このままお切りください。",
                 "en": "We will call you back when it is your turn, keeping your place. You can hang up now."},
    "callback_unavailable": {"ja": "番号が非通知のため、折り返しのお電話はできません。",
                             "en": "We cannot call back a withheld number."},
    "callback_connect": {"ja": "お待たせいたしました。先ほどのお問い合わせについて、担当者におつなぎします。",
                         "en": "This is your callback. Connecting you to an agent."},
    "agent_unreachable": {"ja": "担当者につながりませんでした。", "en": "We could not reach the agent."},
    "goodbye": {"ja": "お電話ありがとうございました。", "en": "Thank you for calling. Goodbye."},
    "requeued": {"ja": "申し訳ございません。担当者が応答できませんでした。順番はそのままで、引き続きお待ちください。",
                 "en": "Sorry, the agent could not take your call. You keep your place in line; please hold."},
    "closing": {"ja": "申し訳ございません。受付時間を過ぎたため、本日はおつなぎできません。受付は{opens}に再開いたします。",
                "en": "We are sorry: we have just closed and cannot connect you today. We open again {opens}."},
    "closing_unknown": {"ja": "申し訳ございません。受付時間を過ぎたため、本日はおつなぎできません。",
                        "en": "We are sorry: we have just closed and cannot connect you today."},
    "closing_menu": {"ja": "折り返しのお電話をご希望の場合は2、留守番電話にメッセージを残す場合は3を押してください。",
                     "en": "To be called back when we open, press 2. To leave a voicemail, press 3."},
    "closing_menu_voicemail": {"ja": "留守番電話にメッセージを残す場合は3を押してください。",
                               "en": "To leave a voicemail, press 3."},
    "no_agent": {"ja": "大変お待たせして申し訳ございません。ただいま担当者がすべて対応中です。",
                 "en": "We are sorry for the wait: all our agents are still busy."},
    "no_agent_menu": {"ja": "順番はそのままで折り返しのお電話をご希望の場合は2、留守番電話にメッセージを残す場合は3を押してください。",
                      "en": "To be called back without losing your place, press 2. To leave a voicemail, press 3."},
    "survey_again": {"ja": "恐れ入りますが、数字のボタンでお答えください。", "en": "Sorry, please answer with a key."},
    "survey_thanks": {"ja": "ご回答ありがとうございました。", "en": "Thank you for your answer."},
}


@dataclass(frozen=True)
class IvrOption:
    key: str
    name: str
    queue: str = ""  # queue slug; empty: the routing rules decide (they see ivr == name)
    tags: tuple[str, ...] = ()
    language: str = ""  # sets the customer's language (routing rules' "language") when given
    speech: dict = field(default_factory=dict)  # language -> words that choose this option
    label: dict = field(default_factory=dict)


@dataclass(frozen=True)
class IvrConfig:
    texts: dict
    options: tuple[IvrOption, ...] = ()
    default_option: str = ""
    retries: int = 2
    timeout: int = 5
    english_key: str = "9"
    hours_queue: str = ""
    max_wait_seconds: int | None = None  # None: the queue's limit (calls.wait_limit)
    transcribe: bool = False
    hold_music_url: str = ""
    speech_model: str = DEFAULT_SPEECH_MODEL
    voices: dict = field(default_factory=lambda: dict(DEFAULT_VOICES))
    business_hours: dict | None = None  # the line's own hours; None: the hours queue's

    def text(self, name: str, language: str, **values) -> str:
        """The prompt ``name`` in ``language`` (the other language's when it has none), with its
        ``{placeholders}`` filled; an admin's template with a wrong placeholder is said as written."""
        texts = self.texts.get(name) or DEFAULT_TEXTS.get(name) or {}
        template = texts.get(language) or ""
        if not template and name not in ("english", "menu"):
            template = next((texts[other] for other in LANGUAGES if texts.get(other)), "")
        try:
            return template.format(**values) if values else template
        except (KeyError, IndexError, ValueError):
            return template

    def voice(self, language: str) -> str:
        return self.voices.get(language) or DEFAULT_VOICES[language]

    def option(self, name: str) -> IvrOption | None:
        return next((option for option in self.options if option.name == name), None)


def _texts(raw: dict) -> dict:
    texts = {name: dict(values) for name, values in DEFAULT_TEXTS.items()}
    for name in DEFAULT_TEXTS:
        given = raw.get(name)
        if isinstance(given, dict):
            texts[name].update({lang: str(given[lang]) for lang in LANGUAGES if isinstance(given.get(lang), str)})
    return texts


def ivr_config(settings: dict | None) -> IvrConfig:
    """The IVR of an inbox's settings, with defaults for what it leaves out. Lenient (a config saved
    before validation existed still answers calls): unusable parts are ignored here and named by
    ``ivr_settings_problems`` in the admin."""
    raw = (settings or {}).get("ivr") if isinstance(settings, dict) else None
    raw = raw if isinstance(raw, dict) else {}
    options = []
    for item in raw.get("options") or []:
        if not isinstance(item, dict) or str(item.get("key", "")) not in OPTION_KEYS or not item.get("name"):
            continue
        options.append(IvrOption(
            key=str(item["key"]), name=str(item["name"]), queue=str(item.get("queue") or ""),
            tags=tuple(str(tag) for tag in item.get("tags") or () if isinstance(tag, str)),
            language=str(item.get("language") or ""),
            speech={lang: [str(w) for w in words] for lang, words in (item.get("speech") or {}).items()
                    if lang in LANGUAGES and isinstance(words, list)},
            label=item.get("label") if isinstance(item.get("label"), dict) else {},
        ))
    voices = dict(DEFAULT_VOICES)
    if isinstance(raw.get("voices"), dict):
        voices.update({lang: str(v) for lang, v in raw["voices"].items() if lang in LANGUAGES and v})

    def _int(name, default, low, high):
        value = raw.get(name, default)
        return value if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high else default

    return IvrConfig(
        texts=_texts(raw), options=tuple(options), default_option=str(raw.get("default_option") or ""),
        retries=_int("retries", 2, 0, 5), timeout=_int("timeout", 5, 1, 30),
        english_key=str(raw.get("english_key", "9") or ""), hours_queue=str(raw.get("hours_queue") or ""),
        max_wait_seconds=_int("max_wait_seconds", None, 30, 86400), transcribe=raw.get("transcribe") is True,
        hold_music_url=str(raw.get("hold_music_url") or ""),
        speech_model=str(raw.get("speech_model") or DEFAULT_SPEECH_MODEL), voices=voices,
        business_hours=raw["business_hours"] if isinstance(raw.get("business_hours"), dict) else None,
    )


def ivr_settings_problems(settings, *, queue_slugs: frozenset[str] | None = None) -> list[str]:
    """Every problem of ``settings["ivr"]``, worded for the admin (empty: fine or no IVR).
    ``queue_slugs``: the queues an option may name (not checked when None)."""
    raw = settings.get("ivr") if isinstance(settings, dict) else None
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return ['"ivr" must be an object.']
    problems: list[str] = []
    allowed = {"greeting", "menu", "english", "no_input", "closed", "closed_unknown", "voicemail", "voicemail_none",
               "voicemail_thanks", "queued", "position", "wait", "wait_menu", "keep_waiting", "callback",
               "callback_unavailable", "callback_connect", "agent_unreachable", "goodbye", "requeued", "closing",
               "closing_unknown", "closing_menu", "closing_menu_voicemail", "no_agent", "no_agent_menu", "survey_again", "survey_thanks", "options",
               "default_option", "retries", "timeout", "english_key", "hours_queue", "max_wait_seconds",
               "transcribe", "hold_music_url", "speech_model", "voices", "business_hours"}
    for key in sorted(set(raw) - allowed):
        problems.append(f'ivr: unknown setting "{key}".')
    for name in DEFAULT_TEXTS:
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, dict) or set(value) - set(LANGUAGES) or not all(isinstance(v, str) for v in value.values()):
            problems.append(f'ivr.{name}: give the text per language, e.g. {{"ja": "…", "en": "…"}}.')
    for name in ("greeting", "menu"):
        value = raw.get(name)
        if isinstance(value, dict) and not (value.get("ja") or "").strip():
            problems.append(f"ivr.{name}: the Japanese text is required (callers hear Japanese first).")
    options = raw.get("options", [])
    names, keys = set(), set()
    if not isinstance(options, list):
        problems.append("ivr.options: a list of options is required.")
        options = []
    english_key = str(raw.get("english_key", "9") or "")
    if english_key and english_key not in OPTION_KEYS:
        problems.append("ivr.english_key: one keypad key (0-9, * or #).")
    for index, option in enumerate(options, start=1):
        where = f"ivr.options[{index}]"
        if not isinstance(option, dict):
            problems.append(f"{where}: an object is required.")
            continue
        key, name = str(option.get("key", "")), str(option.get("name", ""))
        if key not in OPTION_KEYS:
            problems.append(f'{where}.key: one keypad key (0-9, * or #), not "{key}".')
        elif key in keys:
            problems.append(f'{where}.key: "{key}" is used twice.')
        elif key == english_key:
            problems.append(f'{where}.key: "{key}" switches to English (english_key).')
        keys.add(key)
        if not _NAME.fullmatch(name):
            problems.append(f'{where}.name: lowercase letters, digits, "-" or "_" (routing rules say ivr == "{name}").')
        elif name in names:
            problems.append(f'{where}.name: "{name}" is used twice.')
        names.add(name)
        queue = option.get("queue") or ""
        if queue and queue_slugs is not None and queue not in queue_slugs:
            problems.append(f'{where}.queue: no active queue has the slug "{queue}".')
        tags = option.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) and tag.strip() for tag in tags):
            problems.append(f"{where}.tags: a list of tag names.")
        language = option.get("language") or ""
        if language and language not in LANGUAGES:
            problems.append(f'{where}.language: "ja" or "en".')
        speech = option.get("speech", {})
        if not isinstance(speech, dict) or set(speech) - set(LANGUAGES) or not all(
                isinstance(words, list) and all(isinstance(w, str) for w in words) for words in speech.values()):
            problems.append(f'{where}.speech: words per language, e.g. {{"ja": ["請求"], "en": ["billing"]}}.')
    default = raw.get("default_option")
    if default and default not in names:
        problems.append(f'ivr.default_option: "{default}" is none of the options.')
    for name, low, high in (("retries", 0, 5), ("timeout", 1, 30), ("max_wait_seconds", 30, 86400)):
        value = raw.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
            problems.append(f"ivr.{name}: a whole number from {low} to {high}.")
    if raw.get("hours_queue") and queue_slugs is not None and raw["hours_queue"] not in queue_slugs:
        problems.append(f'ivr.hours_queue: no active queue has the slug "{raw["hours_queue"]}".')
    voices = raw.get("voices", {})
    if not isinstance(voices, dict):
        problems.append('ivr.voices: e.g. {"ja": "Polly.Mizuki", "en": "Polly.Joanna"}.')
    else:
        for lang, voice in voices.items():
            if lang not in LANGUAGES or voice not in KNOWN_VOICES[lang]:
                problems.append(f'ivr.voices.{lang}: "{voice}" is not a {TWILIO_LANGUAGE.get(lang, lang)} voice '
                                f"(one of {', '.join(KNOWN_VOICES.get(lang, ()))}).")
    model = raw.get("speech_model")
    if model is not None and model not in SPEECH_MODELS:
        problems.append(f"ivr.speech_model: one of {', '.join(SPEECH_MODELS)}.")
    music = raw.get("hold_music_url")
    if music and not (isinstance(music, str) and music.startswith(("https://", "/static/"))):
        problems.append("ivr.hold_music_url: an https:// URL or a /static/ path.")
    if "business_hours" in raw:
        from django.core.exceptions import ValidationError

        from ...routing.hours import validate_config

        try:
            validate_config(raw["business_hours"])
        except ValidationError as exc:
            problems.extend(f"ivr.business_hours: {message}" for message in exc.messages)
    if raw.get("transcribe") not in (None, True, False):
        problems.append("ivr.transcribe: true or false.")
    return problems


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").casefold().strip()


def match_option(config: IvrConfig, *, digits: str = "", speech: str = "", language: str = "ja") -> IvrOption | None:
    """The option the caller chose by key, else by a word of theirs in the option's speech list
    (any language; their own first), else None."""
    digits = (digits or "").strip()
    if digits:
        return next((option for option in config.options if option.key == digits[:1]), None)
    said = _fold(speech)
    if not said:
        return None
    order = [language] + [lang for lang in LANGUAGES if lang != language]
    for lang in order:
        for option in config.options:
            if any(_fold(word) and _fold(word) in said for word in option.speech.get(lang, ())):
                return option
    for option in config.options:
        if _fold(option.name) in said or option.key in said:
            return option
    return None


def wants_english(config: IvrConfig, *, digits: str = "", speech: str = "") -> bool:
    if config.english_key and (digits or "").strip()[:1] == config.english_key:
        return True
    said = _fold(speech)
    return bool(said) and ("english" in said or "英語" in said)
