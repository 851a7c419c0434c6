from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SurveysConfig(AppConfig):
    name = "surveys"
    verbose_name = _("Surveys")

    def ready(self) -> None:
        from contactcenter import tick
        from contactcenter.enqueue import tasks_ready
        from conversations import event_texts, lifecycle

        from . import task_names  # noqa: F401 - declares the names the services queue by
        from .answers import inbound_answer_claim, widget_answer
        from .scheduling import (
            schedule_after_resolve,
            survey_cancel_for_conversation,
            surveys_cancel_for_customer,
            surveys_due_job,
        )
        from .selectors import pending_widget_cards
        from .timeline_texts import TEXTS
        from .voice import call_survey_key, call_survey_offer

        lifecycle.on_resolved(schedule_after_resolve)
        lifecycle.on_reopened(survey_cancel_for_conversation)
        lifecycle.on_customer_message(surveys_cancel_for_customer)
        lifecycle.on_inbound_claim(inbound_answer_claim)
        lifecycle.on_widget_answer(widget_answer)
        lifecycle.on_widget_pending(pending_widget_cards)
        lifecycle.on_call_survey(call_survey_offer)
        lifecycle.on_call_survey_answer(call_survey_key)
        tick.register("surveys_due", surveys_due_job)
        for event_type, describe in TEXTS.items():
            event_texts.register(event_type, describe)
        from .demo import seed_demo_surveys

        lifecycle.demo_seeded.connect(seed_demo_surveys, dispatch_uid="surveys.seed_demo_surveys")
        tasks_ready()
