"""Writes on customers. Every function owns its transaction (STYLE.md habit 1)."""

from .identity import IdentityResolution, LinkOutcome, identity_link, identity_resolve
from .merge import MergeError, customer_merge, customer_merge_undo
from .profile import customer_update  # noqa: F401 - re-exported
from .suggestions import (
    merge_suggestion_decide,
    suggest_from_email_signature,
    suggest_same_name_same_domain,
    suggestion_record,
)

__all__ = [
    "IdentityResolution",
    "LinkOutcome",
    "MergeError",
    "customer_merge",
    "customer_merge_undo",
    "identity_link",
    "identity_resolve",
    "merge_suggestion_decide",
    "suggest_from_email_signature",
    "suggest_same_name_same_domain",
    "suggestion_record",
]
from .consent import consent_record  # noqa: E402

__all__ += ["consent_record"]
