"""Settings of the fault suite's server processes: the project's own, plus widget limits fit for a
test client whose every visitor comes from 127.0.0.1 (the limits count per address; a real
deployment's visitors come from many)."""

from contactcenter.settings import *  # noqa: F403

CC_WIDGET_LIMITS = {
    "message_per_ip": (100_000, 10),
    "conversation_per_ip": (100_000, 3600),
    "hello_per_ip": (100_000, 60),
}
