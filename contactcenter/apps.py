from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ContactCenterConfig(AppConfig):
    name = "contactcenter"
    verbose_name = _("Contact center")

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from . import tick
        from .json_form_field import use_in_admin

        use_in_admin()
        post_migrate.connect(_ensure_roles_after_last_app, dispatch_uid="cc-ensure-roles")
        from .models import WorkerHeartbeat

        def record_tick() -> int:
            # Leaves a trace of the last tick so /healthz and tests can see beat is alive.
            from django.utils import timezone

            WorkerHeartbeat.objects.update_or_create(token="tick", defaults={"seen_at": timezone.now()})
            return 1

        tick.register("heartbeat", record_tick)


def _ensure_roles_after_last_app(sender, **kwargs):
    # post_migrate fires once per app; permissions of every app exist once the last one ran.
    if sender.label != "conversations":
        return
    from .roles import ensure_roles

    ensure_roles()
