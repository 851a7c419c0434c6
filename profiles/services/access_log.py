"""The customer access log: who looked at a customer's 360 or timeline, and when."""

from django.conf import settings
from django.core.cache import cache

from ..models import CustomerAccess, CustomerAccessDoor

# Doors that count as one kind for the window: paging a timeline up in the console, then
# opening the customer's page, is one visit; the same person reading through the API is another.
_DOOR_KIND = {door: door.split("_", 1)[0] for door in CustomerAccessDoor.values}


def customer_access_record(*, customer_id: int, user, door: str) -> bool:
    """Record that ``user`` viewed the customer through ``door`` (a ``CustomerAccessDoor``), unless
    the same user already did through the same kind of door (console or API) within
    ``CC_CUSTOMER_ACCESS_LOG_WINDOW_SECONDS``. One INSERT at most; the window is kept in the shared
    cache (an atomic ``add``), so scrolling a long timeline writes one row, not one per page. A
    cache that was cleared only costs one more row. True when a row was written."""
    window = settings.CC_CUSTOMER_ACCESS_LOG_WINDOW_SECONDS
    if window > 0:
        key = f"cc:customer-access:{user.pk}:{customer_id}:{_DOOR_KIND[door]}"
        if not cache.add(key, 1, timeout=window):
            return False
    CustomerAccess.objects.create(customer_id=customer_id, user=user, username=user.get_username(), door=door)
    return True
