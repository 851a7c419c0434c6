"""A Django email backend for dev and tests: each mail is recorded as the provider would have
received it (``RecordedProviderRequest``, provider ``email``), so the simulator can show the
customer's inbox. Used whenever no real SMTP server is configured (settings: EMAIL_BACKEND)."""

from django.core.mail.backends.base import BaseEmailBackend


class RecordingEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages) -> int:
        from ...models import RecordedProviderRequest

        sent = 0
        for mail in email_messages or []:
            try:
                message = mail.message()
                raw = message.as_bytes(linesep="\r\n")
                recipients = mail.recipients()
                RecordedProviderRequest.objects.create(
                    provider="email", method="SMTP", uri="smtp://recording", to=", ".join(recipients)[:320],
                    from_address=str(mail.from_email)[:320], body=mail.body,
                    sid=str(message.get("Message-ID", "")).strip("<> ")[:64],
                    params={
                        "subject": str(mail.subject), "message_id": str(message.get("Message-ID", "")).strip(),
                        "recipients": recipients,
                        "headers": {key: str(value) for key, value in message.items()},
                        "html": next((content for content, mimetype in getattr(mail, "alternatives", [])
                                      if mimetype == "text/html"), ""),
                        "raw": raw.decode("utf-8", errors="replace"),
                    },
                    status_code=250,
                )
            except Exception:
                if not self.fail_silently:
                    raise
                continue
            sent += 1
        return sent
