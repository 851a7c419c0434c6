#!/usr/bin/env bash
# The whole suite, in both runtime modes. Called by `make test` (and so by .ci/run).
#   embedded:   SQLite, in-memory channel layer, in-process Celery worker
#   production: PostgreSQL + Redis + a real `celery worker` process
# On a machine without PostgreSQL/Redis the production half is skipped with a message;
# in CI (CI=true) a missing service is a failure.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PYTEST_ARGS=("$@")

run_pytest() {
    "$PY" -m pytest "${PYTEST_ARGS[@]}"
    local rc=$?
    # 5 = no tests collected (e.g. a -k filter that matches nothing in one mode): not a failure.
    if [ "$rc" -eq 5 ]; then rc=0; fi
    return "$rc"
}

echo "=== dependency rules (lint-imports; contracts in pyproject.toml) ==="
"$(dirname "$PY")/lint-imports" --no-cache
lint_rc=$?

echo "=== embedded mode (SQLite, in-memory layer, in-process worker) ==="
( unset DATABASE_URL REDIS_URL; run_pytest )
embedded_rc=$?

export DATABASE_URL=${CC_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/contactcenter}
export REDIS_URL=${CC_TEST_REDIS_URL:-redis://127.0.0.1:6379/13}
export CC_CHANNELS_PREFIX=cc-test
# Tests open connections from many threads; persistent ones would outlive the test database.
export CC_DB_CONN_MAX_AGE=0
# The fault suite (tests/faults) at half its sizes: the full sizes took 5-6 minutes on a 2-core
# machine. CC_FAULTS_SCALE=1 make test (or pytest tests/faults, whose default is 1) runs them all.
export CC_FAULTS_SCALE=${CC_FAULTS_SCALE:-0.5}
export SECRET_KEY=${SECRET_KEY:-test-only-secret-key-for-the-production-mode-suite}
echo "=== production mode (PostgreSQL $DATABASE_URL, Redis $REDIS_URL, celery worker process) ==="
production_rc=0
if "$PY" scripts/services_ready.py; then
    "$PY" -c "import redis, os; redis.Redis.from_url(os.environ['REDIS_URL']).flushdb()"
    run_pytest
    production_rc=$?
elif [ "${CI:-}" = "true" ]; then
    echo "FAILED: production-mode services are not reachable and CI=true: a missing service fails CI." >&2
    production_rc=1
else
    echo "SKIPPED production-mode tests: PostgreSQL or Redis is not reachable (see above)." >&2
    echo "Start them (see README: Testing) and run make test again to cover the production mode." >&2
fi

echo "lint-imports exit=$lint_rc embedded exit=$embedded_rc production exit=$production_rc"
[ "$lint_rc" -eq 0 ] && [ "$embedded_rc" -eq 0 ] && [ "$production_rc" -eq 0 ]
