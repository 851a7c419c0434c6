import base64, json
import pytest
from django.test import Client
from rest_framework.test import APIClient
from django.urls import reverse
from ..factories import make_customer
pytestmark = pytest.mark.django_db

def b64(s): return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")

def test_repro(agent, customer):
    api = APIClient(); api.force_login(agent.user)
    api.raise_request_exception = False
    c = customer
    cases = [
        ("patch nested", lambda: api.patch(f"/api/v1/customers/{c.pk}/", data="["*100000+"]"*100000, content_type="application/json")),
        ("patch 1e400", lambda: api.patch(f"/api/v1/customers/{c.pk}/", data='{"custom_attributes":{"a":1e400}}', content_type="application/json")),
        ("patch NaN", lambda: api.patch(f"/api/v1/customers/{c.pk}/", data='{"custom_attributes":{"a":NaN}}', content_type="application/json")),
        ("timeline date", lambda: api.get(f"/api/v1/customers/{c.pk}/timeline/", {"before": b64(json.dumps(["9999-12-31T23:59:59+14:00", 0, 1]))})),
        ("timeline date2", lambda: api.get(f"/api/v1/customers/{c.pk}/timeline/", {"before": b64(json.dumps(["0001-01-01T00:00:00-14:00", 0, 1]))})),
        ("timeline nested", lambda: api.get(f"/api/v1/customers/{c.pk}/timeline/", {"before": b64("["*100000)})),
        ("timeline bigint", lambda: api.get(f"/api/v1/customers/{c.pk}/timeline/", {"before": b64(json.dumps(["2020-01-01T00:00:00+00:00", 0, 10**30]))})),
        ("cursor garbage", lambda: api.get("/api/v1/customers/", {"cursor": base64.b64encode(b"\xff\xfe garbage").decode()})),
        ("cursor garbage2", lambda: api.get("/api/v1/customers/", {"cursor": base64.b64encode(b"o=1&p=9999-99-99").decode()})),
        ("cursor garbage3", lambda: api.get("/api/v1/customers/", {"cursor": base64.b64encode(b"o=99999999999999999999&r=1&p=x").decode()})),
        ("cursor garbage4", lambda: api.get("/api/v1/customers/", {"cursor": base64.b64encode(b"p=\x00").decode()})),
        ("tag x300", lambda: api.get("/api/v1/customers/?" + "&".join(["tag=a"]*300))),
        ("q nul", lambda: api.get("/api/v1/customers/", {"q": "a\x00b"})),
        ("timeline nul", lambda: api.get(f"/api/v1/customers/{c.pk}/timeline/", {"before": "a\x00"})),
    ]
    for name, fn in cases:
        try:
            r = fn()
            print(name, r.status_code, r.content[:200])
        except Exception as exc:
            print(name, "EXC", type(exc), str(exc)[:200])
