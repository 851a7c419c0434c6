"""Fetching provider media without becoming an SSRF proxy.

Only https URLs on the provider's media hosts are fetched, every hop of a redirect is checked
again, and a host whose name resolves to a private, loopback, link-local or reserved address is
never contacted (threats.md: a media URL or redirect to a private address is not fetched).
"""

import fnmatch
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings

MAX_REDIRECTS = 3


class MediaRefused(Exception):
    pass


@dataclass(frozen=True)
class FetchedMedia:
    content: bytes
    content_type: str


def _resolve(host: str) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)})


def check_url(url: str, *, allowed_hosts: list[str], resolve=_resolve) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise MediaRefused(f"not https: {parts.scheme or 'no scheme'}")
    host = (parts.hostname or "").lower()
    if not host or not any(fnmatch.fnmatch(host, pattern) for pattern in allowed_hosts):
        raise MediaRefused(f"host not allowed: {host or '(none)'}")
    try:
        literal = ipaddress.ip_address(host)
        addresses = [str(literal)]
    except ValueError:
        try:
            addresses = resolve(host)
        except OSError as exc:
            raise MediaRefused(f"cannot resolve {host}") from exc
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if not ip.is_global or ip.is_multicast:
            raise MediaRefused(f"{host} resolves to a non-public address {address}")


def fetch(url: str, *, auth: tuple[str, str] | None, max_bytes: int, allowed_hosts: list[str] | None = None,
          resolve=_resolve, session: requests.Session | None = None) -> FetchedMedia:
    allowed = allowed_hosts if allowed_hosts is not None else settings.CC_TWILIO_MEDIA_HOSTS
    http = session or requests.Session()
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        check_url(current, allowed_hosts=allowed, resolve=resolve)
        # Credentials only go to the provider's own API host, never to a CDN it redirects to.
        send_auth = auth if urlsplit(current).hostname == urlsplit(url).hostname else None
        response = http.get(current, auth=send_auth, allow_redirects=False, stream=True, timeout=(5, 20))
        if response.is_redirect:
            current = urljoin(current, response.headers.get("Location", ""))
            response.close()
            continue
        response.raise_for_status()
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                response.close()
                raise MediaRefused(f"larger than {max_bytes} bytes")
            chunks.append(chunk)
        return FetchedMedia(content=b"".join(chunks), content_type=response.headers.get("Content-Type", ""))
    raise MediaRefused("too many redirects")
