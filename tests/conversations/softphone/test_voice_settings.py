"""Where an agent's calls ring (browser or their own phone), set in the console and the admin,
with the number checked strictly; and recordings, played only through our own authorised URL."""

import pytest
from django.core.files.base import ContentFile
from django.test import override_settings
from django.urls import reverse

from conversations.models import Agent, Attachment, Direction, VoiceAnswerOn
from tests.factories import PASSWORD, make_message

pytestmark = pytest.mark.django_db


def save(client, **data):
    return client.post(reverse("softphone:settings"), data, HTTP_ACCEPT="application/json")


def test_an_agent_chooses_their_phone_with_a_national_number(client, agent):
    client.login(username="alice", password=PASSWORD)
    response = save(client, answer_on="phone", phone="090-1234-5678")
    assert response.status_code == 200, response.content
    agent.refresh_from_db()
    assert (agent.voice_answer_on, agent.voice_phone_number) == (VoiceAnswerOn.PHONE, "+819012345678")


@pytest.mark.parametrize("phone", ["", "12345", "+81 90 1234", "not a number", "+1 555 0100"])
def test_a_phone_without_a_valid_number_is_refused(client, agent, phone):
    client.login(username="alice", password=PASSWORD)
    response = save(client, answer_on="phone", phone=phone)
    assert response.status_code == 400 and response.json()["error"]
    agent.refresh_from_db()
    assert agent.voice_answer_on == VoiceAnswerOn.BROWSER and agent.voice_phone_number == ""


@override_settings(CC_DEFAULT_REGION="US")
def test_national_numbers_follow_the_default_region(client, agent):
    client.login(username="alice", password=PASSWORD)
    assert save(client, answer_on="phone", phone="(415) 555-2671").status_code == 200
    agent.refresh_from_db()
    assert agent.voice_phone_number == "+14155552671"


def test_the_admin_validates_the_agents_phone_too(admin_client, agent):
    url = reverse("admin:conversations_agent_change", args=[agent.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields if form.initial.get(name) is not None}
    data |= {"user": agent.user_id, "display_name": "Alice", "languages": "[]", "capacity": '{"voice": 1}',
             "presence_changed_at_0": "2026-12-05", "presence_changed_at_1": "10:00:00",
             "agentskill_set-TOTAL_FORMS": "0", "agentskill_set-INITIAL_FORMS": "0",
             "voice_answer_on": "phone", "voice_phone_number": "12345"}
    data.pop("presence", None)
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "voice_phone_number" in response.context["adminform"].form.errors
    data["voice_phone_number"] = "090 1234 5678"
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Agent.objects.get(pk=agent.pk).voice_phone_number == "+819012345678"


def test_a_recording_streams_from_our_storage_to_whoever_may_see_the_call(client, agent, other_agent, stranger,
                                                                         offered_call, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    voicemail = make_message(offered_call, "Voicemail", direction=Direction.INBOUND)
    recording = Attachment(message=voicemail, filename="RE123.mp3", content_type="audio/mpeg", size=4,
                           source_url="https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE123")
    recording.file.save("RE123.mp3", ContentFile(b"ID3\x00"), save=True)
    url = reverse("softphone:recording", args=[recording.pk])

    client.login(username="alice", password=PASSWORD)  # offered to her
    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"ID3\x00"
    assert response["Content-Type"] == "audio/mpeg" and response["X-Content-Type-Options"] == "nosniff"
    page = client.get(reverse("console:conversation", args=[offered_call.pk]))
    assert url in page.content.decode() and "api.twilio.com" not in page.content.decode()

    for username in ("bob", "mallory"):
        client.logout()
        client.login(username=username, password=PASSWORD)
        assert client.get(url).status_code == 404


def test_only_audio_is_played_inline(client, agent, offered_call, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    message = make_message(offered_call, "A file")
    page = Attachment(message=message, filename="x.html", content_type="text/html", size=4)
    page.file.save("x.html", ContentFile(b"<b>"), save=True)
    client.login(username="alice", password=PASSWORD)
    assert client.get(reverse("softphone:recording", args=[page.pk])).status_code == 404
