from django.urls import path

from .channels.email import webhook as webhooks_email
from .channels.twilio_messaging import webhooks
from .channels.twilio_voice import webhooks as voice

urlpatterns = [
    path("twilio/messaging/", webhooks.twilio_messaging_inbound, name="twilio-messaging"),
    path("twilio/messaging/status/", webhooks.twilio_messaging_status, name="twilio-messaging-status"),
    path("email/", webhooks_email.email_inbound, name="email-inbound"),
    path("twilio/voice/", voice.voice_incoming, name="twilio-voice"),
    path("twilio/voice/status/", voice.voice_status, name="twilio-voice-status"),
    path("twilio/voice/gather/", voice.voice_gather, name="twilio-voice-gather"),
    path("twilio/voice/wait/", voice.voice_wait, name="twilio-voice-wait"),
    path("twilio/voice/wait/choice/", voice.voice_wait_choice, name="twilio-voice-wait-choice"),
    path("twilio/voice/enqueue-action/", voice.voice_enqueue_action, name="twilio-voice-enqueue-action"),
    path("twilio/voice/voicemail/", voice.voice_voicemail_done, name="twilio-voice-voicemail"),
    path("twilio/voice/recording/", voice.voice_recording, name="twilio-voice-recording"),
    path("twilio/voice/transcription/", voice.voice_transcription, name="twilio-voice-transcription"),
    path("twilio/voice/conference/", voice.voice_conference, name="twilio-voice-conference"),
    path("twilio/voice/requeue/", voice.voice_requeue, name="twilio-voice-requeue"),
    path("twilio/voice/agent-leg/", voice.voice_agent_leg, name="twilio-voice-agent-leg"),
    path("twilio/voice/survey/", voice.voice_survey, name="twilio-voice-survey"),
]
