"""The TwiML a caller hears at each step, built with the SDK's ``VoiceResponse`` (twilio.md §3).

Action URLs are absolute paths: Twilio resolves them against the URL it requested (our public
URL), so what it signs on the next request is ``CC_PUBLIC_URL`` + path, as the webhooks check.
URLs given to the REST API (a redirect, a callback) are absolute (``public_base``).
"""

from urllib.parse import urlencode

from django.conf import settings
from django.templatetags.static import static
from twilio.twiml.voice_response import VoiceResponse

from ...models import Agent, Call
from .ivr import TWILIO_LANGUAGE, IvrConfig

BASE = "/webhooks/twilio/voice/"
INCOMING = BASE
STATUS = BASE + "status/"
GATHER = BASE + "gather/"
WAIT = BASE + "wait/"
WAIT_CHOICE = BASE + "wait/choice/"
ENQUEUE_ACTION = BASE + "enqueue-action/"
VOICEMAIL_DONE = BASE + "voicemail/"
RECORDING = BASE + "recording/"
TRANSCRIPTION = BASE + "transcription/"
CONFERENCE = BASE + "conference/"
AGENT_LEG = BASE + "agent-leg/"
REQUEUE = BASE + "requeue/"
SURVEY = BASE + "survey/"
CUSTOMER_LABEL = "customer"
HOLD_MUSIC = "voice/hold-music.wav"
MAX_QUEUE_NAME = 64
# A browser agent's Voice SDK identity: letters, digits and underscore only (twilio.md §3).
CLIENT_IDENTITY = "agent_{id}"


def public_base() -> str:
    return settings.CC_PUBLIC_URL or settings.CC_SELF_URL


def with_query(path: str, **params) -> str:
    return f"{path}?{urlencode(params)}" if params else path


def client_identity(agent: Agent) -> str:
    return CLIENT_IDENTITY.format(id=agent.pk)


def conference_name(conversation_id: int) -> str:
    """The one conference every call of a conversation is answered in (twilio.md §3: transfers
    and the post-call survey need the caller in a conference, not bridged by a Dial)."""
    return f"conversation-{int(conversation_id)}"


def _say(node, config: IvrConfig, language: str, text: str) -> None:
    if text:
        node.say(text, language=TWILIO_LANGUAGE[language], voice=config.voice(language))


def _said(node, config: IvrConfig, language: str, name: str, **values) -> None:
    _say(node, config, language, config.text(name, language, **values))


def twiml_menu(config: IvrConfig, *, language: str, attempt: int) -> str:
    """The greeting (first time only) and the menu, by keypad or speech; 9 for English. With
    ``actionOnEmptyResult`` Twilio posts to the action when the caller gives nothing, which counts
    the retries and, after the last one, takes the default option."""
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf speech", action=with_query(GATHER, attempt=attempt), method="POST", num_digits=1,
        timeout=config.timeout, language=TWILIO_LANGUAGE[language], speech_model=config.speech_model,
        speech_timeout="auto", action_on_empty_result=True,
        hints=",".join(word for option in config.options for word in option.speech.get(language, ()))[:500] or None,
    )
    if attempt == 0:
        _said(gather, config, language, "greeting")
    else:
        _said(gather, config, language, "no_input")
    _said(gather, config, language, "menu")
    if language == "ja":
        _said(gather, config, "en", "english")
    return str(response)


def twiml_closed(config: IvrConfig, *, language: str, opens: str, call: Call) -> str:
    """The line is closed: when it opens (in the caller's language), then voicemail."""
    response = VoiceResponse()
    _said(response, config, language, "closed" if opens else "closed_unknown", opens=opens)
    _voicemail(response, config, language=language)
    return str(response)


def twiml_voicemail(config: IvrConfig, *, language: str) -> str:
    response = VoiceResponse()
    _voicemail(response, config, language=language)
    return str(response)


def _voicemail(response: VoiceResponse, config: IvrConfig, *, language: str) -> None:
    _said(response, config, language, "voicemail")
    # Twilio's <Record transcribe> is for English (2-120 s); Japanese voicemail stays untranscribed.
    transcribe = config.transcribe and language == "en"
    response.record(
        action=VOICEMAIL_DONE, method="POST", max_length=120, timeout=5, finish_on_key="#", play_beep=True, trim="trim-silence",
        recording_status_callback=RECORDING, recording_status_callback_method="POST",
        recording_status_callback_event="completed",
        **({"transcribe": True, "transcribe_callback": TRANSCRIPTION} if transcribe else {}),
    )
    _said(response, config, language, "voicemail_none")
    response.hangup()


def twiml_enqueue(config: IvrConfig, *, language: str, queue_name: str) -> str:
    response = VoiceResponse()
    _said(response, config, language, "queued")
    response.enqueue((queue_name or "voice")[:MAX_QUEUE_NAME], action=ENQUEUE_ACTION, method="POST", wait_url=WAIT,
                     wait_url_method="POST")
    return str(response)


def hold_music_url(config: IvrConfig) -> str:
    return config.hold_music_url or static(HOLD_MUSIC)


def twiml_wait(config: IvrConfig, *, language: str, position: dict | None) -> str:
    """What a caller on hold hears each time the hold loop comes round: their place and the
    expected wait from our routing numbers, the keypad menu (1 wait, 2 callback, 3 voicemail),
    and the hold music. When it ends, Twilio asks the waitUrl again."""
    response = VoiceResponse()
    gather = response.gather(input="dtmf", num_digits=1, action=WAIT_CHOICE, method="POST", timeout=1)
    if position is not None:
        _said(gather, config, language, "position", position=position["position"])
        wait = position.get("estimated_wait_seconds")
        if wait is not None:
            _said(gather, config, language, "wait", minutes=max(1, round(wait / 60)))
    _said(gather, config, language, "wait_menu")
    gather.play(hold_music_url(config))
    return str(response)


def twiml_wait_choice(config: IvrConfig, *, language: str, choice: str) -> str:
    """The caller's key while on hold. Callback and voicemail leave the queue (``<Leave/>``); the
    Enqueue action then plays what follows. Anything else: back to the hold loop."""
    response = VoiceResponse()
    if choice in ("callback", "voicemail"):
        response.leave()
    elif choice == "callback_unavailable":
        _said(response, config, language, "callback_unavailable")
    else:
        _said(response, config, language, "keep_waiting")
    return str(response)


def twiml_callback_confirmed(config: IvrConfig, *, language: str) -> str:
    response = VoiceResponse()
    _said(response, config, language, "callback")
    response.hangup()
    return str(response)


def twiml_goodbye(config: IvrConfig, *, language: str, name: str = "goodbye") -> str:
    response = VoiceResponse()
    _said(response, config, language, name)
    response.hangup()
    return str(response)


def twiml_empty() -> str:
    return str(VoiceResponse())


def twiml_hangup() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


def twiml_conference(config: IvrConfig, *, call: Call, conversation_id: int) -> str:
    """The customer's leg joins the conversation's conference (our redirect out of ``<Enqueue>``
    once an agent took the call, or our callback answered). It hears hold music until an agent
    is in; its hanging up ends the conference for everyone; an agent leaving does not (the caller
    may then be taken to the post-call survey)."""
    response = VoiceResponse()
    if call.callback_requested:
        _said(response, config, call.language, "callback_connect")
    dial = response.dial()
    dial.conference(conference_name(conversation_id), participant_label=CUSTOMER_LABEL, beep=False,
                    start_conference_on_enter=False, end_conference_on_exit=True,
                    wait_url=hold_music_url(config), wait_method="GET")
    return str(response)


def twiml_requeued(config: IvrConfig, *, language: str, queue_name: str) -> str:
    """The agent's leg did not answer: back on hold, in the same place in line."""
    response = VoiceResponse()
    _said(response, config, language, "requeued")
    response.enqueue((queue_name or "voice")[:MAX_QUEUE_NAME], action=ENQUEUE_ACTION, method="POST", wait_url=WAIT,
                     wait_url_method="POST")
    return str(response)


def twiml_way_out(config: IvrConfig, *, language: str, reason: str, opens: str = "", callback: bool) -> str:
    """Nobody will answer soon: the queue closed while the caller waited (``reason="closed"``, said
    with when it opens) or they waited past the line's limit (``"no_agent"``). They are told, and
    offered a callback (when we can call them; it keeps their place) or voicemail; silence leads
    to voicemail (``<Leave/>`` after the menu: the Enqueue action plays the recording)."""
    response = VoiceResponse()
    gather = response.gather(input="dtmf", num_digits=1, action=WAIT_CHOICE, method="POST", timeout=6)
    if reason == "closed":
        _said(gather, config, language, "closing" if opens else "closing_unknown", opens=opens)
        _said(gather, config, language, "closing_menu" if callback else "closing_menu_voicemail")
    else:
        _said(gather, config, language, "no_agent")
        _said(gather, config, language, "no_agent_menu" if callback else "closing_menu_voicemail")
    response.leave()
    return str(response)


def twiml_survey(config: IvrConfig, *, call_id: int, language: str, question: str, attempt: int,
                 two_digits: bool = False) -> str:
    """The post-call keypad survey: the question in the caller's language, keys for the score (two
    and # for a 0-10 scale). Nothing pressed also comes back (``actionOnEmptyResult``)."""
    response = VoiceResponse()
    gather = response.gather(input="dtmf", num_digits=2 if two_digits else 1, finish_on_key="#", timeout=8,
                             action=with_query(SURVEY, call=call_id, attempt=attempt), method="POST", action_on_empty_result=True,
                             language=TWILIO_LANGUAGE[language])
    if attempt > 1:
        _said(gather, config, language, "survey_again")
    _say(gather, config, language, question)
    return str(response)
