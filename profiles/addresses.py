"""Normalisation of every customer address, so one person's forms become one identity.

* phone: E.164 through ``phonenumbers`` with ``CC_DEFAULT_REGION`` (default JP); full-width digits
  and dashes (``０９０－１２３４－５６７８``) are folded by NFKC first;
* whatsapp: ``whatsapp:+E164`` → the same E.164 value under the whatsapp kind;
* email: local part kept, domain lowercased and IDNA-encoded; the whole address lowercased
  (every provider we meet treats local parts case-insensitively);
* web visitor / external id: trimmed opaque tokens.

Numbers people type (admin, console, API) must be *valid* numbers for ``phonenumbers``' metadata.
An address a provider delivered a message from is the customer's whatever the metadata says
(``normalize_delivered``): a *possible* number is accepted (new number ranges reach customers
before they reach the library: ``+8190…`` in Japan), and one that does not parse at all (a short
code, an alphanumeric sender) is kept as it came, so the message is never refused for it.
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


def normalize_phone(raw: str, *, region: str | None = None, strict: bool = True) -> str:
    """E.164 for a number; ``strict`` (the default, for numbers people type) asks for a number
    valid in ``phonenumbers``' metadata, else one of a possible length is enough."""
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
    if not (phonenumbers.is_valid_number(number) if strict else phonenumbers.is_possible_number(number)):
        raise ValidationError(
            _("“%(value)s” is not a valid phone number."), code="phone_invalid", params={"value": raw}
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_whatsapp(raw: str, *, strict: bool = True) -> str:
    text = unicodedata.normalize("NFKC", str(raw or "")).strip()
    if text.lower().startswith("whatsapp:"):
        text = text[len("whatsapp:"):]
    return normalize_phone(text, strict=strict)


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


_DELIVERED_LENIENT = {
    IdentityKind.PHONE: lambda raw: normalize_phone(raw, strict=False),
    IdentityKind.WHATSAPP: lambda raw: normalize_whatsapp(raw, strict=False),
    IdentityKind.EMAIL: normalize_email,
}
_IDENTITY_VALUE_MAX = 320
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def normalize_delivered(kind: str, raw: str) -> str:
    """The canonical value of an address a provider delivered a message from: a possible phone
    number is enough, and a phone or email address that does not normalise at all is kept as
    it came (trimmed, without control characters, lowercased for email), so the message is
    stored and an agent sees who wrote. ``ValidationError`` only when there is no address at
    all, or for kinds a provider does not deliver (our widget's tokens stay strict)."""
    lenient = _DELIVERED_LENIENT.get(kind)
    if lenient is None:
        return normalize(kind, raw)
    try:
        return lenient(raw)
    except ValidationError:
        pass
    text = _UNPRINTABLE.sub("", unicodedata.normalize("NFKC", str(raw or ""))).strip()
    if kind == IdentityKind.WHATSAPP and text.lower().startswith("whatsapp:"):
        text = text[len("whatsapp:"):].strip()
    if kind == IdentityKind.EMAIL:
        text = text.lower()
    if not text:
        raise ValidationError(_("The provider gave no sender address."), code="sender_missing")
    return text[:_IDENTITY_VALUE_MAX]


def parse_address(raw: str) -> tuple[str, str]:
    """Guess the kind of a free-form address (``whatsapp:+81…``, ``a@b.jp``, ``090-…``) and normalise it."""
    text = unicodedata.normalize("NFKC", str(raw or "")).strip()
    if text.lower().startswith("whatsapp:"):
        return IdentityKind.WHATSAPP, normalize_whatsapp(text)
    if "@" in text:
        return IdentityKind.EMAIL, normalize_email(text)
    return IdentityKind.PHONE, normalize_phone(text)
