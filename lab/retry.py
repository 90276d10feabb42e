"""Deadline-based polling on tenacity: wait for a condition, never sleep a fixed time.

Every failed attempt is logged in one fixed form: "attempt 2 failed: ...; retrying in 2s".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import tenacity

from lab.errors import NotReadyError
from lab.settings import TIMEOUTS

T = TypeVar("T")
log = logging.getLogger("lab.retry")


class NotYet(Exception):
    """Raised by a polled function to say 'not yet'; its message is the reason shown when time runs out."""


def poll(
    fn: Callable[[], T],
    *,
    timeout: float,
    interval: float = TIMEOUTS.poll_interval,
    what: str,
    retry_on: tuple[type[BaseException], ...] = (NotYet,),
    stable: int = 1,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Call `fn` until it returns without raising one of `retry_on`, or until `timeout` seconds have passed.

    With `stable=N`, the same result must come back N times in a row (for caches that converge): an attempt that
    raises one of `retry_on` breaks the row as a different result does.
    On timeout raises NotReadyError naming `what` and the last reason.
    """
    last: list[object] = []

    def attempt() -> T:
        try:
            value = fn()
        except retry_on:
            last.clear()
            raise
        if stable > 1:
            if last and last[-1] != value:
                last.clear()
            last.append(value)
            if len(last) < stable:
                raise NotYet(f"{value!r} seen {len(last)}/{stable} times in a row")
        return value

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info("attempt %d failed: %s; retrying in %.0fs", state.attempt_number, exc, interval)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(interval),
        retry=tenacity.retry_if_exception_type(retry_on),
        before_sleep=before_sleep,
        reraise=False,
        sleep=sleep if sleep is not None else tenacity.nap.sleep,  # tenacity's own default
    )
    try:
        return retrying(attempt)
    except tenacity.RetryError as err:
        exc = err.last_attempt.exception()
        raise NotReadyError(f"{what}: not reached within {timeout:.0f}s (last: {exc})") from exc
