"""The demo's surveys (``seed_demo`` sends ``conversations.lifecycle.demo_seeded``): a CSAT for
every channel with a 30-second delay (resolve a chat in the simulator and the survey arrives),
NPS for the mailbox, CES for billing, a Customer care queue for follow-ups with its outcomes, and
weeks of answers over the demo's resolved contacts, with a few detractor follow-ups waiting.
Idempotent: run again, it adds nothing."""

import random
from datetime import timedelta

from django.db.models import F

from conversations.models import (
    Conversation,
    ConversationStatus,
    Direction,
    EventType,
    Inbox,
    Message,
    MessageKind,
    Queue,
    Skill,
    WrapUpCode,
)

from .answers import _follow_up_open
from .links import new_token
from .models import (
    SurveyDefinition,
    SurveyKind,
    SurveyPolicy,
    SurveyRequest,
    SurveyResponse,
    SurveyStatus,
    scale_of,
)
from .timeline_texts import stored_text

DEMO_DELAY_SECONDS = 30
OUTCOMES = [("survey-called-back", "Called back", "折り返し連絡済み"), ("survey-refunded", "Refunded", "返金済み"),
            ("survey-no-action", "No action needed", "対応不要")]
COMMENTS = {
    "good": ["Very quick, thank you!", "丁寧に対応していただきました。", "Solved on the first try.", "ありがとうございました！", ""],
    "bad": ["I had to explain twice.", "返信が遅かったです。", "Still waiting for the refund.", "たらい回しにされました。"],
}
# Weights per score from low to high: most customers are happy, some are not.
WEIGHTS = {SurveyKind.CSAT: [1, 1, 2, 5, 7], SurveyKind.NPS: [1, 1, 1, 1, 1, 2, 2, 4, 5, 6, 6],
           SurveyKind.CES: [1, 1, 1, 2, 3, 5, 5]}


def _configuration() -> tuple[SurveyPolicy, dict]:
    care, _ = Queue.objects.get_or_create(slug="customer-care", defaults={
        "name": "Customer care", "wrap_up_required": True, "priority": 20, "channels": []})
    support = Skill.objects.filter(slug="support").first()
    if support is not None and not care.required_skills.exists():
        care.required_skills.add(support)
    for ordering, (code, label, label_ja) in enumerate(OUTCOMES, start=100):
        WrapUpCode.objects.get_or_create(code=code, defaults={"label": label, "label_translations": {"ja": label_ja},
                                                              "ordering": ordering})
    policy = SurveyPolicy.objects.order_by("pk").first() or SurveyPolicy.objects.create(follow_up_queue=care)
    definitions = {}
    specs = [
        ("csat", "Satisfaction after each contact", SurveyKind.CSAT, "How satisfied were you with our help today?",
         "今回の対応にどのくらい満足されましたか？", "What could we have done better?", "改善できる点があれば教えてください。"),
        ("nps", "Recommendation (mailbox)", SurveyKind.NPS, "How likely are you to recommend Sakura Tea to a friend?",
         "Sakura Tea を友人や知人に勧める可能性はどのくらいありますか？", "Why that score?", "その点数の理由を教えてください。"),
        ("ces", "Effort (billing)", SurveyKind.CES, "How easy was it to get your billing question solved?",
         "お支払いに関するお問い合わせの解決はどのくらい簡単でしたか？", "", ""),
    ]
    for key, name, kind, q_en, q_ja, f_en, f_ja in specs:
        definition, _ = SurveyDefinition.objects.get_or_create(name=name, defaults={
            "kind": kind, "question_en": q_en, "question_ja": q_ja, "follow_up_en": f_en, "follow_up_ja": f_ja,
            "delay_seconds": DEMO_DELAY_SECONDS})
        definitions[key] = definition
    mailbox = Inbox.objects.filter(kind="email").order_by("id").first()
    if mailbox is not None:
        definitions["nps"].inboxes.add(mailbox)
    billing = Queue.objects.filter(slug="billing").first()
    if billing is not None:
        definitions["ces"].queues.add(billing)
    return policy, definitions


def _definition_for(conversation, definitions) -> SurveyDefinition:
    if conversation.queue_id and conversation.queue.slug == "billing":
        return definitions["ces"]
    if conversation.channel == "email":
        return definitions["nps"]
    return definitions["csat"]


def seed_demo_surveys(sender=None, *, now, **kwargs) -> int:
    """Answers for the demo's resolved, answered contacts (one survey per customer per 30 days,
    on the channel they used), as the real path would have recorded them. Returns how many."""
    policy, definitions = _configuration()
    if SurveyRequest.objects.exists():
        return 0
    rng = random.Random(19)
    answered_by_agent = set(Message.objects.filter(direction=Direction.OUTBOUND, kind=MessageKind.MESSAGE,
                                                   author_agent__isnull=False).values_list("conversation_id", flat=True))
    conversations = (Conversation.objects.filter(status=ConversationStatus.RESOLVED, resolved_at__isnull=False,
                                                 pk__in=answered_by_agent)
                     .exclude(channel="voice").select_related("queue", "customer").order_by("resolved_at", "id"))
    last_survey: dict[int, object] = {}
    made = []
    detractors = []
    for conversation in conversations:
        previous = last_survey.get(conversation.customer_id)
        if previous is not None and conversation.resolved_at - previous < timedelta(days=policy.days_between):
            continue
        if rng.random() > 0.75:
            continue
        last_survey[conversation.customer_id] = conversation.resolved_at
        definition = _definition_for(conversation, definitions)
        sent_at = conversation.resolved_at + timedelta(seconds=DEMO_DELAY_SECONDS)
        mode = {"webchat": "card", "email": "email"}.get(conversation.channel, "reply")
        request = SurveyRequest.objects.create(
            conversation=conversation, customer=conversation.customer, channel=conversation.channel,
            definition=definition, agent_id=conversation.assignee_id, queue_id=conversation.queue_id,
            status=SurveyStatus.SENT, due_at=sent_at, sent_at=sent_at, claimed_at=sent_at, token=new_token(),
            sent_channel=conversation.channel, sent_conversation=conversation, sent_mode=mode, created_at=sent_at)
        if rng.random() > 0.7:  # not everyone answers
            request.status = SurveyStatus.EXPIRED
            request.save(update_fields=["status"])
            continue
        low, high = scale_of(definition.kind)
        score = rng.choices(range(low, high + 1), weights=WEIGHTS[definition.kind])[0]
        unhappy = score <= policy.detractor_max(definition.kind)
        comment = rng.choice(COMMENTS["bad" if unhappy else "good"]) if rng.random() < 0.6 or unhappy else ""
        answered_at = sent_at + timedelta(minutes=rng.randint(1, 600))
        response = SurveyResponse.objects.create(
            request=request, kind=definition.kind, score=score, comment=comment,
            via={"card": "widget", "email": "link"}.get(mode, "reply"), channel=conversation.channel,
            conversation=conversation, customer_id=conversation.customer_id, agent_id=conversation.assignee_id,
            queue_id=conversation.queue_id, answered_at=answered_at)
        request.status = SurveyStatus.ANSWERED
        request.save(update_fields=["status"])
        # The timeline's event (the customer 360 lists these), at the time it was answered.
        Conversation.objects.filter(pk=conversation.pk).update(last_seq=F("last_seq") + 1)
        seq = Conversation.objects.values_list("last_seq", flat=True).get(pk=conversation.pk)
        data = {"survey": request.pk, "kind": definition.kind, "score": score, "comment": comment,
                "about": conversation.pk, "channel": conversation.channel, "via": response.via}
        Message.objects.create(
            conversation=conversation, customer_id=conversation.customer_id, inbox_id=conversation.inbox_id,
            channel=conversation.channel, direction=Direction.INTERNAL, kind=MessageKind.EVENT,
            event_type=EventType.SURVEY_ANSWERED, seq=seq, created_at=answered_at,
            text=stored_text(EventType.SURVEY_ANSWERED, data), event_data=data)
        made.append(response)
        if unhappy:
            detractors.append((request, response))
    # The newest few unhappy answers wait as follow-ups in Customer care (the real service opens them).
    for request, response in detractors[-3:]:
        _follow_up_open(request, response, policy=policy, now=now)
    return len(made)
