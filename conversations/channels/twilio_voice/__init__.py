"""Twilio voice: ``webhooks`` (incoming call, IVR, hold, queue, voicemail, status callbacks),
``flow`` (what the caller hears at each step), ``calls`` (the writes), ``twiml`` (the TwiML,
the conversation's conference the caller joins), ``ivr`` (the inbox's menu and its checks),
``adapter`` and ``tasks`` (putting a caller through once an agent took the call:
``softphone.controls.call_put_through``), ``softphone`` (the agent's side)."""


def ready() -> None:
    from contactcenter import tick

    from ... import inbox_settings
    from . import recovery
    from .settings_checks import voice_settings_problems

    inbox_settings.register_settings_check("voice", voice_settings_problems)
    tick.register("voice_stale_calls_end", recovery.stale_calls_end)
