"""Edits of a customer's own profile fields (not identities, not merges)."""

import zoneinfo

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from contactcenter.storable import json_without_nul

from ..languages import language_tag
from ..models import Customer, Tag

# The only fields an agent (or an API client) may set on a customer. ``merged_into`` belongs to
# the merge service, identities and their ``verified`` flag to the identity service.
EDITABLE_FIELDS = frozenset({"display_name", "language", "time_zone", "journey_stage", "tags", "custom_attributes"})
_SCALAR_FIELDS = ("display_name", "language", "time_zone", "journey_stage", "custom_attributes")


def _validate(data: dict) -> dict:
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(data) - EDITABLE_FIELDS)
    for name in unknown:
        errors[name] = [_("This field cannot be set.")]
    language = data.get("language")
    if language:
        if language_tag(language):
            data["language"] = language_tag(language)  # "ja_JP" kept as the tag it means, "ja-JP"
        else:
            errors["language"] = [_("Use a BCP 47 language tag such as “ja” or “en-US”.")]
    time_zone = data.get("time_zone")
    if time_zone:
        try:
            zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            errors["time_zone"] = [_("“%(value)s” is not a known time zone.") % {"value": time_zone}]
    if "custom_attributes" in data and not isinstance(data["custom_attributes"], dict):
        errors["custom_attributes"] = [_("Custom attributes must be an object.")]
    if "tags" in data:
        names = [str(name).strip() for name in data["tags"]]
        if any(not name or len(name) > Tag._meta.get_field("name").max_length for name in names):
            errors["tags"] = [_("Tag names must be 1 to 50 characters long.")]
    if errors:
        raise ValidationError(errors)
    return data


@transaction.atomic
def customer_update(*, customer: Customer, data: dict, actor=None) -> Customer:
    """Set the editable profile fields present in ``data``; fields absent stay as they are.

    ``tags`` is the complete list of tag names (missing tags are created); ``custom_attributes``
    replaces the whole object. A customer merged into another one is read-only: edits go to the
    customer it was merged into. ``ValidationError`` (with per-field messages) for anything else.
    """
    # NUL out of every string, custom attributes' keys and values included: PostgreSQL refuses it
    # in text and jsonb (contactcenter.storable).
    data = json_without_nul(data)
    _validate(data)
    # Lock the row: a concurrent merge moves/fills fields of this customer in its own transaction.
    # NO KEY: concurrent inserts that reference this customer (messages, notes) must not wait on an
    # edit of its profile fields, nor deadlock with it.
    customer = Customer.objects.select_for_update(no_key=True).get(pk=customer.pk)
    if customer.merged_into_id is not None:
        raise ValidationError(
            _("Customer #%(customer)s is merged into #%(into)s; edit that customer instead."),
            code="customer_merged",
            params={"customer": customer.pk, "into": customer.merged_into_id},
        )
    changed = [name for name in _SCALAR_FIELDS if name in data]
    for name in changed:
        setattr(customer, name, data[name])
    if changed:
        # Choices and max lengths of exactly the fields set here.
        customer.clean_fields(exclude=[f.name for f in Customer._meta.fields if f.name not in changed])
        customer.save(update_fields=[*changed, "updated_at"])
    if "tags" in data:
        names = list(dict.fromkeys(str(name).strip() for name in data["tags"]))
        tags = [Tag.objects.get_or_create(name=name)[0] for name in names]
        customer.tags.set(tags)
    return customer
