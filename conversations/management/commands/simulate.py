"""Act as a customer from the shell, through the same public doors the simulator uses.

    python manage.py simulate sms --from 090-1234-5678 "荷物が届きません"
    python manage.py simulate whatsapp --from +819012345678 "Hello"
    python manage.py simulate email --from hanako@example.jp --subject "Order 123" "Where is my parcel?"
    python manage.py simulate call --from 090-1234-5678 --digits 2 [--say "請求書について"] [--hold 120]

``call`` dials our voice line with signed webhooks and prints each TwiML verb as the caller would
hear it; ``--digits`` are the keys pressed at each menu (the IVR, then the hold menu: 2 callback,
3 voicemail), ``--hold`` how long to stay on hold waiting for an agent (then hang up).
"""

import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from profiles import addresses

from ...models import Inbox
from ...simulator import client


class Command(BaseCommand):
    help = "Send an SMS, WhatsApp message or email to the running contact center as a customer."

    def add_arguments(self, parser):
        parser.add_argument("channel", choices=["sms", "whatsapp", "email", "call"])
        parser.add_argument("body", nargs="?", default="")
        parser.add_argument("--from", dest="sender", required=True, help="the customer's number or address")
        parser.add_argument("--to", default="", help="our number/address (default: the first inbox of the channel)")
        parser.add_argument("--url", default=settings.CC_PUBLIC_URL or "http://127.0.0.1:8000",
                            help="base URL of the running server (Twilio webhooks)")
        parser.add_argument("--subject", default="", help="email subject")
        parser.add_argument("--name", default="", help="the customer's display name (email)")
        parser.add_argument("--smtp-host", default=getattr(settings, "CC_SMTP_HOST", "127.0.0.1"))
        parser.add_argument("--smtp-port", type=int, default=getattr(settings, "CC_SMTP_PORT", 2525))
        parser.add_argument("--digits", default="", help="call: keys pressed at each menu, in order (e.g. 2 or 13)")
        parser.add_argument("--say", default="", help="call: what the caller says at the first menu")
        parser.add_argument("--hold", type=float, default=0, help="call: seconds to stay on hold for an agent")
        parser.add_argument("--poll", type=float, default=5, help="call: seconds between hold announcements")

    def _our_address(self, channel: str, given: str) -> str:
        if given:
            return given
        inbox = Inbox.objects.filter(kind=channel, is_active=True).order_by("id").first()
        if inbox is None:
            raise CommandError(f"No {channel} inbox is configured: pass --to or run seed_demo.")
        return inbox.address

    def handle(self, *args, channel, body, sender, to, url, subject, name, smtp_host, smtp_port, **options):
        if channel != "call" and not body:
            raise CommandError("Write the message to send.")
        try:
            if channel == "email":
                sender = addresses.normalize_email(sender)
            else:
                sender = addresses.normalize_phone(sender)
        except ValidationError as exc:
            raise CommandError(exc.messages[0]) from exc
        target = self._our_address("voice" if channel == "call" else channel, to)
        if channel == "call":
            from ...simulator.call_runner import CallRunner

            try:
                CallRunner(base_url=url, sender=sender, to=target, digits=options["digits"], speech=options["say"],
                           hold=options["hold"], poll=options["poll"], write=self.stdout.write, sleep=time.sleep).run()
            except OSError as exc:
                raise CommandError(f"Could not reach {url}: {exc}") from exc
            return
        if channel == "email":
            message_id = client.send_email(host=smtp_host, port=smtp_port, sender=sender, to=target,
                                           subject=subject or body[:40], body=body, display_name=name)
            self.stdout.write(f"sent email {message_id} from {sender} to {target} via {smtp_host}:{smtp_port}")
            return
        params = client.twilio_sms_params(sender=sender, to=target, body=body, whatsapp=channel == "whatsapp")
        try:
            response = client.post_signed(url, client.MESSAGING_PATH, params)
        except OSError as exc:
            raise CommandError(f"Could not reach {url}: {exc}") from exc
        if not response.ok:
            raise CommandError(f"Webhook answered {response.status_code}: {response.text[:300]}")
        self.stdout.write(f"sent {channel} {params['MessageSid']} from {sender} to {target}: {response.status_code}")
