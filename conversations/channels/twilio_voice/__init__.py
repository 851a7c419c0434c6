"""Twilio voice: ``webhooks`` (incoming call, IVR, hold, queue, voicemail, status callbacks),
``flow`` (what the caller hears at each step), ``calls`` (the writes), ``twiml`` (the TwiML,
``call_connect_twiml`` for the softphone), ``ivr`` (the inbox's menu and its checks), ``adapter``
and ``tasks`` (putting a caller through, calling back)."""


def ready() -> None:
    from contactcenter import tick

    from ... import inbox_settings
    from . import recovery
    from .settings_checks import voice_settings_problems

    inbox_settings.register_settings_check("voice", voice_settings_problems)
    tick.register("voice_stale_calls_end", recovery.stale_calls_end)
