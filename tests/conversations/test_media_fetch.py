import pytest

from conversations.channels import media

ALLOWED = ["api.twilio.com", "*.twiliocdn.com"]


def public(host):
    return ["54.172.60.1"]


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://api.twilio.com/x", "not https"),
        ("https://evil.example/x", "host not allowed"),
        ("https://127.0.0.1/x", "host not allowed"),
        ("file:///etc/passwd", "not https"),
    ],
)
def test_urls_outside_the_provider_are_refused(url, reason):
    with pytest.raises(media.MediaRefused, match=reason):
        media.check_url(url, allowed_hosts=ALLOWED, resolve=public)


@pytest.mark.parametrize("address", ["10.0.0.5", "127.0.0.1", "169.254.169.254", "192.168.1.1", "::1", "fd00::1"])
def test_allowed_host_resolving_to_a_private_address_is_refused(address):
    with pytest.raises(media.MediaRefused, match="non-public"):
        media.check_url("https://api.twilio.com/x", allowed_hosts=ALLOWED, resolve=lambda host: [address])


class FakeResponse:
    def __init__(self, status, body=b"", headers=None):
        self.status_code = status
        self.headers = headers or {}
        self._body = body
        self.is_redirect = status in (301, 302, 303, 307, 308)

    def raise_for_status(self):
        if self.status_code >= 400:
            import requests

            raise requests.HTTPError(str(self.status_code))

    def iter_content(self, size):
        for start in range(0, len(self._body), size):
            yield self._body[start:start + size]

    def close(self):
        pass


class FakeSession:
    def __init__(self, responses):
        self.responses = responses
        self.calls = []

    def get(self, url, **kwargs):
        self.calls.append((url, kwargs.get("auth")))
        return self.responses.pop(0)


def test_redirect_is_followed_with_checks_and_credentials_stay_on_the_api_host():
    session = FakeSession([
        FakeResponse(307, headers={"Location": "https://media.twiliocdn.com/abc"}),
        FakeResponse(200, b"PNGDATA", {"Content-Type": "image/png"}),
    ])
    fetched = media.fetch("https://api.twilio.com/media/ME1", auth=("AC", "token"), max_bytes=100,
                          allowed_hosts=ALLOWED, resolve=public, session=session)
    assert fetched.content == b"PNGDATA" and fetched.content_type == "image/png"
    assert session.calls == [("https://api.twilio.com/media/ME1", ("AC", "token")), ("https://media.twiliocdn.com/abc", None)]


def test_redirect_to_a_private_address_is_not_followed():
    session = FakeSession([FakeResponse(302, headers={"Location": "https://169.254.169.254/latest"})])
    with pytest.raises(media.MediaRefused):
        media.fetch("https://api.twilio.com/media/ME1", auth=None, max_bytes=100, allowed_hosts=ALLOWED,
                    resolve=public, session=session)
    assert len(session.calls) == 1


def test_oversized_media_is_refused_with_bounded_memory():
    session = FakeSession([FakeResponse(200, b"x" * 1000)])
    with pytest.raises(media.MediaRefused, match="larger"):
        media.fetch("https://api.twilio.com/m", auth=None, max_bytes=100, allowed_hosts=ALLOWED, resolve=public,
                    session=session)
