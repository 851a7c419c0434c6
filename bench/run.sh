#!/usr/bin/env bash
# Run the benchmarks under bench/ (all, or the one named). Each prints a final
#   BENCH <name> ratio=<r> target=<t> <figure>=<value> ...
# line. Benchmarks run in production mode (PostgreSQL + Redis) when those answer, else embedded.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
NAME=${1:-}
export DATABASE_URL=${CC_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/contactcenter_bench}
export REDIS_URL=${CC_BENCH_REDIS_URL:-redis://127.0.0.1:6379/14}
export SECRET_KEY=${SECRET_KEY:-bench-only-secret-key}
if ! "$PY" scripts/services_ready.py 2>/dev/null; then
    echo "PostgreSQL/Redis not reachable: benchmarking the embedded mode (targets are for PostgreSQL)." >&2
    unset DATABASE_URL REDIS_URL
fi
rc=0
for script in bench/*.py; do
    name=$(basename "$script" .py)
    case "$name" in _*) continue ;; esac
    if [ -n "$NAME" ] && [ "$NAME" != "$name" ]; then continue; fi
    echo "=== bench $name ==="
    "$PY" "$script" || rc=1
done
exit $rc
