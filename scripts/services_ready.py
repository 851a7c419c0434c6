"""Exit 0 when the PostgreSQL and Redis named by DATABASE_URL / REDIS_URL answer, else 1 with why."""

import os
import sys


def main() -> int:
    problems = []
    try:
        import psycopg

        import dj_database_url

        db = dj_database_url.parse(os.environ["DATABASE_URL"])
        psycopg.connect(
            dbname="postgres", user=db["USER"] or "postgres", password=db["PASSWORD"] or None,
            host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, connect_timeout=3,
        ).close()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"PostgreSQL ({os.environ.get('DATABASE_URL')}): {exc}")
    try:
        import redis

        redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"Redis ({os.environ.get('REDIS_URL')}): {exc}")
    for problem in problems:
        print(f"  not reachable: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
