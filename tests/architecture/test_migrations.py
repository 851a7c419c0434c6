"""Every model change has its migration: a field, a choice or a help text changed without one
makes the next `makemigrations` of whoever comes after write it into their own change."""

from io import StringIO

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_no_model_change_is_missing_its_migration():
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exit_:
        pytest.fail(f"model changes without a migration (manage.py makemigrations):\n{out.getvalue()}"
                    if exit_.code else out.getvalue())
