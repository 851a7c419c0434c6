"""The JSON form field of every model form the admin builds (settings of an inbox, a customer's
custom attributes …), decoding through ``contactcenter.decoding``: ``1e400``, ``NaN`` or ``[[[[…``
typed into the admin is a form error with the reason, never a 500 from the database or a
``RecursionError``; NUL, which PostgreSQL refuses, is removed (``contactcenter.storable``)."""

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput, JSONString

from .decoding import UndecodableInput, json_decode
from .storable import json_without_nul


class SafeJSONFormField(forms.JSONField):
    def to_python(self, value):
        if self.disabled:
            return value
        if value in self.empty_values:
            return None
        if isinstance(value, list | dict | int | float | JSONString):
            return value
        try:
            converted = json_without_nul(json_decode(value))
        except UndecodableInput as exc:
            raise ValidationError(str(exc), code="invalid", params={"value": value}) from exc
        return JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data, initial):
        if self.disabled:
            return initial
        if data is None:
            return None
        try:
            return json_decode(data)
        except UndecodableInput:
            return InvalidJSONInput(data)


def use_in_admin() -> None:
    """Make it the admin's form field for every ``models.JSONField``: the admin merges this table
    into each ModelAdmin's ``formfield_overrides``, so no admin class has to remember it."""
    from django.contrib import admin
    from django.contrib.admin import options
    from django.db import models

    override = {"form_class": SafeJSONFormField}
    options.FORMFIELD_FOR_DBFIELD_DEFAULTS[models.JSONField] = override  # inlines, admins made later
    for model_admin in admin.site._registry.values():  # admins made before this app was ready
        model_admin.formfield_overrides.setdefault(models.JSONField, {}).setdefault("form_class", SafeJSONFormField)
