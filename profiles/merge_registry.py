"""Which rows belong to a customer and move with a merge.

Each app registers its customer-owned models here (``profiles`` registers identities, touchpoints,
notes and consents; ``conversations`` registers conversations and their messages) so ``profiles``
can merge and unmerge without importing ``conversations``.

* ``register(Model, "customer")``: the ids of the rows moved are recorded in the merge and moved
  back exactly on undo.
* ``register(Model, "customer", follows=(Parent, "parent_field"))``: a denormalised copy of the
  customer on rows that belong to a registered parent; they move with their parent's recorded ids,
  so the merge record stays small however long the history is.
"""

from dataclasses import dataclass

from django.db import models


@dataclass(frozen=True)
class CustomerRelation:
    model: type[models.Model]
    field: str
    follows: tuple[type[models.Model], str] | None = None

    @property
    def label(self) -> str:
        return self.model._meta.label_lower


_relations: dict[str, CustomerRelation] = {}


def register(model: type[models.Model], field: str, *, follows: tuple[type[models.Model], str] | None = None) -> None:
    relation = CustomerRelation(model=model, field=field, follows=follows)
    _relations[relation.label] = relation


def relations() -> list[CustomerRelation]:
    """Owned relations first, followers after, so parents' ids are known when followers move."""
    return sorted(_relations.values(), key=lambda relation: relation.follows is not None)
