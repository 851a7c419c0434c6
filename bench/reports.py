"""bench/reports: the supervisor reports page over 30 days of 200,000 conversations (1M timeline
entries), against the same figures from one hand-written SQL query over the facts table.

Populates 200,000 conversations over the last 30 Tokyo days (5 queues, 5 channels, 100 agents),
each with five timeline entries (the customer's message, the acceptance, the agent's reply, the
resolution, and one more message), then derives the facts with the real rebuild
(``facts_rebuild``, timed). Measures the median server time of ``GET /supervisor/reports/`` for the
30 days (middleware, session, every table, chart and the agent status) against a baseline view
behind the same stack and permission check that runs ONE hand-written SQL statement over
``supervisor_conversationfact``: the totals, per day, hour, queue, channel and agent, first response
per sender and its distribution, the handle-time 90th percentile and first-contact resolution, as a
UNION ALL of grouped selects. Checks that both give the same totals (``mismatches`` must be 0).
Prints ``BENCH reports ratio=<median> target=3 spread=… mismatches=0 …``.

PostgreSQL only (the baseline's SQL is PostgreSQL's); on SQLite it prints the line with
``skipped=sqlite``. ``BENCH_SMOKE=1``: 2,000 conversations, two short rounds.
"""

import random
import statistics
import sys
from datetime import datetime, time, timedelta

from _harness import ROUNDS, SMOKE, RoundRatios, alternate, bench_database, bench_line, median_ms

CONVERSATIONS = 2_000 if SMOKE else 200_000
AGENTS = 10 if SMOKE else 100
CUSTOMERS = CONVERSATIONS // 4
DAYS = 30
REPEAT, WARMUP = (2, 1) if SMOKE else (5, 1)
TARGET = 3.0

# The figures of one group (the same definitions as supervisor.reports.metrics: docs/metrics.md).
_FIGURES = """
  count(*) FILTER (WHERE entered_queue_at IS NOT NULL) AS offered,
  count(*) FILTER (WHERE entered_queue_at IS NOT NULL AND accepted_at IS NOT NULL) AS handled,
  count(*) FILTER (WHERE entered_queue_at IS NOT NULL AND abandoned_at IS NOT NULL AND NOT abandoned_short) AS abandoned,
  count(*) FILTER (WHERE entered_queue_at IS NOT NULL AND abandoned_short) AS short_abandoned,
  count(*) FILTER (WHERE entered_queue_at IS NOT NULL AND answered_within_sla) AS within_sla,
  avg(wait_seconds) FILTER (WHERE entered_queue_at IS NOT NULL AND accepted_at IS NOT NULL) AS asa,
  avg(first_response_seconds) AS frt, count(first_response_seconds) AS responded,
  avg(handle_seconds) AS handle, sum(transfers) AS transfers,
  count(*) FILTER (WHERE reopened > 0) AS reopened, count(*) FILTER (WHERE first_resolved_at IS NOT NULL) AS resolved_once
"""

BASELINE_SQL = f"""
WITH f AS (
  SELECT *, (started_at AT TIME ZONE %(tz)s)::date AS day, extract(hour FROM started_at AT TIME ZONE %(tz)s)::int AS hour
  FROM supervisor_conversationfact WHERE started_at >= %(start)s AND started_at < %(end)s
)
SELECT 'total' AS grp, NULL::text AS k, {_FIGURES},
  (SELECT percentile_disc(0.9) WITHIN GROUP (ORDER BY handle_seconds) FROM f) AS handle_p90,
  (SELECT count(*) FROM f WHERE resolved_at <= %(fcr_until)s) AS fcr_eligible,
  (SELECT count(*) FROM f WHERE resolved_at <= %(fcr_until)s AND reopened = 0 AND NOT EXISTS (
     SELECT 1 FROM supervisor_conversationfact o WHERE o.customer_id = f.customer_id
       AND o.first_customer_message_at > f.resolved_at
       AND o.first_customer_message_at <= f.resolved_at + make_interval(days => %(fcr_days)s)
       AND o.conversation_id <> f.conversation_id)) AS fcr
FROM f
UNION ALL SELECT 'day', day::text, {_FIGURES}, NULL, NULL, NULL FROM f GROUP BY day
UNION ALL SELECT 'hour', hour::text, {_FIGURES}, NULL, NULL, NULL FROM f GROUP BY hour
UNION ALL SELECT 'queue', queue_id::text, {_FIGURES}, NULL, NULL, NULL FROM f GROUP BY queue_id
UNION ALL SELECT 'channel', channel, {_FIGURES}, NULL, NULL, NULL FROM f GROUP BY channel
UNION ALL SELECT 'agent', agent_id::text, {_FIGURES}, NULL, NULL, NULL FROM f GROUP BY agent_id
UNION ALL SELECT 'reply_agent', first_reply_agent_id::text, {_FIGURES}, NULL, NULL, NULL FROM f
  WHERE first_reply_agent_id IS NOT NULL GROUP BY first_reply_agent_id
UNION ALL SELECT 'frt_bucket', width_bucket(first_response_seconds, ARRAY[60, 300, 900, 3600, 14400])::text, {_FIGURES},
  NULL, NULL, NULL FROM f WHERE first_response_seconds IS NOT NULL GROUP BY 2
"""


def populate(tz):
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from conversations.models import Agent, Conversation, Inbox, Message, Queue
    from profiles.models import Customer

    rng = random.Random(20)
    supervisor = User.objects.create_user("bench-supervisor", password="bench-password-123")
    supervisor.groups.add(Group.objects.get(name="supervisor"))
    users = User.objects.bulk_create([User(username=f"bench-agent-{i}") for i in range(AGENTS)])
    agents = Agent.objects.bulk_create([Agent(user=u, display_name=f"Agent {i}") for i, u in enumerate(users)])
    queues = [Queue.objects.create(name=f"Queue {i}", slug=f"queue-{i}", sla_seconds=60) for i in range(5)]
    inboxes = [Inbox.objects.create(name=kind, kind=kind, address=f"bench-{kind}")
               for kind in ("sms", "email", "webchat", "voice", "whatsapp")]
    customers = Customer.objects.bulk_create([Customer(display_name=f"Customer {i}") for i in range(CUSTOMERS)],
                                             batch_size=5000)
    today = timezone.localdate(timezone=tz)
    first_day = datetime.combine(today - timedelta(days=DAYS - 1), time.min, tzinfo=tz)
    span = (timezone.now() - first_day).total_seconds() - 3 * 3600
    done = 0
    while done < CONVERSATIONS:
        size = min(5000, CONVERSATIONS - done)
        batch = []
        for n in range(size):
            inbox = inboxes[(done + n) % 5]
            batch.append(Conversation(
                customer=customers[rng.randrange(CUSTOMERS)], inbox=inbox, channel=inbox.kind,
                queue=queues[rng.randrange(5)], status="resolved", last_seq=5,
                created_at=first_day + timedelta(seconds=rng.random() * span)))
        conversations = Conversation.objects.bulk_create(batch)
        messages = []
        for conversation in conversations:
            agent = agents[rng.randrange(AGENTS)]
            at = conversation.created_at
            wait = timedelta(seconds=rng.choice((5, 20, 45, 90, 300)))
            reply = wait + timedelta(seconds=rng.randint(10, 600))
            end = reply + timedelta(seconds=rng.randint(60, 3600))
            common = {"conversation": conversation, "customer_id": conversation.customer_id,
                      "inbox_id": conversation.inbox_id, "channel": conversation.channel}
            messages += [
                Message(**common, seq=1, direction="inbound", text="hello", created_at=at),
                Message(**common, seq=2, direction="internal", kind="event", event_type="assigned",
                        event_data={"assignee": agent.pk, "via": "offer"}, created_at=at + wait),
                Message(**common, seq=3, direction="outbound", author_agent=agent, text="reply", created_at=at + reply),
                Message(**common, seq=4, direction="inbound", text="thanks", created_at=at + reply + timedelta(seconds=30)),
                Message(**common, seq=5, direction="internal", kind="event", event_type="resolved",
                        author_agent=agent, created_at=at + end),
            ]
        Message.objects.bulk_create(messages, batch_size=5000)
        done += size
    return supervisor


def main() -> int:
    with bench_database() as connection:
        import django.urls
        from django.http import JsonResponse
        from django.test import Client, override_settings
        from django.urls import path
        from django.utils import timezone

        from supervisor.facts.services import facts_rebuild
        from supervisor.reports import selectors
        from supervisor.reports.filters import ReportFilters, report_time_zone
        from supervisor.reports.metrics import fcr_days
        from supervisor.reports.views import supervisor_required

        tz = report_time_zone()
        if connection.vendor != "postgresql":
            print(bench_line("reports", ratio=0.0, target=TARGET, skipped="sqlite"))
            return 0
        supervisor = populate(tz)
        started = timezone.now()
        facts_rebuild(batch_size=2000)
        rebuild_s = (timezone.now() - started).total_seconds()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        # What the tick's facts job costs when nothing changed (it runs every CC_TICK_SECONDS).
        from supervisor.facts.services import facts_refresh_due

        started = timezone.now()
        assert facts_refresh_due() == 0  # the first run sweeps every conversation (no watermark yet)
        tick_sweep_ms = (timezone.now() - started).total_seconds() * 1000
        tick_idle_ms = median_ms(facts_refresh_due, repeat=5, warmup=1)  # then only new timeline entries

        today = timezone.localdate(timezone=tz)
        filters = ReportFilters(start=today - timedelta(days=DAYS - 1), end=today)
        # One instant for both sides of the comparison: FCR counts resolutions older than N days.
        compared_at = timezone.now()
        params = {"tz": tz.key, "start": filters.starts_at, "end": filters.ends_before,
                  "fcr_until": compared_at - timedelta(days=fcr_days()), "fcr_days": fcr_days()}

        def baseline_rows():
            with connection.cursor() as db:
                db.execute(BASELINE_SQL, params)
                columns = [c[0] for c in db.description]
                return [dict(zip(columns, row, strict=True)) for row in db.fetchall()]

        @supervisor_required
        def baseline_view(request):
            return JsonResponse({"rows": baseline_rows()}, json_dumps_params={"default": str})

        module = type(sys)("bench_reports_urls")
        module.urlpatterns = [path("bench/baseline/", baseline_view),
                              *__import__("contactcenter.urls", fromlist=["urlpatterns"]).urlpatterns]
        sys.modules["bench_reports_urls"] = module

        total = next(row for row in baseline_rows() if row["grp"] == "total")
        summary = selectors.report_summary(filters, now=compared_at)
        compared = ["offered", "handled", "abandoned", "short_abandoned", "within_sla", "responded", "resolved_once",
                    "handle_p90", "fcr_eligible"]
        mismatches = [name for name in compared if summary[name] != total[name]]
        if summary["fcr_count"] != total["fcr"]:
            mismatches.append("fcr")
        if abs(float(summary["asa"] or 0) - float(total["asa"] or 0)) > 0.01:
            mismatches.append("asa")

        client = Client()
        client.force_login(supervisor)
        page = "/supervisor/reports/"
        query = {"start": filters.start.isoformat(), "end": filters.end.isoformat()}
        with override_settings(ROOT_URLCONF="bench_reports_urls"):
            django.urls.clear_url_caches()
            assert client.get(page, query).status_code == 200
            assert client.get("/bench/baseline/").status_code == 200

            def timed(url, data):
                return lambda _round: median_ms(lambda: client.get(url, data), repeat=REPEAT, warmup=WARMUP)

            rounds = alternate(ROUNDS, timed("/bench/baseline/", {}), timed(page, query))
        ratios = RoundRatios(*zip(*rounds, strict=True), label="30-day report")
        print(f"database: {connection.vendor}; {CONVERSATIONS} conversations, {CONVERSATIONS * 5} timeline entries, "
              f"{DAYS} days, {AGENTS} agents; facts rebuilt in {rebuild_s:.1f} s")
        print(f"{ratios.describe()}; medians: page {statistics.median(ratios.subjects):.1f} ms, "
              f"one SQL query {statistics.median(ratios.baselines):.1f} ms")
        if mismatches:
            print(f"figures that differ between the page and the SQL query: {mismatches}")
        print(bench_line("reports", ratio=ratios, target=TARGET, db=connection.vendor,
                         page_ms=statistics.median(ratios.subjects), sql_ms=statistics.median(ratios.baselines),
                         conversations=CONVERSATIONS, rebuild_s=rebuild_s, tick_idle_ms=tick_idle_ms, tick_sweep_ms=tick_sweep_ms,
                         mismatches=len(mismatches)))
        return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
