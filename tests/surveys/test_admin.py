"""The admin validates survey configuration when it is saved and shows why surveys were skipped."""

from datetime import time

import pytest
from django.core.exceptions import ValidationError

from conversations.models import Queue
from surveys.models import SkipReason, SurveyDefinition, SurveyKind, SurveyPolicy, SurveyRequest
from surveys.scheduling import survey_schedule

pytestmark = pytest.mark.django_db


def test_a_definition_needs_its_english_question():
    with pytest.raises(ValidationError) as refused:
        SurveyDefinition(name="x", kind=SurveyKind.NPS, question_en=" ", sampling_percent=50).full_clean()
    assert "question_en" in refused.value.message_dict
    with pytest.raises(ValidationError) as refused:
        SurveyDefinition(name="x", kind=SurveyKind.NPS, question_en="?", sampling_percent=150).full_clean()
    assert "sampling_percent" in refused.value.message_dict


def test_the_policy_is_checked_when_saved(care_queue):
    plain = Queue.objects.create(name="Plain", slug="plain")
    bad = SurveyPolicy(csat_detractor_max=5, nps_detractor_max=11, ces_detractor_max=0,
                       quiet_start=time(8, 0), quiet_end=time(8, 0), follow_up_queue=plain)
    with pytest.raises(ValidationError) as refused:
        bad.full_clean()
    assert set(refused.value.message_dict) == {"csat_detractor_max", "nps_detractor_max", "ces_detractor_max", "quiet_end",
                                               "follow_up_queue"}
    SurveyPolicy(follow_up_queue=care_queue).full_clean()


def test_the_admin_lists_skipped_surveys_with_their_reason(admin_client, resolved_contact, policy, csat):
    conversation = resolved_contact(reply=False)
    survey_schedule(conversation_id=conversation.pk)
    page = admin_client.get("/admin/surveys/surveyrequest/?skip_reason=no_agent_reply")
    assert page.status_code == 200
    assert "No agent replied in the conversation" in page.content.decode()
    for model in ("surveydefinition", "surveypolicy", "surveyresponse", "surveyfollowup"):
        assert admin_client.get(f"/admin/surveys/{model}/").status_code == 200
    request = SurveyRequest.objects.get()
    assert admin_client.get(f"/admin/surveys/surveyrequest/{request.pk}/change/").status_code == 200
    assert request.skip_reason == SkipReason.NO_AGENT_REPLY


def test_the_admin_refuses_an_invalid_policy(admin_client, care_queue):
    response = admin_client.post("/admin/surveys/surveypolicy/add/", {
        "days_between": 30, "quiet_start": "20:00", "quiet_end": "09:00", "answer_window_hours": 48,
        "follow_up_priority": 10, "csat_detractor_max": 9, "nps_detractor_max": 6, "ces_detractor_max": 3})
    assert response.status_code == 200 and not SurveyPolicy.objects.exists()
    assert "Between 1 and 4." in response.content.decode()


def _definition_post(**overrides):
    data = {"name": "Chat NPS", "kind": "nps", "is_active": "on", "question_en": "Would you recommend us?",
            "question_ja": "", "follow_up_en": "", "follow_up_ja": "", "sampling_percent": 100,
            "delay_seconds": 600}
    data.update(overrides)
    return data


def test_two_active_surveys_may_not_claim_the_same_queue_inbox_or_everything(admin_client, csat):
    from ..factories import make_inbox

    billing = Queue.objects.create(name="Billing", slug="billing")
    sms = make_inbox("sms")
    nps = SurveyDefinition.objects.create(name="Billing NPS", kind=SurveyKind.NPS, question_en="Recommend?")
    nps.queues.add(billing)
    # csat (the fixture) covers everything: a second catch-all is ambiguous.
    refused = admin_client.post("/admin/surveys/surveydefinition/add/", _definition_post())
    assert refused.status_code == 200 and "Another active survey already covers every conversation" in \
        refused.content.decode()
    refused = admin_client.post("/admin/surveys/surveydefinition/add/", _definition_post(queues=[billing.pk]))
    assert "Already covered by another active survey: Billing NPS" in refused.content.decode()
    assert SurveyDefinition.objects.count() == 2
    # Another inbox, or an inactive one, is fine.
    assert admin_client.post("/admin/surveys/surveydefinition/add/", _definition_post(inboxes=[sms.pk])).status_code == 302
    assert admin_client.post("/admin/surveys/surveydefinition/add/",
                             _definition_post(name="Old", is_active="", queues=[billing.pk])).status_code == 302
    assert SurveyDefinition.objects.count() == 4


def test_a_surveys_type_cannot_change_once_it_was_sent(resolved_contact, policy, csat):
    survey_schedule(conversation_id=resolved_contact().pk)
    csat.kind = SurveyKind.NPS
    with pytest.raises(ValidationError) as refused:
        csat.full_clean()
    assert "kind" in refused.value.message_dict
    unused = SurveyDefinition.objects.create(name="Draft", kind=SurveyKind.CSAT, question_en="?", is_active=False)
    unused.kind = SurveyKind.CES
    unused.full_clean()


def test_requests_answers_and_follow_ups_are_view_only(admin_client, resolved_contact, policy, csat):
    from django.utils import timezone

    from surveys.answers import survey_answer
    from surveys.models import SurveyFollowUp, SurveyResponse, SurveyStatus

    request = survey_schedule(conversation_id=resolved_contact().pk)
    SurveyRequest.objects.filter(pk=request.pk).update(status=SurveyStatus.SENT, sent_at=timezone.now(),
                                                       sent_channel="sms", sent_mode="reply")
    response, _ = survey_answer(request_id=request.pk, score=1, via="reply")
    follow_up = SurveyFollowUp.objects.get(response=response)
    for model, obj in (("surveyrequest", request), ("surveyresponse", response), ("surveyfollowup", follow_up)):
        assert admin_client.get(f"/admin/surveys/{model}/add/").status_code == 403, model
        assert admin_client.get(f"/admin/surveys/{model}/{obj.pk}/change/").status_code == 200, model  # a view page
        assert admin_client.post(f"/admin/surveys/{model}/{obj.pk}/change/", {"score": 5}).status_code == 403, model
        assert admin_client.post(f"/admin/surveys/{model}/{obj.pk}/delete/", {"post": "yes"}).status_code == 403, model
    assert SurveyResponse.objects.get(pk=response.pk).score == 1
