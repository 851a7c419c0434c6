"""The fault suite's session: a private PostgreSQL and Redis (the suite kills and restarts them;
the machine's shared ones, which other test runs use, are never touched), migrated and seeded, and
the application's processes on them. Outside CI a machine without the server binaries skips the
suite with a message; in CI (CI=true) that is a failure."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from ..conftest import PRODUCTION

OUTCOMES: list = []  # counts.Outcome of every scenario run, for the terminal summary


@pytest.fixture(scope="session")
def fault_stack():
    from .stack import AppStack, PrivatePostgres, PrivateRedis, missing_binaries

    problem = missing_binaries()
    if problem:
        message = f"fault suite needs {problem} to run private services it can kill"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI=true", pytrace=False)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="cc-faults-"))
    root.chmod(0o755)  # the postgres user reaches its data directory inside
    postgres = redis = stack = None
    try:
        postgres = PrivatePostgres(root)
        redis = PrivateRedis(root)
        stack = AppStack(postgres, redis, root)
        stack.seeded = stack.migrate_and_seed()
        stack.start_all()
        yield stack
    finally:
        if stack is not None:
            stack.stop()
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stack(fault_stack):
    """The stack, complete again before each scenario (a failed one may have left a piece down)."""
    fault_stack.ensure_running()
    return fault_stack


@pytest.fixture
def report():
    """``report(outcome)``: print the scenario's counts line now (visible with -s) and in the
    terminal summary."""

    def add(outcome):
        OUTCOMES.append(outcome)
        print(outcome.line())
        return outcome

    return add


def pytest_terminal_summary(terminalreporter):
    if not PRODUCTION or not OUTCOMES:
        return
    terminalreporter.section("fault suite: counts per scenario")
    for outcome in OUTCOMES:
        terminalreporter.write_line(outcome.line())
