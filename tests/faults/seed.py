"""Seeds the fault suite's private database: run as ``python -m tests.faults.seed`` by the suite,
with the server processes' environment (it is that database, not pytest's, that it writes).

One auto-accept queue that every inbox routes to, and agents available with room for every
conversation of a burst: each conversation is then assigned exactly once, which the suite counts
("routed exactly once"). Prints what the suite needs as JSON.
"""

import json
import os

import django

SMS_NUMBER = "+815012340000"
EMAIL_ADDRESS = "support@shop.example.jp"
WIDGET_ID = "widget-faults"
EMAIL_SECRET = "faults-email-secret"
AGENTS = 4
PASSWORD = "faults-password-1"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.faults._settings")
    django.setup()
    from django.contrib.auth.models import Group, User

    from conversations.models import Agent, AgentSkill, Channel, Inbox, PresenceState, Queue, Skill

    available = PresenceState.objects.create(name="Available", is_available=True, ordering=0)
    PresenceState.objects.create(name="Offline", is_offline=True, ordering=30)
    skill = Skill.objects.create(name="Support", slug="support")
    queue = Queue.objects.create(name="Support", slug="support", auto_accept=True, is_default=True)
    queue.required_skills.set([skill])
    for kind, address in ((Channel.SMS, SMS_NUMBER), (Channel.EMAIL, EMAIL_ADDRESS), (Channel.WEBCHAT, WIDGET_ID)):
        Inbox.objects.create(kind=kind, address=address, name=f"{kind} faults", default_queue=queue,
                             secret=EMAIL_SECRET if kind == Channel.EMAIL else "")
    room = {channel: 10_000 for channel in (Channel.SMS, Channel.EMAIL, Channel.WEBCHAT)}
    agents = []
    for index in range(AGENTS):
        user = User.objects.create_user(f"agent{index}", password=PASSWORD)
        user.groups.add(Group.objects.get(name="agent"))
        agent = Agent.objects.create(user=user, display_name=f"Agent {index}", presence=available, capacity=room)
        AgentSkill.objects.create(agent=agent, skill=skill, level=3)
        agents.append(user.username)
    print(json.dumps({"agents": agents, "password": PASSWORD}))


if __name__ == "__main__":
    main()
