import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from profiles import addresses


@pytest.mark.parametrize(
    "raw",
    ["090-1234-5678", "０９０－１２３４－５６７８", "+81 90 1234 5678", "09012345678", "(090) 1234-5678", "tel:+819012345678"],
)
def test_japanese_phone_forms_are_one_e164(raw):
    assert addresses.normalize_phone(raw) == "+819012345678"


@override_settings(CC_DEFAULT_REGION="US")
def test_default_region_setting_decides_national_numbers():
    assert addresses.normalize_phone("(415) 867-5309") == "+14158675309"


@pytest.mark.parametrize("raw", ["", "hello", "12", "+81 0000", "090-1234-567a", None])
def test_invalid_phone_is_a_clear_validation_error(raw):
    with pytest.raises(ValidationError) as excinfo:
        addresses.normalize_phone(raw)
    assert "phone" in str(excinfo.value)


def test_whatsapp_address_normalizes_to_the_same_number():
    assert addresses.normalize_whatsapp("whatsapp:+819012345678") == "+819012345678"
    assert addresses.parse_address("whatsapp:090-1234-5678") == ("whatsapp", "+819012345678")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hanako.Yamada@Example.CO.JP", "hanako.yamada@example.co.jp"),
        ("  user@例え.jp ", "user@xn--r8jz45g.jp"),
        ("ＵＳＥＲ＠ｅｘａｍｐｌｅ．ｃｏｍ", "user@example.com"),
        ("mailto:a@b.example", "a@b.example"),
    ],
)
def test_email_is_lowercased_with_idna_domain(raw, expected):
    assert addresses.normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["no-at-sign", "a@b@c", "a@", "@example.com", "a b@example.com"])
def test_invalid_email_is_rejected(raw):
    with pytest.raises(ValidationError):
        addresses.normalize_email(raw)


def test_parse_address_guesses_the_kind():
    assert addresses.parse_address("０９０－１２３４－５６７８") == ("phone", "+819012345678")
    assert addresses.parse_address("A@Example.com") == ("email", "a@example.com")


def test_unknown_kind_is_rejected():
    with pytest.raises(ValidationError):
        addresses.normalize("fax", "123")


# --- delivered addresses (issue 21 §10) -----------------------------------------------------------------


def test_a_possible_number_is_refused_when_typed_and_accepted_when_delivered():
    from profiles.addresses import normalize_delivered

    with pytest.raises(ValidationError):
        addresses.normalize_phone("+819007397108")  # not valid in phonenumbers' metadata: typed numbers stay strict
    assert addresses.normalize_phone("+819007397108", strict=False) == "+819007397108"
    assert normalize_delivered("phone", "+819007397108") == "+819007397108"
    assert normalize_delivered("whatsapp", "whatsapp:+819007397108") == "+819007397108"
    assert normalize_delivered("phone", "０９０－０７３９－７１０８") == "+819007397108"


@pytest.mark.parametrize("raw, stored", [("12345", "12345"), (" ShopAlert ", "ShopAlert"), ("whatsapp:abc\x00", "abc"),
                                         ("Not An@Address@x", "not an@address@x")])
def test_a_delivered_address_that_does_not_parse_is_kept_as_it_came(raw, stored):
    from profiles.addresses import normalize_delivered

    kind = "whatsapp" if raw.startswith("whatsapp:") else "email" if "@" in raw else "phone"
    assert normalize_delivered(kind, raw) == stored


def test_no_delivered_address_at_all_and_widget_tokens_stay_refused():
    from profiles.addresses import normalize_delivered

    for kind, raw in (("phone", ""), ("phone", " \x00 "), ("web_visitor", "bad token!")):
        with pytest.raises(ValidationError):
            normalize_delivered(kind, raw)


@pytest.mark.django_db
def test_an_agent_typing_a_possible_number_is_still_refused(customer):
    from profiles.services import identity_link

    with pytest.raises(ValidationError):
        identity_link(customer=customer, kind="phone", value="+819007397108", source="agent")
