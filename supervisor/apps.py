from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SupervisorConfig(AppConfig):
    """Supervisors' place: the live wallboard and interventions (``supervisor.live``), reports.

    It plugs into the core from outside: the wallboard listens to the events the core already
    sends to the ``supervisors`` group, and acts through the core's services. ``conversations``
    and ``profiles`` import nothing of it (import-linter contract in pyproject.toml)."""

    name = "supervisor"
    label = "supervisor"
    verbose_name = _("Supervisor")

    def ready(self) -> None:
        # Reports: facts kept up to date by the tick, presence history recorded from the agent rows.
        from supervisor.facts.wiring import facts_ready

        facts_ready()
