"""Index definitions both databases can build."""

from django.db import models


class NullsFirstIndex(models.Index):
    """An index with ``OrderBy(F(...), nulls_first=True)`` parts, for a query ordered that way
    (PostgreSQL's ascending indexes put NULLs last, so it cannot walk a plain one in that order).
    SQLite refuses the clause in an index, and needs none: its ascending order puts NULLs first."""

    def create_sql(self, model, schema_editor, using="", **kwargs):
        if schema_editor.connection.vendor == "sqlite":
            plain = [
                part.expression if isinstance(part, models.OrderBy) and part.nulls_first and not part.descending
                else part for part in self.expressions
            ]
            return models.Index(*plain, name=self.name, condition=self.condition).create_sql(
                model, schema_editor, using, **kwargs)
        return super().create_sql(model, schema_editor, using, **kwargs)
