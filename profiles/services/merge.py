"""Merging two customers into one, and undoing it exactly."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import merge_registry
from ..models import Customer, CustomerMerge, MergeSuggestion, SuggestionStatus

# Profile fields a merge may fill on the target when the target has none.
_FILLABLE_FIELDS = ("display_name", "language", "time_zone")


class MergeError(ValidationError):
    """A merge or unmerge that cannot be done, with the reason for the person who asked."""


def _lock_pair(first_id: int, second_id: int) -> dict[int, Customer]:
    # Lock both customers in ascending id order: two merges touching the same pair from opposite
    # directions then queue behind each other instead of deadlocking.
    # NO KEY: a merge changes profile fields and merged_into, never the key; rows referencing the
    # customers (a message being stored right now) may still take their foreign-key share locks.
    rows = Customer.objects.select_for_update(no_key=True).filter(pk__in=[first_id, second_id]).order_by("pk")
    return {row.pk: row for row in rows}


@transaction.atomic
def customer_merge(
    *, source: Customer, target: Customer, actor=None, suggestion: MergeSuggestion | None = None
) -> CustomerMerge:
    """Move everything of ``source`` onto ``target`` and mark ``source`` as merged into it.

    The returned record lists the ids of every row moved and the profile values changed, which is
    what ``customer_merge_undo`` puts back.
    """
    if source.pk == target.pk:
        raise MergeError(_("A customer cannot be merged into itself."), code="merge_self")
    locked = _lock_pair(source.pk, target.pk)
    if len(locked) != 2:
        raise MergeError(_("Customer not found."), code="merge_missing")
    source, target = locked[source.pk], locked[target.pk]
    if target.merged_into_id is not None:
        raise MergeError(
            _("Customer #%(target)s is already merged into #%(into)s; merge into that one instead."),
            code="merge_into_merged",
            params={"target": target.pk, "into": target.merged_into_id},
        )
    if source.merged_into_id is not None:
        raise MergeError(
            _("Customer #%(source)s is already merged into #%(into)s."),
            code="merge_source_merged",
            params={"source": source.pk, "into": source.merged_into_id},
        )

    moved: dict[str, list[int]] = {}
    for relation in merge_registry.relations():
        manager = relation.model._default_manager
        if relation.follows is None:
            ids = list(manager.filter(**{relation.field: source}).order_by("pk").values_list("pk", flat=True))
            if ids:
                manager.filter(pk__in=ids).update(**{relation.field: target})
                moved[relation.label] = ids
        else:
            parent, via = relation.follows
            parent_ids = moved.get(parent._meta.label_lower, [])
            if parent_ids:
                manager.filter(**{f"{via}__in": parent_ids}).update(**{relation.field: target})

    target_tag_ids = set(target.tags.values_list("pk", flat=True))
    added_tag_ids = sorted(set(source.tags.values_list("pk", flat=True)) - target_tag_ids)
    if added_tag_ids:
        target.tags.add(*added_tag_ids)
        moved["tags"] = added_tag_ids

    changes: dict[str, list] = {}
    for field in _FILLABLE_FIELDS:
        if not getattr(target, field) and getattr(source, field):
            changes[field] = [getattr(target, field), getattr(source, field)]
            setattr(target, field, getattr(source, field))
    added_attributes = {k: v for k, v in source.custom_attributes.items() if k not in target.custom_attributes}
    if added_attributes:
        changes["custom_attributes"] = [dict(target.custom_attributes), {**target.custom_attributes, **added_attributes}]
        target.custom_attributes = {**target.custom_attributes, **added_attributes}
    if changes:
        target.save(update_fields=[*changes.keys(), "updated_at"])

    source.merged_into = target
    source.save(update_fields=["merged_into", "updated_at"])

    record = CustomerMerge.objects.create(
        source=source, target=target, performed_by=actor, moved=moved, target_before=changes,
        source_before={"merged_into": None}, suggestion=suggestion,
    )
    # Suggestions between the two are settled by the merge itself.
    MergeSuggestion.objects.filter(status=SuggestionStatus.PENDING).filter(
        customer__in=[source, target], candidate__in=[source, target]
    ).update(status=SuggestionStatus.CONFIRMED, decided_at=timezone.now(), decided_by=actor)
    return record


@transaction.atomic
def customer_merge_undo(*, merge: CustomerMerge, actor=None) -> CustomerMerge:
    """Put back exactly what ``merge`` moved and restore both customers' profile values.

    Rows that arrived on the target after the merge stay there; profile values the merge filled
    are restored only while they still hold what the merge set (an agent's later edit wins).
    """
    merge = CustomerMerge.objects.select_for_update().get(pk=merge.pk)
    if merge.undone_at is not None:
        raise MergeError(_("This merge was already undone."), code="unmerge_done")
    locked = _lock_pair(merge.source_id, merge.target_id)
    source, target = locked[merge.source_id], locked[merge.target_id]
    if target.merged_into_id is not None:
        raise MergeError(
            _("Customer #%(target)s was merged into #%(into)s after this merge; undo that merge first."),
            code="unmerge_blocked",
            params={"target": target.pk, "into": target.merged_into_id},
        )

    for relation in merge_registry.relations():
        manager = relation.model._default_manager
        if relation.follows is None:
            ids = merge.moved.get(relation.label, [])
            if ids:
                manager.filter(pk__in=ids, **{relation.field: target}).update(**{relation.field: source})
        else:
            parent, via = relation.follows
            parent_ids = merge.moved.get(parent._meta.label_lower, [])
            if parent_ids:
                manager.filter(**{f"{via}__in": parent_ids}).update(**{relation.field: source})

    if merge.moved.get("tags"):
        target.tags.remove(*merge.moved["tags"])

    restored = []
    for field, (before, after) in merge.target_before.items():
        if getattr(target, field) == after:
            setattr(target, field, before)
            restored.append(field)
    if restored:
        target.save(update_fields=[*restored, "updated_at"])

    source.merged_into = None
    source.save(update_fields=["merged_into", "updated_at"])

    merge.undone_at = timezone.now()
    merge.undone_by = actor
    merge.save(update_fields=["undone_at", "undone_by"])
    return merge
