"""daphne's own static file serving (``CC_SERVE_STATIC``), with the headers Django's middleware
would add if static responses went through it (they do not: the handler answers before it)."""

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler


class StaticFilesWithHeaders(ASGIStaticFilesHandler):
    async def get_response_async(self, request):
        response = await super().get_response_async(request)
        # A file must never be taken for another type than the one we say (a .txt read as script).
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response
