"""REST API on customers: directory search, profile, cross-channel timeline, merges.

One view per operation (the profile's GET and PATCH share a URL, so share a class), input and
output serializers nested in the view; reads go through ``profiles.selectors``/``timeline``,
writes through ``profiles.services``.

Permissions: the directory (a list) answers 403 to anyone without a contact-center role; every
object endpoint fetches through ``access_*``, so an id the caller may not see is a 404 whether or
not it exists (threats.md: IDOR).
"""

from datetime import UTC

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, prefetch_related_objects
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import BasePagination, CursorPagination, PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from contactcenter.decoding import MAX_REPEATED_QUERY_PARAMETER

from .. import addresses
from ..models import (
    Consent,
    Customer,
    CustomerAccess,
    CustomerAccessDoor,
    CustomerNote,
    Identity,
    JourneyStage,
    Touchpoint,
)
from ..selectors import access_customer, access_customer_merge, customer_search
from ..services import MergeError, customer_merge, customer_merge_undo, customer_update
from ..services.access_log import customer_access_record
from ..timeline import customer_timeline
from .serializers import (
    ConsentSerializer,
    CustomerMergeSerializer,
    CustomerNoteSerializer,
    IdentitySerializer,
    StrictQuerySerializer,
    StrictSerializer,
    TimelineMessageSerializer,
    TimelineTouchpointSerializer,
    TouchpointSerializer,
    timeline_entry_data,
)

RECENT_TOUCHPOINTS = 10
RECENT_NOTES = 50
MERGE_PERMISSION = "profiles.merge_customer"
CHANGE_PERMISSION = "profiles.change_customer"
ACCESS_LOG_PERMISSION = "profiles.view_customeraccess"


def api_error(exc: DjangoValidationError) -> exceptions.ValidationError:
    """A Django ``ValidationError`` from a selector or service, as a DRF 400: per-field messages
    when it has them, else ``{"detail": …, "code": …}``."""
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(exc.message_dict)
    code = getattr(exc, "code", None) or (exc.error_list[0].code if getattr(exc, "error_list", None) else None)
    return exceptions.ValidationError({"detail": " ".join(exc.messages), "code": code or "invalid"})


# --- pagination --------------------------------------------------------------------------------


class CustomerPagePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class CustomerCursorPagination(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = ("-created_at", "-id")

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except exceptions.NotFound as exc:  # DRF's answer to a cursor it cannot decode
            raise exceptions.ValidationError({"cursor": [self.invalid_cursor_message]}) from exc

    def decode_cursor(self, request):
        """DRF checks the offset and direction of a cursor but hands its position (here a
        ``created_at``) to the database as it came: anything that is not an aware date the
        database can hold is refused here, as a cursor DRF cannot decode is."""
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            try:
                position = parse_datetime(cursor.position)
                if position is None or position.tzinfo is None:
                    raise ValueError(cursor.position)
                position.astimezone(UTC)
            except (ValueError, TypeError, OverflowError) as exc:
                raise exceptions.NotFound(self.invalid_cursor_message) from exc
        return cursor


class CustomerPagination(BasePagination):
    """``?page=N`` (with a total ``count``) by default; ``?cursor=`` (empty to start) switches to
    cursor pagination, which stays stable while customers are being added and skips the count."""

    def __init__(self):
        self._by_page = CustomerPagePagination()
        self._by_cursor = CustomerCursorPagination()
        self._active = self._by_page

    def paginate_queryset(self, queryset, request, view=None):
        self._active = self._by_cursor if "cursor" in request.query_params else self._by_page
        return self._active.paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        return self._active.get_paginated_response(data)

    def get_paginated_response_schema(self, schema):
        response = self._by_page.get_paginated_response_schema(schema)
        response["required"] = ["results"]
        response["properties"]["count"]["description"] = "Total matches (page-number mode only)."
        return response

    def get_schema_operation_parameters(self, view):
        parameters = {p["name"]: p for p in self._by_page.get_schema_operation_parameters(view)}
        for parameter in self._by_cursor.get_schema_operation_parameters(view):
            parameters.setdefault(parameter["name"], parameter)
        return list(parameters.values())


PAGINATION_PARAMETERS = ("page", "page_size", "cursor")
FORMAT_PARAMETER = ("format",)  # DRF's ?format=json renderer override


# --- customers -----------------------------------------------------------------------------------


class CustomerListItemSerializer(serializers.ModelSerializer):
    identities = IdentitySerializer(many=True, read_only=True)
    tags = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = Customer
        fields = ["id", "display_name", "language", "time_zone", "journey_stage", "tags", "identities",
                  "merged_into", "created_at", "updated_at"]
        read_only_fields = fields


class CustomerDetailSerializer(CustomerListItemSerializer):
    notes = CustomerNoteSerializer(source="recent_notes", many=True, read_only=True,
                                   help_text=f"The {RECENT_NOTES} newest notes, newest first.")
    consents = ConsentSerializer(many=True, read_only=True)
    recent_touchpoints = TouchpointSerializer(many=True, read_only=True,
                                              help_text=f"The {RECENT_TOUCHPOINTS} newest touchpoints, newest first.")

    class Meta(CustomerListItemSerializer.Meta):
        fields = [*CustomerListItemSerializer.Meta.fields, "custom_attributes", "notes", "consents",
                  "recent_touchpoints"]
        read_only_fields = fields


def _with_detail(customer: Customer) -> Customer:
    """Everything the detail shows, in one query per relation whatever their sizes."""
    prefetch_related_objects(
        [customer],
        Prefetch("identities", queryset=Identity.objects.order_by("kind", "value")),
        "tags",
        Prefetch("notes", queryset=CustomerNote.objects.select_related("author").order_by("-created_at", "-id")
                 [:RECENT_NOTES], to_attr="recent_notes"),
        Prefetch("consents", queryset=Consent.objects.order_by("channel", "address", "sender")),
        Prefetch("touchpoints", queryset=Touchpoint.objects.order_by("-occurred_at", "-id")[:RECENT_TOUCHPOINTS],
                 to_attr="recent_touchpoints"),
    )
    return customer


class CustomerListApi(APIView):
    """The customer directory: free text, phone in any written form, email, stage and tags.
    Customers merged into another one are left out (follow ``merged_into`` from their detail)."""

    pagination_class = CustomerPagination

    class FilterSerializer(StrictQuerySerializer):
        extra_allowed = PAGINATION_PARAMETERS + FORMAT_PARAMETER

        q = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                  help_text="Part of the name or of any identity (phone, email, …).")
        phone = serializers.CharField(required=False, allow_blank=True, max_length=64,
                                      help_text="Any written form: 090-1234-5678, ０９０－１２３４－５６７８, +81 90 1234 5678.")
        email = serializers.CharField(required=False, allow_blank=True, max_length=320)
        journey_stage = serializers.ChoiceField(choices=JourneyStage.choices, required=False, allow_blank=True)
        tag = serializers.ListField(child=serializers.CharField(max_length=50), required=False,
                                    max_length=MAX_REPEATED_QUERY_PARAMETER,
                                    help_text=f"Tag name; repeat to require several tags (at most "
                                              f"{MAX_REPEATED_QUERY_PARAMETER}).")

        def validate_phone(self, value):
            if value:
                try:
                    addresses.normalize_phone(value, strict=False)  # a search, as customer_search does
                except DjangoValidationError as exc:
                    raise serializers.ValidationError(exc.messages) from exc
            return value

        def validate_email(self, value):
            if value:
                try:
                    addresses.normalize_email(value)
                except DjangoValidationError as exc:
                    raise serializers.ValidationError(exc.messages) from exc
            return value

    @extend_schema(
        operation_id="customers_list",
        parameters=[FilterSerializer],
        responses={200: CustomerListItemSerializer(many=True), 400: OpenApiResponse(description="Unknown or bad filter")},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        try:
            customers = customer_search(
                user=request.user, q=data.get("q", ""), phone=data.get("phone", ""), email=data.get("email", "")
            )
        except DjangoValidationError as exc:
            raise api_error(exc) from exc
        if data.get("journey_stage"):
            customers = customers.filter(journey_stage=data["journey_stage"])
        for tag in data.get("tag", []):
            customers = customers.filter(tags__name=tag)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(customers, request, view=self)
        return paginator.get_paginated_response(CustomerListItemSerializer(page, many=True).data)


class CustomerApi(APIView):
    """One customer: GET the profile, PATCH its editable fields."""

    permission_classes = [IsAuthenticated]  # visibility is access_customer's: 404, not 403

    class UpdateInputSerializer(StrictSerializer):
        display_name = serializers.CharField(required=False, allow_blank=True, max_length=200)
        language = serializers.CharField(required=False, allow_blank=True, max_length=16)
        time_zone = serializers.CharField(required=False, allow_blank=True, max_length=64)
        journey_stage = serializers.ChoiceField(choices=JourneyStage.choices, required=False)
        tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False, max_length=100,
                                     help_text="The complete list of tag names; missing tags are created.")
        custom_attributes = serializers.DictField(required=False, help_text="Replaces the whole object.")

        class Meta:
            ref_name = "CustomerUpdate"

    @extend_schema(operation_id="customers_retrieve", responses={200: CustomerDetailSerializer})
    def get(self, request, customer_id: int):
        customer = access_customer(user=request.user, customer_id=customer_id)
        customer_access_record(customer_id=customer.pk, user=request.user, door=CustomerAccessDoor.API_CUSTOMER)
        return Response(CustomerDetailSerializer(_with_detail(customer)).data)

    @extend_schema(
        operation_id="customers_partial_update",
        request=UpdateInputSerializer,
        responses={200: CustomerDetailSerializer, 400: OpenApiResponse(description="Invalid or read-only field")},
    )
    def patch(self, request, customer_id: int):
        customer = access_customer(user=request.user, customer_id=customer_id)
        if not request.user.has_perm(CHANGE_PERMISSION):
            raise exceptions.PermissionDenied("You may not edit customers.")
        payload = self.UpdateInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            customer = customer_update(customer=customer, data=payload.validated_data, actor=request.user)
        except DjangoValidationError as exc:
            raise api_error(exc) from exc
        return Response(CustomerDetailSerializer(_with_detail(customer)).data)


class CustomerTimelineApi(APIView):
    """Everything the customer did and said, on every channel, oldest first, paged by cursor."""

    permission_classes = [IsAuthenticated]

    class FilterSerializer(StrictQuerySerializer):
        extra_allowed = FORMAT_PARAMETER

        before = serializers.CharField(required=False, help_text="Cursor: the entries just older than it.")
        after = serializers.CharField(required=False, help_text="Cursor: the entries just newer than it.")
        limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)

    class OutputSerializer(serializers.Serializer):
        results = PolymorphicProxySerializer(
            component_name="TimelineEntry",
            serializers={"message": TimelineMessageSerializer, "touchpoint": TimelineTouchpointSerializer},
            resource_type_field_name="type",
            many=True,
        )
        older = serializers.URLField(allow_null=True, help_text="The page just older, or null at the start.")
        newer = serializers.URLField(allow_null=True, help_text="The page just newer, or null at the end.")

        class Meta:
            ref_name = "TimelinePage"

    @extend_schema(
        operation_id="customers_timeline",
        parameters=[FilterSerializer],
        responses={200: OutputSerializer, 400: OpenApiResponse(description="Bad cursor or limit")},
    )
    def get(self, request, customer_id: int):
        customer = access_customer(user=request.user, customer_id=customer_id)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        try:
            page = customer_timeline(
                customer_id=customer.pk, before=data.get("before"), after=data.get("after"), limit=data["limit"]
            )
        except DjangoValidationError as exc:
            raise api_error(exc) from exc
        customer_access_record(customer_id=customer.pk, user=request.user, door=CustomerAccessDoor.API_TIMELINE)
        url = request.build_absolute_uri()
        url = remove_query_param(remove_query_param(url, "before"), "after")
        return Response({
            "results": [timeline_entry_data(entry) for entry in page.entries],
            "older": replace_query_param(url, "before", page.older_cursor) if page.older_cursor else None,
            "newer": replace_query_param(url, "after", page.newer_cursor) if page.newer_cursor else None,
        })


class CustomerAccessLogApi(APIView):
    """Who viewed this customer's 360 or timeline, and when, newest first (supervisors and admins:
    ``profiles.view_customeraccess``). Reading the log is not itself logged."""

    permission_classes = [IsAuthenticated]
    pagination_class = CustomerPagePagination

    class OutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = CustomerAccess
            fields = ["id", "user", "username", "door", "accessed_at"]
            read_only_fields = fields
            ref_name = "CustomerAccess"

    @extend_schema(operation_id="customers_access_log", responses={
        200: OutputSerializer(many=True), 403: OpenApiResponse(description="Not a supervisor or admin")})
    def get(self, request, customer_id: int):
        customer = access_customer(user=request.user, customer_id=customer_id)
        if not request.user.has_perm(ACCESS_LOG_PERMISSION):
            raise exceptions.PermissionDenied("Only supervisors and admins read the access log.")
        paginator = self.pagination_class()
        rows = CustomerAccess.objects.filter(customer=customer).order_by("-accessed_at", "-id")
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


# --- merges --------------------------------------------------------------------------------------


def _require_merge_permission(user) -> None:
    if not user.has_perm(MERGE_PERMISSION):
        raise exceptions.PermissionDenied("You may not merge or unmerge customers.")


class CustomerMergeApi(APIView):
    """Merge ``source`` into this customer (the target)."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(StrictSerializer):
        source = serializers.IntegerField(min_value=1, help_text="Id of the customer merged into this one.")

        class Meta:
            ref_name = "CustomerMergeRequest"

    @extend_schema(
        operation_id="customers_merge",
        request=InputSerializer,
        responses={
            201: CustomerMergeSerializer,
            400: OpenApiResponse(description="The merge cannot be done (reason in detail)"),
            403: OpenApiResponse(description="No permission to merge"),
            404: OpenApiResponse(description="Target or source not found"),
        },
    )
    def post(self, request, customer_id: int):
        target = access_customer(user=request.user, customer_id=customer_id)
        _require_merge_permission(request.user)
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        source = access_customer(user=request.user, customer_id=payload.validated_data["source"])
        try:
            merge = customer_merge(source=source, target=target, actor=request.user)
        except MergeError as exc:
            raise api_error(exc) from exc
        return Response(CustomerMergeSerializer(merge).data, status=status.HTTP_201_CREATED)


class CustomerMergeDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="customer_merges_retrieve", responses={200: CustomerMergeSerializer})
    def get(self, request, merge_id: int):
        merge = access_customer_merge(user=request.user, merge_id=merge_id)
        return Response(CustomerMergeSerializer(merge).data)


class CustomerMergeUndoApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="customer_merges_undo",
        request=None,
        responses={
            200: CustomerMergeSerializer,
            400: OpenApiResponse(description="Already undone, or blocked by a later merge"),
            403: OpenApiResponse(description="No permission to unmerge"),
        },
    )
    def post(self, request, merge_id: int):
        merge = access_customer_merge(user=request.user, merge_id=merge_id)
        _require_merge_permission(request.user)
        try:
            merge = customer_merge_undo(merge=merge, actor=request.user)
        except MergeError as exc:
            raise api_error(exc) from exc
        return Response(CustomerMergeSerializer(merge).data)


__all__ = [
    "CustomerApi",
    "CustomerListApi",
    "CustomerMergeApi",
    "CustomerMergeDetailApi",
    "CustomerMergeUndoApi",
    "CustomerTimelineApi",
]
