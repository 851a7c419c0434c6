"""Settings for the daphnes of bench/connections and bench/widget: the project's own, with the
widget's per-address limits lifted (every simulated visitor connects from 127.0.0.1, where a real
sale-day crowd comes from thousands of addresses); every limit is still checked, so its cost is
measured."""

from contactcenter.settings import *

CC_WIDGET_LIMITS = {
    "hello_per_ip": (10**9, 60),
    "message_per_ip": (10**9, 10),
    "conversation_per_ip": (10**9, 600),
}
