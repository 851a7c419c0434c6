"""``/api/v1/survey-responses/``: every answer with its type, score, comment, channel,
conversation, customer, agent and queue; filters by type, score range, queue, agent, channel and
date. Supervisors and admins only (agents get 403: the answers rate their colleagues).
``/api/v1/survey-measures/?by=agent|queue|channel``: the measures the supervisor reports show."""

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from contactcenter.permissions import is_supervisor
from conversations.models import Channel

from .models import SurveyKind
from .selectors import survey_measures, survey_responses


class IsSupervisorOrAdmin(BasePermission):
    message = "Survey answers are for supervisors and admins."

    def has_permission(self, request, view) -> bool:
        return is_supervisor(request.user) and request.user.is_active


class SurveyResponsePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def _int(params, name: str) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise exceptions.ValidationError({name: "Expected an integer."}) from None
    if not -(2**31) < value < 2**31:
        raise exceptions.ValidationError({name: "Out of range."})
    return value


def _moment(params, name: str, *, end: bool = False):
    raw = params.get(name)
    if not raw:
        return None
    value = parse_datetime(raw)
    if value is None:
        day = parse_date(raw) if len(raw) == 10 else None
        if day is None:
            raise exceptions.ValidationError({name: "Expected a date (YYYY-MM-DD) or an ISO 8601 time."})
        from datetime import UTC, datetime, timedelta

        value = datetime(day.year, day.month, day.day, tzinfo=UTC) + (timedelta(days=1) if end else timedelta())
    if value.tzinfo is None:
        raise exceptions.ValidationError({name: "Give a time zone (e.g. Z or +09:00)."})
    return value


def _choice(params, name: str, choices) -> str | None:
    raw = params.get(name)
    if not raw:
        return None
    if raw not in choices:
        raise exceptions.ValidationError({name: f"One of {', '.join(choices)}."})
    return raw


class SurveyResponseListApi(APIView):
    permission_classes = (IsSupervisorOrAdmin,)

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        type = serializers.CharField(source="kind")
        score = serializers.IntegerField()
        comment = serializers.CharField()
        channel = serializers.CharField()
        conversation = serializers.IntegerField(source="conversation_id")
        customer = serializers.IntegerField(source="customer_id")
        agent = serializers.IntegerField(source="agent_id", allow_null=True)
        agent_name = serializers.SerializerMethodField()
        queue = serializers.IntegerField(source="queue_id", allow_null=True)
        queue_name = serializers.SerializerMethodField()
        via = serializers.CharField()
        answered_at = serializers.DateTimeField()
        changed_at = serializers.DateTimeField(allow_null=True)
        previous_score = serializers.IntegerField(allow_null=True)

        def get_agent_name(self, obj) -> str:
            return obj.agent.display_name if obj.agent else ""

        def get_queue_name(self, obj) -> str:
            return obj.queue.name if obj.queue else ""

    @extend_schema(operation_id="survey_responses_list", parameters=[
        OpenApiParameter("type", str, enum=[k.value for k in SurveyKind]),
        OpenApiParameter("score_min", int), OpenApiParameter("score_max", int),
        OpenApiParameter("queue", int), OpenApiParameter("agent", int),
        OpenApiParameter("channel", str, enum=[c.value for c in Channel]),
        OpenApiParameter("since", str, description="Date or ISO time, inclusive"),
        OpenApiParameter("until", str, description="Date (inclusive) or ISO time (exclusive)"),
    ], responses=OutputSerializer(many=True))
    def get(self, request):
        params = request.query_params
        qs = survey_responses(
            kind=_choice(params, "type", [k.value for k in SurveyKind]),
            score_min=_int(params, "score_min"), score_max=_int(params, "score_max"),
            queue_id=_int(params, "queue"), agent_id=_int(params, "agent"),
            channel=_choice(params, "channel", [c.value for c in Channel]),
            since=_moment(params, "since"), until=_moment(params, "until", end=True),
        )
        paginator = SurveyResponsePagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


class SurveyMeasuresApi(APIView):
    permission_classes = (IsSupervisorOrAdmin,)

    @extend_schema(operation_id="survey_measures", parameters=[
        OpenApiParameter("by", str, enum=["agent", "queue", "channel"]),
        OpenApiParameter("since", str), OpenApiParameter("until", str)],
        responses=inline_serializer("SurveyMeasures", {
            "agent": serializers.IntegerField(required=False, allow_null=True),
            "queue": serializers.IntegerField(required=False, allow_null=True),
            "channel": serializers.CharField(required=False),
            "sent": serializers.IntegerField(), "answered": serializers.IntegerField(),
            "response_rate": serializers.FloatField(allow_null=True, help_text="Answered of sent, in %"),
            "csat_percent": serializers.FloatField(allow_null=True, help_text="CSAT answers of 4–5, in %"),
            "nps": serializers.FloatField(allow_null=True, help_text="% promoters (9–10) minus % detractors (0–6)"),
            "ces_average": serializers.FloatField(allow_null=True),
            "csat_count": serializers.IntegerField(), "nps_count": serializers.IntegerField(),
            "ces_count": serializers.IntegerField()}, many=True))
    def get(self, request):
        by = _choice(request.query_params, "by", ["agent", "queue", "channel"]) or "queue"
        return Response(survey_measures(by=by, since=_moment(request.query_params, "since"),
                                        until=_moment(request.query_params, "until", end=True)))
