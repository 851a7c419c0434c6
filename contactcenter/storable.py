"""Text and JSON as PostgreSQL stores them: without NUL (U+0000).

PostgreSQL refuses NUL in ``text`` and in ``jsonb`` strings (``UntranslatableCharacter``), SQLite
keeps it, so one NUL in an SMS body made the webhook answer 500 in production only, Twilio retry
and the message never be stored (issue 21 §9). Every text from outside passes one of these at the
boundary (the normaliser of inbound shapes, the services agents write through, the raw-event
stores):

* ``text_storable``: text shown to people (a message, a name, a note): NUL removed.
* ``json_without_nul``: JSON that is data of ours (custom attributes): NUL removed from keys and
  strings.
* ``json_storable`` / ``json_restored``: a provider's raw payload, kept as it came: a string with
  NUL is stored as ``{"cc:nul-split": [the parts between the NULs]}``, which ``json_restored``
  joins back exactly (the processing of a stored event reads it through ``json_restored``).
"""

NUL = "\x00"
NUL_SPLIT_KEY = "cc:nul-split"


def text_storable(value: str) -> str:
    return value.replace(NUL, "") if isinstance(value, str) and NUL in value else value


def json_without_nul(value):
    if isinstance(value, str):
        return text_storable(value)
    if isinstance(value, dict):
        return {text_storable(str(key)): json_without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_without_nul(item) for item in value]
    return value


def json_storable(value):
    """``value`` with every string holding NUL replaced by its reversible ``cc:nul-split`` form
    (a key holding NUL, which JSON objects cannot carry that way, loses its NULs)."""
    if isinstance(value, str):
        return {NUL_SPLIT_KEY: value.split(NUL)} if NUL in value else value
    if isinstance(value, dict):
        return {text_storable(str(key)): json_storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_storable(item) for item in value]
    return value


def _is_split(value) -> bool:
    return (isinstance(value, dict) and len(value) == 1 and isinstance(value.get(NUL_SPLIT_KEY), list)
            and all(isinstance(part, str) for part in value[NUL_SPLIT_KEY]))


def json_restored(value):
    """The value ``json_storable`` was given (NULs back in their strings)."""
    if _is_split(value):
        return NUL.join(value[NUL_SPLIT_KEY])
    if isinstance(value, dict):
        return {key: json_restored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_restored(item) for item in value]
    return value
