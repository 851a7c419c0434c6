"""The Celery tasks of conversations, by registered name: what services and the tick queue.

Services queue by these names (``contactcenter.enqueue``) and never import a task module; every
name is checked against the registered tasks when the app starts (``ConversationsConfig.ready``).
"""

from contactcenter.enqueue import task_name

DELIVER_MESSAGE = task_name("conversations.deliver_message")
FETCH_TWILIO_MEDIA = task_name("conversations.fetch_twilio_media")
PROCESS_TWILIO_INBOUND = task_name("conversations.process_twilio_inbound")
ROUTE_CONVERSATION = task_name("conversations.route_conversation")
ROUTE_FOR_AGENT = task_name("conversations.route_for_agent")
SIMULATE_TWILIO_DELIVERY = task_name("conversations.simulate_twilio_delivery")
