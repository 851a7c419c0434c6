"""Serializers shared by several profile API views; view-specific input/output serializers are
nested in the view classes (views.py).

Input serializers derive from ``StrictSerializer``: a key the client may not send (``merged_into``,
``verified``, an ORM lookup such as ``display_name__startswith`` …) is a 400 naming it, never
silently passed on (mass assignment, injected filters: threats.md).
"""

from rest_framework import serializers

from contactcenter.decoding import MAX_REPEATED_QUERY_PARAMETER, repeated_query_parameters

from ..models import Consent, CustomerMerge, CustomerNote, Identity, Touchpoint


class StrictSerializer(serializers.Serializer):
    """Rejects every key that is not one of its fields (or listed in ``extra_allowed``)."""

    extra_allowed: tuple[str, ...] = ()
    unknown_message = "This field cannot be set."

    def to_internal_value(self, data):
        if hasattr(data, "keys"):
            allowed = set(self.fields) | set(self.extra_allowed)
            unknown = sorted(key for key in data.keys() if key not in allowed)
            if unknown:
                raise serializers.ValidationError({key: [self.unknown_message] for key in unknown})
        return super().to_internal_value(data)


class StrictQuerySerializer(StrictSerializer):
    """For query strings: the whitelist of filters a view understands, each given at most
    ``MAX_REPEATED_QUERY_PARAMETER`` times (every repeat is a condition or a join)."""

    unknown_message = "Unknown query parameter."

    def to_internal_value(self, data):
        if hasattr(data, "getlist"):
            repeated = repeated_query_parameters(data)
            if repeated:
                raise serializers.ValidationError({name: [
                    f"Given {len(data.getlist(name))} times; at most {MAX_REPEATED_QUERY_PARAMETER} allowed."
                ] for name in repeated})
        if hasattr(data, "keys"):
            allowed = sorted(set(self.fields) | set(self.extra_allowed))
            self.unknown_message = f"Unknown query parameter. Allowed: {', '.join(allowed)}."
        return super().to_internal_value(data)


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.SerializerMethodField()

    def get_name(self, user) -> str:
        return user.get_full_name() or user.get_username()


class IdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = Identity
        fields = ["id", "kind", "value", "verified", "source", "created_at", "last_seen_at"]
        read_only_fields = fields


class TouchpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = Touchpoint
        fields = ["id", "kind", "title", "url", "location", "device", "channel", "data", "occurred_at"]
        read_only_fields = fields


class CustomerNoteSerializer(serializers.ModelSerializer):
    author = UserRefSerializer(allow_null=True, read_only=True)

    class Meta:
        model = CustomerNote
        fields = ["id", "text", "author", "created_at"]
        read_only_fields = fields


class ConsentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Consent
        fields = ["id", "channel", "address", "sender", "status", "changed_at", "source"]
        read_only_fields = fields


class CustomerMergeSerializer(serializers.ModelSerializer):
    """One merge record; ``moved`` is a summary: how many rows of each kind moved to the target."""

    performed_by = UserRefSerializer(allow_null=True, read_only=True)
    undone_by = UserRefSerializer(allow_null=True, read_only=True)
    moved = serializers.SerializerMethodField()

    class Meta:
        model = CustomerMerge
        fields = ["id", "source", "target", "created_at", "performed_by", "moved", "undone_at", "undone_by", "suggestion"]
        read_only_fields = fields

    def get_moved(self, merge) -> dict[str, int]:
        return {label: len(ids) for label, ids in sorted(merge.moved.items())}


# --- timeline entries: the serialized object is a profiles.timeline.TimelineEntry ---------------


class TimelineAttachmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    filename = serializers.CharField()
    content_type = serializers.CharField()
    size = serializers.IntegerField()
    state = serializers.CharField()


class _TimelineEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    cursor = serializers.CharField(help_text="Position of this entry; usable as ?before= / ?after=.")
    id = serializers.IntegerField(source="item.pk")


class TimelineMessageSerializer(_TimelineEntrySerializer):
    type = serializers.ChoiceField(choices=["message"])
    conversation = serializers.IntegerField(source="item.conversation_id")
    channel = serializers.CharField(source="item.channel")
    direction = serializers.CharField(source="item.direction")
    kind = serializers.CharField(source="item.kind")
    author = serializers.SerializerMethodField(help_text="Display name of the agent who wrote it, else null.")
    text = serializers.CharField(source="item.text")
    html = serializers.CharField(source="item.html", help_text="Sanitized HTML (email); empty when none.")
    event_type = serializers.CharField(source="item.event_type")
    event_data = serializers.JSONField(source="item.event_data")
    delivery_status = serializers.CharField(source="item.delivery_status")
    delivery_error_code = serializers.CharField(source="item.delivery_error_code")
    delivery_error = serializers.CharField(source="item.delivery_error")
    attachments = TimelineAttachmentSerializer(source="item.attachments", many=True)

    def get_author(self, entry) -> str | None:
        agent = entry.item.author_agent if entry.item.author_agent_id else None
        return agent.display_name if agent is not None else None


class TimelineTouchpointSerializer(_TimelineEntrySerializer):
    type = serializers.ChoiceField(choices=["touchpoint"])
    kind = serializers.CharField(source="item.kind")
    title = serializers.CharField(source="item.title")
    url = serializers.CharField(source="item.url")
    location = serializers.CharField(source="item.location")
    device = serializers.CharField(source="item.device")
    channel = serializers.CharField(source="item.channel")
    data = serializers.JSONField(source="item.data")


class TimelineOtherSerializer(_TimelineEntrySerializer):
    """Entries of a source this API does not know in detail yet (another app registered it)."""

    type = serializers.CharField()


TIMELINE_ENTRY_SERIALIZERS: dict[str, type[serializers.Serializer]] = {
    "message": TimelineMessageSerializer,
    "touchpoint": TimelineTouchpointSerializer,
}


def _message_entry(entry) -> dict:
    message = entry.item
    return {
        "at": entry.at.isoformat().replace("+00:00", "Z"), "cursor": entry.cursor, "id": message.pk, "type": "message",
        "conversation": message.conversation_id, "channel": message.channel, "direction": message.direction,
        "kind": message.kind, "author": message.author_agent.display_name if message.author_agent_id else None,
        "text": message.text, "html": message.html, "event_type": message.event_type,
        "event_data": message.event_data, "delivery_status": message.delivery_status,
        "delivery_error_code": message.delivery_error_code, "delivery_error": message.delivery_error,
        "attachments": [
            {"id": a.pk, "filename": a.filename, "content_type": a.content_type, "size": a.size, "state": a.state}
            for a in message.attachments.all()
        ],
    }


def _touchpoint_entry(entry) -> dict:
    touchpoint = entry.item
    return {
        "at": entry.at.isoformat().replace("+00:00", "Z"), "cursor": entry.cursor, "id": touchpoint.pk,
        "type": "touchpoint", "kind": touchpoint.kind, "title": touchpoint.title, "url": touchpoint.url,
        "location": touchpoint.location, "device": touchpoint.device, "channel": touchpoint.channel,
        "data": touchpoint.data,
    }


# The timeline is the hottest read in the console: entries are built as plain dicts (the
# serializers above describe the same shapes for the OpenAPI schema and are checked against
# these builders in tests/profiles/test_api.py). Instantiating a DRF serializer per entry cost
# more than the database queries of the whole page.
_ENTRY_BUILDERS = {"message": _message_entry, "touchpoint": _touchpoint_entry}


def timeline_entry_data(entry) -> dict:
    builder = _ENTRY_BUILDERS.get(entry.type)
    if builder is None:
        return TimelineOtherSerializer(entry).data
    return builder(entry)
