"""Response headers and error pages (issue 21, defect 8): nothing Django answers is cached,
static files are never sniffed, the admin has a strict CSP, and the embedded default shows no
traceback to whoever triggers an error while its console still prints it."""

import json
import os
import subprocess
import sys

import pytest
from asgiref.testing import ApplicationCommunicator

from ..conftest import REPO

pytestmark = pytest.mark.django_db

ADMIN_CSP = {
    "default-src": "'self'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self' data:",
    "frame-ancestors": "'none'", "form-action": "'self'", "base-uri": "'self'", "object-src": "'none'",
}


def not_stored(response) -> bool:
    # Views that say never_cache (the login forms) send no-store among other directives.
    return "no-store" in [part.strip() for part in response.get("Cache-Control", "").split(",")]


def directives(policy: str) -> dict[str, str]:
    return dict((part.strip().split(" ", 1) + [""])[:2] for part in policy.split(";") if part.strip())


@pytest.mark.parametrize("path", ["/console/", "/console/queue/", "/api/v1/customers/", "/console/login/"])
def test_console_and_api_answers_are_not_stored(client, agent, path):
    client.force_login(agent.user)
    response = client.get(path)
    assert response.status_code < 500
    assert not_stored(response)


@pytest.mark.parametrize("path", ["/api/v1/customers/", "/console/"])
def test_refusals_and_not_found_are_not_stored_either(client, path):
    assert not_stored(client.get(path))  # 403/302 for a stranger
    assert not_stored(client.get(path + "no-such-thing/"))


def test_api_answer_for_a_signed_in_agent_is_not_stored(client, agent, customer):
    client.force_login(agent.user)
    response = client.get(f"/api/v1/customers/{customer.pk}/")
    assert response.status_code == 200
    assert not_stored(response)


def test_admin_has_a_strict_content_security_policy(client, admin_user):
    client.force_login(admin_user)
    for path in ["/admin/", "/admin/login/", "/admin/auth/user/", f"/admin/auth/user/{admin_user.pk}/change/"]:
        response = client.get(path, follow=True)
        assert response.status_code == 200, path
        assert directives(response["Content-Security-Policy"]) == ADMIN_CSP, path
        assert "unsafe-inline" not in response["Content-Security-Policy"]


def test_the_console_keeps_its_own_policy(client, agent):
    client.force_login(agent.user)
    policy = directives(client.get("/console/")["Content-Security-Policy"])
    assert policy["script-src"] == "'self'" and policy["connect-src"] == "'self' ws: wss:"
    assert policy["base-uri"] == "'none'"


async def _static(path: str):
    from contactcenter.asgi import application

    # The whole ASGI app, as daphne calls it: static files never reach Django's middleware.
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": [(b"host", b"127.0.0.1")], "scheme": "http",
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(timeout=10)
    body = b""
    while True:
        message = await communicator.receive_output(timeout=10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(timeout=10)
    return {"status": start["status"], "headers": start["headers"], "body": body}


async def test_static_files_are_served_with_debug_off_and_never_sniffed(settings):
    assert settings.DEBUG is False  # the embedded default now, and pytest's
    response = await _static("/static/widget/widget.js")
    assert response["status"] == 200 and b"data-widget" in response["body"]
    headers = {name.decode().lower(): value.decode() for name, value in response["headers"]}
    assert headers["x-content-type-options"] == "nosniff"
    assert "no-store" not in headers.get("cache-control", "")
    assert (await _static("/static/no-such-file.js"))["status"] == 404


SCRIPT = """
import json, os, django
os.environ["DJANGO_SETTINGS_MODULE"] = "contactcenter.settings"
django.setup()
from django.conf import settings
from django.test import Client, override_settings
out = {"debug": settings.DEBUG, "simulator": settings.CC_SIMULATOR, "hosts": settings.ALLOWED_HOSTS}
if not settings.CC_PRODUCTION:
    with override_settings(ROOT_URLCONF="tests.contactcenter.crash_urls"):
        response = Client(raise_request_exception=False, HTTP_HOST="127.0.0.1").get("/crash/")
    out |= {"status": response.status_code, "body": response.content.decode(),
            "cache_control": response.get("Cache-Control")}
print(json.dumps(out))
"""


def fresh_process(tmp_path, **env) -> tuple[dict, str]:
    """Settings as a fresh process sees them with only ``env`` set (no pytest, no test settings)."""
    base = {name: value for name, value in os.environ.items()
            if not name.startswith(("DATABASE_URL", "REDIS_URL", "DEBUG", "CC_", "SECRET_KEY", "ALLOWED_HOSTS"))}
    base |= {"CC_VAR_DIR": str(tmp_path), **env}
    done = subprocess.run([sys.executable, "-c", SCRIPT], check=False, cwd=REPO, env=base, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_embedded_default_shows_no_traceback_but_prints_it_to_the_console(tmp_path):
    seen, stderr = fresh_process(tmp_path)
    assert seen["debug"] is False
    assert "127.0.0.1" in seen["hosts"] and "localhost" in seen["hosts"]
    assert seen["status"] == 500
    body = seen["body"]
    assert "Server Error" in body
    for leak in ["secret-marker-7d1f", "Traceback", "DeliberateFailure", "SECRET_KEY", "crash_urls"]:
        assert leak not in body
    assert seen["cache_control"] == "no-store"
    # The console (stderr of `make run`) has the whole story.
    assert "Traceback" in stderr and "secret-marker-7d1f" in stderr and "Internal Server Error: /crash/" in stderr


def test_debug_is_on_only_when_asked(tmp_path):
    assert fresh_process(tmp_path, DEBUG="1")[0]["debug"] is True
    assert fresh_process(tmp_path, DEBUG="0")[0]["debug"] is False
