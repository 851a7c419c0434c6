"""bench/timeline: a customer with 20,000 messages over 500 conversations on 4 channels.

Measures the median server time of the first and of a deep timeline page through the API
(``GET /api/v1/customers/<id>/timeline/``: middleware, token auth, selector, serializer) against
a baseline served through the same stack (middleware, DRF with the same authentication and
permission classes) by a minimal view that fetches the same page with one hand-written SQL query
and returns its rows. Also checks that the API's query count does
not depend on history size and that both serve the same page.

Baseline and API are timed in ROUNDS alternating rounds (baseline, API, baseline, API …; each side
the median of REPEAT requests after WARMUP); the ratio of a page is the median of its per-round
ratios, the bench's the worse of the first and the deep page's. Prints ``BENCH timeline
ratio=<worse median> target=3 spread=<its min>-<max> …``. ``BENCH_SMOKE=1``: a small history, two
short rounds (``_harness``).
"""

import statistics
import sys
from datetime import timedelta

from _harness import (
    ROUNDS,
    SMOKE,
    RoundRatios,
    alternate,
    bench_database,
    bench_line,
    median_ms,
)

MESSAGES = 400 if SMOKE else 20_000
CONVERSATIONS = 20 if SMOKE else 500
TOUCHPOINTS = 40 if SMOKE else 2_000
NOISE = 100 if SMOKE else 5_000  # another customer's messages
PAGE = 50
REPEAT, WARMUP = (3, 1) if SMOKE else (12, 2)  # requests per side and round (5 rounds: 60 per side)
TARGET = 3.0

BASELINE_SQL = """
SELECT * FROM (
  SELECT * FROM (
    SELECT 'message' AS type, m.created_at AS at, 0 AS rank, m.id, m.conversation_id, m.channel, m.direction,
           m.kind, m.text, m.event_type, m.delivery_status, a.display_name AS author, NULL AS title, NULL AS url
    FROM conversations_message m LEFT JOIN conversations_agent a ON a.id = m.author_agent_id
    WHERE m.customer_id = %(customer)s AND (m.created_at < %(at)s OR (m.created_at = %(at)s AND m.id < %(id)s))
    ORDER BY m.created_at DESC, m.id DESC LIMIT %(limit)s
  ) messages
  UNION ALL
  SELECT * FROM (
    SELECT 'touchpoint', t.occurred_at, 1, t.id, CAST(NULL AS BIGINT), t.channel, NULL, t.kind, NULL, NULL, NULL, NULL, t.title, t.url
    FROM profiles_touchpoint t
    WHERE t.customer_id = %(customer)s AND t.occurred_at < %(at)s
    ORDER BY t.occurred_at DESC, t.id DESC LIMIT %(limit)s
  ) touchpoints
) page ORDER BY at DESC, rank DESC, id DESC LIMIT %(limit)s
"""


def populate():
    from django.contrib.auth.models import Group, User
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from conversations.models import Agent, Conversation, Direction, Inbox, Message
    from profiles.models import Customer, Touchpoint

    user = User.objects.create_user("bench-agent", password="bench-password-123")
    user.groups.add(Group.objects.get(name="agent"))
    agent = Agent.objects.create(user=user, display_name="Bench Agent")
    token = Token.objects.create(user=user)
    customer = Customer.objects.create(display_name="Bench Customer")
    noise = Customer.objects.create(display_name="Someone Else")
    inboxes = [
        Inbox.objects.create(name=kind, kind=kind, address=f"bench-{kind}") for kind in ("sms", "email", "webchat", "voice")
    ]
    start = timezone.now() - timedelta(days=400)
    conversations = Conversation.objects.bulk_create(
        [
            Conversation(customer=customer, inbox=inboxes[i % 4], channel=inboxes[i % 4].kind, status="resolved",
                         created_at=start + timedelta(hours=i * 18))
            for i in range(CONVERSATIONS)
        ]
    )
    per = MESSAGES // CONVERSATIONS
    batch = []
    for index, conversation in enumerate(conversations):
        for n in range(per):
            outbound = n % 2 == 1
            batch.append(
                Message(
                    conversation=conversation, customer=customer, inbox_id=conversation.inbox_id,
                    channel=conversation.channel, direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
                    author_agent=agent if outbound else None, text=f"message {n} of conversation {index} " * 3,
                    delivery_status="delivered" if outbound else "",
                    created_at=conversation.created_at + timedelta(minutes=n * 7),
                )
            )
        if len(batch) >= 5000:
            Message.objects.bulk_create(batch)
            batch = []
    Message.objects.bulk_create(batch)
    # Another customer's history in the same tables, so indexes have something to skip.
    other = Conversation.objects.create(customer=noise, inbox=inboxes[0], channel="sms")
    Message.objects.bulk_create(
        [Message(conversation=other, customer=noise, inbox=inboxes[0], channel="sms", direction="inbound",
                 text="noise", created_at=start + timedelta(minutes=i)) for i in range(NOISE)]
    )
    Touchpoint.objects.bulk_create(
        [Touchpoint(customer=customer, kind="page_view", title=f"page {i}", url=f"https://shop.example/p/{i}",
                    occurred_at=start + timedelta(hours=i * 4, minutes=3)) for i in range(TOUCHPOINTS)]
    )
    return customer, token.key


def main() -> int:
    with bench_database() as connection:
        import django.urls
        from django.test import Client, override_settings
        from django.urls import path

        from conversations.models import Message
        from profiles.timeline import Position

        customer, token = populate()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")

        from rest_framework.response import Response
        from rest_framework.views import APIView

        class BaselineView(APIView):
            def get(self, request, customer_id):
                return Response(baseline_rows(request, customer_id))

        def baseline_rows(request, customer_id):
            cursor = Position.decode(request.GET["before"]) if "before" in request.GET else None
            params = {
                "customer": customer_id,
                "at": cursor.at if cursor else "9999-12-31T00:00:00+00:00",
                "id": cursor.id if cursor else 2**62,
                "limit": PAGE,
            }
            with connection.cursor() as db:
                db.execute(BASELINE_SQL, params)
                columns = [c[0] for c in db.description]
                rows = [dict(zip(columns, row, strict=True)) for row in db.fetchall()]
            rows.reverse()
            return {"results": rows}

        module = type(sys)("bench_timeline_urls")
        module.urlpatterns = [
            path("bench/baseline/<int:customer_id>/", BaselineView.as_view()),
            *__import__("contactcenter.urls", fromlist=["urlpatterns"]).urlpatterns,
        ]
        sys.modules["bench_timeline_urls"] = module

        deep_message = Message.objects.filter(customer=customer).order_by("-created_at", "-id")[MESSAGES // 2]
        deep_cursor = Position(deep_message.created_at, 0, deep_message.pk).encode()
        client = Client(HTTP_AUTHORIZATION=f"Token {token}")
        api = f"/api/v1/customers/{customer.pk}/timeline/"
        base = f"/bench/baseline/{customer.pk}/"

        with override_settings(ROOT_URLCONF="bench_timeline_urls"):
            django.urls.clear_url_caches()
            first = client.get(api, {"limit": PAGE})
            assert first.status_code == 200, first.content[:500]
            deep = client.get(api, {"limit": PAGE, "before": deep_cursor})
            assert deep.status_code == 200, deep.content[:500]
            base_deep = client.get(base, {"before": deep_cursor}).json()["results"]
            api_ids = [(e["type"], e["id"]) for e in deep.json()["results"]]
            base_ids = [(r["type"], r["id"]) for r in base_deep]
            assert api_ids == base_ids, "API page and hand-written SQL page differ"

            first_queries, deep_queries = [], []

            def counter(sink):
                def wrapper(execute, sql, params, many, context):
                    sink.append(sql)
                    return execute(sql, params, many, context)
                return wrapper

            with connection.execute_wrapper(counter(first_queries)):
                client.get(api, {"limit": PAGE})
            with connection.execute_wrapper(counter(deep_queries)):
                client.get(api, {"limit": PAGE, "before": deep_cursor})
            assert len(first_queries) == len(deep_queries), "query count depends on the page's depth"

            def timed(url, params):
                return lambda _round: median_ms(lambda: client.get(url, params), repeat=REPEAT, warmup=WARMUP)

            first_rounds = alternate(ROUNDS, timed(base, {}), timed(api, {"limit": PAGE}))
            deep_rounds = alternate(ROUNDS, timed(base, {"before": deep_cursor}),
                                    timed(api, {"limit": PAGE, "before": deep_cursor}))

        first = RoundRatios(*zip(*first_rounds, strict=True), label="first page")
        deep = RoundRatios(*zip(*deep_rounds, strict=True), label="deep page")
        worse = RoundRatios.worst(first, deep)
        median = statistics.median
        print(f"database: {connection.vendor}; {MESSAGES} messages / {CONVERSATIONS} conversations / 4 channels "
              f"+ {TOUCHPOINTS} touchpoints; page size {PAGE}; {ROUNDS} alternating rounds of {REPEAT} requests "
              f"per side")
        for page in (first, deep):
            print(f"{page.describe()}; medians over the rounds: API {median(page.subjects):.2f} ms, "
                  f"hand-written SQL view {median(page.baselines):.2f} ms")
        print(f"queries per request: first={len(first_queries)} deep={len(deep_queries)}")
        print(bench_line("timeline", ratio=worse, target=TARGET, db=connection.vendor,
                         first_ms=median(first.subjects), first_baseline_ms=median(first.baselines),
                         deep_ms=median(deep.subjects), deep_baseline_ms=median(deep.baselines),
                         first_ratio=f"{first.median:.2f}", deep_ratio=f"{deep.median:.2f}",
                         queries_first=len(first_queries), queries_deep=len(deep_queries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
