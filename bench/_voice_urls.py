"""bench/voice's URLconf: the project's URLs plus ``bench/twiml/``, the baseline: a sync Django view
behind the same middleware that parses the same signed form body and answers a fixed TwiML
document (no signature check, no database): what any TwiML answer costs on this stack."""

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from contactcenter.urls import urlpatterns as project_urlpatterns

FIXED = ('<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="/x" input="dtmf" numDigits="1" timeout="1">'
         '<Say language="ja-JP" voice="Polly.Mizuki">現在1番目にお待ちいただいております。</Say>'
         '<Play>/static/voice/hold-music.wav</Play></Gather></Response>')


@csrf_exempt
@require_POST
def fixed_twiml(request):
    request.POST.get("CallSid")  # the form body is parsed, as the real webhook's is
    return HttpResponse(FIXED, content_type="text/xml")


urlpatterns = [path("bench/twiml/", fixed_twiml), *project_urlpatterns]
