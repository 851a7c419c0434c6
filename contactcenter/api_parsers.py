"""The REST API's JSON parser: DRF's, decoding through ``contactcenter.decoding`` so a body nested
too deep or holding a number that is not finite is a 400 with the reason, never a 500."""

import codecs

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .decoding import UndecodableInput, json_decode


class SafeJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            return json_decode(text)
        except UndecodableInput as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - the body is not {encoding}.") from exc
