from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = _("Customer profiles")

    def ready(self) -> None:
        from . import merge_registry, timeline
        from .models import Consent, CustomerNote, Identity, Touchpoint

        # What a merge moves from the source customer to the target (and an unmerge moves back).
        merge_registry.register(Identity, "customer")
        merge_registry.register(Touchpoint, "customer")
        merge_registry.register(CustomerNote, "customer")
        merge_registry.register(Consent, "customer")
        timeline.register_source(timeline.TouchpointSource())
