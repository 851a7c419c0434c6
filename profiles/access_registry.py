"""Which customers an agent may see when the directory is restricted (``CC_CUSTOMER_ACCESS =
"served"``).

``profiles`` knows nothing of queues, conversations or offers (DESIGN.md: it imports nothing of
``conversations``), so the apps that do register a *scope* here: a function of the user that
returns a condition on ``Customer`` rows (a ``Q``) naming the customers that app says the user
served or may serve. ``conversations`` registers "customers who contacted a queue the agent serves
or whom the agent served" (``conversations.apps``). A customer is visible when any scope grants it;
with no scope registered, a restricted agent sees nobody.
"""

from collections.abc import Callable

from django.db.models import Q

CustomerScope = Callable[..., Q]

_scopes: dict[str, CustomerScope] = {}


def register_scope(name: str, scope: CustomerScope) -> None:
    """``scope(user)`` -> ``Q`` on Customer. Registered once per name (``AppConfig.ready`` may run
    more than once in tests)."""
    _scopes[name] = scope


def served_customers(user) -> Q:
    """The customers some registered scope grants ``user``; none when no scope says so."""
    condition = Q(pk__in=[])
    for scope in _scopes.values():
        condition |= scope(user)
    return condition
