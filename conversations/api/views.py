"""Routing surfaces of the REST API: queues with live counts, agents, presence, offers, routing explained."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView


from ..models import Agent, Offer, PresenceState
from ..selectors import access_conversation
from ..routing.presence import agent_presence_set
from ..routing.offers import offer_accept, offer_reject
from ..routing.position import queue_position
from . import selectors

def _agent_of(request) -> Agent:
    agent = Agent.objects.filter(user=request.user).select_related("presence").first()
    if agent is None:
        raise Http404("You have no agent profile.")
    return agent


def _error(exc: DjangoValidationError) -> Response:
    return Response({"detail": " ".join(exc.messages), "code": getattr(exc, "code", None)},
                    status=status.HTTP_400_BAD_REQUEST)


class QueueListApi(APIView):
    @extend_schema(operation_id="queues_list", responses=inline_serializer("QueueState", {
        "id": serializers.IntegerField(), "slug": serializers.CharField(),
        "waiting": serializers.IntegerField(help_text="In the queue, nobody has taken it yet (offered ones included)"),
        "offered": serializers.IntegerField(help_text="Of the waiting ones, those with an offer pending"),
        "assigned": serializers.IntegerField(help_text="Open or pending with an agent"),
        "longest_wait_seconds": serializers.IntegerField(help_text="Since the oldest waiting one entered the queue")},
        many=True))
    def get(self, request):
        return Response(selectors.queue_stats())


class AgentListApi(APIView):
    @extend_schema(operation_id="agents_list", responses=inline_serializer("AgentState", {
        "id": serializers.IntegerField(), "display_name": serializers.CharField(),
        "presence": serializers.DictField(), "load": serializers.DictField()}, many=True))
    def get(self, request):
        return Response(selectors.agent_states())


class PresenceApi(APIView):
    """The signed-in agent's presence: GET the choices, POST {"presence": <id>} to change."""

    class InputSerializer(serializers.Serializer):
        presence = serializers.IntegerField()

    @extend_schema(operation_id="presence_get", responses=inline_serializer("Presence", {
        "current": serializers.IntegerField(allow_null=True), "choices": serializers.ListField()}))
    def get(self, request):
        agent = _agent_of(request)
        return Response({"current": agent.presence_id, "choices": [
            {"id": p.pk, "name": p.name, "available": p.is_available, "offline": p.is_offline}
            for p in PresenceState.objects.all()]})

    @extend_schema(operation_id="presence_set", request=InputSerializer, responses={200: dict})
    def post(self, request):
        agent = _agent_of(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        presence = PresenceState.objects.filter(pk=data.validated_data["presence"]).first()
        if presence is None:
            return Response({"presence": ["Unknown presence."]}, status=status.HTTP_400_BAD_REQUEST)
        agent = agent_presence_set(agent=agent, presence=presence)
        return Response({"current": agent.presence_id, "name": presence.name, "available": presence.is_available})


class OfferDecisionApi(APIView):
    """POST offers/<id>/accept/ or offers/<id>/reject/ (only the agent the offer is for)."""

    decision = "accept"

    @extend_schema(request=None, responses={200: dict, 400: dict, 404: dict})
    def post(self, request, offer_id: int):
        agent = _agent_of(request)
        offer = Offer.objects.filter(pk=offer_id, agent=agent).first()
        if offer is None:
            raise Http404
        action = offer_accept if self.decision == "accept" else offer_reject
        try:
            offer = action(offer_id=offer.pk, agent=agent)
        except DjangoValidationError as exc:
            return _error(exc)
        return Response({"offer": offer.pk, "status": offer.status, "conversation": offer.conversation_id})


class ConversationRoutingApi(APIView):
    """Why a conversation went where it went, and its queue position while it waits."""

    @extend_schema(operation_id="conversation_routing", responses={200: dict})
    def get(self, request, conversation_id: int):
        conversation = access_conversation(user=request.user, conversation_id=conversation_id)
        return Response({**selectors.routing_explained(conversation), "position": queue_position(conversation=conversation)})
