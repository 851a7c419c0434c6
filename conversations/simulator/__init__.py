"""The customer simulator: a phone, an email client and a web page with the widget, so a person
can try the product without Twilio. Everything it does goes through the real public entry points
(signed webhooks, SMTP, the widget websocket)."""
