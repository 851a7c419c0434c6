"""The agent's side of a call: the console's softphone.

An access token for the Twilio Voice JavaScript SDK (``token``), the agent's choice to answer in
the browser or on their own phone (``profile``), the call controls driven through Twilio's REST API
(``controls``: answer, hold, resume, cold and warm transfer, hang up), click-to-call
(``outbound``), and the console's doors to them (``softphone_views``). The call's state is kept on
the conversation's timeline as system events (``calls`` folds them), so every control is seen by
everyone who reads the customer's timeline, and a console that reconnects reads it back.
"""


def ready() -> None:
    from contactcenter import tick

    from .wrap_up import call_wrap_ups_expire

    tick.register("call_wrap_ups_expire", call_wrap_ups_expire)
