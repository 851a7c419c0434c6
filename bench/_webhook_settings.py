"""Settings for bench/webhook's daphne: the project's settings (same middleware, same everything)
with a URLconf that adds the baseline view (``bench/_webhook_urls.py``)."""

from contactcenter.settings import *  # noqa: F403

ROOT_URLCONF = "_webhook_urls"
