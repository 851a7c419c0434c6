"""The address of the client a request or websocket comes from: one rule for every place that
counts by address (login throttling, the widget's per-address limits, logs).

Without a proxy (``CC_PROXY_HEADERS`` unset) it is the peer of the connection: X-Forwarded-For is
then the client's own text and is ignored. Behind ``CC_TRUSTED_PROXY_COUNT`` reverse proxies
(``CC_PROXY_HEADERS=1``, default one proxy) each proxy *appends* the address it received the
connection from, so the client is the entry that many places from the right: the hop our own
outermost proxy wrote. Everything left of it came from the client and may be forged (daphne's
``--proxy-headers`` takes the left-most entry, which is why we do not use it). A header with
fewer entries than trusted proxies was written by our proxies alone: its left-most entry is the
client. An entry that is not an IP address where we expect the client falls back to the peer.
"""

import ipaddress

from django.conf import settings

UNKNOWN = "unknown"


def _as_ip(text: str) -> str | None:
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def client_address_from(*, peer: str | None, forwarded_for: list[str]) -> str:
    """The client's address given the connection's ``peer`` and every X-Forwarded-For header
    value received, in order."""
    peer = peer or UNKNOWN
    if not settings.CC_PROXY_HEADERS:
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    if not hops:
        return peer
    trusted = max(1, settings.CC_TRUSTED_PROXY_COUNT)
    client = hops[-trusted] if len(hops) >= trusted else hops[0]
    return _as_ip(client) or peer


def request_client_address(request) -> str:
    """For a Django request (HTTP)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    return client_address_from(peer=request.META.get("REMOTE_ADDR"), forwarded_for=[forwarded] if forwarded else [])


def scope_client_address(scope) -> str:
    """For an ASGI scope (websockets): every X-Forwarded-For header, as the proxies sent them."""
    client = scope.get("client") or (None, 0)
    forwarded = [value.decode("latin1") for name, value in scope.get("headers", []) if name == b"x-forwarded-for"]
    return client_address_from(peer=str(client[0]) if client[0] else None, forwarded_for=forwarded)
