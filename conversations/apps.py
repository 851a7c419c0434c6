from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = _("Conversations")

    def ready(self) -> None:
        from profiles import access_registry, merge_registry, timeline

        from .models import Conversation, Message
        from .selectors import MessageTimelineSource, customers_served_by

        # A merge moves the source customer's conversations; their messages (which carry a copy
        # of the customer for the timeline index) follow the recorded conversation ids.
        merge_registry.register(Conversation, "customer")
        merge_registry.register(Message, "customer", follows=(Conversation, "conversation"))
        timeline.register_source(MessageTimelineSource())
        # With CC_CUSTOMER_ACCESS="served", agents see the customers of their queues and their own.
        access_registry.register_scope("conversations", customers_served_by)

        from . import recovery

        recovery.register()

        from contactcenter import tick

        from .channels.registry import CHANNEL_PACKAGES, channels_ready

        channels_ready()

        from .services.agent_actions import snoozed_wake

        tick.register("snoozed_wake", snoozed_wake)

        from django.contrib.auth.signals import user_logged_out

        from .signals import agent_signed_out, consoles_signed_out

        user_logged_out.connect(agent_signed_out, dispatch_uid="conversations.agent_signed_out")
        # After it: the presence change still reaches the consoles before they close.
        user_logged_out.connect(consoles_signed_out, dispatch_uid="conversations.consoles_signed_out")

        from django.contrib.auth import get_user_model
        from django.db.models.signals import m2m_changed, post_save, pre_save

        from .signals import user_auth_before_save, user_auth_saved, user_groups_changed

        user_model = get_user_model()
        pre_save.connect(user_auth_before_save, sender=user_model, dispatch_uid="conversations.user_auth_before_save")
        post_save.connect(user_auth_saved, sender=user_model, dispatch_uid="conversations.user_auth_saved")
        m2m_changed.connect(user_groups_changed, sender=user_model.groups.through,
                            dispatch_uid="conversations.user_groups_changed")

        from contactcenter.enqueue import tasks_ready

        from . import task_names  # noqa: F401 - declares the names services queue by

        # Every task name a service queues by must be registered: a misspelt one stops the start
        # of every process here, not a send later. The channels' and the simulator's task modules
        # sit below the app's top level, where Celery's discovery does not look.
        tasks_ready(packages=(*CHANNEL_PACKAGES, "conversations.simulator"))
