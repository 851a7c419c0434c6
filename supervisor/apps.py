from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SupervisorConfig(AppConfig):
    name = "supervisor"
    label = "supervisor"
    verbose_name = _("Supervisor")

    def ready(self) -> None:
        # Reports: facts kept up to date by the tick, presence history recorded from the agent rows.
        from supervisor.facts.wiring import facts_ready

        facts_ready()
