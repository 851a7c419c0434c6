"""Demo only: a working day of presence changes for every agent on the past days they worked
(supervisor.facts.demo). Run after seed_demo and rebuild_conversation_facts (``make run`` does)."""

from django.core.management.base import BaseCommand

from supervisor.facts.demo import demo_presence_history
from supervisor.reports.filters import report_time_zone


class Command(BaseCommand):
    help = "Demo data: presence history for the agents of the demo's past conversations."

    def handle(self, *args, **options):
        added = demo_presence_history(report_time_zone())
        self.stdout.write(f"{added} demo presence changes added.")
