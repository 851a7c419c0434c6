"""Settings for bench/voice's daphne: the project's settings with the baseline route added
(``bench/_voice_urls.py``)."""

from contactcenter.settings import *

ROOT_URLCONF = "_voice_urls"
