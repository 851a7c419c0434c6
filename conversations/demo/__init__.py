"""Demo data for ``python manage.py seed_demo``: configuration, users and 30+ customers with history."""
