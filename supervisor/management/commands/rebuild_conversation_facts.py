"""Derive every conversation's facts again from its timeline (idempotent: run it as often as you like)."""

from django.core.management.base import BaseCommand

from supervisor.facts.services import facts_rebuild


class Command(BaseCommand):
    help = "Rebuild the reports' per-conversation facts from the conversations' timelines."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size: int, verbosity: int = 1, **options):
        done = facts_rebuild(batch_size=batch_size, stdout=self.stdout if verbosity > 1 else None)
        self.stdout.write(f"Facts of {done} conversations rebuilt.")
