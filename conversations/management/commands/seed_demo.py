"""``python manage.py seed_demo``: a demo contact center to click through, safe to run again.

Creates an inbox per channel, queues sales/support/billing with skills, agents alice and bob,
supervisor carol, superuser admin (password ``settings.CC_DEMO_PASSWORD``), and 30+ customers in
Japanese and English with weeks of SMS, WhatsApp, email, web-chat and voice history, touchpoints,
journey stages, and one pair of records waiting as a merge suggestion.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from conversations.demo.seed import demo_email_secret, seed_demo
from conversations.channels.email.webhook import SECRET_HEADER


class Command(BaseCommand):
    help = "Create (idempotently) demo inboxes, queues, users and 30+ customers with cross-channel history."

    def handle(self, *args, **options):
        password = getattr(settings, "CC_DEMO_PASSWORD", "") or ""
        if not password:
            raise CommandError("CC_DEMO_PASSWORD is empty: set it to the password the demo users should get.")
        result = seed_demo(password=password)
        counts = result.counts
        if result.customers_created:
            self.stdout.write(f"Created {result.customers_created} demo customers with their history.")
        if result.customers_existing:
            self.stdout.write(f"{result.customers_existing} demo customers were already there: left as they are.")
        self.stdout.write(
            f"Inboxes: {counts['inboxes']}  queues: {counts['queues']}  agents: {counts['agents']}  "
            f"customers: {counts['customers']}  conversations: {counts['conversations']}  "
            f"messages: {counts['messages']}  touchpoints: {counts['touchpoints']}  "
            f"pending merge suggestions: {counts['pending_merge_suggestions']}"
        )
        by_channel = ", ".join(f"{k} {v}" for k, v in sorted(counts["conversations_by_channel"].items()))
        by_status = ", ".join(f"{k} {v}" for k, v in sorted(counts["conversations_by_status"].items()))
        self.stdout.write(f"Conversations by channel: {by_channel}; by status: {by_status}")
        if demo_email_secret():
            self.stdout.write(f"Email webhook: POST raw mail to /webhooks/email/ with the header "
                              f"{SECRET_HEADER}: {demo_email_secret()}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo users: alice, bob (agents), carol (supervisor), admin (superuser) — password: {password}"
            )
        )
