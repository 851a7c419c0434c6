import pytest

from profiles.models import IdentityKind, MergeSuggestion, SuggestionStatus
from profiles.services import (
    MergeError,
    merge_suggestion_decide,
    suggest_from_email_signature,
    suggest_same_name_same_domain,
)

from ..factories import make_customer, make_identity

pytestmark = pytest.mark.django_db


def test_email_signature_naming_a_known_phone_suggests_a_merge():
    known = make_customer("佐藤 健")
    make_identity(known, IdentityKind.PHONE, "+819012345678", verified=True)
    emailer = make_customer("Ken Sato")
    make_identity(emailer, IdentityKind.EMAIL, "ken@example.jp")
    body = "ご確認ください。\n--\n佐藤 健\nTEL: ０９０－１２３４－５６７８\n"
    suggestions = suggest_from_email_signature(customer=emailer, text=body)
    assert len(suggestions) == 1
    suggestion = suggestions[0]
    assert (suggestion.customer, suggestion.candidate, suggestion.reason) == (known, emailer, "signature_phone")
    assert suggestion.evidence["phone"] == "+819012345678"
    assert "０９０" in suggestion.evidence["excerpt"]
    emailer.refresh_from_db()
    assert emailer.merged_into is None  # a claim never links by itself
    # Seen again: still one pending suggestion.
    suggest_from_email_signature(customer=emailer, text=body)
    assert MergeSuggestion.objects.count() == 1


def test_same_name_same_company_domain_suggests_but_free_mail_does_not():
    first = make_customer("Taro Suzuki")
    make_identity(first, IdentityKind.EMAIL, "taro@acme.co.jp")
    second = make_customer("taro  suzuki")
    make_identity(second, IdentityKind.EMAIL, "t.suzuki@acme.co.jp")
    [suggestion] = suggest_same_name_same_domain(customer=second)
    assert suggestion.evidence == {"name": "taro  suzuki", "domain": "acme.co.jp", "matched_email": "taro@acme.co.jp"}

    gmail_a = make_customer("Common Name")
    make_identity(gmail_a, IdentityKind.EMAIL, "a@gmail.com")
    gmail_b = make_customer("Common Name")
    make_identity(gmail_b, IdentityKind.EMAIL, "b@gmail.com")
    assert suggest_same_name_same_domain(customer=gmail_b) == []


def test_confirm_merges_and_dismiss_does_not(admin_user):
    owner, candidate, other = make_customer("A"), make_customer("B"), make_customer("C")
    confirm = MergeSuggestion.objects.create(customer=owner, candidate=candidate, reason="claimed_email", evidence={})
    dismiss = MergeSuggestion.objects.create(customer=owner, candidate=other, reason="claimed_email", evidence={})

    merge = merge_suggestion_decide(suggestion=confirm, confirm=True, actor=admin_user)
    assert merge.source == candidate and merge.target == owner and merge.suggestion == confirm
    confirm.refresh_from_db()
    assert confirm.status == SuggestionStatus.CONFIRMED and confirm.decided_by == admin_user

    assert merge_suggestion_decide(suggestion=dismiss, confirm=False, actor=admin_user) is None
    dismiss.refresh_from_db()
    other.refresh_from_db()
    assert dismiss.status == SuggestionStatus.DISMISSED and other.merged_into is None
    with pytest.raises(MergeError):
        merge_suggestion_decide(suggestion=dismiss, confirm=True)
