"""Survey tasks: thin, by id; the services decide (and make a repeated run do nothing)."""

from celery import shared_task

from .comments import survey_ask_why
from .delivery import survey_send


@shared_task(name="surveys.send_surveys", acks_late=True)
def send_surveys(request_ids: list[int]) -> int:
    """A batch claimed by one tick (one broker message per batch keeps the tick short: bench/surveys).
    Each send is idempotent: a redelivered batch sends nothing twice."""
    return sum(1 for request_id in request_ids if survey_send(request_id=request_id) == "sent")


@shared_task(name="surveys.ask_why", acks_late=True)
def ask_why(request_id: int) -> bool:
    """The "why?" question after a score given by text reply (sent once: surveys.comments)."""
    return survey_ask_why(request_id=request_id)
