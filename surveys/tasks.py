"""Survey tasks: thin, by id; the services decide (and make a repeated run do nothing)."""

from celery import shared_task

from .delivery import survey_send


@shared_task(name="surveys.send_survey", acks_late=True)
def send_survey(request_id: int) -> str:
    return survey_send(request_id=request_id)


@shared_task(name="surveys.send_surveys", acks_late=True)
def send_surveys(request_ids: list[int]) -> int:
    """A batch claimed by one tick: one task per batch keeps the tick short (bench/surveys)."""
    return sum(1 for request_id in request_ids if survey_send(request_id=request_id) == "sent")
