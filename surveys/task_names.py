"""The Celery tasks of surveys, by registered name (services queue by name: contactcenter.enqueue)."""

from contactcenter.enqueue import task_name

SEND_SURVEYS = task_name("surveys.send_surveys")
ASK_WHY = task_name("surveys.ask_why")
