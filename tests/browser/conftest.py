"""Browser tests: Playwright driving Debian's chromium against a real daphne server.

The server is a subprocess (``python -m daphne … contactcenter.asgi:application``) on a free port,
pointed at the pytest test database, with the simulator on and ``CC_PUBLIC_URL`` set to its own
address so the simulator's signed webhooks validate:

* embedded mode: the SQLite test database file and ``CC_EMBEDDED_WORKER=1``, so the Celery worker
  and beat run as threads of the daphne process. They must: the in-memory channel layer and
  broker exist only inside one process, so the worker's events reach the websockets only there.
* production mode: the PostgreSQL test database, the Redis channel layer, and a real
  ``celery worker -B`` process on a queue of its own (asgi.py starts no in-process worker in
  production mode). The server enqueues onto that queue through ``CC_CELERY_QUEUE``.

The server lives for the ``tests/browser`` package, not the whole session: its beat ticks every
few seconds against the test database and must not run while other packages' tests do.

Tests use ``django_db(transaction=True)``: what they seed is committed, so the server sees it, and
pytest-django empties every table after each test: each test seeds everything it needs.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from ..conftest import PRODUCTION, REPO, _database_url_for_test_db

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CONSOLE_VIEWPORT = {"width": 1440, "height": 900}

# Runs in every page before its own scripts: records CSP violations (an inline script or event
# handler that customer content managed to inject is refused by the CSP and reported here).
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push({directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample,
                               source: e.sourceFile, line: e.lineNumber});
});
"""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"_report_{report.when}", report)
    return report


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="package")
def chromium_executable() -> str:
    """Debian's chromium, or a skip (a failure in CI: there a missing service is never a skip)."""
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install -y chromium fonts-noto-cjk)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run and CI=true: {problem}", pytrace=False)
        pytest.skip(f"browser tests skipped: {problem}")
    return str(CHROMIUM)


@dataclass
class BrowserServer:
    base_url: str
    log_path: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def log_tail(self, lines: int = 60) -> str:
        return _log_tail(self.log_path, lines)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for log in self.logs:
            log.close()


def _server_env(base_url: str) -> dict[str, str]:
    from django.db import connection

    env = dict(os.environ)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update({
        "DJANGO_SETTINGS_MODULE": "contactcenter.settings",
        "CC_PUBLIC_URL": base_url,
        "CC_SELF_URL": base_url,
        "CC_SIMULATOR": "1",
        "CC_SIMULATE_DELIVERY": "1",  # Twilio's delivery callbacks, played by the simulator
        # The embedded server also starts its SMTP listener: never on a port a dev server holds.
        "CC_SMTP_HOST": "127.0.0.1",
        "CC_SMTP_PORT": str(_free_port()),
        "PYTHONUNBUFFERED": "1",
    })
    if PRODUCTION:
        env["DATABASE_URL"] = _database_url_for_test_db()
        env["CC_EMBEDDED_WORKER"] = "0"
        # Its own queue: the test process's side-effect tasks (default queue) and the suite's
        # celery_worker fixture (cc-test-worker) never meet this server's work.
        env["CC_CELERY_QUEUE"] = f"cc-browser-{os.getpid()}"
    else:
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        env["CC_SQLITE_PATH"] = str(connection.settings_dict["NAME"])
        env["CC_EMBEDDED_WORKER"] = "1"
    return env


def _wait_healthy(server: BrowserServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for process in server.processes:
            if process.poll() is not None:
                pytest.fail(f"browser server process exited with {process.returncode}:\n{server.log_tail()}",
                            pytrace=False)
        try:
            response = requests.get(server.url("/healthz"), timeout=3)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.2)
    pytest.fail(f"browser server not healthy within {timeout}s ({last}):\n{server.log_tail()}", pytrace=False)


@pytest.fixture(scope="package")
def browser_server(chromium_executable, django_db_setup, django_db_blocker):
    """A real daphne (plus, in production mode, a celery worker with beat) on the test database."""
    (REPO / "var").mkdir(exist_ok=True)
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with django_db_blocker.unblock():
        env = _server_env(base_url)
    log_path = REPO / "var" / f"browser-server-{os.getpid()}.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed by server.stop()
    server = BrowserServer(base_url=base_url, log_path=log_path, logs=[log])
    if PRODUCTION:
        server.processes.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "contactcenter", "worker", "-B", "--scheduler", "celery.beat:Scheduler",
             "-P", "threads", "-c", "4", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-l", "WARNING", "-Q", env["CC_CELERY_QUEUE"], "-n", f"browser-{os.getpid()}@%h"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        ))
    server.processes.append(subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "contactcenter.asgi:application"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    ))
    try:
        _wait_healthy(server)
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(chromium_executable, browser_server, monkeypatch):
    """A headless chromium for one test. Playwright's sync API keeps an asyncio loop marked as
    running in this thread while it lives, which Django's async-safety check takes for an async
    context: the ORM calls a test makes between browser steps are allowed for this test only
    (the loop is gone after it, before any other test runs)."""
    from django.db import connections
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    expect.set_options(timeout=20_000)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            # Connections the test opened while the loop was current are stored for that context
            # (asgiref Local): closed here or never, and PostgreSQL then refuses to drop the test
            # database ("being accessed by other users").
            connections.close_all()
            instance.close()


@pytest.fixture
def new_context(browser, browser_server, request):
    """``new_context(**options)``: a browser context at the console's size, English, Tokyo time,
    with the CSP recorder. On failure every page left open is saved as a screenshot and the
    server log tail is printed."""
    contexts = []

    def make(**options):
        options = {"viewport": CONSOLE_VIEWPORT, "locale": "en-US", "timezone_id": "Asia/Tokyo", **options}
        context = browser.new_context(base_url=browser_server.base_url, **options)
        context.set_default_timeout(20_000)
        context.add_init_script(CSP_RECORDER)
        contexts.append(context)
        return context

    yield make
    failed = any(getattr(getattr(request.node, f"_report_{when}", None), "failed", False) for when in ("setup", "call"))
    for context in contexts:
        if failed:
            for index, page in enumerate(context.pages):
                try:
                    screenshot(page, f"FAILED-{request.node.name}-{index}")
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
        context.close()
    if failed:
        print(f"--- browser server log ({browser_server.log_path}) ---\n{browser_server.log_tail()}")


def screenshot(page, name: str, *, full_page: bool = False) -> Path:
    """Save ``artifacts/screenshots/<name>.png`` (CI keeps the folder as an artifact)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def publish_screenshot(path: Path, name: str) -> None:
    """Copy a screenshot to ``docs/`` (committed, shown in the README) when asked to with
    ``CC_UPDATE_DOCS_SCREENSHOTS=1``: a plain test run leaves the working tree clean."""
    if os.environ.get("CC_UPDATE_DOCS_SCREENSHOTS") != "1":
        return
    target = REPO / "docs" / name
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(path, target)


def login(page, username: str, password: str) -> None:
    """Sign in through the login form (its own submit button: the top bar's language switcher has
    submit buttons too) and wait for the console with its websocket open."""
    page.goto("/accounts/login/")
    form = page.locator(".auth-card form")
    form.locator("input[name=username]").fill(username)
    form.locator("input[name=password]").fill(password)
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/console/")
    wait_connected(page)


def wait_connected(page) -> None:
    page.wait_for_function("() => window.ccConsole && window.ccConsole.state.connected === true")


def off_the_browser_thread(fn, /, *args, **kwargs):
    """Call ``fn`` in a thread of its own and return its result. For service calls that publish
    events (``async_to_sync``): it refuses to run in this thread while Playwright's loop lives."""
    from django.db import connections

    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="browser-test-service-call")
    thread.start()
    thread.join(timeout=60)
    if thread.is_alive():
        pytest.fail(f"{fn.__name__} did not return within 60s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def csp_violations(page) -> list[dict]:
    return page.evaluate("() => window.__cspViolations || []")
