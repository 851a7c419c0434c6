import pytest
from django.test import override_settings

from contactcenter.celery import app

pytestmark = pytest.mark.django_db


def test_healthz_is_200_when_everything_is_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": {"status": "up"}, "channel_layer": {"status": "up"}, "broker": {"status": "up"}}


@override_settings(
    CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}
)
def test_healthz_names_a_down_channel_layer(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["channel_layer"]
    assert body["checks"]["database"]["status"] == "up"
    assert body["checks"]["channel_layer"]["status"] == "down"


def test_healthz_names_a_down_broker(client, monkeypatch):
    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["broker"]
