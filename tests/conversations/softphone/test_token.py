"""The softphone's access token: only for a signed-in agent, with an identity Twilio accepts,
short-lived, never cached."""

import re

import jwt
import pytest
from django.test import override_settings
from django.urls import reverse

from conversations.channels.twilio_voice.softphone.token import (
    agent_identity,
    agent_of_identity,
)
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

LIVE = {"TWILIO_ACCOUNT_SID": "AC" + "a" * 32, "TWILIO_AUTH_TOKEN": "live-auth-token",
            "TWILIO_API_KEY": "SK" + "b" * 32, "TWILIO_API_SECRET": "api-secret-for-tests-0123456789abcdef",
            "TWILIO_TWIML_APP_SID": "AP" + "c" * 32, "CC_SOFTPHONE_TOKEN_TTL_SECONDS": 600}


def test_identity_meets_twilio_rules(agent):
    identity = agent_identity(agent.pk)
    assert identity == f"agent_{agent.pk}"
    assert re.fullmatch(r"[A-Za-z0-9_]{1,121}", identity)
    assert agent_of_identity("client:" + identity) == agent.pk
    assert agent_of_identity("client:alice@example.com") is None
    assert len(agent_identity(10 ** 100)) <= 121


@override_settings(**LIVE)
def test_agent_gets_a_voice_grant_for_their_identity(client, agent):
    client.login(username="alice", password=PASSWORD)
    response = client.get(reverse("softphone:token"))
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("no-store") or "no-store" in response["Cache-Control"]
    body = response.json()
    assert body["mode"] == "live" and body["identity"] == f"agent_{agent.pk}"
    claims = jwt.decode(body["token"], "api-secret-for-tests-0123456789abcdef", algorithms=["HS256"])
    assert claims["iss"] == LIVE["TWILIO_API_KEY"] and claims["sub"] == LIVE["TWILIO_ACCOUNT_SID"]
    assert claims["grants"]["identity"] == f"agent_{agent.pk}"
    voice = claims["grants"]["voice"]
    assert voice["incoming"] == {"allow": True}
    assert voice["outgoing"]["application_sid"] == LIVE["TWILIO_TWIML_APP_SID"]
    assert claims["exp"] - claims["nbf"] <= 600 or claims["exp"] - claims["iat"] <= 600


def test_without_api_credentials_the_softphone_is_simulated(client, agent):
    client.login(username="alice", password=PASSWORD)
    body = client.get(reverse("softphone:token")).json()
    assert body["mode"] == "simulated" and "token" not in body
    assert body["identity"] == f"agent_{agent.pk}"


@override_settings(**LIVE)
@pytest.mark.parametrize("who", ["anonymous", "stranger", "admin_without_agent"])
def test_nobody_but_an_agent_gets_a_token(client, who, stranger, admin_user):
    if who == "stranger":
        client.login(username="mallory", password=PASSWORD)
    elif who == "admin_without_agent":
        client.force_login(admin_user)
    response = client.get(reverse("softphone:token"))
    assert response.status_code == 403
    assert "token" not in response.json()
    assert "no-store" in response["Cache-Control"]
