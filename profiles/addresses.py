"""Normalisation of every customer address, so one person's forms become one identity.

* phone: E.164 through ``phonenumbers`` with ``CC_DEFAULT_REGION`` (default JP); full-width digits
  and dashes (``０９０－１２３４－５６７８``) are folded by NFKC first;
* whatsapp: ``whatsapp:+E164`` → the same E.164 value under the whatsapp kind;
* email: local part kept, domain lowercased and IDNA-encoded; the whole address lowercased
  (every provider we meet treats local parts case-insensitively);
* web visitor / external id: trimmed opaque tokens.
"""

import re
import unicodedata

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext as _

from .models import IdentityKind

_PHONE_NOISE = re.compile(r"[\s\-‐‑‒–—―ー−().\u3000]")
_TOKEN = re.compile(r"^[A-Za-z0-9._:@\-]{1,200}$")


def normalize_phone(raw: str, *, region: str | None = None) -> str:
    if raw is None:
        raise ValidationError(_("A phone number is required."), code="phone_required")
    text = unicodedata.normalize("NFKC", str(raw)).strip()
    if text.lower().startswith("tel:"):
        text = text[4:]
    compact = _PHONE_NOISE.sub("", text)
    if not compact or not re.fullmatch(r"\+?\d{3,20}", compact):
        raise ValidationError(_("“%(value)s” is not a phone number."), code="phone_invalid", params={"value": raw})
    try:
        number = phonenumbers.parse(compact, (region or settings.CC_DEFAULT_REGION).upper())
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            _("“%(value)s” is not a phone number."), code="phone_invalid", params={"value": raw}
        ) from exc
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(
            _("“%(value)s” is not a valid phone number."), code="phone_invalid", params={"value": raw}
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_whatsapp(raw: str) -> str:
    text = unicodedata.normalize("NFKC", str(raw or "")).strip()
    if text.lower().startswith("whatsapp:"):
        text = text[len("whatsapp:"):]
    return normalize_phone(text)


def normalize_email(raw: str) -> str:
    text = unicodedata.normalize("NFKC", str(raw or "")).strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    if text.count("@") != 1:
        raise ValidationError(_("“%(value)s” is not an email address."), code="email_invalid", params={"value": raw})
    local, domain = text.rsplit("@", 1)
    try:
        ascii_domain = domain.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ValidationError(
            _("“%(value)s” has an invalid domain."), code="email_invalid", params={"value": raw}
        ) from exc
    address = f"{local.strip()}@{ascii_domain}".lower()
    try:
        validate_email(address)
    except ValidationError as exc:
        raise ValidationError(
            _("“%(value)s” is not an email address."), code="email_invalid", params={"value": raw}
        ) from exc
    return address


def normalize_token(raw: str) -> str:
    text = str(raw or "").strip()
    if not _TOKEN.fullmatch(text):
        raise ValidationError(_("“%(value)s” is not a valid identifier."), code="token_invalid", params={"value": raw})
    return text


_NORMALIZERS = {
    IdentityKind.PHONE: normalize_phone,
    IdentityKind.WHATSAPP: normalize_whatsapp,
    IdentityKind.EMAIL: normalize_email,
    IdentityKind.WEB_VISITOR: normalize_token,
    IdentityKind.EXTERNAL_ID: normalize_token,
}


def normalize(kind: str, raw: str) -> str:
    """Return the canonical value for ``raw`` of ``kind``; ``ValidationError`` when it is not one."""
    try:
        normalizer = _NORMALIZERS[IdentityKind(kind)]
    except ValueError as exc:
        raise ValidationError(_("Unknown identity kind “%(kind)s”."), code="kind_invalid", params={"kind": kind}) from exc
    return normalizer(raw)


def parse_address(raw: str) -> tuple[str, str]:
    """Guess the kind of a free-form address (``whatsapp:+81…``, ``a@b.jp``, ``090-…``) and normalise it."""
    text = unicodedata.normalize("NFKC", str(raw or "")).strip()
    if text.lower().startswith("whatsapp:"):
        return IdentityKind.WHATSAPP, normalize_whatsapp(text)
    if "@" in text:
        return IdentityKind.EMAIL, normalize_email(text)
    return IdentityKind.PHONE, normalize_phone(text)
