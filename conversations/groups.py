"""Channel-layer group names, in one place (Channels allows only [a-zA-Z0-9-._])."""


def agent_group(agent_id: int) -> str:
    return f"agent.{agent_id}"


def session_group(session_key: str) -> str:
    """Every console socket opened with one session (one browser's tabs): signing out ends the
    session, and closes them. Session keys are lowercase letters and digits."""
    return f"session.{session_key}"


def user_group(user_id: int) -> str:
    """Every console socket of a user, in every browser: a change to what they may see (password,
    deactivation, roles) makes each of them authenticate again."""
    return f"user.{user_id}"


def supervisors_group() -> str:
    return "supervisors"


# The groups a console joins by watching a conversation (its own and its customer's): what
# reaches a socket through them is relayed only while the watcher may still see the conversation.
WATCHED_GROUP_PREFIXES = ("conversation.", "customer.")


def conversation_group(conversation_id: int) -> str:
    return f"conversation.{conversation_id}"


def customer_group(customer_id: int) -> str:
    """Consoles showing this customer's timeline (every conversation of the customer)."""
    return f"customer.{customer_id}"


def widget_group(conversation_id: int) -> str:
    """The visitor sockets of one widget conversation (every tab of the visitor joins it)."""
    return f"widget.{conversation_id}"


def visitor_group(key: str) -> str:
    """Every socket (tab) of one visitor token: their own messages echo to all of them."""
    return f"visitor.{key}"


def layer_watch_group(token: str) -> str:
    """One process's probe group (conversations.layer_watch): only the process's own channel is
    in it, so a probe that no longer comes back means the layer forgot the process's groups."""
    return f"layerwatch.{token}"
