"""A socket's cleanup that never fails and is never cut short.

Why (issue 23): when thousands of sockets closed at once, thousands of ``disconnect()`` calls
raised (the layer's pool was full, Redis was slow) and left their channels in their groups until
channels_redis expired them a day later; a consumer cancelled mid-cleanup (a server stopping)
left the rest undone. So leaving groups retries and only logs what it could not do, and the
cleanup runs to its end (bounded) even when the task running it is cancelled.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable

logger = logging.getLogger(__name__)

LEAVE_ATTEMPTS = 4
# How long a closing socket's cleanup may take: generous, since when thousands close at once
# each waits its turn for the process's bounded Redis pools.
CLEANUP_BUDGET_SECONDS = 10
LEAVE_FIRST_PAUSE_SECONDS = 0.1  # doubled after each failed round: 0.1, 0.2, 0.4


async def leave_groups(layer, channel_name: str, groups: Iterable[str]) -> list[str]:
    """Discard ``channel_name`` from every group, retrying the ones that failed. Never raises
    (but for cancellation); returns the groups it could not leave, after logging them."""
    remaining = list(dict.fromkeys(groups))
    pause = LEAVE_FIRST_PAUSE_SECONDS
    for attempt in range(LEAVE_ATTEMPTS):
        failed, last_error = [], None
        for group in remaining:
            try:
                await layer.group_discard(group, channel_name)
            except Exception as exc:  # noqa: BLE001 - whatever the layer raises, try again later
                failed.append(group)
                last_error = exc
        if not failed:
            return []
        remaining = failed
        if attempt < LEAVE_ATTEMPTS - 1:
            await asyncio.sleep(pause)
            pause *= 2
    logger.warning("could not leave %d group(s) of %s: %s: %s", len(remaining), channel_name,
                   type(last_error).__name__, last_error)
    return remaining


async def finish_despite_cancellation(cleanup: Awaitable, *, timeout: float) -> None:
    """Run ``cleanup`` to its end, at most ``timeout`` seconds, even if the calling task is
    cancelled meanwhile (the cancellation is passed on once the cleanup is done). Its own
    failure is logged, never raised: a cleanup must not turn a closing socket into an error."""
    task = asyncio.ensure_future(asyncio.wait_for(cleanup, timeout))
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                break
            cancelled = True  # ours, not the cleanup's: let it finish, then pass it on
        except BaseException:  # noqa: BLE001 - the cleanup's own failure: logged below
            break
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if isinstance(exc, TimeoutError):
            logger.warning("a socket's cleanup did not finish within %.0f s", timeout)
        else:
            logger.warning("a socket's cleanup failed", exc_info=exc)
    if cancelled:
        raise asyncio.CancelledError


def suppress_and_log(what: str):
    """``with suppress_and_log("..."):`` for one best-effort step of a cleanup."""
    return _LoggedSuppress(what)


class _LoggedSuppress(contextlib.AbstractContextManager):
    def __init__(self, what: str):
        self.what = what

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, Exception):
            logger.warning("%s failed: %s: %s", self.what, exc_type.__name__, exc)
            return True
        return False
