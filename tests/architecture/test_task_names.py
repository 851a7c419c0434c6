"""Services queue work by the task's registered name; an unknown name fails loudly, at once."""

import pytest
from django.db import transaction

from contactcenter import enqueue
from conversations import task_names


def test_every_declared_task_name_is_registered():
    enqueue.check_task_names()  # what ConversationsConfig.ready() runs in every process
    assert task_names.ROUTE_CONVERSATION == "conversations.route_conversation"


def test_a_declared_name_that_no_task_registers_stops_the_start(monkeypatch):
    monkeypatch.setattr(enqueue, "_declared", dict(enqueue._declared))
    enqueue.task_name("conversations.route_conversaton")  # misspelt
    with pytest.raises(enqueue.UnknownTask, match="conversations.route_conversaton"):
        enqueue.check_task_names()


@pytest.mark.django_db
def test_enqueue_on_commit_of_an_unknown_name_raises_inside_the_transaction():
    queued = []
    with pytest.raises(enqueue.UnknownTask, match="conversations.no_such_task"):
        with transaction.atomic():
            transaction.on_commit(lambda: queued.append("committed"))
            enqueue.enqueue_on_commit("conversations.no_such_task", 1)
    assert queued == []  # the transaction rolled back: nothing was queued or committed


@pytest.mark.django_db
def test_enqueue_on_commit_queues_the_registered_task_after_commit(monkeypatch, django_capture_on_commit_callbacks):
    task = enqueue.task_for(task_names.ROUTE_CONVERSATION)
    sent = []
    monkeypatch.setattr(task, "apply_async", lambda args=(), kwargs=None, **options: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        enqueue.enqueue_on_commit(task_names.ROUTE_CONVERSATION, 42)
        assert sent == []
    assert sent == [(42,)]
