"""The fault suite's own services and processes: a private PostgreSQL cluster and a private Redis
that the suite may kill and restart (never the machine's shared ones, which other test runs use),
and the application as the Procfile runs it: daphne, a celery worker, celery beat (the tick) and
the SMTP listener, started with bench/_harness.py's ``Processes``."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from _harness import Processes, celery_queues, free_port  # noqa: E402 - bench/ is not a package

from . import seed  # noqa: E402

PG_BIN = Path(os.environ.get("CC_FAULTS_PG_BIN", "")) if os.environ.get("CC_FAULTS_PG_BIN") else None


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian's /usr/lib/postgresql/<n>/bin)."""
    if PG_BIN is not None:
        return PG_BIN if (PG_BIN / "initdb").exists() else None
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def missing_binaries() -> str:
    """What the suite cannot run without, "" when everything is there."""
    problems = []
    if postgres_bin() is None:
        problems.append("PostgreSQL server binaries (/usr/lib/postgresql/<n>/bin/initdb)")
    if shutil.which("redis-server") is None:
        problems.append("redis-server")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        problems.append("runuser (PostgreSQL refuses to run as root)")
    return ", ".join(problems)


def _as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: as root, run it as the postgres user.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PrivatePostgres:
    """A throwaway cluster in a temporary directory, on a free port, stopped and started at will.
    fsync is off (speed): a killed server loses nothing the kernel already has, and the suite kills
    the server, never the machine. Commits stay synchronous, so an answered commit is on disk."""

    def __init__(self, root: Path):
        self.bin = postgres_bin()
        self.data = root / "pg"
        self.sockets = root / "pg-sockets"
        self.log = root / "pg.log"
        self.port = free_port()
        for path in (self.data, self.sockets):
            path.mkdir()
            if os.geteuid() == 0:
                shutil.chown(path, "postgres", "postgres")
        self.log.touch()
        if os.geteuid() == 0:
            shutil.chown(self.log, "postgres", "postgres")
        subprocess.run(_as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                                     "--auth=trust", "-E", "UTF8", "--no-instructions"]),
                       check=True, capture_output=True, timeout=120)
        self.start()
        self.admin_execute("CREATE DATABASE contactcenter")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/contactcenter"

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                                     "-t", "60", "-o", options, "start"]), check=True, capture_output=True, timeout=90)

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash (every backend killed, recovery at the next start)."""
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60",
                                     "stop"]), capture_output=True, timeout=90)

    def admin_execute(self, sql: str) -> None:
        with psycopg.connect(f"postgres://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(sql)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)


class PrivateRedis:
    """``redis-server`` without persistence, as a child process: a restart loses everything in it
    (queued tasks, channel-layer groups, cache), which is what the suite wants to survive."""

    def __init__(self, root: Path):
        self.port = free_port()
        self.log_path = root / "redis.log"
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=self._log, stderr=subprocess.STDOUT)
        import redis

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"private redis-server did not start; see {self.log_path}")

    def forget_groups(self, prefix: str) -> int:
        """Delete the channel layer's group memberships (channels_redis keeps each group in
        ``<prefix>:group:<name>``), leaving every connection up. Returns how many groups."""
        import redis

        client = redis.Redis(port=self.port, socket_timeout=5)
        keys = list(client.scan_iter(match=f"{prefix}:group:*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=20)
        self.process = None
        self._log.close()


class AppStack:
    """The application's processes on the private services. Logs: ``var/bench-faults-<name>.log``."""

    def __init__(self, postgres: PrivatePostgres, redis: PrivateRedis, root: Path):
        self.postgres, self.redis, self.root = postgres, redis, root
        self.port = free_port()
        self.smtp_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        self.env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="tests.faults._settings", DATABASE_URL=postgres.url, REDIS_URL=redis.url,
            CC_CHANNELS_PREFIX="cc-faults", CC_PUBLIC_URL=self.base, CC_SELF_URL=self.base,
            ALLOWED_HOSTS="127.0.0.1,localhost", SECRET_KEY="faults-only-secret-key", CC_EMBEDDED_WORKER="0",
            CC_SMTP_HOST="127.0.0.1", CC_SMTP_PORT=str(self.smtp_port), CC_TICK_SECONDS="2",
            CC_DB_CONN_MAX_AGE="0", CC_DB_POOL="0", PYTHONUNBUFFERED="1",
            # Sockets notice a restarted Redis within two checks (default 10 s): shorter runs.
            CC_CHANNEL_LAYER_CHECK_SECONDS="2",
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        )
        for name in ("CC_CELERY_QUEUE", "CC_TEST_DATABASE_URL", "CC_TEST_REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"):
            self.env.pop(name, None)
        self.processes = Processes()
        self.named: dict[str, subprocess.Popen] = {}
        self._generation = 0
        from celery import Celery

        # Pings the private workers (the pytest process's own app is on the shared Redis).
        self.control = Celery("faults-probe", broker=redis.url)
        self.queues = celery_queues(__import__("contactcenter.celery", fromlist=["app"]).app)

    # -- set-up --------------------------------------------------------------------------------------

    def manage(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def migrate_and_seed(self) -> dict:
        self.manage("migrate", "--noinput")
        done = subprocess.run([sys.executable, "-m", "tests.faults.seed"], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"seeding failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    # -- processes -----------------------------------------------------------------------------------

    def _log_name(self, role: str) -> str:
        self._generation += 1
        return f"faults-{role}-{self._generation}"

    def start_daphne(self) -> subprocess.Popen:
        # As the Procfile's web process: connections from psycopg's pool.
        log = self._log_name("daphne")
        proc = self.processes.daphne(log, port=self.port, application="contactcenter.asgi:application",
                                     env=dict(self.env, CC_DB_POOL="8"))
        self.named["daphne"] = proc
        self.processes.wait_http(proc, log, self.base + "/webhooks/twilio/messaging/", timeout=90)
        return proc

    def start_worker(self) -> subprocess.Popen:
        # As the Procfile's worker: connections kept 60 s.
        log = self._log_name("worker")
        node = log
        proc = self.processes.celery_worker(log, node=node, env=dict(self.env, CC_DB_CONN_MAX_AGE="60"),
                                            concurrency=4, queues=self.queues)
        self.named["worker"] = proc
        # A fresh probe app, and again when the ping's own connection drops: after the suite
        # restarted Redis, kombu's pidbox sometimes loses it ("Connection closed by server").
        import redis
        from celery import Celery
        from kombu.exceptions import OperationalError

        deadline = time.monotonic() + 90
        while True:
            self.control = Celery("faults-probe", broker=self.redis.url)
            try:
                self.processes.wait_celery(proc, log, self.control, node, timeout=max(5.0, deadline - time.monotonic()))
                return proc
            except (redis.ConnectionError, OperationalError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def start_beat(self) -> subprocess.Popen:
        log = self._log_name("beat")
        proc = self.processes.start(log, [sys.executable, "-m", "celery", "-A", "contactcenter", "beat", "-l", "WARNING",
                                          "--schedule", str(self.root / f"beat-{self._generation}")], self.env)
        self.named["beat"] = proc
        return proc

    def start_smtpd(self) -> subprocess.Popen:
        log = self._log_name("smtpd")
        proc = self.processes.start(log, [sys.executable, "manage.py", "smtpd"], self.env)
        self.named["smtpd"] = proc
        import socket

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"smtpd exited with {proc.returncode}; see var/bench-{log}.log")
            try:
                socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1).close()
                return proc
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("smtpd did not listen in 60 s")

    def start_all(self) -> None:
        self.start_daphne()
        self.start_smtpd()
        self.start_worker()
        self.start_beat()

    def ensure_running(self) -> None:
        """What a scenario left stopped is started again, so the next one starts complete."""
        if self.redis.process is None:
            self.redis.start()
        for role, starter in (("daphne", self.start_daphne), ("smtpd", self.start_smtpd),
                              ("worker", self.start_worker), ("beat", self.start_beat)):
            proc = self.named.get(role)
            if proc is None or proc.poll() is not None:
                starter()

    def stop(self) -> None:
        self.processes.stop()
